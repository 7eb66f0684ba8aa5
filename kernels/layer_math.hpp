// Pieces both backends must compute identically: the parameter initialization stream and the
// element hash of the digest. The digest is Σ_i mix(tag, i, bits_i) mod 2^64, then mixed once more:
// order-independent, so a GPU can sum it with atomics and match the CPU bit for bit.
#pragma once

#include <cstdint>

#include "kernels/host_device.hpp"

namespace esper::kernels::detail {

ESPER_HOST_DEVICE constexpr std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Digest section tags.
enum DigestTag : std::uint64_t {
  kTagStates = 1, kTagAlphas, kTagW, kTagBias, kTagA, kTagB, kTagMomentW, kTagVarW, kTagMomentBias, kTagVarBias,
  kTagMomentA, kTagVarA, kTagMomentB, kTagVarB, kTagSeedSteps, kTagBaseSteps, kTagSeedRank, kTagSeedLearningRate
};

ESPER_HOST_DEVICE constexpr std::uint64_t digest_element(std::uint64_t tag, std::uint64_t index, std::uint64_t bits) {
  return splitmix64(splitmix64((tag << 48) ^ index) ^ bits);
}

// Init tensors: W and b share one stream per tensor; A_c is drawn per (chunk, generation).
enum InitStream : std::uint64_t { kInitW = 1, kInitBias = 2, kInitA = 3 };

// Uniform in [-scale, scale), a pure function of its arguments.
inline float init_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index, float scale) {
  const std::uint64_t h = splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ index);
  const float unit = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // 24 bits: exact in fp32
  return (2.0f * unit - 1.0f) * scale;
}

inline std::uint64_t seed_stream(int chunk, std::uint32_t generation) {
  return kInitA | (static_cast<std::uint64_t>(generation) << 8) | (static_cast<std::uint64_t>(chunk) << 32);
}

}  // namespace esper::kernels::detail
