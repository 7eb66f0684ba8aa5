// The controller side of the command path (docs/design.md §3): send a command, get exactly one terminal
// outcome per target rank — its CommandResult, or a failure with the reason (timeout, rank lost,
// rejected because no rank matches the target).
//
// Delivery is at-least-once: a command without all its results is re-sent with the same msg_id
// after a backoff (exponential, with jitter), and ranks deduplicate by msg_id, so it is applied
// once. One deadline: a rank applies a command only until its timeout_ms has passed since the
// send, so the client re-sends until then and reports a target that never answered only at
// timeout_ms + result_grace — never while that rank may still apply it. The client is
// single-threaded: send() never blocks (would-block and a full pending table are expected
// outcomes, returned as values) and poll() pumps the sockets and the timers.
//
// Two paths: by default the client asks the broker for its route table (the live ranks, their
// layers and direct command endpoints, pushed again on every change) and sends a command straight
// to each target rank, one hop each way; the broker keeps liveness, and a rank it reports lost
// fails what that rank still owes. A command goes through the broker instead (which resolves the
// targets, acknowledges them with 'D' and forwards) before the table has arrived, when a target
// has no direct endpoint on this client's transport, when the table shows no target, or with
// ClientOptions::direct off.
// A broker that restarts (on the same endpoints) is noticed by its new epoch in the answer to a
// keepalive: the client asks for its route table again; commands in flight are re-sent as usual
// until their deadline and deduplicated by the ranks, so each still ends in exactly one outcome.
// Results, failures, dispatches and route tables are range-checked (wire/validate.hpp) before use:
// one with a value out of range is counted (values_rejected), kept in rejects() and logged; a
// result so rejected ends its target as UNDECODABLE, naming the field.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "core/error.hpp"
#include "fabric/counters.hpp"
#include "fabric/framing.hpp"
#include "resilience/dead_letters.hpp"
#include "wire/codec.hpp"
#include "wire/ids.hpp"

namespace esper::fabric {

// When a command without all its results is sent again. Re-sends stop at the command's deadline
// (timeout_ms after the first send); the outcome is not decided by the retries (see result_grace).
struct RetryPolicy {
  std::chrono::milliseconds first{250};
  std::chrono::milliseconds max{2000};
  double multiplier = 2.0;
  double jitter = 0.2;          // each wait is scaled by a uniform factor in [1 - jitter, 1 + jitter]
  std::uint32_t max_attempts = 5;  // sends at most, the first included; then the client waits silently
};

struct ClientOptions {
  std::string job_id;
  RetryPolicy retry{};
  std::size_t max_pending = 100'000;
  int sndhwm = 100'000;
  wire::DecodeLimits limits{};
  wire::EncodeOptions encode{};
  bool direct = true;  // send straight to the ranks where the route table allows (see above)
  // A direct path costs a connection (and file descriptors) per rank: past this many ranks in the
  // table, every command goes through the broker instead.
  std::size_t max_direct_ranks = 512;
  // A target that has not answered is reported TIMEOUT at the command's timeout_ms + this, not
  // before: a rank may decide to apply the command up to its deadline, and this covers the
  // result's way back (and the handler's run) after that decision.
  std::chrono::milliseconds result_grace{500};
  // How often poll() asks the broker for its epoch ('K'; 0: never). A new epoch is a restarted
  // broker: the client subscribes to its route table again (docs/broker-restarts.md).
  std::chrono::milliseconds keepalive{1000};
  // For this long after a broker restart, a rank missing from the new broker's route table is taken
  // as not re-registered yet (its heartbeat is due), not as lost: its commands go on.
  std::chrono::milliseconds restart_grace{5000};
  // Where a target's terminal failure (timeout, rank lost, rejected, undecodable result) is kept as
  // a dead letter with the command's bytes (docs/dead-letters.md); none: failures are only returned.
  std::shared_ptr<resilience::DeadLetterQueue> dead_letters;
};

// The terminal outcome at one target rank.
struct TargetOutcome {
  std::int32_t rank = -1;
  bool has_result = false;                 // true: `result` holds the rank's answer
  wire::CommandResultT result;
  wire::FailureReason failure = wire::FailureReason::TIMEOUT;  // when !has_result
  std::string detail;
  std::uint32_t attempts = 0;
  std::chrono::nanoseconds latency{0};     // from the first send to this outcome
  std::uint64_t answered_ns = 0;           // with a result: the rank's wall clock when it answered
                                           // (the result envelope's timestamp_ns)
  bool dead_lettered = false;              // a failure kept in ClientOptions::dead_letters
};

struct CommandOutcome {
  wire::MsgId id;
  std::vector<TargetOutcome> targets;      // one per target rank (one entry with rank -1 if none known)
  [[nodiscard]] bool all_ok() const;       // every target answered with status OK
};

// One rank in the broker's route table, as this client sees it.
struct Route {
  std::int32_t rank = -1;
  std::vector<std::uint32_t> layers;
  std::string endpoint;  // its direct command endpoint; empty: none
  bool direct = false;   // reachable from here (same transport as the broker's): sent to directly
};

enum class SendErrc : std::uint8_t { WouldBlock, TooManyPending };
struct SendError {
  SendErrc code;
  std::string detail;
  [[nodiscard]] std::string message() const { return detail; }
};

class Client {
 public:
  Client(zmq::context_t& ctx, const std::string& broker, ClientOptions options = {});

  // `replay_of`: the msg_id of the command this one sends again (esper dlq replay), carried as the
  // envelope's correlation_id; the new command has a msg_id of its own.
  [[nodiscard]] Expected<wire::MsgId, SendError> send(const wire::CommandT& command,
                                                      wire::Priority priority = wire::Priority::NORMAL,
                                                      std::optional<wire::MsgId> replay_of = std::nullopt);
  // Publishes an event through the broker (stamped with its sequence, like a rank's): a
  // controller's decisions and alerts. Would-block is returned, never dropped silently.
  [[nodiscard]] Expected<wire::MsgId, SendError> emit(const wire::EventT& event);
  // Pumps I/O and timers for at most `timeout` (returns early once something completes) and
  // returns the commands that reached their terminal outcome. A signal that interrupts its wait
  // throws zmq::error_t with EINTR; nothing is lost (what completed before the wait is kept for the
  // next call), so a caller with signal handlers catches it and polls again.
  std::vector<CommandOutcome> poll(std::chrono::milliseconds timeout);
  // send() then poll() until that command completes. Throws esper::Error if it cannot be sent.
  // Other commands that complete meanwhile are dropped: use send() and poll() for several in flight.
  CommandOutcome call(const wire::CommandT& command, wire::Priority priority = wire::Priority::NORMAL);

  [[nodiscard]] std::size_t pending() const noexcept { return pending_.size(); }
  // True once the broker's route table has arrived (direct sends possible).
  [[nodiscard]] bool has_routes() const noexcept { return routes_version_ != 0; }
  [[nodiscard]] std::vector<Route> routes() const;
  // Before the first command: polls until the route table has arrived (or `timeout` passes), so
  // that the first command already goes straight to the ranks. Returns has_routes(). Call it with
  // nothing in flight: outcomes completing meanwhile would be dropped.
  bool wait_for_routes(std::chrono::milliseconds timeout);
  // Commands sent straight to ranks / through the broker, first sends only.
  [[nodiscard]] std::uint64_t sent_direct() const noexcept { return sent_direct_; }
  [[nodiscard]] std::uint64_t sent_via_broker() const noexcept { return sent_via_broker_; }
  [[nodiscard]] CounterValues counters() const noexcept { return counters_.values(); }
  [[nodiscard]] const RejectLog& rejects() const noexcept { return rejects_; }
  // The broker's epoch from its latest keepalive answer; 0: none yet.
  [[nodiscard]] std::uint64_t broker_epoch() const noexcept { return epoch_; }

 private:
  using Clock = std::chrono::steady_clock;
  using Key = MsgIdKey;
  struct Pending {
    std::vector<std::uint8_t> frame;       // for re-sends
    Clock::time_point start;
    Clock::time_point deadline;  // start + timeout_ms: the ranks apply it no later; no re-send after
    Clock::time_point give_up;   // deadline + result_grace: a target still silent then fails TIMEOUT
    Clock::time_point next_retry;
    std::chrono::milliseconds backoff;
    std::uint32_t attempts = 1;
    bool dispatched = false;
    bool direct = false;                   // sent straight to the ranks (see above)
    wire::CommandTarget target;
    std::vector<std::int32_t> targets;
    std::vector<TargetOutcome> outcomes;
    [[nodiscard]] bool has_outcome(std::int32_t rank) const {
      return std::any_of(outcomes.begin(), outcomes.end(), [&](const TargetOutcome& o) { return o.rank == rank; });
    }
  };

  struct Peer {
    std::vector<std::uint32_t> layers;
    std::string endpoint;
    std::unique_ptr<zmq::socket_t> socket;  // connected when the endpoint is reachable from here
  };

  void receive(std::vector<CommandOutcome>& done);
  void receive_peers(std::vector<CommandOutcome>& done);
  void on_peer_message(std::int32_t rank, const std::vector<zmq::message_t>& parts, std::vector<CommandOutcome>& done);
  bool wait_on_one_rank(std::chrono::milliseconds wait, std::vector<CommandOutcome>& done);
  void on_routes(const zmq::message_t& frame, std::vector<CommandOutcome>& done);
  void on_keepalive(const zmq::message_t& frame);
  // [K] then [T]: the broker answers in order, so the epoch is known before its table arrives.
  void ask_routes();
  // The targets for a direct send, or empty when the command must go through the broker.
  std::vector<std::int32_t> direct_targets(const wire::CommandTarget& target) const;
  bool send_direct(std::int32_t rank, std::span<const std::uint8_t> bytes);
  void on_dispatch(const zmq::message_t& frame, std::vector<CommandOutcome>& done);
  // Decodes an envelope of the expected kind; anything else is counted and kept in the reject log.
  std::optional<wire::Message> expect(const zmq::message_t& frame, wire::Body kind, char type);
  // A well-formed message with a value out of range (wire/validate.hpp): counted, kept, logged.
  void reject_values(const wire::Message& m, const std::string& problem, const zmq::message_t& frame);
  void on_result(const zmq::message_t& frame, std::vector<CommandOutcome>& done);
  void on_failure(const zmq::message_t& frame, std::vector<CommandOutcome>& done);
  void check_timers(Clock::time_point now, std::vector<CommandOutcome>& done);
  // Keeps a failed target's outcome as a dead letter (options_.dead_letters set).
  void dead_letter(const Key& k, const Pending& p, TargetOutcome& t);
  void complete_if_done(const Key& k, Pending& p, std::vector<CommandOutcome>& done);
  // Hands the command's outcomes over (dead-lettering its failures) and forgets it.
  void finish(const Key& k, Pending& p, std::vector<CommandOutcome>& done);
  bool resend(Pending& p);
  // Sends [type][bytes] without blocking; false (and counted) when the connection is full.
  bool send_on(zmq::socket_t& socket, char type, std::span<const std::uint8_t> bytes);
  bool send_frame(char type, std::span<const std::uint8_t> bytes);  // to the broker
  static SendError would_block();
  std::chrono::milliseconds jittered(std::chrono::milliseconds d);
  TargetOutcome failure(const Pending& p, std::int32_t rank, wire::FailureReason why, std::string detail) const;

  ClientOptions options_;
  zmq::context_t& ctx_;
  std::string scheme_;  // the transport this client reaches the broker with
  zmq::socket_t dealer_;
  std::map<std::int32_t, Peer> peers_;  // the route table
  std::uint64_t routes_version_ = 0;    // 0: no table yet
  std::vector<zmq::pollitem_t> items_;  // the broker, then each connected peer
  std::vector<std::int32_t> item_ranks_;
  std::uint64_t sent_direct_ = 0, sent_via_broker_ = 0;
  wire::Encoder encoder_;
  wire::Decoder decoder_;
  wire::MsgIdGenerator ids_;
  Counters counters_;
  RejectLog rejects_;
  ValueRejectLog value_log_;
  std::unordered_map<Key, Pending, MsgIdHash> pending_;
  std::mt19937_64 rng_{std::random_device{}()};
  Clock::time_point next_timer_check_{};
  Clock::time_point next_broker_read_{};  // wait_on_one_rank's reads of the broker's socket
  Clock::time_point next_keepalive_{};
  std::uint64_t epoch_ = 0;  // the broker's, from its keepalive answers; 0: not known yet
  Clock::time_point restart_grace_until_{};  // see ClientOptions::restart_grace
};

}  // namespace esper::fabric
