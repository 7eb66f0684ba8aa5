// Compression: bodies at or above the threshold are packed only when it pays; telemetry survives
// the XOR-shuffle transform bit for bit; mantissa rounding stays within its stated precision.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "bench/telemetry_generator.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/random_messages.hpp"

namespace esper::wire {
namespace {

using testing::unpack;

HeartbeatT heartbeat_with(std::vector<std::uint32_t> layers) { return heartbeat(1, 2, 3, 4, 5, std::move(layers)); }

struct Encoded {
  std::vector<std::uint8_t> bytes;
  std::size_t body_bytes;
};

Encoded encode(Encoder& enc, const HeartbeatT& hb) {
  const auto before = enc.stats().body_bytes;
  const auto f = enc.encode(Header{}, hb);
  return {{f.begin(), f.end()}, enc.stats().body_bytes - before};
}

TEST(Compression, BodyBelowThresholdStaysInline) {
  Encoder enc({}, EncodeOptions{.compression = {.threshold_bytes = 1024}});
  Decoder dec;
  const auto e = encode(enc, heartbeat_with(std::vector<std::uint32_t>(64, 1)));  // ~300 B, very compressible
  ASSERT_LT(e.body_bytes, 1024u);
  auto msg = dec.decode(e.bytes);
  ASSERT_TRUE(msg);
  EXPECT_FALSE(msg->was_packed());
  EXPECT_EQ(enc.stats().compressed, 0u);
}

TEST(Compression, ThresholdIsInclusive) {
  // Find the body size of a message, then set the threshold exactly there and one above.
  const auto hb = heartbeat_with(std::vector<std::uint32_t>(400, 1));
  Encoder probe({}, EncodeOptions{.compression = {.enabled = false}});
  const auto body = encode(probe, hb).body_bytes;
  Encoder at({}, EncodeOptions{.compression = {.threshold_bytes = body}});
  Encoder above({}, EncodeOptions{.compression = {.threshold_bytes = body + 1}});
  Decoder dec;
  auto packed = dec.decode(encode(at, hb).bytes);
  auto inline_ = dec.decode(encode(above, hb).bytes);
  ASSERT_TRUE(packed && inline_);
  EXPECT_TRUE(packed->was_packed());
  EXPECT_FALSE(inline_->was_packed());
}

TEST(Compression, CompressibleBodyAboveThresholdIsPackedAndSmaller) {
  Encoder enc;
  Decoder dec;
  const auto hb = heartbeat_with(std::vector<std::uint32_t>(4096, 7));
  const auto e = encode(enc, hb);
  EXPECT_LT(e.bytes.size() * 10, e.body_bytes) << "16 KiB of one value should shrink at least 10x";
  auto msg = dec.decode(e.bytes);
  ASSERT_TRUE(msg) << msg.error().message();
  EXPECT_TRUE(msg->was_packed());
  EXPECT_EQ(unpack(msg->body<Heartbeat>()), hb);
  EXPECT_EQ(enc.stats().compressed, 1u);
}

TEST(Compression, IncompressibleBodyIsSentInline) {
  std::mt19937 rng(1);
  std::vector<std::uint32_t> noise(4096);
  for (auto& x : noise) x = static_cast<std::uint32_t>(rng());
  Encoder enc;
  Decoder dec;
  const auto hb = heartbeat_with(noise);
  const auto e = encode(enc, hb);
  auto msg = dec.decode(e.bytes);
  ASSERT_TRUE(msg) << msg.error().message();
  EXPECT_FALSE(msg->was_packed());
  EXPECT_EQ(unpack(msg->body<Heartbeat>()), hb);
  EXPECT_EQ(enc.stats().not_worth_it, 1u);
  EXPECT_EQ(enc.stats().compressed, 0u);
}

TEST(Compression, DisabledNeverPacks) {
  Encoder enc({}, EncodeOptions{.compression = {.enabled = false}});
  Decoder dec;
  auto msg = dec.decode(encode(enc, heartbeat_with(std::vector<std::uint32_t>(4096, 7))).bytes);
  ASSERT_TRUE(msg);
  EXPECT_FALSE(msg->was_packed());
}

class TelemetryTransform : public ::testing::TestWithParam<bool> {};

TEST_P(TelemetryTransform, IsLosslessForBothRecordOrders) {
  const bool seed_major = GetParam();
  bench::TelemetryGenerator gen(100);
  auto recs = gen.batch(1000);
  if (seed_major) {
    std::stable_sort(recs.begin(), recs.end(), [](const auto& a, const auto& b) { return a.seed() < b.seed(); });
  }
  Encoder shuffled({}, EncodeOptions{.telemetry = {.xor_shuffle = true}});
  Encoder plain({}, EncodeOptions{.telemetry = {.xor_shuffle = false}});
  Decoder dec;
  const TelemetryBatchInfo info{3, 1, 10, 20, 0};
  const auto f1 = shuffled.encode_telemetry(Header{}, info, recs);
  const std::vector<std::uint8_t> a(f1.begin(), f1.end());
  const auto f2 = plain.encode_telemetry(Header{}, info, recs);
  const std::vector<std::uint8_t> b(f2.begin(), f2.end());
  EXPECT_LT(a.size(), b.size()) << "the transform should help zstd on random-walk telemetry";

  auto msg = dec.decode(a);
  ASSERT_TRUE(msg) << msg.error().message();
  EXPECT_TRUE(msg->was_packed());
  const auto out = unpack(msg->body<TelemetryBatch>());
  ASSERT_EQ(out.seeds.size(), recs.size());
  for (std::size_t i = 0; i < recs.size(); ++i) ASSERT_EQ(out.seeds[i], recs[i]) << "record " << i;
}

INSTANTIATE_TEST_SUITE_P(Wire, TelemetryTransform, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "SeedMajor" : "StepMajor"; });

TEST(Compression, MantissaRoundingStaysWithinItsPrecision) {
  bench::TelemetryGenerator gen(50);
  const auto recs = gen.batch(500);
  for (int bits : {7, 10, 16}) {
    Encoder enc({}, EncodeOptions{.telemetry = {.mantissa_bits = bits}});
    Decoder dec;
    const auto f = enc.encode_telemetry(Header{}, {}, recs);
    const std::vector<std::uint8_t> bytes(f.begin(), f.end());
    auto msg = dec.decode(bytes);
    ASSERT_TRUE(msg) << msg.error().message();
    const auto out = unpack(msg->body<TelemetryBatch>());
    ASSERT_EQ(out.seeds.size(), recs.size());
    const double tol = std::ldexp(1.0, -bits);  // half an ulp of the kept mantissa, relative, with margin
    for (std::size_t i = 0; i < recs.size(); ++i) {
      const auto& x = recs[i];
      const auto& y = out.seeds[i];
      EXPECT_EQ(x.step(), y.step());
      EXPECT_EQ(x.seed(), y.seed());
      EXPECT_EQ(x.state(), y.state());
      EXPECT_LE(std::fabs(x.task_loss() - y.task_loss()), tol * std::fabs(x.task_loss())) << bits;
      EXPECT_LE(std::fabs(x.grad_norm() - y.grad_norm()), tol * std::fabs(x.grad_norm())) << bits;
      EXPECT_LE(std::fabs(x.activation_mean() - y.activation_mean()), tol * std::fabs(x.activation_mean())) << bits;
    }
  }
}

TEST(Compression, RoundMantissaKeepsSpecialValues) {
  EXPECT_TRUE(std::isnan(round_mantissa(NAN, 4)));
  EXPECT_EQ(round_mantissa(INFINITY, 4), INFINITY);
  EXPECT_EQ(round_mantissa(0.0f, 4), 0.0f);
  EXPECT_EQ(round_mantissa(1.0f, 0), 1.0f);
  EXPECT_EQ(round_mantissa(1.75f, 1), 2.0f);   // 1.11b rounds to 10.0b with one mantissa bit
  EXPECT_EQ(round_mantissa(1.25f, 1), 1.5f);   // ties round up (away from zero in magnitude)
  EXPECT_EQ(round_mantissa(0.3f, 23), 0.3f);
  EXPECT_TRUE(std::isfinite(round_mantissa(3.4028235e38f, 2))) << "must not round up into infinity";
}

TEST(Compression, XorShuffleInvertsForAnyLag) {
  std::mt19937 rng(3);
  for (std::size_t stride : {1u, 7u, 56u}) {
    for (std::size_t count : {1u, 2u, 13u}) {
      for (std::size_t lag = 1; lag <= count; ++lag) {
        std::vector<std::uint8_t> in(stride * count), mid(in.size()), out(in.size());
        for (auto& b : in) b = static_cast<std::uint8_t>(rng());
        xor_shuffle(in.data(), mid.data(), stride, count, lag);
        xor_unshuffle(mid.data(), out.data(), stride, count, lag);
        ASSERT_EQ(in, out) << stride << " " << count << " " << lag;
      }
    }
  }
}

}  // namespace
}  // namespace esper::wire
