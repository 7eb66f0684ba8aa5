#include "wire/codec.hpp"

#include <cstring>
#include <limits>

namespace esper::wire {
namespace {

using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

template <class T>
Offset<void> pack_object(FlatBufferBuilder& fbb, const void* obj) {
  return T::TableType::Pack(fbb, static_cast<const T*>(obj)).Union();
}

struct TelemetryView {
  const TelemetryBatchInfo* info;
  std::span<const SeedMetrics> seeds;
  std::span<const LayerMetrics> layers;
};

Offset<void> pack_telemetry_view(FlatBufferBuilder& fbb, const void* ctx) {
  const auto& v = *static_cast<const TelemetryView*>(ctx);
  const auto seeds = v.seeds.empty() ? 0 : fbb.CreateVectorOfStructs(v.seeds.data(), v.seeds.size());
  const auto layers = v.layers.empty() ? 0 : fbb.CreateVectorOfStructs(v.layers.data(), v.layers.size());
  return CreateTelemetryBatch(fbb, v.info->layer, v.info->rank, v.info->window_start_ns, v.info->window_end_ns,
                              seeds, layers, v.info->dropped_records)
      .Union();
}

// Distance to the previous record of the same seed, judged from the first record: 1 when records
// are grouped by seed, the number of seeds when they are grouped by step.
std::size_t seed_lag(const SeedMetrics* recs, std::size_t n) {
  for (std::size_t j = 1; j < n; ++j) {
    if (recs[j].seed() == recs[0].seed()) return j;
  }
  return 1;
}

void round_floats(SeedMetrics& r, int bits) {
  r.mutate_activation_mean(round_mantissa(r.activation_mean(), bits));
  r.mutate_activation_var(round_mantissa(r.activation_var(), bits));
  r.mutate_dead_ratio(round_mantissa(r.dead_ratio(), bits));
  r.mutate_task_loss(round_mantissa(r.task_loss(), bits));
  r.mutate_shadow_loss(round_mantissa(r.shadow_loss(), bits));
  r.mutate_grad_norm(round_mantissa(r.grad_norm(), bits));
  r.mutate_alpha(round_mantissa(r.alpha(), bits));
  r.mutate_health(round_mantissa(r.health(), bits));
}

std::string version_string(std::uint16_t major, std::uint16_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

std::string printable_identifier(const std::uint8_t* id) {
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 4; ++i) {
    const auto c = static_cast<unsigned char>(id[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

// The verifier accepts a union whose type is set but whose value is absent; readers would then
// dereference null. Such a frame is rejected (recursing into batches, whose depth the verifier bounds).
bool command_complete(const Command* c) {
  if (c->body_type() != CommandBody::NONE && c->body() == nullptr) return false;
  if (const auto* b = c->body_as_BatchCommand(); b != nullptr && b->commands() != nullptr) {
    for (const auto* inner : *b->commands()) {
      if (!command_complete(inner)) return false;
    }
  }
  return true;
}

// A vector of structs whose elements lie at their own alignment (a null vector is).
template <class T>
bool aligned_structs(const flatbuffers::Vector<const T*>* v) {
  return v == nullptr || reinterpret_cast<std::uintptr_t>(v->Data()) % alignof(T) == 0;
}

// Bytes of strings and vectors a body references, each counted once per reference: what the
// object API (UnPack) copies. A frame without shared objects references at most its own size; one
// whose tables all point at the same string or table (which the verifier accepts, visiting each
// reference) can make a 0.5 MB frame unpack into gigabytes (tests/fuzz/corpus/envelope/
// crash-unpack-amplification-shared-param). Tables count by their visits, bounded by max_tables.
class Referenced {
 public:
  [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }

  void add(const flatbuffers::String* s) noexcept { bytes_ += s != nullptr ? s->size() + 1u : 0u; }
  template <class T>
  void add(const flatbuffers::Vector<T>* v) noexcept {
    bytes_ += v != nullptr ? std::uint64_t{v->size()} * sizeof(T) : 0u;
  }

  void add(const SeedSet* s) {
    if (s == nullptr) return;
    add(s->ids());
    add(s->ranges());
  }
  void add(const Command* c) {
    switch (c->body_type()) {
      case CommandBody::TransitionSeeds: {
        const auto* t = c->body_as_TransitionSeeds();
        add(t->seeds());
        add(t->reason());
        break;
      }
      case CommandBody::SetBlueprint:
        if (const auto* params = c->body_as_SetBlueprint()->params()) {
          add(params);
          for (const auto* p : *params) add(p->name());
        }
        break;
      case CommandBody::BatchCommand:
        if (const auto* cmds = c->body_as_BatchCommand()->commands()) {
          add(cmds);
          for (const auto* inner : *cmds) add(inner);  // depth bounded by the verifier
        }
        break;
      case CommandBody::EmergencyStop: add(c->body_as_EmergencyStop()->reason()); break;
      case CommandBody::RequestSnapshot:
        add(c->body_as_RequestSnapshot()->layers());
        add(c->body_as_RequestSnapshot()->reply_topic());
        break;
      case CommandBody::Shutdown: add(c->body_as_Shutdown()->reason()); break;
      default: break;
    }
  }
  void add(const StateSnapshot* s) {
    if (s == nullptr || s->layers() == nullptr) return;
    add(s->layers());
    for (const auto* l : *s->layers()) add(l->seeds());
  }
  void add(const CommandResult* r) {
    add(r->error());
    if (const auto* outcomes = r->outcomes()) {
      add(outcomes);
      for (const auto* o : *outcomes) add(o->error());
    }
    if (const auto* members = r->members()) {
      add(members);
      for (const auto* m : *members) add(m);
    }
    add(r->snapshot());
  }
  void add(const Event* e) {
    if (const auto* t = e->body_as_StateTransition()) {
      add(t->reason());
      add(t->triggered_by());
    } else if (const auto* a = e->body_as_AnomalyAlert()) {
      add(a->metric());
      add(a->detector());
    } else if (const auto* j = e->body_as_RankJoined()) {
      add(j->host());
      add(j->layers());
    } else if (const auto* l = e->body_as_RankLost()) {
      add(l->reason());
    } else if (const auto* f = e->body_as_CommandFailed()) {
      add(f->detail());
    } else if (const auto* k = e->body_as_Checkpoint()) {
      add(k->path());
    } else if (const auto* d = e->body_as_Decision()) {
      add(d->policy());
      add(d->seeds());
      add(d->reason());
      add(d->applied());
      add(d->rejected());
      add(d->failure());
    }
  }
  void add(Body kind, const void* body) {
    switch (kind) {
      case Body::Command: add(static_cast<const Command*>(body)); break;
      case Body::CommandResult: add(static_cast<const CommandResult*>(body)); break;
      case Body::TelemetryBatch: {
        const auto* t = static_cast<const TelemetryBatch*>(body);
        add(t->seeds());
        add(t->layers());
        break;
      }
      case Body::Event: add(static_cast<const Event*>(body)); break;
      case Body::Heartbeat: {
        const auto* h = static_cast<const Heartbeat*>(body);
        add(h->layers());
        add(h->command_endpoint());
        break;
      }
      case Body::StateSnapshot: add(static_cast<const StateSnapshot*>(body)); break;
      case Body::RouteTable:
        if (const auto* ranks = static_cast<const RouteTable*>(body)->ranks()) {
          add(ranks);
          for (const auto* r : *ranks) {
            add(r->layers());
            add(r->command_endpoint());
          }
        }
        break;
      case Body::CommandDispatch: {
        const auto* d = static_cast<const CommandDispatch*>(body);
        add(d->ranks());
        add(d->detail());
        break;
      }
      default: break;
    }
  }

 private:
  std::uint64_t bytes_ = 0;
};

bool unions_complete(Body kind, const void* body) {
  switch (kind) {
    case Body::Command: return command_complete(static_cast<const Command*>(body));
    case Body::Event: {
      const auto* e = static_cast<const Event*>(body);
      return e->body_type() == EventBody::NONE || e->body() != nullptr;
    }
    default: return true;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------- Encoder

Encoder::Encoder(SourceInfo source, EncodeOptions options)
    : source_(std::move(source)), options_(options), zstd_(options.compression.level) {
  if (options_.telemetry.mantissa_bits < 0 || options_.telemetry.mantissa_bits > 23) {
    throw Error("TelemetryEncoding::mantissa_bits must be within 0..23, got " +
                std::to_string(options_.telemetry.mantissa_bits));
  }
  if (!(options_.compression.max_ratio > 0.0 && options_.compression.max_ratio <= 1.0)) {
    throw Error("CompressionOptions::max_ratio must be within (0, 1], got " +
                std::to_string(options_.compression.max_ratio));
  }
}

std::span<const std::uint8_t> Encoder::encode(const Header& h, const CommandT& body) {
  return finish(h, Body::Command, &pack_object<CommandT>, &body);
}
std::span<const std::uint8_t> Encoder::encode(const Header& h, const CommandResultT& body) {
  return finish(h, Body::CommandResult, &pack_object<CommandResultT>, &body);
}
std::span<const std::uint8_t> Encoder::encode(const Header& h, const TelemetryBatchT& body) {
  return finish(h, Body::TelemetryBatch, &pack_object<TelemetryBatchT>, &body);
}
std::span<const std::uint8_t> Encoder::encode(const Header& h, const EventT& body) {
  return finish(h, Body::Event, &pack_object<EventT>, &body);
}
std::span<const std::uint8_t> Encoder::encode(const Header& h, const HeartbeatT& body) {
  return finish(h, Body::Heartbeat, &pack_object<HeartbeatT>, &body);
}
std::span<const std::uint8_t> Encoder::encode(const Header& h, const StateSnapshotT& body) {
  return finish(h, Body::StateSnapshot, &pack_object<StateSnapshotT>, &body);
}
std::span<const std::uint8_t> Encoder::encode(const Header& h, const RouteTableT& body) {
  return finish(h, Body::RouteTable, &pack_object<RouteTableT>, &body);
}
std::span<const std::uint8_t> Encoder::encode(const Header& h, const CommandDispatchT& body) {
  return finish(h, Body::CommandDispatch, &pack_object<CommandDispatchT>, &body);
}

std::span<const std::uint8_t> Encoder::encode_telemetry(const Header& h, const TelemetryBatchInfo& info,
                                                        std::span<const SeedMetrics> seeds,
                                                        std::span<const LayerMetrics> layers) {
  const TelemetryView view{&info, seeds, layers};
  return finish(h, Body::TelemetryBatch, &pack_telemetry_view, &view);
}

Offset<Envelope> Encoder::envelope(FlatBufferBuilder& fbb, const Header& h, Body kind, Offset<void> body,
                                   Offset<Packed> packed) {
  const auto job = source_.job_id.empty() ? 0 : fbb.CreateString(source_.job_id);
  const auto host = source_.host.empty() ? 0 : fbb.CreateString(source_.host);
  const auto source = CreateSource(fbb, source_.rank, source_.role, job, host, source_.pid);
  const SchemaVersion version(kSchemaMajor, kSchemaMinor);
  return CreateEnvelope(fbb, &version, &h.msg_id, &h.correlation_id, source, h.priority, h.partition_key,
                        h.sequence, h.lamport, h.timestamp_ns, &h.trace, kind, body, packed);
}

std::span<const std::uint8_t> Encoder::finish(const Header& h, Body kind, BuildFn build, const void* ctx) {
  fbb_.Clear();
  auto body = build(fbb_, ctx);
  const std::size_t body_size = fbb_.GetSize();
  ++stats_.frames;
  stats_.body_bytes += body_size;

  const auto& c = options_.compression;
  if (c.enabled && body_size >= c.threshold_bytes) {
    if (try_pack(kind, body)) {
      packed_fbb_.Clear();
      const auto data = packed_fbb_.CreateVector(compressed_);
      const auto packed = CreatePacked(packed_fbb_, Codec::ZSTD, static_cast<std::uint8_t>(kind),
                                       pack_info_.raw_size, pack_info_.transform, pack_info_.offset,
                                       pack_info_.stride, pack_info_.count, pack_info_.lag, data);
      packed_fbb_.Finish(envelope(packed_fbb_, h, Body::NONE, 0, packed), kFileIdentifier);
      ++stats_.compressed;
      stats_.frame_bytes += packed_fbb_.GetSize();
      return {packed_fbb_.GetBufferPointer(), packed_fbb_.GetSize()};
    }
    ++stats_.not_worth_it;
    fbb_.Clear();  // the builder holds a finished Payload: build the body again, inline
    body = build(fbb_, ctx);
  }
  fbb_.Finish(envelope(fbb_, h, kind, body, 0), kFileIdentifier);
  stats_.frame_bytes += fbb_.GetSize();
  return {fbb_.GetBufferPointer(), fbb_.GetSize()};
}

bool Encoder::try_pack(Body kind, Offset<void> body) {
  fbb_.Finish(CreatePayload(fbb_, kind, body));
  std::uint8_t* raw = fbb_.GetBufferPointer();
  const std::size_t raw_size = fbb_.GetSize();
  std::span<const std::uint8_t> src(raw, raw_size);
  pack_info_ = PackInfo{};

  const auto& t = options_.telemetry;
  const auto* payload = flatbuffers::GetRoot<Payload>(raw);
  if (kind == Body::TelemetryBatch && payload->body_as_TelemetryBatch()->seeds() != nullptr &&
      payload->body_as_TelemetryBatch()->seeds()->size() >= 2) {
    const auto* vec = payload->body_as_TelemetryBatch()->seeds();
    const auto offset = static_cast<std::size_t>(reinterpret_cast<const std::uint8_t*>(vec->Data()) - raw);
    const std::size_t count = vec->size();
    // We own these bytes (our builder's buffer) and rebuild from the caller's data if packing fails.
    auto* recs = reinterpret_cast<SeedMetrics*>(raw + offset);
    if (t.mantissa_bits < 23) {
      for (std::size_t i = 0; i < count; ++i) round_floats(recs[i], t.mantissa_bits);
    }
    if (t.xor_shuffle) {
      const std::size_t lag = seed_lag(recs, count);
      staging_.assign(raw, raw + raw_size);
      xor_shuffle(raw + offset, staging_.data() + offset, sizeof(SeedMetrics), count, lag);
      src = staging_;
      pack_info_.transform = Transform::XOR_SHUFFLE;
      pack_info_.offset = static_cast<std::uint32_t>(offset);
      pack_info_.stride = static_cast<std::uint32_t>(sizeof(SeedMetrics));
      pack_info_.count = static_cast<std::uint32_t>(count);
      pack_info_.lag = static_cast<std::uint32_t>(lag);
    }
  }
  pack_info_.raw_size = static_cast<std::uint32_t>(raw_size);

  zstd_.set_level(options_.compression.level);
  zstd_.compress(src, compressed_);
  return static_cast<double>(compressed_.size()) <= static_cast<double>(raw_size) * options_.compression.max_ratio;
}

// ---------------------------------------------------------------------------------------------- Decoder

std::string_view to_string(DecodeErrc code) noexcept {
  switch (code) {
    case DecodeErrc::FrameTooSmall: return "frame too small";
    case DecodeErrc::FrameTooLarge: return "frame too large";
    case DecodeErrc::WrongIdentifier: return "wrong file identifier";
    case DecodeErrc::MissingVersion: return "missing schema version";
    case DecodeErrc::NewerMajor: return "newer schema major";
    case DecodeErrc::OlderMajor: return "older schema major";
    case DecodeErrc::Corrupt: return "corrupt frame";
    case DecodeErrc::LimitExceeded: return "limit exceeded";
    case DecodeErrc::NoBody: return "no body";
    case DecodeErrc::UnknownKind: return "unknown body kind";
    case DecodeErrc::BadPacking: return "bad packed body";
    case DecodeErrc::DecompressFailed: return "decompression failed";
  }
  return "unknown decode error";
}

std::string DecodeError::message() const { return std::string(to_string(code)) + ": " + detail; }

std::uint64_t DecodeStats::rejected_total() const noexcept {
  std::uint64_t n = 0;
  for (auto r : rejected) n += r;
  return n;
}

Decoder::Decoder(DecodeLimits limits) : limits_(limits) {
  // The FlatBuffers verifier asserts sizes below 2 GiB; keep the limit well inside.
  if (limits_.max_frame_bytes == 0 || limits_.max_frame_bytes >= (std::size_t{1} << 31)) {
    throw Error("DecodeLimits::max_frame_bytes must be within 1 B .. 2 GiB, got " +
                std::to_string(limits_.max_frame_bytes));
  }
  if (limits_.max_depth == 0 || limits_.max_tables == 0) {
    throw Error("DecodeLimits::max_depth and max_tables must be positive");
  }
}

Unexpected<DecodeError> Decoder::reject(DecodeErrc code, std::string detail) {
  ++stats_.rejected[static_cast<std::size_t>(code)];
  return unexpected(DecodeError{code, std::move(detail)});
}

// Tells a frame that breaks a limit from one that is corrupt: verify again with generous limits
// (still bounded, so that a hostile nesting cannot exhaust the stack).
std::string Decoder::verify_failure(const std::uint8_t* data, std::size_t size, bool payload) const {
  flatbuffers::Verifier::Options relaxed;
  relaxed.max_depth = 1024;
  relaxed.max_tables = std::numeric_limits<flatbuffers::uoffset_t>::max();
  flatbuffers::Verifier v(data, size, relaxed);
  const bool ok = payload ? v.VerifyBuffer<Payload>(nullptr) : v.VerifyBuffer<Envelope>(kFileIdentifier);
  if (ok) {
    return "nesting deeper than max_depth=" + std::to_string(limits_.max_depth) + " or more than max_tables=" +
           std::to_string(limits_.max_tables) + " tables";
  }
  return std::string(payload ? "packed body" : "frame") + " of " + std::to_string(size) +
         " bytes has an offset, length or union outside its bounds, or misaligned data";
}

Expected<Message, DecodeError> Decoder::decode(std::span<const std::uint8_t> frame) {
  if (frame.size() > limits_.max_frame_bytes) {
    return reject(DecodeErrc::FrameTooLarge, "frame is " + std::to_string(frame.size()) + " bytes; max_frame_bytes is " +
                                                 std::to_string(limits_.max_frame_bytes));
  }
  constexpr std::size_t kMinFrame = sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength;
  if (frame.size() < kMinFrame) {
    return reject(DecodeErrc::FrameTooSmall, "frame is " + std::to_string(frame.size()) + " bytes; at least " +
                                                 std::to_string(kMinFrame) + " are needed");
  }
  if (!flatbuffers::BufferHasIdentifier(frame.data(), kFileIdentifier)) {
    return reject(DecodeErrc::WrongIdentifier, "file identifier is '" + printable_identifier(frame.data() + 4) +
                                                   "', expected '" + kFileIdentifier + "'");
  }

  Message msg;
  const std::uint8_t* data = frame.data();
  if (reinterpret_cast<std::uintptr_t>(data) % alignof(std::uint64_t) != 0) {
    msg.frame_copy_.assign(frame.begin(), frame.end());
    data = msg.frame_copy_.data();
  }
  const std::size_t size = frame.size();

  flatbuffers::Verifier::Options opts;
  opts.max_depth = limits_.max_depth;
  opts.max_tables = limits_.max_tables;

  // The version is read before the whole frame is verified: a newer major may be laid out
  // differently, but Envelope field 0 is the version forever.
  {
    flatbuffers::Verifier v(data, size, opts);
    const auto root = v.VerifyOffset(0);
    const auto* table = root != 0 ? reinterpret_cast<const flatbuffers::Table*>(data + root) : nullptr;
    if (table == nullptr || !table->VerifyTableStart(v) ||
        !table->VerifyField<SchemaVersion>(v, Envelope::VT_VERSION, alignof(SchemaVersion))) {
      return reject(DecodeErrc::Corrupt, "the root table or its version field lies outside the frame");
    }
    const auto* version = table->GetStruct<const SchemaVersion*>(Envelope::VT_VERSION);
    if (version == nullptr) return reject(DecodeErrc::MissingVersion, "the envelope carries no schema version");
    const std::string theirs = version_string(version->major(), version->minor());
    const std::string ours = version_string(kSchemaMajor, kSchemaMinor);
    if (version->major() > kSchemaMajor) {
      return reject(DecodeErrc::NewerMajor, "frame is schema " + theirs + ", this decoder reads " + ours +
                                                ": upgrade the receiver");
    }
    if (version->major() < kSchemaMajor) {
      return reject(DecodeErrc::OlderMajor, "frame is schema " + theirs + ", this decoder reads " + ours +
                                                ": upgrade the sender");
    }
  }

  {
    flatbuffers::Verifier v(data, size, opts);
    if (!v.VerifyBuffer<Envelope>(kFileIdentifier)) {
      const std::string why = verify_failure(data, size, false);
      return reject(why.starts_with("nesting") ? DecodeErrc::LimitExceeded : DecodeErrc::Corrupt, why);
    }
  }
  msg.envelope_ = GetEnvelope(data);
  const Packed* packed = msg.envelope_->packed();
  const Body inline_kind = msg.envelope_->body_type();
  if ((inline_kind != Body::NONE) == (packed != nullptr)) {
    return reject(DecodeErrc::NoBody, packed != nullptr ? "both an inline and a packed body are set"
                                                        : "neither an inline nor a packed body is set");
  }

  if (packed == nullptr) {
    msg.kind_ = inline_kind;
    msg.body_ = msg.envelope_->body();
  } else {
    msg.packed_ = true;
    const std::uint32_t raw_size = packed->raw_size();
    const auto* bytes = packed->data();
    if (raw_size == 0 || raw_size > limits_.max_frame_bytes) {
      return reject(DecodeErrc::BadPacking, "raw_size " + std::to_string(raw_size) + " is outside 1.." +
                                                std::to_string(limits_.max_frame_bytes) + " (max_frame_bytes)");
    }
    if (bytes == nullptr) return reject(DecodeErrc::BadPacking, "packed body has no data");
    msg.payload_.resize(raw_size);
    switch (packed->codec()) {
      case Codec::NONE:
        if (bytes->size() != raw_size) {
          return reject(DecodeErrc::BadPacking, "uncompressed packed body is " + std::to_string(bytes->size()) +
                                                    " bytes, raw_size says " + std::to_string(raw_size));
        }
        std::memcpy(msg.payload_.data(), bytes->data(), raw_size);
        break;
      case Codec::ZSTD:
        if (auto err = zstd_.decompress({bytes->data(), bytes->size()}, msg.payload_); !err.empty()) {
          return reject(DecodeErrc::DecompressFailed, err);
        }
        break;
      default:
        return reject(DecodeErrc::BadPacking,
                      "unknown codec " + std::to_string(static_cast<unsigned>(packed->codec())));
    }
    switch (packed->transform()) {
      case Transform::NONE: break;
      case Transform::XOR_SHUFFLE: {
        const std::uint64_t stride = packed->transform_stride();
        const std::uint64_t count = packed->transform_count();
        const std::uint64_t offset = packed->transform_offset();
        const std::uint64_t lag = packed->transform_lag();
        if (stride == 0 || count == 0 || lag == 0 || lag > count || offset + stride * count > raw_size) {
          return reject(DecodeErrc::BadPacking,
                        "transform region offset=" + std::to_string(offset) + " stride=" + std::to_string(stride) +
                            " count=" + std::to_string(count) + " lag=" + std::to_string(lag) +
                            " does not fit a body of " + std::to_string(raw_size) + " bytes");
        }
        std::uint8_t* region = msg.payload_.data() + offset;
        scratch_.assign(region, region + stride * count);
        xor_unshuffle(scratch_.data(), region, stride, count, lag);
        break;
      }
      default:
        return reject(DecodeErrc::BadPacking,
                      "unknown transform " + std::to_string(static_cast<unsigned>(packed->transform())));
    }
    flatbuffers::Verifier v(msg.payload_.data(), raw_size, opts);
    if (!v.VerifyBuffer<Payload>(nullptr)) {
      const std::string why = verify_failure(msg.payload_.data(), raw_size, true);
      return reject(why.starts_with("nesting") ? DecodeErrc::LimitExceeded : DecodeErrc::Corrupt, why);
    }
    const auto* payload = flatbuffers::GetRoot<Payload>(msg.payload_.data());
    msg.kind_ = payload->body_type();
    msg.body_ = payload->body();
    if (msg.kind_ == Body::NONE) return reject(DecodeErrc::NoBody, "the packed body is empty");
    if (static_cast<std::uint8_t>(msg.kind_) != packed->kind()) {
      return reject(DecodeErrc::BadPacking, "packed kind " + std::to_string(packed->kind()) +
                                                " differs from the body inside (" +
                                                std::to_string(static_cast<unsigned>(msg.kind_)) + ")");
    }
  }

  if (msg.kind_ > Body::MAX) {
    const auto* v = msg.envelope_->version();
    return reject(DecodeErrc::UnknownKind, "body kind " + std::to_string(static_cast<unsigned>(msg.kind_)) +
                                               " is not known to schema " + version_string(kSchemaMajor, kSchemaMinor) +
                                               " (frame is schema " + version_string(v->major(), v->minor()) + ")");
  }
  if (msg.body_ == nullptr) {
    return reject(DecodeErrc::NoBody, "body kind " + std::to_string(static_cast<unsigned>(msg.kind_)) +
                                          " is set but the body itself is missing");
  }
  if (!unions_complete(msg.kind_, msg.body_)) {
    return reject(DecodeErrc::NoBody, "a command or event inside the body names a kind but carries no value");
  }
  {
    Referenced referenced;
    referenced.add(msg.kind_, msg.body_);
    if (referenced.bytes() > limits_.max_frame_bytes) {
      return reject(DecodeErrc::LimitExceeded,
                    "the body references " + std::to_string(referenced.bytes()) +
                        " bytes of strings and vectors counted per reference, more than max_frame_bytes (" +
                        std::to_string(limits_.max_frame_bytes) + "): objects shared to amplify the unpacked size");
    }
  }
  if (const auto* batch = msg.body<TelemetryBatch>()) {
    // The verifier checks a vector of structs for 4-byte alignment only, but SeedMetrics and
    // LayerMetrics hold 8-byte fields: reading records at 4 mod 8 is undefined behaviour (found by
    // tests/fuzz, corpus/envelope/crash-373ddc...). The frame and a packed payload start 8-aligned.
    if (!aligned_structs(batch->seeds()) || !aligned_structs(batch->layers())) {
      return reject(DecodeErrc::Corrupt, std::string("telemetry batch: the ") +
                                             (aligned_structs(batch->seeds()) ? "layers" : "seeds") +
                                             " records are not aligned to 8 bytes");
    }
    const std::uint64_t records = (batch->seeds() ? batch->seeds()->size() : 0u) +
                                  (batch->layers() ? batch->layers()->size() : 0u);
    if (records > limits_.max_records_per_batch) {
      return reject(DecodeErrc::LimitExceeded, "telemetry batch holds " + std::to_string(records) +
                                                   " records; max_records_per_batch is " +
                                                   std::to_string(limits_.max_records_per_batch));
    }
  }
  ++stats_.accepted;
  return msg;
}

}  // namespace esper::wire
