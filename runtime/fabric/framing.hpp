// How the fabric lays messages out on ZeroMQ sockets (docs/protocol.md, "Fabric framing").
//
// Pub/sub (telemetry and events), three frames:   [topic][meta][envelope]
//   topic  "tel/<layer>" or "evt/<layer>": the subscription prefix
//   meta   32 bytes, little-endian (Meta below): version, flags, records (u32: telemetry records in
//          the envelope), sequence (u64: the broker's event sequence, or the publisher's batch
//          count), records_total (u64: the publisher's records so far, for drop accounting), epoch
//          (u64: the broker's, on what the broker stamps)
// Events are published on their own XPUB (Endpoints::evt), never behind telemetry.
// Command channel (DEALER <-> broker ROUTER), two or more frames:  [type][envelope or payload...]
//   'H' heartbeat (rank -> broker; the first one registers the rank and its layers); the broker
//                 answers each with [H][epoch u64 LE], so that a rank knows the broker is there
//                 and notices when it has restarted (a new epoch)
//   'C' command   (client -> broker -> each target rank; the same bytes)
//   'D' dispatch  (broker -> client: a CommandDispatch envelope: the target ranks, or why none)
//   'R' result    (rank -> broker -> client; the same bytes)
//   'E' event     (rank -> broker, which stamps a sequence and publishes it)
//   'F' failure   (broker -> client: an Event envelope holding CommandFailed, e.g. rank lost)
//   'S' snapshot  (request: [S]; reply: [S][meta][StateSnapshot envelope])
//   'V' replay    (request: [V][from u64 LE]; reply: [V][status u8][latest u64 LE] then [meta][Event
//                 envelope] pairs for the events from `from` on that the broker still keeps, at
//                 most kReplayMax; status kReplayTooOld: `from` is older than what it keeps)
//   'I' info      (request: [I]; reply: [I][pub endpoint][sub endpoint]. Request [I][u8 2]: reply
//                 [I][pub][sub][evt endpoint])
//   'P' ping      ([P][nonce]: the broker publishes topic "sys/ping/<nonce>", so a subscriber knows it is live)
//   'K' keepalive (request: [K]; reply: [K][epoch u64 LE][latest event sequence u64 LE]: a
//                 client's and a subscriber's check that the broker is the one they know, and the
//                 last event it published, so that a subscriber that missed the last ones asks for them)
//   'T' routes    (request: [T], which also subscribes to changes; reply and every change after it:
//                 [T][RouteTable envelope]: the live ranks, their layers and direct command endpoints)
// Direct command channel (client DEALER -> a rank's ROUTER, one hop each way):
//   'C' command [envelope] in, 'R' result [envelope] back; the same bytes as through the broker.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "core/little_endian.hpp"
#include "fbs/envelope_generated.h"

namespace esper::fabric {

namespace frame {
inline constexpr char kHeartbeat = 'H';
inline constexpr char kCommand = 'C';
inline constexpr char kDispatch = 'D';
inline constexpr char kResult = 'R';
inline constexpr char kEvent = 'E';
inline constexpr char kFailure = 'F';
inline constexpr char kSnapshot = 'S';
inline constexpr char kInfo = 'I';
inline constexpr char kPing = 'P';
inline constexpr char kRoutes = 'T';
inline constexpr char kReplay = 'V';
inline constexpr char kKeepalive = 'K';
}  // namespace frame

// The replay reply's status (its first byte): the events follow, or `from` is older than the
// oldest event the broker keeps (the subscriber syncs from a snapshot instead).
inline constexpr std::uint8_t kReplayOk = 0;
inline constexpr std::uint8_t kReplayTooOld = 1;
inline constexpr std::size_t kReplayMax = 1024;  // events in one replay reply; ask again for more
inline constexpr std::uint8_t kInfoWithEvents = 2;  // an 'I' request asking for the evt endpoint too

// The meta frame of every publication and of the snapshot and replay replies: 32 bytes,
// little-endian, whatever the host (docs/protocol.md, "Fabric framing"):
//   [0]      u8  version (kMetaVersion)
//   [1]      u8  reserved, 0
//   [2..4)   u16 flags (none defined yet; a decoder ignores them)
//   [4..8)   u32 records: SeedMetrics records in the envelope (telemetry), else 0
//   [8..16)  u64 sequence: the publisher's per-layer batch number (telemetry), the broker's event
//                sequence (events), the job state's sequence (snapshot reply)
//   [16..24) u64 records_total: telemetry records this publisher has produced for this layer up to
//                and including this batch, dropped ones included (0: not counted, e.g. events). A
//                subscriber's jump in it beyond `records` is records that went missing on the way.
//   [24..32) u64 epoch: the broker's epoch (a random non-zero number it draws when it starts) on
//                what the broker stamps (events, snapshot and replay replies); 0 on telemetry. Event
//                sequences count within an epoch: a new epoch is a restarted broker.
// Version 1 (24 bytes, no epoch: read as epoch 0) is still accepted. A frame of any other size or
// version, a non-zero reserved byte, or a records_total below records is rejected.
struct Meta {
  std::uint64_t sequence = 0;
  std::uint32_t records = 0;
  std::uint16_t flags = 0;
  std::uint64_t records_total = 0;
  std::uint64_t epoch = 0;
  bool operator==(const Meta&) const = default;
};
inline constexpr std::size_t kMetaSize = 32;
inline constexpr std::size_t kMetaSizeV1 = 24;
inline constexpr std::uint8_t kMetaVersion = 2;

inline std::array<std::uint8_t, kMetaSize> meta_bytes(const Meta& m) {
  std::array<std::uint8_t, kMetaSize> b{};
  b[0] = kMetaVersion;
  le::put(b.data() + 2, m.flags, 2);
  le::put(b.data() + 4, m.records, 4);
  le::put(b.data() + 8, m.sequence, 8);
  le::put(b.data() + 16, m.records_total, 8);
  le::put(b.data() + 24, m.epoch, 8);
  return b;
}
inline zmq::message_t encode_meta(const Meta& m) {
  const auto b = meta_bytes(m);
  return zmq::message_t(b.data(), b.size());
}
// Decodes a meta frame: nullptr on success, else what is wrong with it (out is then unchanged).
inline const char* decode_meta(std::span<const std::uint8_t> b, Meta& out) {
  if (b.size() != kMetaSize && b.size() != kMetaSizeV1) return "meta frame is neither 32 bytes (version 2) nor 24 (version 1)";
  if (b[0] != (b.size() == kMetaSize ? kMetaVersion : 1)) return "meta frame's version does not match its size";
  if (b[1] != 0) return "meta frame's reserved byte is not 0";
  Meta m;
  m.flags = static_cast<std::uint16_t>(le::get(b.data() + 2, 2));
  m.records = static_cast<std::uint32_t>(le::get(b.data() + 4, 4));
  m.sequence = le::get(b.data() + 8, 8);
  m.records_total = le::get(b.data() + 16, 8);
  if (b.size() == kMetaSize) m.epoch = le::get(b.data() + 24, 8);
  if (m.records_total != 0 && m.records_total < m.records) return "meta frame's records_total is below its records";
  out = m;
  return nullptr;
}
inline bool decode_meta(const zmq::message_t& msg, Meta& out) {
  return decode_meta(std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(msg.data()), msg.size()), out) == nullptr;
}

// The broker's epoch (or latest event sequence) as sent after 'H' and 'K': 8 bytes, little-endian;
// 0 when the frame is not 8 bytes (an epoch of 0 is no epoch: the caller counts it as rejected).
inline std::uint64_t decode_epoch(const zmq::message_t& m) {
  return m.size() == 8 ? le::get(static_cast<const std::uint8_t*>(m.data()), 8) : 0;
}
inline zmq::message_t encode_epoch(std::uint64_t epoch) {
  std::array<std::uint8_t, 8> b{};
  le::put(b.data(), epoch, 8);
  return zmq::message_t(b.data(), b.size());
}

inline std::string telemetry_topic(std::uint32_t layer) { return "tel/" + std::to_string(layer); }
inline std::string event_topic(std::uint32_t layer) { return "evt/" + std::to_string(layer); }
inline constexpr std::string_view kTelemetryPrefix = "tel/";
inline constexpr std::string_view kEventPrefix = "evt/";
inline constexpr std::string_view kPingPrefix = "sys/ping/";

inline std::span<const std::uint8_t> bytes(const zmq::message_t& m) {
  return {static_cast<const std::uint8_t*>(m.data()), m.size()};
}
inline char type_of(const zmq::message_t& m) { return m.size() == 1 ? *static_cast<const char*>(m.data()) : '\0'; }
inline zmq::message_t type_frame(char t) { return zmq::message_t(&t, 1); }

// The broker's four endpoints. Clients need only `cmd`: they ask the broker for the others.
struct Endpoints {
  std::string cmd;  // ROUTER: commands, results, heartbeats, events, snapshots, replays
  std::string pub;  // XSUB: publishers connect here
  std::string sub;  // XPUB: subscribers connect here for telemetry
  std::string evt;  // XPUB: subscribers connect here for events (never behind telemetry)
};

// Derives the four bind addresses from one: tcp://HOST:PORT -> cmd on PORT, pub, sub and evt on
// PORT+1, PORT+2, PORT+3 (fixed, so that a restarted broker is found where it was; PORT 0: each on
// a free port); ipc://PATH and inproc://NAME -> PATH.cmd, PATH.pub, PATH.sub, PATH.evt.
Endpoints bind_addresses(const std::string& base);

// An endpoint the broker reported (e.g. tcp://0.0.0.0:41234) made connectable from where the
// client reached the broker (tcp://node7:5555 -> tcp://node7:41234). ipc and inproc pass through.
std::string connectable(const std::string& reported, const std::string& cmd_endpoint_used);

// Asks the broker behind `dealer` (connected to `broker`) for its pub/sub/evt endpoints, made
// connectable from here. Throws esper::Error when it does not answer within `timeout`. A broker
// from before the event endpoint answers without it: evt is then sub, where it publishes events.
Endpoints ask_endpoints(zmq::socket_t& dealer, const std::string& broker, std::chrono::milliseconds timeout);

// Whether a rank holding `layers` is a target of `target` (null: all ranks). The broker and the
// client's direct path resolve targets with this one rule.
inline bool targets_rank(const wire::CommandTarget* target, std::int32_t rank, std::span<const std::uint32_t> layers) {
  const auto kind = target ? target->kind() : wire::TargetKind::ALL;
  return kind == wire::TargetKind::ALL || (kind == wire::TargetKind::RANK && rank == target->rank()) ||
         (kind == wire::TargetKind::LAYER && std::find(layers.begin(), layers.end(), target->layer()) != layers.end());
}

// The transport of an endpoint: "tcp", "ipc", "inproc".
inline std::string_view scheme_of(std::string_view endpoint) { return endpoint.substr(0, endpoint.find("://")); }

// Where a rank binds its direct command socket when NodeOptions::command_endpoint is empty: the
// transport it reaches the broker with. inproc://B and ipc://B get a name beside the broker's with
// the rank and `unique` in it; tcp binds a free port, on the broker's host when that is a loopback
// address, else on every interface (advertised as 0.0.0.0, completed by the broker).
std::string direct_bind_address(const std::string& broker, std::int32_t rank, std::uint64_t unique);

// Whether an endpoint stays on this host: inproc and ipc always; tcp when its host is a loopback
// address or resolves to an address of one of this host's interfaces.
bool endpoint_on_this_host(const std::string& endpoint);

// Removes the socket file of a bound ipc:// endpoint (libzmq leaves it behind on close); other
// transports are left alone. For a socket's owner, when it stops.
void remove_ipc_file(const std::string& endpoint) noexcept;

// This host's name (gethostname), for Source.host where no name was given; empty if unknown.
std::string this_host();

// A msg_id as a hash-map key.
struct MsgIdKey {
  std::uint64_t sender = 0, seq = 0;
  bool operator==(const MsgIdKey&) const = default;
};
struct MsgIdHash {
  std::size_t operator()(const MsgIdKey& k) const noexcept { return k.sender * 0x9e3779b97f4a7c15ull ^ k.seq; }
};
inline MsgIdKey key_of(const wire::MsgId& id) { return {id.sender(), id.seq()}; }

// Raises esper::Error naming the endpoint when a bind or connect fails (a fault: bad address, in use).
void bind_or_throw(zmq::socket_t& s, const std::string& endpoint);
void connect_or_throw(zmq::socket_t& s, const std::string& endpoint);

}  // namespace esper::fabric
