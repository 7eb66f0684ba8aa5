// The rank side of the fabric (docs/design.md §1-3): publishes telemetry and events, receives the
// commands addressed to its rank, its layers or all, and answers each with a CommandResult.
//
// Threads: an I/O thread owns the sockets — it batches and sends telemetry, sends heartbeats at
// a fixed interval (so a long training step never looks like a lost rank), receives commands into
// a priority queue and sends results and events. Commands arrive through the broker or straight
// from a client on the rank's own command socket (a ROUTER it binds and announces in its
// heartbeats); a result goes back the way its command came. The training thread calls publish(), emit() and,
// at step boundaries, poll_commands(); none of them blocks on the network.
//
// Telemetry is batched per layer until the window (default 100 ms) or the size (64 KiB) is
// reached, then compressed per the codec and published. It may drop under overload — a full
// queue or a full publisher pipe — and every dropped record is counted by stage
// (telemetry_records_dropped_queue, _hwm) and told in the next batch sent (dropped_records); each
// batch's meta frame carries the layer's running record total, dropped ones included, so that a
// subscriber can count what never reached it. Events and results travel
// on the command channel, never behind telemetry, and are not dropped.
// The broker answers every heartbeat with its epoch. A broker silent for broker_lost_after
// heartbeat intervals is taken as down (broker_outages): telemetry is then held here, bounded by
// outage_max_batches and outage_max_bytes (the oldest dropped and counted beyond:
// telemetry_records_dropped_outage), and sent in order once the broker has answered again for
// outage_settle. A new epoch
// is a restarted broker (broker_restarts): the heartbeat that reached it has registered this rank
// anew, and the sockets have reconnected by themselves (same endpoints). Results and events wait
// in the command channel's queue meanwhile (docs/broker-restarts.md).
// Commands are deduplicated by msg_id over a bounded window: a duplicate of an answered command
// gets the cached result, a duplicate of a queued one is ignored. A command still queued when its
// timeout_ms has passed is answered TIMEOUT, not applied. A command without a valid msg_id (none,
// or seq 0: what no generator produces), or whose msg_id is known for a command of another body
// kind or target, is answered REJECTED at once: never applied, deduplicated or cached. So is a
// command with an enum value out of range (wire/validate.hpp; counted in values_rejected).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "core/worker.hpp"
#include "fabric/counters.hpp"
#include "fabric/framing.hpp"
#include "wire/codec.hpp"
#include "wire/ids.hpp"

namespace esper::fabric {

// Faults a test can inject.
struct FaultInjection {
  std::uint32_t drop_results = 0;  // the first N result frames are not sent (as if lost on the way)
  // The I/O thread throws instead of sending its N-th heartbeat (0: never), as a fault in it would
  // (`esper run --fail-thread node`, fabric_peer --fail-at-heartbeat).
  std::uint32_t fail_at_heartbeat = 0;
};

// What a command handler sees: the verified command (valid during the call) and its envelope.
struct IncomingCommand {
  const wire::Command& command;
  const wire::Envelope& envelope;
  wire::MsgId id() const { return *envelope.msg_id(); }
};

using CommandHandler = std::function<wire::CommandResultT(const IncomingCommand&)>;

// Whether bodies (telemetry batches above all) are compressed. Auto compresses only where the link
// leaves the host (the broker reached over tcp at an address not of this host): over ipc, inproc
// or tcp to this host the link is memory, and zstd would cost the publisher about three times the
// CPU of sending the bytes as they are (docs/performance.md).
enum class Compression : std::uint8_t { Auto, On, Off };

struct NodeOptions {
  std::int32_t rank = 0;
  std::int32_t world_size = 0;  // ranks in the job, announced in heartbeats; 0: unknown
  std::vector<std::uint32_t> layers;
  std::string job_id;
  std::string host;             // empty: this host's name
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds telemetry_window{100};
  std::size_t telemetry_batch_bytes = 64 * 1024;
  std::size_t telemetry_max_queued = 16;    // batches waiting for the I/O thread; beyond, the oldest drops
  int telemetry_hwm = 1000;                 // batches queued in the publisher socket
  std::size_t dedup_window = 4096;          // commands remembered for deduplication
  double broker_lost_after = 3.0;           // heartbeat intervals without the broker's answer -> outage
  std::size_t outage_max_batches = 4096;    // telemetry batches held while the broker is down
  std::size_t outage_max_bytes = 64u << 20; // ... and their records' bytes
  // Held telemetry is sent this long after the broker answers again, so that subscribers (whose
  // sockets reconnect on their own schedule) are back before it flows.
  std::chrono::milliseconds outage_settle{500};
  std::chrono::milliseconds connect_timeout{10'000};
  Compression compression = Compression::Auto;  // On/Off override encode.compression.enabled
  // Where to bind the direct command socket: empty derives it from the broker's endpoint (see
  // direct_bind_address); "none" takes commands only through the broker.
  std::string command_endpoint;
  wire::EncodeOptions encode{};
  wire::DecodeLimits limits{};
  FaultInjection faults{};
  // When set, commands are handled on the node's I/O thread as they arrive — no hand-off to the
  // application's thread, no step agreement — and poll_commands()/take_commands() must not be used.
  // For ranks (and tools) whose commands need not wait for a step boundary.
  CommandHandler immediate_handler;
};


// A command taken from the queue to be answered later (see Node::take_commands).
struct TakenCommand {
  std::unique_ptr<zmq::message_t> frame;
  wire::Message message;  // verified; points into frame
  std::chrono::steady_clock::time_point received;

  [[nodiscard]] const wire::Command& command() const { return *message.body<wire::Command>(); }
  [[nodiscard]] const wire::Envelope& envelope() const { return message.envelope(); }
  [[nodiscard]] wire::MsgId id() const { return *message.envelope().msg_id(); }
  // True when the sender has given up on it: it must be answered TIMEOUT, not applied (see above).
  [[nodiscard]] bool expired() const;
};

class Node {
 public:
  using Handler = CommandHandler;

  // Connects to the broker's command endpoint, learns the others from it (throws esper::Error if
  // the broker does not answer within connect_timeout), and starts the I/O thread. An exception in
  // the I/O thread ends it (nothing more is sent or received) and is kept: see failure().
  Node(zmq::context_t& ctx, const std::string& broker, NodeOptions options);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Thread-safe, never blocks on the network.
  void publish(std::uint32_t layer, std::span<const wire::SeedMetrics> records);
  void flush();                       // send what is batched now, without waiting for the window
  void emit(const wire::EventT& event);
  void set_step(std::uint64_t step) noexcept { step_.store(step, std::memory_order_relaxed); }
  // The layer's latest step time and throughput (with the current step), sent as its LayerMetrics
  // record in every telemetry batch of that layer from now on. A negative or non-finite value is
  // sent as unknown (0 ns, NaN samples/s). Thread-safe; never blocks on the network.
  void set_layer_stats(std::uint32_t layer, double step_seconds, double samples_per_second);

  // This rank's own failure notice, for a rank that must end the job: a RankLost event for this
  // rank with `cause` as its reason, sent on the command channel ahead of anything queued; the
  // broker marks the rank lost at once. Blocks until the event has been handed to the socket or
  // `timeout` has passed; returns whether it was handed over. Thread-safe. Should the I/O thread
  // have failed (failure()), the calling thread sends the notice itself on the command channel;
  // after stop(), nothing is sent.
  bool report_failure(const std::string& cause, std::chrono::milliseconds timeout);

  // Runs the handler on queued commands, highest priority first (FIFO within a priority), and
  // sends their results. Returns how many were handled. Call from one thread at a time.
  std::size_t poll_commands(const Handler& handler, std::size_t max = SIZE_MAX);
  // Blocks until a command is queued or the timeout passes; true if one is queued.
  bool wait_for_command(std::chrono::milliseconds timeout);
  // The lower-level pair under poll_commands(), for callers that answer later (e.g. after the
  // replicas agreed to apply a command): take queued commands in priority order, answer each
  // exactly once. An expired command should be answered with expired_result().
  std::vector<TakenCommand> take_commands(std::size_t max = SIZE_MAX);
  void answer(const wire::MsgId& id, wire::Priority priority, wire::CommandResultT result);
  [[nodiscard]] static wire::CommandResultT expired_result(const TakenCommand& c);
  // From now on every command — queued or arriving — is answered REJECTED with `reason` and not
  // applied (e.g. the job has ended), so that no sender waits for a rank that will not apply it.
  void close_commands(const std::string& reason);
  [[nodiscard]] std::size_t queued_commands() const;

  void stop() noexcept;  // idempotent: flushes telemetry, stops the I/O thread
  // Why the I/O thread has ended early, if it has: the rank that owns the node ends the job with
  // it (docs/threads.md). Thread-safe.
  [[nodiscard]] std::optional<ThreadFailure> failure() const { return io_.failure(); }
  [[nodiscard]] CounterValues counters() const noexcept { return counters_.values(); }
  [[nodiscard]] const RejectLog& rejects() const noexcept { return rejects_; }
  [[nodiscard]] const NodeOptions& options() const noexcept { return options_; }
  // The direct command endpoint announced to the broker (empty: none; tcp on every interface reads
  // tcp://0.0.0.0:PORT here and is completed by the broker).
  [[nodiscard]] const std::string& command_endpoint() const noexcept { return command_endpoint_; }

 private:
  struct Queued {
    zmq::message_t frame;
    std::chrono::steady_clock::time_point received;
  };
  struct Seen {
    bool answered = false;
    std::vector<std::uint8_t> result;  // the encoded result frame, once answered
    std::string route;                 // the client's routing id on the direct socket; empty: the broker
    // What the command was, so that a different command reusing its msg_id is told apart.
    wire::CommandBody kind = wire::CommandBody::NONE;
    wire::CommandTarget target;
  };
  struct Outgoing {
    char type;
    std::string route;  // as in Seen
    std::vector<std::uint8_t> bytes;
    std::uint64_t ticket = 0;  // report_failure() waits for it; 0: nobody waits
  };
  struct Batch {
    std::uint32_t layer = 0;
    std::vector<wire::SeedMetrics> records;
    std::chrono::steady_clock::time_point opened;
    std::uint64_t window_start_ns = 0;
    std::optional<wire::LayerMetrics> stats;  // the layer's latest, taken when the batch is sent
    std::uint64_t records_total = 0;  // the layer's records closed into batches up to this one (Meta)
  };
  // Closes a batch (tel_mu_ held): stamps its layer's running record total.
  void close_batch(Batch& b);

  void run(const std::stop_token& stop);
  void on_command_frame(zmq::message_t& frame, std::string route);
  void receive_commands(zmq::socket_t& socket, bool direct);
  void send_outbox();
  // Sends the full batches and those whose window has passed (all with `everything`); returns when
  // the oldest batch still open is due (time_point::max() if none).
  std::chrono::steady_clock::time_point send_telemetry(bool everything);
  void send_heartbeat();
  // The broker's answer to a heartbeat: [H][epoch] (I/O thread).
  void on_broker_answer(const zmq::message_t& epoch_frame);
  // Whether the broker has been silent too long; starts an outage if so (I/O thread).
  void check_broker(std::chrono::steady_clock::time_point now);
  // Holds a closed batch during an outage, dropping (and counting) the oldest beyond the bounds.
  void hold(Batch b);
  // Counts a batch of `records` dropped at `stage` (one of the telemetry_records_dropped_* counters).
  void count_dropped_batch(std::uint64_t records, std::atomic<std::uint64_t>& stage);
  void wake();
  void queue_answer(const wire::MsgId& id, wire::Priority priority, wire::CommandResultT result);
  // Encodes a result for `id` (out_mu_ held by the caller).
  std::vector<std::uint8_t> encode_result(const wire::MsgId& id, wire::Priority priority, wire::CommandResultT& result);
  // Answers REJECTED without caching: the command is not remembered (I/O thread).
  void reject_command(const wire::MsgId& id, wire::Priority priority, std::string route, const std::string& why,
                      const zmq::message_t& frame, std::atomic<std::uint64_t>& counter);
  // Runs the handler (or answers TIMEOUT when the command has expired), timing it.
  wire::CommandResultT handle(const Handler& handler, const wire::Command& command, const wire::Envelope& envelope,
                              std::chrono::steady_clock::time_point received);
  void remember(const MsgIdKey& id);

  NodeOptions options_;
  Counters counters_;
  RejectLog rejects_;
  ValueRejectLog value_log_;  // the I/O thread's
  zmq::socket_t dealer_, pub_, direct_;
  int wake_fd_ = -1;  // eventfd: wakes the I/O thread
  std::string command_endpoint_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> closed_{false};
  std::string closed_reason_;  // written once before closed_ is set
  std::atomic<std::uint64_t> step_{0};
  std::atomic<std::uint64_t> last_heartbeat_ns_{0};  // wall clock of the latest heartbeat sent
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  // I/O thread only.
  wire::Encoder io_encoder_;
  wire::Decoder decoder_;
  wire::MsgIdGenerator ids_;
  std::unordered_map<std::uint32_t, std::uint64_t> batch_seq_;  // per layer
  std::uint64_t dropped_since_last_batch_ = 0;
  std::uint32_t results_to_drop_;

  // Telemetry batches, guarded by tel_mu_.
  std::mutex tel_mu_;
  std::unordered_map<std::uint32_t, Batch> open_;
  std::deque<Batch> ready_;
  std::vector<std::vector<wire::SeedMetrics>> spare_;  // sent batches' memory, reused
  std::unordered_map<std::uint32_t, wire::LayerMetrics> layer_stats_;  // set_layer_stats()
  std::unordered_map<std::uint32_t, std::uint64_t> records_closed_;  // per layer: Batch::records_total
  std::uint64_t queue_dropped_ = 0;  // records dropped from the full queue, not yet told in a batch

  // Commands, guarded by cmd_mu_.
  mutable std::mutex cmd_mu_;
  std::condition_variable cmd_cv_;
  std::array<std::deque<Queued>, 4> queue_;  // by priority
  std::unordered_map<MsgIdKey, Seen, MsgIdHash> seen_;
  std::deque<MsgIdKey> seen_order_;

  // Results and events to send, guarded by out_mu_; encoded by the caller's thread.
  std::mutex out_mu_;
  std::deque<Outgoing> outbox_;
  wire::Encoder app_encoder_;  // guarded by out_mu_
  std::uint64_t tickets_ = 0;  // guarded by out_mu_: the last ticket given out
  wire::Decoder app_decoder_;  // poll_commands' thread

  // Outgoing tickets handed to the socket (they are sent in order), guarded by handed_mu_.
  std::mutex handed_mu_;
  std::condition_variable handed_cv_;
  std::uint64_t handed_ = 0;
  bool io_done_ = false;  // the I/O thread has ended: nothing more will be handed over
  bool io_failed_ = false;  // ... by an exception (report_failure() then sends on its own)
  std::mutex notice_mu_;  // report_failure() sending on the dealer itself, one caller at a time
  std::uint32_t heartbeats_sent_ = 0;  // I/O thread only; for faults.fail_at_heartbeat

  // The broker as the I/O thread sees it (I/O thread only).
  std::uint64_t broker_epoch_ = 0;  // from its heartbeat answers; 0: none yet (then no outage is declared)
  std::chrono::steady_clock::time_point last_answer_{};
  bool outage_ = false;    // telemetry is held
  bool resuming_ = false;  // ... and the broker answers again: held until resume_at_
  std::chrono::steady_clock::time_point outage_since_{}, resume_at_{};
  std::deque<Batch> held_;  // telemetry held during an outage, oldest first
  std::size_t held_bytes_ = 0;

  Worker io_;  // last: stopped before anything its thread uses goes
};

}  // namespace esper::fabric
