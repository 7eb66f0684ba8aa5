// Hostile values against the real processes (docs/hostile-input.md): a standalone `esper broker`,
// `esper controller` and `esper top --once`, told the job's shape (--layers 1 --chunks 8), while
// this test, as anyone who reaches the broker could, publishes crafted telemetry and events — a
// state of 200, a seed past the layer's 8, a layer the job does not have — and a rank node emits the
// same events through the broker's command channel. The controller and top keep running and exit 0
// when asked; every reject is counted where it happened: the broker's stats line, the controller's
// summary line and log, top's header and log, esper watch's last line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <string>

#include "fabric/fabric_fixture.hpp"
#include "fabric/framing.hpp"
#include "fabric/node.hpp"
#include "support/process.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"

namespace esper {
namespace {

using esper::testing::ChildProcess;
using wire::SeedState;
using namespace std::chrono_literals;

int exit_code(const std::optional<int>& st) { return st && WIFEXITED(*st) ? WEXITSTATUS(*st) : -1; }

std::string endpoint_of(const std::string& line, const std::string& key) {
  const auto p = line.find(key + "=");
  if (p == std::string::npos) return {};
  const auto e = line.find(' ', p);
  return line.substr(p + key.size() + 1, e == std::string::npos ? std::string::npos : e - p - key.size() - 1);
}

// The number after `key` in the last line of `out` that has it ("values rejected 12", "values_rejected=12").
std::optional<std::uint64_t> number_after(const std::string& out, const std::string& key) {
  const auto p = out.rfind(key);
  if (p == std::string::npos) return std::nullopt;
  std::size_t end = p + key.size();
  std::uint64_t n = 0;
  bool any = false;
  while (end < out.size() && std::isdigit(static_cast<unsigned char>(out[end]))) {
    n = n * 10 + static_cast<std::uint64_t>(out[end++] - '0');
    any = true;
  }
  return any ? std::optional(n) : std::nullopt;
}

// Reads what a child wrote so far, waiting at most `d` (a line no child prints never matches).
void pump(ChildProcess& child, std::chrono::milliseconds d) { (void)child.read_line_starting("\x01", d); }

bool has_all(const std::string& out, const std::vector<std::string>& parts) {
  for (const auto& p : parts) {
    if (out.find(p) == std::string::npos) return false;
  }
  return true;
}

// Crafted telemetry, published on the broker's pub endpoint as any publisher can, and crafted
// events, sent by a rank the way events go: to the broker, which stamps and publishes them (an
// event sent on the pub endpoint goes no further than the broker).
class CraftedPublisher {
 public:
  CraftedPublisher(zmq::context_t& ctx, const std::string& endpoint) : pub_(ctx, endpoint) {}

  // One round: crafted telemetry and events, then one sane batch of the job's 8 seeds. The broker
  // rejects the state of 200; the seed and layer the job does not have, only the job's subscribers.
  void round(fabric::Node& rank) {
    telemetry(0, {record(1, static_cast<SeedState>(200))});  // a state of 200
    telemetry(0, {record(8, SeedState::DORMANT)});            // past the layer's 8 seeds
    telemetry(3, {record(0, SeedState::DORMANT)});            // a layer the job does not have
    rank.emit(wire::state_transition(0, step_, 1, SeedState::DORMANT, static_cast<SeedState>(200), "crafted", "test"));
    rank.emit(wire::state_transition(0, step_, 8, SeedState::DORMANT, SeedState::GERMINATED, "crafted", "test"));
    rank.emit(wire::state_transition(3, step_, 0, SeedState::DORMANT, SeedState::GERMINATED, "crafted", "test"));
    std::vector<wire::SeedMetrics> sane;
    for (std::uint32_t s = 0; s < 8; ++s) sane.push_back(record(s, s == 2 ? SeedState::TRAINING : SeedState::DORMANT));
    telemetry(0, sane);
    ++step_;
  }

 private:
  wire::SeedMetrics record(std::uint32_t seed, SeedState state) const {
    return wire::SeedMetrics(step_, seed, 1, 0.0f, 1.0f, 0.0f, 0.5f, 0.5f, 0.1f, 0.0f, 1.0f, state, 0, 0);
  }
  void telemetry(std::uint32_t layer, const std::vector<wire::SeedMetrics>& records) {
    wire::Header h;
    h.msg_id = wire::MsgId(4242, ++id_);
    h.partition_key = layer;
    h.sequence = ++batches_[layer];
    pub_.publish(fabric::telemetry_topic(layer), h.sequence,
                 enc_.encode_telemetry(h, wire::TelemetryBatchInfo{layer, 0, 0, 0, 0}, records),
                 static_cast<std::uint32_t>(records.size()));
  }

  fabric::testing::RawPublisher pub_;
  wire::Encoder enc_{wire::SourceInfo{0, wire::Role::RANK, "job", "node-x", 1}};
  std::uint64_t id_ = 0, step_ = 1;
  std::map<std::uint32_t, std::uint64_t> batches_;
};

class HostileProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "esper-hostile-" + std::to_string(::getpid());
    base_ = "ipc://" + (std::filesystem::temp_directory_path() / name_).string();
  }
  void TearDown() override {
    std::error_code ec;
    for (const char* suffix : {".cmd", ".pub", ".sub", ".evt"}) {
      std::filesystem::remove(std::filesystem::temp_directory_path() / (name_ + suffix), ec);
    }
  }
  std::string name_, base_;
};

TEST_F(HostileProcesses, ControllerTopAndWatchKeepRunningAndCountCraftedValuesFromARealBroker) {
  ChildProcess broker({ESPER_CLI, "broker", "--bind", base_, "--stats-every", "0"});
  const auto line = broker.read_line_starting("endpoints", 10s);
  ASSERT_TRUE(line) << broker.output();
  const std::string cmd = endpoint_of(*line, "cmd"), pub = endpoint_of(*line, "pub");

  ChildProcess controller({ESPER_CLI, "controller", "--broker", cmd, "--policy", "none", "--layers", "1", "--chunks", "8",
                           "--keep-running"});
  ASSERT_TRUE(controller.read_line_starting("joined", 15s)) << controller.output();

  zmq::context_t ctx;
  CraftedPublisher raw(ctx, pub);
  // A rank of the job: its heartbeats make it live, and it emits the crafted events the proper
  // way, through the broker's command channel, where the broker rejects them.
  fabric::NodeOptions no;
  no.rank = 0;
  no.layers = {0};
  no.heartbeat_interval = 100ms;
  fabric::Node node(ctx, cmd, no);
  node.emit(wire::state_transition(0, 1, 1, SeedState::DORMANT, static_cast<SeedState>(200), "crafted", "test"));
  node.emit(wire::state_transition(0, 1, 8, SeedState::DORMANT, SeedState::GERMINATED, "crafted", "test"));
  node.emit(wire::state_transition(0, 1, 70'000, SeedState::DORMANT, SeedState::GERMINATED, "crafted", "test"));

  // esper top --once listens for a second, then prints one frame: rounds go out until it exits.
  ChildProcess top({ESPER_CLI, "top", "--broker", cmd, "--once", "--layers", "1", "--chunks", "8"});
  // esper watch knows no job shape: of a round's batches it rejects the state of 200 only, and a
  // sixth message shown is past at least one of those.
  ChildProcess watch({ESPER_CLI, "watch", "--broker", cmd, "--topic", "tel/", "--count", "6"});
  std::optional<int> top_status, watch_status;
  const auto until = std::chrono::steady_clock::now() + 30s;
  while ((!top_status || !watch_status) && std::chrono::steady_clock::now() < until) {
    raw.round(node);
    if (!top_status) top_status = top.wait(10ms);
    if (!watch_status) watch_status = watch.wait(10ms);
  }
  ASSERT_TRUE(top_status) << "top --once did not exit: " << top.output();
  EXPECT_EQ(exit_code(top_status), 0) << top.output();
  const auto shown = number_after(top.output(), "values rejected ");
  ASSERT_TRUE(shown) << top.output();
  EXPECT_GE(*shown, 5u) << "a round's five crafted messages that pass the broker at least:\n" << top.output();
  EXPECT_NE(top.output().find("layer 0 · 8 seeds"), std::string::npos) << top.output();
  EXPECT_EQ(top.output().find("layer 3"), std::string::npos) << top.output();
  EXPECT_EQ(top.output().find('\x1b'), std::string::npos) << "plain frames, plain log lines through a pipe";
  EXPECT_TRUE(has_all(top.output(), {"rejected TelemetryBatch from source rank 0: seeds[0].state: 200 is not a SeedState",
                                     "seeds[0].seed: 8 is past layer 0's 8 seeds (0..7)",
                                     "rejected TelemetryBatch from source rank 0: layer: 3 is not one of the 1 layers",
                                     "rejected Event from source rank 0: body.seed: 8 is past layer 0's 8 seeds",
                                     "rejected Event from source rank 0: layer: 3"}))
      << top.output();

  ASSERT_TRUE(watch_status) << "watch did not show 6 messages: " << watch.output();
  EXPECT_EQ(exit_code(watch_status), 0) << watch.output();
  const auto watched = number_after(watch.output(), "values rejected ");
  ASSERT_TRUE(watched) << watch.output();
  EXPECT_GE(*watched, 1u) << watch.output();
  EXPECT_NE(watch.output().find("seeds[0].state: 200 is not a SeedState"), std::string::npos) << watch.output();

  // The controller logs the first reject of each field as it happens; rounds go out until it has.
  const std::vector<std::string> controller_logs{
      "subscriber: rejected TelemetryBatch from source rank 0: seeds[0].state: 200 is not a SeedState (0..10)",
      "subscriber: rejected TelemetryBatch from source rank 0: seeds[0].seed: 8 is past layer 0's 8 seeds (0..7)",
      "subscriber: rejected TelemetryBatch from source rank 0: layer: 3 is not one of the 1 layers this receiver hosts (0)",
      "subscriber: rejected Event from source rank 0: body.seed: 8 is past layer 0's 8 seeds (0..7)",
      "subscriber: rejected Event from source rank 0: layer: 3 is not one of the 1 layers this receiver hosts (0)"};
  while (!has_all(controller.output(), controller_logs) && std::chrono::steady_clock::now() < until) {
    raw.round(node);
    pump(controller, 20ms);
  }
  EXPECT_TRUE(has_all(controller.output(), controller_logs)) << controller.output();
  EXPECT_FALSE(controller.wait(0ms).has_value()) << "the controller is still running:\n" << controller.output();
  controller.signal(SIGINT);
  const auto controller_status = controller.wait(15s);
  ASSERT_TRUE(controller_status) << controller.output();
  EXPECT_EQ(exit_code(controller_status), 0) << controller.output();
  const auto counted = number_after(controller.output(), "values_rejected=");
  ASSERT_TRUE(counted) << controller.output();
  EXPECT_GE(*counted, 5u) << controller.output();
  // Its view took the sane batches: the job's seeds, not the crafted ones (no crash, no phantom).
  EXPECT_EQ(controller.output().find("layer=3"), std::string::npos) << controller.output();

  node.stop();
  broker.signal(SIGTERM);
  const auto broker_status = broker.wait(10s);
  ASSERT_TRUE(broker_status) << broker.output();
  EXPECT_EQ(exit_code(broker_status), 0) << broker.output();
  // The broker knows no job shape: of the node's events it rejects the states of 200 (one a round)
  // and the seed past any layer; the seed and the layer past this job's it stamps and publishes,
  // and the controller and top, which know the job, rejected them (their logs above).
  EXPECT_GE(number_after(broker.output(), "values_rejected=").value_or(0), 3u) << broker.output();
  EXPECT_TRUE(has_all(broker.output(), {"broker: rejected Event from source rank 0: body.to: 200",
                                        "broker: rejected Event from source rank 0: body.seed: 70000 is past"}))
      << broker.output();
}

}  // namespace
}  // namespace esper
