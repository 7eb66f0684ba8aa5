// Little-endian integers in byte buffers, whatever the host: the fabric's meta and replay frames
// (docs/protocol.md) and the dead-letter store's record headers (docs/dead-letters.md).
#pragma once

#include <cstdint>

namespace esper::le {

// Writes the low `bytes` bytes of `v` at `p`, least significant first.
inline void put(std::uint8_t* p, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
// Reads `bytes` bytes at `p`, least significant first.
inline std::uint64_t get(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace esper::le
