// Every way a frame can be bad is rejected with its own error code and a message that says what
// is wrong; the decoder counts each rejection and keeps working.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <cctype>

#include "wire/builders.hpp"
#include "wire/codec.hpp"

namespace esper::wire {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes encoded(const HeartbeatT& hb, EncodeOptions opts = {}) {
  Encoder enc({}, opts);
  const auto f = enc.encode(Header{}, hb);
  return {f.begin(), f.end()};
}

// A hand-built envelope, for frames the Encoder would never produce.
struct Handmade {
  const SchemaVersion* version = nullptr;
  bool with_body = true;
  std::function<flatbuffers::Offset<Packed>(flatbuffers::FlatBufferBuilder&)> packed;

  Bytes build() const {
    flatbuffers::FlatBufferBuilder fbb;
    HeartbeatT hb;
    hb.step = 5;
    const auto body = with_body ? Heartbeat::Pack(fbb, &hb).Union() : 0;
    const auto p = packed ? packed(fbb) : 0;
    fbb.Finish(CreateEnvelope(fbb, version, nullptr, nullptr, 0, Priority::NORMAL, 0, 0, 0, 0, nullptr,
                              with_body ? Body::Heartbeat : Body::NONE, body, p),
               kFileIdentifier);
    return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
  }
};

const SchemaVersion kCurrent(kSchemaMajor, kSchemaMinor);

DecodeError expect_rejected(Decoder& dec, const Bytes& frame, DecodeErrc code) {
  auto msg = dec.decode(frame);
  EXPECT_FALSE(msg.has_value());
  if (msg) return {};
  EXPECT_EQ(msg.error().code, code) << msg.error().message();
  EXPECT_FALSE(msg.error().detail.empty());
  return msg.error();
}

TEST(DecodeErrors, TruncatedFrameIsRejected) {
  Decoder dec;
  const auto frame = encoded(heartbeat(1, 100, 2, 3, 4, {1, 2, 3, 4, 5, 6, 7, 8}));
  for (std::size_t len = 0; len < frame.size(); ++len) {
    const Bytes cut(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(len));
    auto msg = dec.decode(cut);
    ASSERT_FALSE(msg.has_value()) << "a frame cut to " << len << " of " << frame.size() << " bytes was accepted";
    const auto code = msg.error().code;
    EXPECT_TRUE(code == DecodeErrc::FrameTooSmall || code == DecodeErrc::Corrupt) << msg.error().message();
  }
  EXPECT_EQ(dec.stats().rejected_total(), frame.size());
  EXPECT_TRUE(dec.decode(frame)) << "the decoder must keep working after rejections";
}

TEST(DecodeErrors, TooSmallFrameSaysHowManyBytesAreNeeded) {
  Decoder dec;
  const auto err = expect_rejected(dec, Bytes{1, 2, 3}, DecodeErrc::FrameTooSmall);
  EXPECT_NE(err.message().find("3 bytes"), std::string::npos) << err.message();
}

TEST(DecodeErrors, OversizedFrameIsRejectedBeforeParsing) {
  Decoder dec(DecodeLimits{.max_frame_bytes = 64});
  const auto frame = encoded(heartbeat(1, 100, 2, 3, 4, std::vector<std::uint32_t>(64, 7)));
  const auto err = expect_rejected(dec, frame, DecodeErrc::FrameTooLarge);
  EXPECT_NE(err.detail.find("max_frame_bytes is 64"), std::string::npos) << err.message();
  EXPECT_EQ(dec.stats().rejected[static_cast<std::size_t>(DecodeErrc::FrameTooLarge)], 1u);
}

TEST(DecodeErrors, WrongIdentifierNamesWhatWasFound) {
  Decoder dec;
  auto frame = encoded(heartbeat(1, 100, 2, 3, 4, {}));
  std::memcpy(frame.data() + 4, "ABC\x01", 4);
  const auto err = expect_rejected(dec, frame, DecodeErrc::WrongIdentifier);
  EXPECT_NE(err.detail.find("'ABC\\x01'"), std::string::npos) << err.message();
  EXPECT_NE(err.detail.find("ESPR"), std::string::npos) << err.message();
}

TEST(DecodeErrors, FlippedRootOffsetIsCorrupt) {
  Decoder dec;
  auto frame = encoded(heartbeat(1, 100, 2, 3, 4, {}));
  frame[2] ^= 0x40;  // root offset now points far outside the frame
  expect_rejected(dec, frame, DecodeErrc::Corrupt);
}

TEST(DecodeErrors, FlippedVectorLengthIsCorrupt) {
  Decoder dec;
  const auto hb = heartbeat(1, 100, 2, 3, 4, {11, 22, 33});
  auto frame = encoded(hb);
  // Find the layers vector (length 3 followed by 11, 22, 33) and claim it is much longer.
  const std::uint8_t pattern[] = {3, 0, 0, 0, 11, 0, 0, 0, 22, 0, 0, 0};
  auto it = std::search(frame.begin(), frame.end(), std::begin(pattern), std::end(pattern));
  ASSERT_NE(it, frame.end());
  it[2] = 0x7f;
  const auto err = expect_rejected(dec, frame, DecodeErrc::Corrupt);
  EXPECT_NE(err.detail.find("outside its bounds"), std::string::npos) << err.message();
}

TEST(DecodeErrors, NewerMajorIsRejectedNamingBothVersions) {
  Decoder dec;
  const SchemaVersion v(kSchemaMajor + 1, 3);
  const auto err = expect_rejected(dec, Handmade{&v}.build(), DecodeErrc::NewerMajor);
  EXPECT_NE(err.detail.find(std::to_string(kSchemaMajor + 1) + ".3"), std::string::npos) << err.message();
  EXPECT_NE(err.detail.find(std::to_string(kSchemaMajor) + "." + std::to_string(kSchemaMinor)), std::string::npos)
      << err.message();
}

TEST(DecodeErrors, NewerMajorIsReportedEvenWhenTheRestIsUnreadable) {
  Decoder dec;
  const SchemaVersion v(kSchemaMajor + 1, 0);
  auto frame = Handmade{&v}.build();
  // Corrupt the body region (past the version): a newer major may lay it out differently.
  frame[frame.size() - 4] ^= 0xff;
  frame[frame.size() - 3] ^= 0xff;
  expect_rejected(dec, frame, DecodeErrc::NewerMajor);
}

TEST(DecodeErrors, OlderMajorIsRejected) {
  Decoder dec;
  const SchemaVersion v(kSchemaMajor - 1, 9);
  expect_rejected(dec, Handmade{&v}.build(), DecodeErrc::OlderMajor);
}

TEST(DecodeErrors, MissingVersionIsRejected) {
  Decoder dec;
  expect_rejected(dec, Handmade{nullptr}.build(), DecodeErrc::MissingVersion);
}

TEST(DecodeErrors, FrameNeedsExactlyOneBody) {
  Decoder dec;
  expect_rejected(dec, Handmade{&kCurrent, false}.build(), DecodeErrc::NoBody);
  Handmade both{&kCurrent, true, [](flatbuffers::FlatBufferBuilder& fbb) {
                  const std::uint8_t data[] = {1, 2, 3};
                  return CreatePacked(fbb, Codec::NONE, 5, 3, Transform::NONE, 0, 0, 0, 0,
                                      fbb.CreateVector(data, 3));
                }};
  const auto err = expect_rejected(dec, both.build(), DecodeErrc::NoBody);
  EXPECT_NE(err.detail.find("both"), std::string::npos);
}

Bytes envelope_around(Body kind, const std::function<flatbuffers::Offset<void>(flatbuffers::FlatBufferBuilder&)>& body) {
  flatbuffers::FlatBufferBuilder fbb;
  const auto b = body(fbb);
  fbb.Finish(CreateEnvelope(fbb, &kCurrent, nullptr, nullptr, 0, Priority::NORMAL, 0, 0, 0, 0, nullptr, kind, b, 0),
             kFileIdentifier);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

TEST(DecodeErrors, UnionKindWithoutValueIsRejected) {
  Decoder dec;
  // Top level: kind Heartbeat, no heartbeat.
  expect_rejected(dec, envelope_around(Body::Heartbeat, [](auto&) { return flatbuffers::Offset<void>(); }),
                  DecodeErrc::NoBody);
  // A command naming TransitionSeeds without one, directly and inside a batch.
  const auto empty_command = [](flatbuffers::FlatBufferBuilder& fbb) {
    return CreateCommand(fbb, nullptr, 5000, -1, 0, CommandBody::TransitionSeeds, 0);
  };
  expect_rejected(dec, envelope_around(Body::Command, [&](auto& fbb) { return empty_command(fbb).Union(); }),
                  DecodeErrc::NoBody);
  const auto in_batch = [&](flatbuffers::FlatBufferBuilder& fbb) {
    const auto inner = empty_command(fbb);
    const auto b = CreateBatchCommand(fbb, false, false, fbb.CreateVector(&inner, 1));
    return CreateCommand(fbb, nullptr, 5000, -1, 0, CommandBody::BatchCommand, b.Union()).Union();
  };
  expect_rejected(dec, envelope_around(Body::Command, in_batch), DecodeErrc::NoBody);
  // An event naming a kind without a value.
  expect_rejected(dec, envelope_around(Body::Event, [](auto& fbb) {
                    return CreateEvent(fbb, 0, 0, EventBody::RankLost, 0).Union();
                  }),
                  DecodeErrc::NoBody);
}

Bytes packed_frame(Codec codec, std::uint32_t raw_size, const Bytes& data, Transform t = Transform::NONE,
                   std::uint32_t off = 0, std::uint32_t stride = 0, std::uint32_t count = 0, std::uint32_t lag = 0) {
  return Handmade{&kCurrent, false, [&](flatbuffers::FlatBufferBuilder& fbb) {
                    return CreatePacked(fbb, codec, static_cast<std::uint8_t>(Body::Heartbeat), raw_size, t, off,
                                        stride, count, lag, fbb.CreateVector(data));
                  }}
      .build();
}

// A real compressed heartbeat payload, to tamper with.
struct PackedHeartbeat {
  Bytes payload;     // Payload buffer
  Bytes compressed;  // zstd of it
  PackedHeartbeat() {
    flatbuffers::FlatBufferBuilder fbb;
    const auto hb = heartbeat(1, 2, 3, 4, 5, std::vector<std::uint32_t>(100, 9));
    fbb.Finish(CreatePayload(fbb, Body::Heartbeat, Heartbeat::Pack(fbb, &hb).Union()));
    payload.assign(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    ZstdCompressor z;
    z.compress(payload, compressed);
  }
};

TEST(DecodeErrors, HandmadePackedFramesDecodeWhenConsistent) {
  Decoder dec;
  const PackedHeartbeat p;
  auto zstd = dec.decode(packed_frame(Codec::ZSTD, static_cast<std::uint32_t>(p.payload.size()), p.compressed));
  ASSERT_TRUE(zstd) << zstd.error().message();
  EXPECT_EQ(zstd->body<Heartbeat>()->layers()->size(), 100u);
  auto plain = dec.decode(packed_frame(Codec::NONE, static_cast<std::uint32_t>(p.payload.size()), p.payload));
  ASSERT_TRUE(plain) << plain.error().message();
  EXPECT_TRUE(plain->was_packed());
}

TEST(DecodeErrors, CorruptCompressedBodyFailsToDecompress) {
  Decoder dec;
  PackedHeartbeat p;
  for (std::size_t i = 0; i < p.compressed.size(); i += 3) p.compressed[i] ^= 0x5a;
  expect_rejected(dec, packed_frame(Codec::ZSTD, static_cast<std::uint32_t>(p.payload.size()), p.compressed),
                  DecodeErrc::DecompressFailed);
}

TEST(DecodeErrors, WrongRawSizeIsCaught) {
  Decoder dec;
  const PackedHeartbeat p;
  const auto n = static_cast<std::uint32_t>(p.payload.size());
  expect_rejected(dec, packed_frame(Codec::ZSTD, n - 1, p.compressed), DecodeErrc::DecompressFailed);
  expect_rejected(dec, packed_frame(Codec::ZSTD, n + 1, p.compressed), DecodeErrc::DecompressFailed);
  expect_rejected(dec, packed_frame(Codec::NONE, n + 1, p.payload), DecodeErrc::BadPacking);
  expect_rejected(dec, packed_frame(Codec::ZSTD, 0, p.compressed), DecodeErrc::BadPacking);
  // A decompression bomb: the promised size is checked against the limit before allocating.
  const auto err = expect_rejected(dec, packed_frame(Codec::ZSTD, 1u << 30, p.compressed), DecodeErrc::BadPacking);
  EXPECT_NE(err.detail.find("max_frame_bytes"), std::string::npos) << err.message();
}

TEST(DecodeErrors, UnknownCodecAndTransformAreRejected) {
  Decoder dec;
  const PackedHeartbeat p;
  const auto n = static_cast<std::uint32_t>(p.payload.size());
  expect_rejected(dec, packed_frame(static_cast<Codec>(9), n, p.payload), DecodeErrc::BadPacking);
  expect_rejected(dec, packed_frame(Codec::NONE, n, p.payload, static_cast<Transform>(7)), DecodeErrc::BadPacking);
}

TEST(DecodeErrors, TransformRegionMustFitTheBody) {
  Decoder dec;
  const PackedHeartbeat p;
  const auto n = static_cast<std::uint32_t>(p.payload.size());
  expect_rejected(dec, packed_frame(Codec::NONE, n, p.payload, Transform::XOR_SHUFFLE, 8, 56, n, 1),
                  DecodeErrc::BadPacking);
  expect_rejected(dec, packed_frame(Codec::NONE, n, p.payload, Transform::XOR_SHUFFLE, 0, 4, 4, 0),
                  DecodeErrc::BadPacking);
  expect_rejected(dec, packed_frame(Codec::NONE, n, p.payload, Transform::XOR_SHUFFLE, 0, 4, 4, 5),
                  DecodeErrc::BadPacking);
  expect_rejected(dec, packed_frame(Codec::NONE, n, p.payload, Transform::XOR_SHUFFLE, 0xfffffff0u, 0xffff, 0xffff, 1),
                  DecodeErrc::BadPacking);
}

TEST(DecodeErrors, GarbageInsidePackedBodyIsCorrupt) {
  Decoder dec;
  const Bytes garbage(64, 0xee);
  const auto err = expect_rejected(dec, packed_frame(Codec::NONE, 64, garbage), DecodeErrc::Corrupt);
  EXPECT_NE(err.detail.find("packed body"), std::string::npos) << err.message();
}

TEST(DecodeErrors, PackedKindMustMatchTheBody) {
  Decoder dec;
  const PackedHeartbeat p;
  const auto frame = Handmade{&kCurrent, false, [&](flatbuffers::FlatBufferBuilder& fbb) {
                                return CreatePacked(fbb, Codec::NONE, static_cast<std::uint8_t>(Body::Command),
                                                    static_cast<std::uint32_t>(p.payload.size()), Transform::NONE, 0,
                                                    0, 0, 0, fbb.CreateVector(p.payload));
                              }}
                         .build();
  expect_rejected(dec, frame, DecodeErrc::BadPacking);
}

TEST(DecodeErrors, NestingDeeperThanTheLimitIsRejected) {
  CommandT cmd = shutdown(to_all(), "innermost");
  for (int i = 0; i < 20; ++i) {
    std::vector<CommandT> one;
    one.push_back(std::move(cmd));
    cmd = batch(to_all(), std::move(one), false, false);
  }
  Encoder enc;
  const auto f = enc.encode(Header{}, cmd);
  const Bytes frame(f.begin(), f.end());
  Decoder strict(DecodeLimits{.max_depth = 16});
  const auto err = expect_rejected(strict, frame, DecodeErrc::LimitExceeded);
  EXPECT_NE(err.detail.find("max_depth=16"), std::string::npos) << err.message();
  Decoder relaxed(DecodeLimits{.max_depth = 128});
  EXPECT_TRUE(relaxed.decode(frame));

  Decoder few_tables(DecodeLimits{.max_tables = 5});
  expect_rejected(few_tables, frame, DecodeErrc::LimitExceeded);
}

TEST(DecodeErrors, TooManyTelemetryRecordsAreRejected) {
  Encoder enc;
  std::vector<SeedMetrics> recs(11);
  const auto f = enc.encode_telemetry(Header{}, {}, recs);
  const Bytes frame(f.begin(), f.end());
  Decoder dec(DecodeLimits{.max_records_per_batch = 10});
  const auto err = expect_rejected(dec, frame, DecodeErrc::LimitExceeded);
  EXPECT_NE(err.detail.find("11 records"), std::string::npos) << err.message();
  Decoder enough(DecodeLimits{.max_records_per_batch = 11});
  EXPECT_TRUE(enough.decode(frame));
}

TEST(DecodeErrors, ValueOnAnErrorThrowsWithTheReason) {
  Decoder dec;
  auto msg = dec.decode(Bytes{0, 1});
  ASSERT_FALSE(msg);
  try {
    (void)msg.value();
    FAIL() << "value() on an error must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("frame too small"), std::string::npos) << e.what();
    // Faults carry host:file:line.
    const std::string what = e.what();
    const auto file = what.find("error.hpp:");
    ASSERT_NE(file, std::string::npos) << what;
    EXPECT_GT(file, 1u) << "a host name comes first: " << what;
    EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(what[file + 10]))) << what;
  }
}

TEST(DecodeErrors, InvalidLimitsAndOptionsFailLoudly) {
  EXPECT_THROW(Decoder(DecodeLimits{.max_frame_bytes = 0}), Error);
  EXPECT_THROW(Decoder(DecodeLimits{.max_frame_bytes = std::size_t{1} << 31}), Error);
  EXPECT_THROW(Decoder(DecodeLimits{.max_depth = 0}), Error);
  EXPECT_THROW(Encoder({}, EncodeOptions{.telemetry = {.mantissa_bits = 24}}), Error);
  EXPECT_THROW(Encoder({}, EncodeOptions{.compression = {.max_ratio = 0.0}}), Error);
}

}  // namespace
}  // namespace esper::wire
