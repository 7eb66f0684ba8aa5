#include "core/terminal_text.hpp"

#include <cstdint>

namespace esper {
namespace {

constexpr unsigned char kEsc = 0x1B;
constexpr unsigned char kBel = 0x07;

unsigned char at(std::string_view s, std::size_t i) { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0; }

// The length of the valid UTF-8 sequence at `i` and its code point, or 0 when the bytes there are
// not one (overlong forms and surrogates included).
std::size_t utf8(std::string_view s, std::size_t i, std::uint32_t& cp) {
  const unsigned char b = at(s, i);
  std::size_t n = 0;
  std::uint32_t min = 0;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
    cp = b & 0x1Fu;
    min = 0x80;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    cp = b & 0x0Fu;
    min = 0x800;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    cp = b & 0x07u;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const unsigned char c = at(s, i + k);
    if ((c & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (c & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// Where the control string (OSC, DCS, SOS, PM, APC) whose body starts at `i` ends: after its BEL
// or ST (ESC \, or C1 ST as a byte or as U+009C), or at the end of the text.
std::size_t skip_string(std::string_view s, std::size_t i) {
  while (i < s.size()) {
    const unsigned char b = at(s, i);
    if (b == kBel || b == 0x9C) return i + 1;
    if (b == kEsc && at(s, i + 1) == '\\') return i + 2;
    if (b == 0xC2 && at(s, i + 1) == 0x9C) return i + 2;
    ++i;
  }
  return i;
}

// Where the CSI sequence whose parameters start at `i` ends: parameter bytes, intermediate bytes,
// then one final byte. A byte that fits none of these ends it early (and is read as text).
std::size_t skip_csi(std::string_view s, std::size_t i) {
  while (i < s.size() && at(s, i) >= 0x30 && at(s, i) <= 0x3F) ++i;
  while (i < s.size() && at(s, i) >= 0x20 && at(s, i) <= 0x2F) ++i;
  if (i < s.size() && at(s, i) >= 0x40 && at(s, i) <= 0x7E) ++i;
  return i;
}

bool starts_string(unsigned char c1) { return c1 == 0x90 || c1 == 0x98 || c1 == 0x9D || c1 == 0x9E || c1 == 0x9F; }

}  // namespace

std::string terminal_safe(std::string_view s, Newlines newlines) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = at(s, i);
    if (b == kEsc) {
      const unsigned char next = at(s, i + 1);
      if (i + 1 >= s.size()) {
        i += 1;
      } else if (next == '[') {
        i = skip_csi(s, i + 2);
      } else if (next == ']' || next == 'P' || next == 'X' || next == '^' || next == '_') {
        i = skip_string(s, i + 2);
      } else if (next >= 0x20 && next <= 0x2F) {  // ESC ( B and the like: intermediates, then a final byte
        i += 2;
        while (i < s.size() && at(s, i) >= 0x20 && at(s, i) <= 0x2F) ++i;
        if (i < s.size() && at(s, i) >= 0x30 && at(s, i) <= 0x7E) ++i;
      } else if (next >= 0x30 && next <= 0x7E) {  // ESC 7, ESC c (reset), ESC M ...
        i += 2;
      } else {
        i += 1;  // a lone ESC: dropped, what follows is read as text
      }
      continue;
    }
    if (b < 0x20 || b == 0x7F) {
      if (b == '\t') {
        out += ' ';
      } else if (b == '\n' && newlines == Newlines::Keep) {
        out += '\n';
      } else {
        out += '?';
      }
      ++i;
      continue;
    }
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    std::uint32_t cp = 0;
    const std::size_t n = utf8(s, i, cp);
    if (n == 0) {  // not UTF-8; a raw C1 byte (0x80..0x9F) is one such
      out += '?';
      ++i;
      continue;
    }
    if (cp >= 0x80 && cp <= 0x9F) {  // C1 control as a code point: CSI and the strings as with ESC
      const auto c1 = static_cast<unsigned char>(cp);
      if (c1 == 0x9B) {
        i = skip_csi(s, i + n);
      } else if (starts_string(c1)) {
        i = skip_string(s, i + n);
      } else {
        out += '?';
        i += n;
      }
      continue;
    }
    if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069)) {
      out += '?';
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

}  // namespace esper
