// A standalone broker process killed with SIGKILL and started again on the same endpoints, twice,
// while a 4-rank `mpirun` job runs against it (docs/broker-restarts.md): the job carries on and
// completes, telemetry and events resume at a subscriber and an `esper controller`, every command
// sent across the restarts ends in exactly one outcome, none is applied twice, and the replicas'
// digests are equal.
#include <csignal>
#include <map>
#include <set>

#include "fabric/client.hpp"
#include "fabric/subscriber.hpp"
#include "support/mpi_env.hpp"
#include "support/ports.hpp"
#include "support/process.hpp"
#include "wire/builders.hpp"

namespace esper {
namespace {

using esper::testing::ChildProcess;
using namespace std::chrono_literals;
using State = wire::SeedState;

class BrokerRestartJob : public testing::MpiJobTest {
 protected:
  BrokerRestartJob() : MpiJobTest("broker-restart-job") {}

  // `esper broker` on the fixed endpoint; returns once it has bound them, with its epoch.
  std::pair<std::unique_ptr<ChildProcess>, std::string> start_broker() const {
    auto p = std::make_unique<ChildProcess>(
        std::vector<std::string>{ESPER_CLI, "broker", "--bind", endpoint_, "--stats-every", "0"});
    const auto line = p->read_line_starting("endpoints ", 30s);
    EXPECT_TRUE(line) << p->output();
    const auto at = line ? line->find(" epoch=") : std::string::npos;
    return {std::move(p), at == std::string::npos ? "" : line->substr(at + 7)};
  }

  const std::string endpoint_ = "tcp://127.0.0.1:" + std::to_string(esper::testing::free_tcp_ports(4));
};

TEST_F(BrokerRestartJob, TwoSigkilledRestartsMidJobLoseNoCommandAndTheJobCompletes) {
  auto [broker, first_epoch] = start_broker();
  ASSERT_FALSE(first_epoch.empty());
  ChildProcess job(mpirun(4, {"--broker", endpoint_, "--heartbeat-ms", "200"},
                          {"--layers", "2", "--chunks", "16", "--policy", "none", "--steps", "1000000",
                           "--progress-every", "1000000"}));

  // A controller that only observes (no policy): it follows the job through both restarts.
  ChildProcess controller({ESPER_CLI, "controller", "--broker", endpoint_, "--policy", "none", "--no-anomalies",
                           "--keep-running"});
  ASSERT_TRUE(controller.read_line_starting("joined ", 60s)) << controller.output();

  zmq::context_t ctx;
  fabric::ClientOptions co;
  co.retry.first = 100ms;
  co.keepalive = 100ms;
  fabric::Client direct(ctx, endpoint_, co);
  co.direct = false;
  fabric::Client via_broker(ctx, endpoint_, co);
  const auto until_joined = std::chrono::steady_clock::now() + 90s;
  while (direct.routes().size() < 4 && std::chrono::steady_clock::now() < until_joined) (void)direct.poll(20ms);
  ASSERT_EQ(direct.routes().size(), 4u) << job.output();

  fabric::SubscriberOptions so;
  so.keepalive = 200ms;
  fabric::Subscriber sub(ctx, endpoint_, so);
  ASSERT_TRUE(sub.wait_ready(30s));
  ASSERT_TRUE(sub.sync(30s));

  // Reads the subscriber until a telemetry batch and a StateTransition event of the broker epoch
  // `epoch` have arrived (or 60 s pass).
  const auto resumed = [&](std::uint64_t epoch) {
    bool telemetry = false, event = false;
    const auto until = std::chrono::steady_clock::now() + 60s;
    while (!(telemetry && event) && std::chrono::steady_clock::now() < until) {
      auto d = sub.next(1s);
      if (!d) continue;
      if (d->message->body<wire::TelemetryBatch>() != nullptr) telemetry = telemetry || sub.epoch() == epoch;
      if (const auto* e = d->message->body<wire::Event>(); e != nullptr && e->body_as_StateTransition() != nullptr) {
        event = event || d->meta.epoch == epoch;
      }
    }
    return telemetry && event;
  };

  // Commands to every rank, each germinating one seed: applied once, each leaves a seed changed.
  std::map<std::pair<std::uint64_t, std::uint64_t>, int> outcomes;  // msg id -> outcomes seen
  std::size_t ok = 0;
  std::uint32_t next_seed = 0;
  std::vector<std::string> failures;
  const auto take = [&](const std::vector<fabric::CommandOutcome>& done) {
    for (const auto& o : done) {
      ++outcomes[{o.id.sender(), o.id.seq()}];
      if (o.all_ok()) {
        ++ok;
      } else {
        for (const auto& t : o.targets) {
          failures.push_back("rank " + std::to_string(t.rank) + ": " +
                             (t.has_result ? t.result.error : t.detail));
        }
      }
    }
  };
  const auto send_some = [&](int n) {
    for (int i = 0; i < n; ++i, ++next_seed) {
      auto& client = next_seed % 2 == 0 ? direct : via_broker;
      const auto cmd = wire::transition_seeds(wire::to_all(), next_seed % 2, wire::seed_ids({next_seed / 2}),
                                              State::GERMINATED, "across restarts", false, {30'000});
      auto id = client.send(cmd);
      ASSERT_TRUE(id.has_value()) << id.error().message();
      outcomes[{id->sender(), id->seq()}];  // sent: no outcome yet
    }
  };
  const auto pump = [&](std::chrono::milliseconds d) {
    take(direct.poll(d));
    take(via_broker.poll(0ms));
  };

  send_some(4);
  const auto epoch1 = std::stoull(first_epoch, nullptr, 16);
  const auto until_known = std::chrono::steady_clock::now() + 30s;
  while ((direct.broker_epoch() != epoch1 || via_broker.broker_epoch() != epoch1) &&
         std::chrono::steady_clock::now() < until_known) {
    pump(20ms);
  }
  ASSERT_EQ(via_broker.broker_epoch(), epoch1) << "a client knows the broker before it restarts";
  ASSERT_TRUE(resumed(epoch1)) << "telemetry and events before any restart";

  for (int restart = 1; restart <= 2; ++restart) {
    send_some(4);  // in flight when the broker dies
    broker->signal(SIGKILL);
    ASSERT_TRUE(broker->wait(10s));
    send_some(2);  // sent while it is down
    pump(300ms);
    auto [again, epoch] = start_broker();
    ASSERT_FALSE(epoch.empty());
    ASSERT_NE(epoch, first_epoch);
    broker = std::move(again);
    send_some(2);
    const auto until = std::chrono::steady_clock::now() + 60s;
    while ((direct.counters().broker_restarts < static_cast<std::uint64_t>(restart) ||
            via_broker.counters().broker_restarts < static_cast<std::uint64_t>(restart)) &&
           std::chrono::steady_clock::now() < until) {
      pump(20ms);
    }
    ASSERT_EQ(direct.counters().broker_restarts, static_cast<std::uint64_t>(restart));
    ASSERT_TRUE(resumed(std::stoull(epoch, nullptr, 16))) << "restart " << restart << ": " << job.output();
    EXPECT_EQ(sub.counters().broker_restarts, static_cast<std::uint64_t>(restart));
    // The controller notices too (its subscriber logs the new epoch), before the next restart.
    ASSERT_TRUE(controller.read_until_contains("the broker restarted (epoch " + epoch, 30s)) << controller.output();
  }

  // Every command ends, each in one outcome.
  const auto until = std::chrono::steady_clock::now() + 90s;
  const auto all_done = [&] {
    return std::all_of(outcomes.begin(), outcomes.end(), [](const auto& kv) { return kv.second >= 1; });
  };
  while (!all_done() && std::chrono::steady_clock::now() < until) pump(20ms);
  ASSERT_TRUE(all_done()) << "commands without an outcome; pending " << direct.pending() << " + " << via_broker.pending();
  for (const auto& [id, n] : outcomes) EXPECT_EQ(n, 1) << "msg " << id.first << ":" << id.second;
  EXPECT_EQ(ok, outcomes.size()) << ::testing::PrintToString(failures);

  const auto stop = direct.call(wire::shutdown(wire::to_all(), "test done", 20'000, {30'000}));
  EXPECT_TRUE(stop.all_ok());
  const auto st = job.wait(90s);
  ASSERT_EQ(exit_code(st), 3) << job.output();
  const auto r = report();
  EXPECT_TRUE(r["digests"]["equal"].get<bool>()) << r["digests"].dump();
  // Applied once each, at every replica: the transitions and the shutdown.
  EXPECT_EQ(r["commands"]["applied"].get<std::size_t>(), outcomes.size() + 1) << r["commands"].dump();
  EXPECT_EQ(r["telemetry"]["broker_restarts"].get<std::uint64_t>(), 2u) << r["telemetry"].dump();
  controller.signal(SIGTERM);
  const auto stopped = controller.read_line_starting("stopped: ", 30s);
  ASSERT_TRUE(stopped) << controller.output();
  EXPECT_EQ(exit_code(controller.wait(10s)), 0) << controller.output();
  EXPECT_EQ(esper::testing::field(*stopped, "broker_restarts"), 2u) << *stopped;
  EXPECT_GT(esper::testing::field(*stopped, "telemetry_records"), 0u) << *stopped;
  std::size_t germinated = 0;
  for (const auto& l : r["layers"]) {
    for (const auto& s : l["seed_states"]) germinated += s.get<std::string>() == "GERMINATED" ? 1 : 0;
  }
  EXPECT_EQ(germinated, outcomes.size()) << r["layers"].dump();
}

}  // namespace
}  // namespace esper
