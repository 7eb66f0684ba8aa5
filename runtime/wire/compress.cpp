#include "wire/compress.hpp"

#include <zstd.h>

#include <bit>
#include <cstring>

#include "core/error.hpp"

namespace esper::wire {

void ZstdCompressor::Free::operator()(ZSTD_CCtx_s* c) const noexcept { ZSTD_freeCCtx(c); }
void ZstdDecompressor::Free::operator()(ZSTD_DCtx_s* c) const noexcept { ZSTD_freeDCtx(c); }

ZstdCompressor::ZstdCompressor(int level) : ctx_(ZSTD_createCCtx()), level_(level) {
  if (!ctx_) throw Error("ZSTD_createCCtx failed (out of memory)");
}

void ZstdCompressor::compress(std::span<const std::uint8_t> src, std::vector<std::uint8_t>& dst) {
  dst.resize(ZSTD_compressBound(src.size()));
  const std::size_t n = ZSTD_compressCCtx(ctx_.get(), dst.data(), dst.size(), src.data(), src.size(), level_);
  if (ZSTD_isError(n)) throw Error(std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  dst.resize(n);
}

ZstdDecompressor::ZstdDecompressor() : ctx_(ZSTD_createDCtx()) {
  if (!ctx_) throw Error("ZSTD_createDCtx failed (out of memory)");
}

std::string ZstdDecompressor::decompress(std::span<const std::uint8_t> src, std::span<std::uint8_t> dst) {
  const std::size_t n = ZSTD_decompressDCtx(ctx_.get(), dst.data(), dst.size(), src.data(), src.size());
  if (ZSTD_isError(n)) return std::string("zstd: ") + ZSTD_getErrorName(n);
  if (n != dst.size()) {
    return "zstd: decompressed " + std::to_string(n) + " bytes, header promised " + std::to_string(dst.size());
  }
  return {};
}

void xor_shuffle(const std::uint8_t* in, std::uint8_t* out, std::size_t stride, std::size_t count,
                 std::size_t lag) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t* cur = in + i * stride;
    const std::uint8_t* prev = i >= lag ? in + (i - lag) * stride : nullptr;
    std::uint8_t* col = out + i;
    if (prev != nullptr) {
      for (std::size_t j = 0; j < stride; ++j) col[j * count] = static_cast<std::uint8_t>(cur[j] ^ prev[j]);
    } else {
      for (std::size_t j = 0; j < stride; ++j) col[j * count] = cur[j];
    }
  }
}

void xor_unshuffle(const std::uint8_t* in, std::uint8_t* out, std::size_t stride, std::size_t count,
                   std::size_t lag) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t* col = in + i;
    std::uint8_t* cur = out + i * stride;
    const std::uint8_t* prev = i >= lag ? out + (i - lag) * stride : nullptr;
    if (prev != nullptr) {
      for (std::size_t j = 0; j < stride; ++j) cur[j] = static_cast<std::uint8_t>(col[j * count] ^ prev[j]);
    } else {
      for (std::size_t j = 0; j < stride; ++j) cur[j] = col[j * count];
    }
  }
}

float round_mantissa(float value, int mantissa_bits) noexcept {
  if (mantissa_bits >= 23 || mantissa_bits < 0) return value;
  auto bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7f800000u) == 0x7f800000u) return value;  // NaN, infinity
  const int drop = 23 - mantissa_bits;
  const std::uint32_t half = 1u << (drop - 1);
  const std::uint32_t mask = ~((1u << drop) - 1u);
  const std::uint32_t rounded = (bits + half) & mask;
  // Rounding the largest finite values up would carry into the exponent and give infinity.
  if ((rounded & 0x7f800000u) == 0x7f800000u) return std::bit_cast<float>(bits & mask);
  return std::bit_cast<float>(rounded);
}

}  // namespace esper::wire
