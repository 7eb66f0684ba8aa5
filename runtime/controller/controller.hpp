// The controller (docs/design.md §1, §7): watches a job's telemetry and events through the broker,
// keeps the population view, drives seed populations with a policy, detects anomalies, and
// publishes every decision as an event with its reason and outcome.
//
// It joins like any late joiner: waits until its subscription is live, loads the broker's state
// snapshot, then listens for `settle` (telemetry windows bring every seed's metrics, and commands a
// previous controller left in flight land) before its first decision. So a controller restarted
// mid-run resumes from the job's state and does not re-issue what was already applied. One
// thread runs it: start() spawns one, or call pump() from your own.
//
// transition_population() selects seeds of a layer (view.hpp Selection), sends them as
// TransitionSeeds commands of at most `batch_size` seeds each (to the ranks holding the layer) and
// aggregates the per-seed outcomes over every target rank: a seed is applied when every rank
// applied it, rejected when a rank refused it, failed when a rank gave no result.
// Anomalies: each new telemetry record feeds a z-score and trend detector per (layer, seed,
// metric); alerts on a worsening metric are published as AnomalyAlert events.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "controller/anomaly.hpp"
#include "controller/policy.hpp"
#include "controller/view.hpp"
#include "core/worker.hpp"
#include "fabric/client.hpp"
#include "fabric/subscriber.hpp"

namespace esper::controller {

struct ControllerOptions {
  std::string broker;                    // the broker's command endpoint
  std::optional<PolicyConfig> policy;    // none: observe, detect and serve transition_population only
  std::string job_id;
  std::chrono::milliseconds tick{100};   // decision cadence
  std::chrono::milliseconds settle{400}; // listen this long after joining before the first decision
  std::chrono::milliseconds connect_timeout{10'000};
  std::uint32_t command_timeout_ms = 5000;
  bool detect_anomalies = true;
  AnomalyConfig anomaly{};
  // What is accepted from the wire (wire/validate.hpp): sane bounds by default,
  // wire::Bounds::job(layers, seeds) for a job of known shape. Rejects are counted in
  // ControllerStats::values_rejected.
  wire::Bounds bounds{};
  fabric::RetryPolicy retry{std::chrono::milliseconds(100)};
  // Where commands that fail at a rank are kept (docs/dead-letters.md); none: only counted.
  std::shared_ptr<resilience::DeadLetterQueue> dead_letters;
};

// How one transition_population() call ended.
struct PopulationOutcome {
  std::uint64_t id = 0;
  std::uint32_t layer = 0;
  wire::SeedState target = wire::SeedState::DORMANT;
  wire::DecisionAction action = wire::DecisionAction::ADVANCE;
  std::string reason;
  std::vector<std::uint32_t> seeds, applied;
  std::map<std::uint32_t, std::string> rejected, failed;  // seed -> the first rank's reason
  std::chrono::nanoseconds latency{0};                    // first send to last outcome
};

struct ControllerStats {
  std::uint64_t decisions = 0;       // decisions taken (policy and manual)
  std::uint64_t commands = 0;        // commands sent
  std::uint64_t seeds_applied = 0, seeds_rejected = 0, seeds_failed = 0;
  std::uint64_t alerts = 0;          // anomaly alerts published
  std::uint64_t events = 0;          // events published (decisions and alerts)
  std::uint64_t telemetry_records = 0;
  // Messages, snapshot entries and outcomes rejected for a value out of range (wire/validate.hpp):
  // at the subscriber, in the population view and at the command client.
  std::uint64_t values_rejected = 0;
  std::uint64_t broker_restarts = 0;  // new broker epochs its subscriber saw (docs/broker-restarts.md)
  bool joined = false;               // subscription live and snapshot loaded
  std::size_t ranks_seen = 0;        // ranks that held a layer at some point
  std::size_t ranks_live = 0;        // of those, the ones not reported lost since
  bool emergency_stopped = false;
  double latency_p50_ms = 0, latency_p99_ms = 0;
};

class Controller {
 public:
  // Connects (throws esper::Error when the broker does not answer within connect_timeout).
  Controller(zmq::context_t& ctx, ControllerOptions options);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  void start();            // runs pump() on its own thread until stop() or an error (see failure())
  void stop() noexcept;    // idempotent; waits (bounded) for commands in flight

  // One round: receive what arrived within `budget`, collect outcomes, decide when due.
  void pump(std::chrono::milliseconds budget);

  // Sends the transition; returns its id (0 when nothing was selected). Outcomes arrive through
  // completed() once every command of it has its outcome at every target.
  std::uint64_t transition_population(std::uint32_t layer, wire::SeedState target, Selection selection,
                                      std::string reason, wire::DecisionAction action = wire::DecisionAction::ADVANCE);
  // Outcomes finished since the last call (manual and policy ones; the last 1,000 are kept).
  std::vector<PopulationOutcome> completed();
  [[nodiscard]] std::size_t in_flight() const;

  [[nodiscard]] PopulationView view() const;
  // Why the thread start() ran has ended early (e.g. the broker did not answer); empty if it has not.
  [[nodiscard]] std::string error() const;
  // The same, with the thread and host: what an owner reports (docs/threads.md). Thread-safe.
  [[nodiscard]] std::optional<ThreadFailure> failure() const { return worker_.failure(); }
  [[nodiscard]] ControllerStats stats() const;
  // The decision events published after `cursor` (0: from the first), oldest first, of the last
  // 1,000 kept; moves `cursor` past them.
  [[nodiscard]] std::vector<wire::EventT> decision_events(std::uint64_t& cursor) const;

 private:
  struct Request;
  struct Sent {  // one command of a request, and the seeds it carries
    std::uint64_t request = 0;
    std::vector<std::uint32_t> seeds;
  };
  static constexpr std::size_t kKept = 1000;  // finished outcomes and decision events kept
  void join();
  void pump_once(std::chrono::milliseconds budget);
  void receive(std::chrono::milliseconds budget);
  void collect(std::chrono::milliseconds wait);
  void decide();
  void on_record(std::uint32_t layer, const wire::SeedMetrics& r);
  void finish(Request& req);
  void publish(const wire::EventT& event);
  std::uint64_t send_population(std::uint32_t layer, wire::SeedState target, std::vector<std::uint32_t> seeds,
                                std::size_t batch_size, std::string reason, wire::DecisionAction action);

  ControllerOptions options_;
  std::unique_ptr<fabric::Subscriber> sub_;
  std::uint64_t resyncs_seen_ = 0;  // sub_'s events_unrecovered() when its state was last loaded
  std::unique_ptr<fabric::Client> client_;
  std::optional<Policy> policy_;
  AnomalyDetector anomalies_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, wire::SeedState> detected_state_;  // per (layer, seed)

  mutable std::mutex mu_;  // guards everything below against view()/stats()/completed() callers
  PopulationView view_;
  ControllerStats stats_;
  std::map<std::uint64_t, std::unique_ptr<Request>> requests_;
  std::unordered_map<fabric::MsgIdKey, Sent, fabric::MsgIdHash> commands_;
  std::deque<PopulationOutcome> done_;
  std::deque<wire::EventT> decision_log_;
  std::uint64_t decisions_logged_ = 0;
  std::vector<double> latencies_ms_;
  std::deque<wire::EventT> unsent_;  // events the broker connection could not take yet
  std::uint64_t next_request_ = 1;
  std::chrono::steady_clock::time_point joined_at_{}, next_decision_{};
  bool joined_ = false;

  Worker worker_;  // last: stopped before anything its thread uses goes
};

}  // namespace esper::controller
