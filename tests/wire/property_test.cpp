// Property: any message of any kind, with any header, round-trips exactly, whatever the
// compression settings.
#include <gtest/gtest.h>

#include "wire/codec.hpp"
#include "wire/random_messages.hpp"

namespace esper::wire {
namespace {

using testing::RandomMessages;
using testing::unpack;

template <class T>
void check_round_trip(Encoder& enc, Decoder& dec, const Header& h, const T& obj, std::uint64_t iteration) {
  const auto f = enc.encode(h, obj);
  const std::vector<std::uint8_t> frame(f.begin(), f.end());
  auto msg = dec.decode(frame);
  ASSERT_TRUE(msg) << "iteration " << iteration << ": " << msg.error().message();
  const auto* body = msg->template body<typename T::TableType>();
  ASSERT_NE(body, nullptr) << "iteration " << iteration;
  ASSERT_EQ(unpack(body), obj) << "iteration " << iteration;
  const auto& e = msg->envelope();
  ASSERT_EQ(*e.msg_id(), h.msg_id);
  ASSERT_EQ(*e.correlation_id(), h.correlation_id);
  ASSERT_EQ(e.priority(), h.priority);
  ASSERT_EQ(e.sequence(), h.sequence);
  ASSERT_EQ(e.lamport(), h.lamport);
  ASSERT_EQ(e.timestamp_ns(), h.timestamp_ns);
  ASSERT_EQ(*e.trace(), h.trace);
  ASSERT_EQ(e.source()->job_id() ? e.source()->job_id()->str() : "", enc.source().job_id);
}

TEST(Property, RandomMessagesOfEveryKindRoundTrip) {
  RandomMessages rnd(20261127);
  std::uint64_t packed = 0, frames = 0;
  for (std::uint64_t i = 0; i < 3000; ++i) {
    const CompressionOptions c{rnd.coin(), rnd.u32(2048), 1 + static_cast<int>(rnd.u32(2)), 0.9};
    Encoder enc(rnd.source(), EncodeOptions{c, {rnd.coin(), 23}});
    Decoder dec;
    const Header h = rnd.header();
    switch (i % 6) {
      case 0: check_round_trip(enc, dec, h, rnd.command(), i); break;
      case 1: check_round_trip(enc, dec, h, rnd.result(), i); break;
      case 2: check_round_trip(enc, dec, h, rnd.telemetry(300), i); break;
      case 3: check_round_trip(enc, dec, h, rnd.event(), i); break;
      case 4: check_round_trip(enc, dec, h, rnd.heartbeat(), i); break;
      default: check_round_trip(enc, dec, h, rnd.snapshot(), i); break;
    }
    if (HasFatalFailure()) return;
    packed += enc.stats().compressed;
    frames += enc.stats().frames;
  }
  EXPECT_EQ(frames, 3000u);
  EXPECT_GT(packed, 100u) << "the run should exercise packed bodies too";
  EXPECT_LT(packed, frames) << "and inline ones";
}

}  // namespace
}  // namespace esper::wire
