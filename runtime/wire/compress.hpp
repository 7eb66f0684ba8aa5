// zstd contexts (RAII, reused across frames) and the reversible XOR-shuffle transform that makes
// arrays of fixed-size records compress well (docs/protocol.md, "Compression").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace esper::wire {

class ZstdCompressor {
 public:
  explicit ZstdCompressor(int level = 1);
  // Compresses `src` into `dst` (resized to fit). Throws esper::Error on a zstd fault.
  void compress(std::span<const std::uint8_t> src, std::vector<std::uint8_t>& dst);
  void set_level(int level) noexcept { level_ = level; }
  [[nodiscard]] int level() const noexcept { return level_; }

 private:
  struct Free {
    void operator()(ZSTD_CCtx_s* c) const noexcept;
  };
  std::unique_ptr<ZSTD_CCtx_s, Free> ctx_;
  int level_;
};

class ZstdDecompressor {
 public:
  ZstdDecompressor();
  // Decompresses `src` into exactly dst.size() bytes. Returns an empty string on success, else what
  // went wrong (corrupt input is an expected outcome at a network boundary, not a fault).
  [[nodiscard]] std::string decompress(std::span<const std::uint8_t> src, std::span<std::uint8_t> dst);

 private:
  struct Free {
    void operator()(ZSTD_DCtx_s* c) const noexcept;
  };
  std::unique_ptr<ZSTD_DCtx_s, Free> ctx_;
};

// `count` elements of `stride` bytes: element i is XORed with element i - lag (for i >= lag), then
// byte j of every element is stored together (column j at out[j * count]). in and out must not overlap.
void xor_shuffle(const std::uint8_t* in, std::uint8_t* out, std::size_t stride, std::size_t count,
                 std::size_t lag) noexcept;
// The inverse of xor_shuffle.
void xor_unshuffle(const std::uint8_t* in, std::uint8_t* out, std::size_t stride, std::size_t count,
                   std::size_t lag) noexcept;

// Rounds a float to `mantissa_bits` (0..23) bits of mantissa, to nearest; NaN and infinity are kept.
[[nodiscard]] float round_mantissa(float value, int mantissa_bits) noexcept;

}  // namespace esper::wire
