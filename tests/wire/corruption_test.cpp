// 10,000 randomly corrupted frames of every kind: the decoder never crashes, never reads out of
// bounds (the asan preset runs this under AddressSanitizer and UBSan), and counts each rejection.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "wire/codec.hpp"
#include "wire/random_messages.hpp"

namespace esper::wire {
namespace {

using testing::RandomMessages;

void corrupt(RandomMessages& rnd, std::vector<std::uint8_t>& f) {
  const auto at = [&] { return static_cast<std::size_t>(rnd.u32(static_cast<std::uint32_t>(f.size() - 1))); };
  switch (rnd.u32(6)) {
    case 0:  // flip 1..8 bits
      for (std::uint32_t n = 1 + rnd.u32(7); n > 0; --n) f[at()] ^= static_cast<std::uint8_t>(1u << rnd.u32(7));
      break;
    case 1:  // overwrite a byte with a random value
      f[at()] = static_cast<std::uint8_t>(rnd.u32(255));
      break;
    case 2:  // truncate
      f.resize(at());
      break;
    case 3:  // overwrite a 4-byte word with an extreme offset or length
      if (f.size() >= 4) {
        const std::uint32_t vals[] = {0, 1, 0x7fffffff, 0xffffffff, static_cast<std::uint32_t>(f.size()),
                                      static_cast<std::uint32_t>(f.size() - 4)};
        const std::uint32_t v = vals[rnd.u32(5)];
        const std::size_t pos = at() & ~std::size_t{3};
        if (pos + 4 <= f.size()) std::memcpy(f.data() + pos, &v, 4);
      }
      break;
    case 4:  // append garbage
      for (std::uint32_t n = 1 + rnd.u32(64); n > 0; --n) f.push_back(static_cast<std::uint8_t>(rnd.u32(255)));
      break;
    case 5: {  // zero a run
      const std::size_t pos = at();
      std::fill_n(f.begin() + static_cast<std::ptrdiff_t>(pos), std::min<std::size_t>(rnd.u32(16), f.size() - pos), 0);
      break;
    }
    default:  // swap two bytes
      std::swap(f[at()], f[at()]);
      break;
  }
}

TEST(Corruption, TenThousandCorruptFramesNeverCrashTheDecoder) {
  RandomMessages rnd(77);
  Encoder small_threshold({}, EncodeOptions{.compression = {.threshold_bytes = 64}});
  Encoder inline_only({}, EncodeOptions{.compression = {.enabled = false}});
  Decoder dec;
  std::uint64_t accepted = 0, rejected = 0, packed_seen = 0;
  for (int i = 0; i < 10'000; ++i) {
    auto frame = rnd.any_frame(i % 2 == 0 ? small_threshold : inline_only);
    if (frame.empty()) continue;
    corrupt(rnd, frame);
    auto msg = dec.decode(frame);
    if (msg) {
      ++accepted;
      packed_seen += msg->was_packed() ? 1 : 0;
      testing::touch_everything(*msg);  // every field must be readable in bounds
    } else {
      ++rejected;
      EXPECT_FALSE(msg.error().detail.empty());
    }
  }
  EXPECT_EQ(accepted + rejected, 10'000u);
  EXPECT_EQ(dec.stats().accepted, accepted);
  EXPECT_EQ(dec.stats().rejected_total(), rejected);
  EXPECT_GT(rejected, 3'000u) << "most corruptions must be caught";
  EXPECT_GT(accepted, 100u) << "flips inside data bytes leave valid frames; the run must see both";
  EXPECT_GT(packed_seen, 0u);
}

}  // namespace
}  // namespace esper::wire
