// The broker: one thread that forwards telemetry and events from every publisher to every
// subscriber and routes commands and results between clients and ranks (docs/design.md §1-3).
//
// Telemetry (XSUB -> XPUB): forwarded without decoding. The XPUB does not drop silently
// (ZMQ_XPUB_NODROP): when a subscriber's pipe is full the batch is dropped for all and counted,
// records included (from the meta frame).
// Commands: clients normally send them straight to the ranks, using the route table the broker
// keeps from heartbeats (live ranks, layers, direct command endpoints) and pushes ('T') to every
// client that asked, again on each change. Through the broker (ROUTER), a command is verified,
// resolved to its target ranks (one rank, the ranks that hold a layer, all ranks), acknowledged to
// the client with the target list ('D'), and forwarded to each; results go back to the client that
// sent it. A rank that misses heartbeats for `lost_after` of its interval is reported lost
// (RankLost event, a new route table) and the commands it still owes end at their clients as
// "rank lost". So is, at once, a rank that reports its own failure (a RankLost event about itself,
// Node::report_failure); heartbeats from that connection no longer revive it.
// Restarts: a broker restarted on the same endpoints (tcp: fixed ports, see bind_addresses; ipc:
// the same paths) is found again by every peer's socket; its new random epoch, stamped on events
// and answered to heartbeats ('H') and keepalives ('K'), tells the peers to re-register, ask for
// routes again and count event sequences anew (docs/broker-restarts.md).
// Events (ranks -> ROUTER): stamped with one broker sequence (a global order), applied to the job
// state that answers late joiners' snapshot requests, kept in a ring of the last `event_history`
// (replayed by sequence on request, 'V'), and published on an XPUB of their own (Endpoints::evt,
// high-water mark `event_hwm`, ZMQ_XPUB_NODROP), so that no telemetry backlog delays or drops
// them. Should even that pipe be full, the event is counted (events_dropped) and the subscriber,
// seeing the gap in the sequence, has it replayed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "core/worker.hpp"
#include "fabric/counters.hpp"
#include "fabric/framing.hpp"
#include "resilience/dead_letters.hpp"
#include "wire/codec.hpp"

namespace esper::fabric {

struct BrokerOptions {
  std::string bind = "tcp://127.0.0.1:0";  // see bind_addresses(); port 0 picks free ports
  // Each of the other endpoints given explicitly (empty: derived from `bind`).
  std::string pub_bind, sub_bind, evt_bind;
  int pub_hwm = 1000;                      // messages queued per publisher and per subscriber
  int cmd_hwm = 100'000;
  int event_hwm = 100'000;                 // events queued per subscriber on the event XPUB
  std::size_t event_history = 4096;        // recent events kept for replay (at least 1)
  double lost_after = 2.5;                 // heartbeat intervals without a heartbeat -> lost
  std::chrono::milliseconds tick{100};     // longest idle sleep; period of the expired-command sweep
  // For this long after it starts, a command that finds no rank is held (not answered "no rank")
  // until a rank that it targets joins: a restarted broker learns the ranks from their next
  // heartbeats. After it, such a command is answered at once.
  std::chrono::milliseconds join_grace{5000};
  wire::DecodeLimits limits{};
  // Where every frame the broker rejects on its command endpoint (undecodable, malformed, or a
  // value out of range) is kept as a dead letter with its bytes (docs/dead-letters.md); none: the
  // rejects are only counted and kept in rejects().
  std::shared_ptr<resilience::DeadLetterQueue> dead_letters;
  // Test hook (`esper broker --fail-at-heartbeat N`, `esper run --fail-thread broker`): the broker's
  // thread throws when it receives its N-th heartbeat (0: never), as a fault in it would.
  std::uint32_t fail_at_heartbeat = 0;
};

// A rank the broker declared lost, and why.
struct LostRank {
  std::int32_t rank = -1;
  std::string host;            // as the rank announced it; empty if unknown
  std::string reason;          // "rank 3 sent no heartbeat for 2600 ms ...", or the rank's own cause
  bool self_reported = false;  // the rank's own failure notice, not missed heartbeats
};

class Broker {
 public:
  // Binds every endpoint (throws esper::Error naming the endpoint on failure) and starts the thread.
  // An exception in the thread ends it (the broker stops answering) and is kept: see failure().
  Broker(zmq::context_t& ctx, BrokerOptions options = {});
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  void stop() noexcept;  // idempotent; joins the thread, removes the ipc socket files
  // Why the broker's thread has ended early, if it has: the process that owns the broker reports
  // it and exits non-zero (docs/threads.md). Thread-safe.
  [[nodiscard]] std::optional<ThreadFailure> failure() const { return worker_.failure(); }
  // Removes the ipc socket files (libzmq leaves them) without stopping: for a process about to
  // _Exit, where no destructor runs.
  void remove_socket_files() const noexcept;

  [[nodiscard]] const Endpoints& endpoints() const noexcept { return endpoints_; }
  // This run's epoch: random, non-zero, drawn at construction; stamped on events, snapshots and
  // replays and sent in answer to heartbeats and keepalives, so that peers notice a restart.
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] CounterValues counters() const noexcept { return counters_.values(); }
  [[nodiscard]] const RejectLog& rejects() const noexcept { return rejects_; }
  [[nodiscard]] std::vector<std::int32_t> live_ranks() const;
  // The ranks declared lost so far, in order: missed heartbeats, and every failure notice a rank
  // sent about itself (the first kMaxLost). Thread-safe, for a watchdog beside the broker's thread.
  [[nodiscard]] std::vector<LostRank> lost() const;
  static constexpr std::size_t kMaxLost = 1024;

 private:
  struct Impl;
  BrokerOptions options_;
  std::uint64_t epoch_;
  Endpoints endpoints_;
  Counters counters_;
  RejectLog rejects_;
  mutable std::mutex ranks_mu_;
  std::vector<std::int32_t> live_ranks_;
  std::vector<LostRank> lost_;  // guarded by ranks_mu_
  std::unique_ptr<Impl> impl_;
  Worker worker_;  // last: stopped before anything its thread uses goes
};

}  // namespace esper::fabric
