// The controller against a real job: a standalone broker process, 2 rank processes under mpirun,
// and the controller in this process or as `esper controller` processes. The controller registers
// the layers, transitions populations (manual selections and a policy), the final seed states equal
// what its decision events say, and a controller killed and restarted mid-run resumes without
// re-issuing what was applied.
#include <gtest/gtest.h>

#include <condition_variable>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "controller/controller.hpp"
#include "support/mpi_env.hpp"
#include "support/process.hpp"

namespace esper::controller {
namespace {

using esper::testing::ChildProcess;
using json = nlohmann::json;
using namespace std::chrono_literals;
using wire::SeedState;
using Clock = std::chrono::steady_clock;

int exit_code(const std::optional<int>& st) { return st && WIFEXITED(*st) ? WEXITSTATUS(*st) : -1; }

std::vector<std::uint32_t> sorted(std::vector<std::uint32_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Every event the broker publishes, recorded from before the controllers start.
class EventLog {
 public:
  EventLog(zmq::context_t& ctx, const std::string& broker) : sub_(ctx, broker, options()) {
    EXPECT_TRUE(sub_.wait_ready(10s));
    thread_ = std::thread([this] {
      while (!stop_) {
        auto d = sub_.next(20ms);
        if (!d || !d->message) continue;
        const auto* e = d->message->body<wire::Event>();
        if (e == nullptr) continue;
        {
          std::lock_guard lock(mu_);
          events_.push_back({Clock::now(), std::unique_ptr<wire::EventT>(e->UnPack())});
        }
        arrived_.notify_all();
      }
    });
  }
  ~EventLog() {
    stop_ = true;
    thread_.join();
  }
  struct Entry {
    Clock::time_point at;
    std::unique_ptr<wire::EventT> event;
  };
  template <class F>
  void each(F&& f) {
    std::lock_guard lock(mu_);
    for (const auto& e : events_) f(e.at, *e.event);
  }
  // Waits until at least `n` of the logged events satisfy `pred(at, event)`, woken by each arrival.
  template <class F>
  bool wait_for(std::size_t n, F&& pred, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return arrived_.wait_for(lock, timeout, [&] {
      std::size_t k = 0;
      for (const auto& e : events_) k += pred(e.at, *e.event) ? 1 : 0;
      return k >= n;
    });
  }
  // A controller's own events: its decisions and its anomaly alerts.
  static bool from_controller(Clock::time_point, const wire::EventT& e) {
    return e.body.AsDecision() != nullptr || e.body.AsAnomalyAlert() != nullptr;
  }

 private:
  static fabric::SubscriberOptions options() {
    fabric::SubscriberOptions o;
    o.topics = {std::string(fabric::kEventPrefix)};
    o.rcvhwm = 100'000;
    return o;
  }
  fabric::Subscriber sub_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable arrived_;
  std::vector<Entry> events_;
  std::thread thread_;
};

class ControllerJob : public ::testing::Test {
 protected:
  void SetUp() override {
    esper::testing::allow_mpirun();
    broker_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{ESPER_CLI, "broker", "--bind", "ipc://" + (dir_ / "b").string(), "--stats-every", "0"});
    const auto line = broker_->read_line_starting("endpoints", 10s);
    ASSERT_TRUE(line) << broker_->output();
    const auto at = line->find("cmd=") + 4;
    cmd_ = line->substr(at, line->find(' ', at) - at);
  }
  void TearDown() override {
    job_.reset();
    if (broker_) {
      broker_->signal(SIGTERM);
      EXPECT_EQ(exit_code(broker_->wait(10s)), 0) << broker_->output();
    }
  }

  // Two ranks on the broker, without a controller of their own.
  void start_job(int steps) {
    job_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        ESPER_MPIEXEC, "--oversubscribe", "-np", "2", ESPER_CLI, "run", "--broker", cmd_, "--policy", "none", "--steps",
        std::to_string(steps), "--progress-every", "500", "--report", report_path()});
  }
  std::string report_path() const { return (dir_ / "report.json").string(); }
  json report() const {
    std::ifstream in(report_path());
    EXPECT_TRUE(in.good()) << "no report";
    return in.good() ? json::parse(in) : json{};
  }

  // For each (layer, seed): the target of the last decision that applied it, in publication order.
  static std::map<std::pair<std::uint32_t, std::uint32_t>, SeedState> decided_states(EventLog& log) {
    std::map<std::pair<std::uint32_t, std::uint32_t>, SeedState> out;
    log.each([&](Clock::time_point, const wire::EventT& e) {
      if (const auto* d = e.body.AsDecision()) {
        for (const auto s : d->applied) out[{e.layer, s}] = d->target;
      }
    });
    return out;
  }

  esper::testing::TestDir dir_{"ctl"};
  std::unique_ptr<ChildProcess> broker_, job_;
  std::string cmd_;
};

TEST_F(ControllerJob, RegistersLayersTransitionsPopulationsAndEndsWhereItsDecisionsSay) {
  zmq::context_t ctx;
  EventLog log(ctx, cmd_);
  start_job(1500);

  // Manual first: no policy, selections by hand.
  ControllerOptions manual_opts;
  manual_opts.broker = cmd_;
  manual_opts.settle = 0ms;
  Controller manual(ctx, manual_opts);
  const auto until = Clock::now() + 30s;
  auto registered = [&] {
    const auto v = manual.view();
    return v.layers().size() == 2 && v.layer(0)->seeds.size() == 8 && v.layer(1)->seeds.size() == 8 &&
           v.layer(0)->ranks == std::set<std::int32_t>{0, 1};
  };
  while (!registered() && Clock::now() < until) manual.pump(20ms);
  ASSERT_TRUE(registered()) << "the controller registers 2 layers of 8 seeds held by ranks 0 and 1";
  const auto seen = manual.view();
  const auto& first = seen.layer(0)->seeds.at(0).last;
  EXPECT_GT(first.activation_var(), 0.0f) << "telemetry carries the chunk's activation statistics";
  EXPECT_GE(first.dead_ratio(), 0.0f);
  EXPECT_LE(first.dead_ratio(), 1.0f);

  auto wait_for = [&](std::uint64_t id) {
    while (Clock::now() < until) {
      manual.pump(10ms);
      for (auto& o : manual.completed()) {
        if (o.id == id) return o;
      }
    }
    ADD_FAILURE() << "no outcome for population request " << id;
    return PopulationOutcome{};
  };
  Selection three;
  three.from = {SeedState::DORMANT};
  three.limit = 3;
  three.batch_size = 2;  // two commands: 2 seeds and 1 seed
  const auto woke = wait_for(manual.transition_population(0, SeedState::GERMINATED, three, "test: wake three"));
  EXPECT_EQ(woke.seeds.size(), 3u);
  EXPECT_EQ(woke.applied, sorted(woke.seeds)) << "applied by both ranks";
  EXPECT_TRUE(woke.rejected.empty());
  EXPECT_TRUE(woke.failed.empty());
  EXPECT_EQ(manual.stats().commands, 2u);

  Selection germinated;
  germinated.from = {SeedState::GERMINATED};
  const auto refused = wait_for(manual.transition_population(0, SeedState::FOSSILIZED, germinated, "test: skip ahead"));
  EXPECT_TRUE(refused.applied.empty()) << "GERMINATED -> FOSSILIZED is not in the transition table";
  ASSERT_EQ(refused.rejected.size(), 3u);
  EXPECT_NE(refused.rejected.begin()->second.find("table"), std::string::npos) << refused.rejected.begin()->second;
  manual.stop();

  // Then a policy, joining late: it learns the three GERMINATED seeds from the broker's snapshot.
  ControllerOptions opts;
  opts.broker = cmd_;
  opts.policy = preset("aggressive");
  opts.tick = 20ms;
  opts.settle = 100ms;
  Controller policy(ctx, opts);
  policy.pump(0ms);
  EXPECT_EQ(policy.view().layer(0)->counts()[static_cast<std::size_t>(SeedState::GERMINATED)], 3u);
  while (!job_->wait(0ms) && Clock::now() < until + 60s) policy.pump(20ms);
  ASSERT_EQ(exit_code(job_->wait(30s)), 0) << job_->output();
  policy.stop();
  const auto st = policy.stats();
  EXPECT_GT(st.decisions, 5u);
  EXPECT_EQ(st.seeds_failed, 0u);

  // The job's final states are exactly what the decisions applied, once every event the controller
  // published has reached the log.
  ASSERT_TRUE(log.wait_for(st.events, EventLog::from_controller)) << "events published: " << st.events;
  const auto decided = decided_states(log);
  const auto r = report();
  int fossilized = 0;
  for (std::uint32_t l = 0; l < 2; ++l) {
    const auto& states = r["layers"][l]["seed_states"];
    ASSERT_EQ(states.size(), 8u) << r.dump();
    for (std::uint32_t s = 0; s < 8; ++s) {
      const auto it = decided.find({l, s});
      const std::string expected = wire::EnumNameSeedState(it == decided.end() ? SeedState::DORMANT : it->second);
      EXPECT_EQ(states[s].get<std::string>(), expected) << "layer " << l << " seed " << s;
      fossilized += states[s] == "FOSSILIZED";
    }
  }
  EXPECT_GE(fossilized, 8) << "the aggressive policy grows most seeds to the end in 1,500 steps";
  EXPECT_TRUE(r["digests"]["equal"].get<bool>());
}

TEST_F(ControllerJob, AControllerKilledAndRestartedResumesWithoutReissuingAppliedCommands) {
  zmq::context_t ctx;
  EventLog log(ctx, cmd_);
  start_job(2500);
  const std::vector<std::string> argv{ESPER_CLI, "controller", "--broker", cmd_, "--policy", "aggressive",
                                      "--tick-ms", "20"};
  auto first = std::make_unique<ChildProcess>(argv);
  ASSERT_TRUE(first->read_line_starting("joined", 20s)) << first->output();
  // Let it apply a few decisions, then kill it without warning.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(first->read_line_starting("decision", 20s)) << first->output();
  first->signal(SIGKILL);
  first->wait(5s);
  const auto killed_at = Clock::now();

  ChildProcess second(argv);
  ASSERT_TRUE(second.read_line_starting("joined", 20s)) << second.output();
  ASSERT_EQ(exit_code(job_->wait(90s)), 0) << job_->output();
  // The ranks are reported lost within 3 heartbeats of the job's end; the controller stops then.
  ASSERT_EQ(exit_code(second.wait(20s)), 0) << second.output();
  EXPECT_NE(second.output().find("every rank of the job is gone (2 seen)"), std::string::npos) << second.output();
  const auto stopped = second.output().find("stopped: decisions=");
  ASSERT_NE(stopped, std::string::npos) << second.output();
  // Every event the second controller published (events=N in its last line) reaches the log.
  const auto events_at = second.output().find(" events=", stopped);
  ASSERT_NE(events_at, std::string::npos) << second.output();
  const auto second_events = std::stoull(second.output().substr(events_at + 8));
  ASSERT_TRUE(log.wait_for(second_events, [&](Clock::time_point at, const wire::EventT& e) {
    return at > killed_at && EventLog::from_controller(at, e);
  })) << second.output();

  // Nothing the second controller sent was refused for being applied already (the lifecycle table
  // rejects a transition from a state the seed has left), and no command was applied twice.
  int second_decisions = 0;
  std::set<std::pair<std::uint64_t, std::uint64_t>> commands_with_decision;
  std::map<std::tuple<std::uint64_t, std::uint64_t, std::uint32_t, std::uint32_t>, int> applied;  // (cmd, layer, seed)
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::pair<std::uint64_t, std::uint64_t>> last_command;
  log.each([&](Clock::time_point at, const wire::EventT& e) {
    if (const auto* d = e.body.AsDecision()) {
      commands_with_decision.emplace(d->command_id->sender(), d->command_id->seq());
      if (at > killed_at) {
        ++second_decisions;
        EXPECT_EQ(d->failure.find("table"), std::string::npos) << "re-issued: " << d->reason << " / " << d->failure;
      }
    }
    if (const auto* t = e.body.AsStateTransition()) {
      const auto id = std::pair{t->command_id->sender(), t->command_id->seq()};
      ++applied[{id.first, id.second, e.layer, t->seed}];
      last_command[{e.layer, t->seed}] = id;
    }
  });
  EXPECT_GT(second_decisions, 3) << second.output();
  for (const auto& [key, n] : applied) EXPECT_EQ(n, 1) << "a command applied to a seed " << n << " times";

  // Each seed's final state is what the last decision says, whichever controller took it.
  const auto decided = decided_states(log);
  const auto r = report();
  for (std::uint32_t l = 0; l < 2; ++l) {
    for (std::uint32_t s = 0; s < 8; ++s) {
      const auto last = last_command.find({l, s});
      if (last != last_command.end() && !commands_with_decision.contains(last->second)) continue;  // killed mid-way
      const auto it = decided.find({l, s});
      EXPECT_EQ(r["layers"][l]["seed_states"][s].get<std::string>(),
                wire::EnumNameSeedState(it == decided.end() ? SeedState::DORMANT : it->second))
          << "layer " << l << " seed " << s;
    }
  }
}

// A policy whose seeds all fail: every TRAINING seed is culled as soon as it may be, the failure
// rate crosses the limit, and the controller stops the job with one EmergencyStop.
TEST_F(ControllerJob, AboveTheFailureRateThePolicyStopsTheJob) {
  zmq::context_t ctx;
  EventLog log(ctx, cmd_);
  start_job(5000);
  ControllerOptions opts;
  opts.broker = cmd_;
  opts.policy = preset("aggressive");
  opts.policy->shadow_margin = 10.0;  // a shadow loss 1000% below the chunk's: never
  opts.policy->patience = 0;
  opts.policy->failure_min = 4;
  opts.tick = 20ms;
  opts.settle = 0ms;
  Controller control(ctx, opts);
  const auto until = Clock::now() + 60s;
  while (!job_->wait(0ms) && Clock::now() < until) control.pump(20ms);
  ASSERT_EQ(exit_code(job_->wait(30s)), 3) << "stopped by a command: " << job_->output() << " decisions "
                                           << control.stats().decisions << " applied " << control.stats().seeds_applied;
  control.stop();
  EXPECT_TRUE(control.stats().emergency_stopped);
  EXPECT_EQ(report().value("status", "").rfind("stopped by emergency stop: aggressive: ", 0), 0u)
      << "the status says why: " << report().dump();
  ASSERT_TRUE(log.wait_for(control.stats().events, EventLog::from_controller));
  int stops = 0, culls = 0;
  log.each([&](Clock::time_point, const wire::EventT& e) {
    if (const auto* d = e.body.AsDecision()) {
      stops += d->action == wire::DecisionAction::EMERGENCY_STOP;
      culls += d->action == wire::DecisionAction::CULL ? static_cast<int>(d->applied.size()) : 0;
      if (d->action == wire::DecisionAction::EMERGENCY_STOP) {
        EXPECT_NE(d->reason.find("outcomes failed"), std::string::npos) << d->reason;
      }
    }
  });
  EXPECT_EQ(stops, 1);
  EXPECT_GE(culls, 4);
}

}  // namespace
}  // namespace esper::controller
