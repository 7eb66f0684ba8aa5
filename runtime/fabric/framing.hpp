// How the fabric lays messages out on ZeroMQ sockets (docs/protocol.md, "Fabric framing").
//
// Pub/sub (telemetry and events), three frames:   [topic][meta][envelope]
//   topic  "tel/<layer>" or "evt/<layer>": the subscription prefix
//   meta   16 bytes: sequence (u64: the broker's event sequence, or the publisher's batch count)
//          and records (u32: telemetry records in the envelope, for drop accounting), flags (u32)
// Command channel (DEALER <-> broker ROUTER), two or more frames:  [type][envelope or payload...]
//   'H' heartbeat (rank -> broker; the first one registers the rank and its layers)
//   'C' command   (client -> broker -> each target rank; the same bytes)
//   'D' dispatch  (broker -> client: a CommandDispatch envelope: the target ranks, or why none)
//   'R' result    (rank -> broker -> client; the same bytes)
//   'E' event     (rank -> broker, which stamps a sequence and publishes it)
//   'F' failure   (broker -> client: an Event envelope holding CommandFailed, e.g. rank lost)
//   'S' snapshot  (request: [S]; reply: [S][meta][StateSnapshot envelope])
//   'I' info      (request: [I]; reply: [I][pub endpoint][sub endpoint])
//   'P' ping      ([P][nonce]: the broker publishes topic "sys/ping/<nonce>", so a subscriber knows it is live)
//   'T' routes    (request: [T], which also subscribes to changes; reply and every change after it:
//                 [T][RouteTable envelope]: the live ranks, their layers and direct command endpoints)
// Direct command channel (client DEALER -> a rank's ROUTER, one hop each way):
//   'C' command [envelope] in, 'R' result [envelope] back; the same bytes as through the broker.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <zmq.hpp>
#include <zmq_addon.hpp>

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
}  // namespace frame

struct Meta {
  std::uint64_t sequence = 0;
  std::uint32_t records = 0;
  std::uint32_t flags = 0;
};
static_assert(sizeof(Meta) == 16);

inline zmq::message_t encode_meta(const Meta& m) { return zmq::message_t(&m, sizeof m); }
inline bool decode_meta(const zmq::message_t& msg, Meta& out) {
  if (msg.size() != sizeof(Meta)) return false;
  std::memcpy(&out, msg.data(), sizeof out);
  return true;
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

// The broker's three endpoints. Clients need only `cmd`: they ask the broker for the others.
struct Endpoints {
  std::string cmd;  // ROUTER: commands, results, heartbeats, events, snapshots
  std::string pub;  // XSUB: publishers connect here
  std::string sub;  // XPUB: subscribers connect here
};

// Derives the three bind addresses from one: tcp://HOST:PORT -> cmd on PORT, pub and sub on free
// ports; ipc://PATH and inproc://NAME -> PATH.cmd, PATH.pub, PATH.sub.
Endpoints bind_addresses(const std::string& base);

// An endpoint the broker reported (e.g. tcp://0.0.0.0:41234) made connectable from where the
// client reached the broker (tcp://node7:5555 -> tcp://node7:41234). ipc and inproc pass through.
std::string connectable(const std::string& reported, const std::string& cmd_endpoint_used);

// Asks the broker behind `dealer` (connected to `broker`) for its pub/sub endpoints, made
// connectable from here. Throws esper::Error when it does not answer within `timeout`.
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
