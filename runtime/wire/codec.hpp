// The wire codec: every message is one FlatBuffers Envelope (fbs/envelope.fbs, docs/protocol.md).
//
// Encoding: an Encoder owns its builders and zstd context and returns a view of the frame, valid
// until its next call. Bodies above a threshold are zstd-compressed (after an XOR-shuffle of the
// telemetry records) and carried in Envelope.packed, but only when that pays; otherwise the body is
// inline, readable in place.
//
// Decoding: verify, then decode. A Decoder checks size, file identifier and schema version, runs
// the FlatBuffers verifier with depth and table limits, decompresses and verifies a packed body,
// and checks per-batch record limits. A bad frame is an expected outcome (DecodeError), never a
// crash or an out-of-bounds read. A newer schema minor is read with unknown fields ignored; a newer
// (or older) major is rejected, naming both versions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "fbs/envelope_generated.h"
#include "wire/compress.hpp"

namespace esper::wire {

inline constexpr std::uint16_t kSchemaMajor = 1;
// 1.1: the Decision event; 1.2: direct command routes; 1.3: Heartbeat.world_size,
// CommandResult.members and .snapshot; 1.4: the CommandDispatch body
inline constexpr std::uint16_t kSchemaMinor = 4;
inline constexpr const char* kFileIdentifier = "ESPR";

struct DecodeLimits {
  std::size_t max_frame_bytes = 16u << 20;  // also bounds a packed body's decompressed size
  std::uint32_t max_depth = 32;             // nesting of tables and vectors
  std::uint32_t max_tables = 100'000;
  std::uint32_t max_records_per_batch = 1u << 20;  // seed + layer records in one TelemetryBatch
};

struct CompressionOptions {
  bool enabled = true;
  std::size_t threshold_bytes = 1024;  // bodies at least this large are tried
  int level = 1;                       // zstd level
  double max_ratio = 0.9;              // use the compressed body only if compressed/raw <= this
};

// How telemetry records are prepared for zstd. Applies only to bodies that end up compressed.
struct TelemetryEncoding {
  bool xor_shuffle = true;  // lossless: XOR each record with the same seed's previous one, byte-shuffle
  int mantissa_bits = 23;   // 23 = lossless; fewer rounds the float metrics (lossy, better ratio)
};

struct EncodeOptions {
  CompressionOptions compression;
  TelemetryEncoding telemetry;
};

// Who sends: fixed for an Encoder's lifetime.
struct SourceInfo {
  std::int32_t rank = -1;
  Role role = Role::UNKNOWN;
  std::string job_id;
  std::string host;
  std::uint32_t pid = 0;
};

// Per-message envelope fields. The schema version is always stamped by the Encoder.
struct Header {
  MsgId msg_id{};
  MsgId correlation_id{};
  Priority priority = Priority::NORMAL;
  std::uint32_t partition_key = 0;
  std::uint64_t sequence = 0;
  std::uint64_t lamport = 0;
  std::uint64_t timestamp_ns = 0;
  TraceContext trace{};
};

// Fields of a TelemetryBatch other than its record vectors (for the zero-copy fast path).
struct TelemetryBatchInfo {
  std::uint32_t layer = 0;
  std::int32_t rank = -1;
  std::uint64_t window_start_ns = 0;
  std::uint64_t window_end_ns = 0;
  std::uint64_t dropped_records = 0;
};

struct EncodeStats {
  std::uint64_t frames = 0;
  std::uint64_t body_bytes = 0;        // bodies before compression
  std::uint64_t frame_bytes = 0;       // frames as sent
  std::uint64_t compressed = 0;        // frames whose body went packed
  std::uint64_t not_worth_it = 0;      // tried, but compression did not pay
};

class Encoder {
 public:
  explicit Encoder(SourceInfo source = {}, EncodeOptions options = {});

  // Object-API bodies (any kind). The view is valid until the next call on this Encoder.
  std::span<const std::uint8_t> encode(const Header& h, const CommandT& body);
  std::span<const std::uint8_t> encode(const Header& h, const CommandResultT& body);
  std::span<const std::uint8_t> encode(const Header& h, const TelemetryBatchT& body);
  std::span<const std::uint8_t> encode(const Header& h, const EventT& body);
  std::span<const std::uint8_t> encode(const Header& h, const HeartbeatT& body);
  std::span<const std::uint8_t> encode(const Header& h, const StateSnapshotT& body);
  std::span<const std::uint8_t> encode(const Header& h, const RouteTableT& body);
  std::span<const std::uint8_t> encode(const Header& h, const CommandDispatchT& body);

  // Telemetry fast path: records are copied as structs, no per-record work.
  std::span<const std::uint8_t> encode_telemetry(const Header& h, const TelemetryBatchInfo& info,
                                                 std::span<const SeedMetrics> seeds,
                                                 std::span<const LayerMetrics> layers = {});

  [[nodiscard]] const EncodeStats& stats() const noexcept { return stats_; }
  [[nodiscard]] const EncodeOptions& options() const noexcept { return options_; }
  [[nodiscard]] const SourceInfo& source() const noexcept { return source_; }

 private:
  using BuildFn = flatbuffers::Offset<void> (*)(flatbuffers::FlatBufferBuilder&, const void*);
  std::span<const std::uint8_t> finish(const Header& h, Body kind, BuildFn build, const void* ctx);
  flatbuffers::Offset<Envelope> envelope(flatbuffers::FlatBufferBuilder& fbb, const Header& h, Body kind,
                                         flatbuffers::Offset<void> body, flatbuffers::Offset<Packed> packed);
  bool try_pack(Body kind, flatbuffers::Offset<void> body);

  SourceInfo source_;
  EncodeOptions options_;
  EncodeStats stats_;
  flatbuffers::FlatBufferBuilder fbb_{4096};
  flatbuffers::FlatBufferBuilder packed_fbb_{4096};
  ZstdCompressor zstd_;
  std::vector<std::uint8_t> staging_;     // transformed payload
  std::vector<std::uint8_t> compressed_;
  struct PackInfo {
    std::uint32_t raw_size = 0;
    Transform transform = Transform::NONE;
    std::uint32_t offset = 0, stride = 0, count = 0, lag = 0;
  } pack_info_;
};

enum class DecodeErrc : std::uint8_t {
  FrameTooSmall,
  FrameTooLarge,
  WrongIdentifier,
  MissingVersion,
  NewerMajor,
  OlderMajor,
  Corrupt,           // the verifier found an offset or length outside the frame
  LimitExceeded,     // depth, table or record limit
  NoBody,            // neither or both of body and packed
  UnknownKind,       // a body kind from a newer minor: readable envelope, unknown body
  BadPacking,        // codec, size or transform of a packed body out of range
  DecompressFailed,
};
inline constexpr std::size_t kDecodeErrcCount = 12;
[[nodiscard]] std::string_view to_string(DecodeErrc code) noexcept;

struct DecodeError {
  DecodeErrc code;
  std::string detail;
  [[nodiscard]] std::string message() const;
};

// A verified message. Holds pointers into the frame it was decoded from (which must outlive it)
// unless the body was packed or the frame misaligned, in which case it owns a copy.
class Message {
 public:
  Message(Message&&) noexcept = default;
  Message& operator=(Message&&) noexcept = default;
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;

  [[nodiscard]] const Envelope& envelope() const noexcept { return *envelope_; }
  [[nodiscard]] Body kind() const noexcept { return kind_; }
  [[nodiscard]] bool was_packed() const noexcept { return packed_; }
  // True when the sender's schema minor is newer than ours: fields we do not know were ignored.
  [[nodiscard]] bool newer_minor() const noexcept { return envelope_->version()->minor() > kSchemaMinor; }

  // The body as T (Command, CommandResult, TelemetryBatch, Event, Heartbeat, StateSnapshot), or nullptr.
  template <class T>
  [[nodiscard]] const T* body() const noexcept {
    return kind_ == BodyTraits<T>::enum_value ? static_cast<const T*>(body_) : nullptr;
  }

 private:
  friend class Decoder;
  Message() = default;
  const Envelope* envelope_ = nullptr;
  Body kind_ = Body::NONE;
  const void* body_ = nullptr;
  bool packed_ = false;
  std::vector<std::uint8_t> frame_copy_;  // when the frame was not 8-byte aligned
  std::vector<std::uint8_t> payload_;     // decompressed packed body
};

struct DecodeStats {
  std::uint64_t accepted = 0;
  std::array<std::uint64_t, kDecodeErrcCount> rejected{};
  [[nodiscard]] std::uint64_t rejected_total() const noexcept;
};

// Not thread-safe: one Decoder per receiving thread (it owns a zstd context).
class Decoder {
 public:
  explicit Decoder(DecodeLimits limits = {});

  [[nodiscard]] Expected<Message, DecodeError> decode(std::span<const std::uint8_t> frame);

  [[nodiscard]] const DecodeStats& stats() const noexcept { return stats_; }
  [[nodiscard]] const DecodeLimits& limits() const noexcept { return limits_; }

 private:
  Unexpected<DecodeError> reject(DecodeErrc code, std::string detail);
  std::string verify_failure(const std::uint8_t* data, std::size_t size, bool payload) const;

  DecodeLimits limits_;
  DecodeStats stats_;
  ZstdDecompressor zstd_;
  std::vector<std::uint8_t> scratch_;
};

}  // namespace esper::wire
