// What the hostile-input tests build values from: an enum value no schema names, the float values
// no metric should hold, and an object-API value packed to the bytes a receiver reads.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <limits>

namespace esper::testing {

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
inline constexpr float kInf = std::numeric_limits<float>::infinity();

// An enum holding `v`, named by its schema or not (state 200, a status of 8, ...).
template <class E>
constexpr E bad(int v) {
  return static_cast<E>(v);
}

// Owns the bytes an object-API value is packed into; get() reads it as the wire sees it.
template <class T>
struct Packed {
  flatbuffers::FlatBufferBuilder fbb;
  template <class Obj>
  explicit Packed(const Obj& obj) {
    fbb.Finish(T::Pack(fbb, &obj));
  }
  const T& get() const { return *flatbuffers::GetRoot<T>(fbb.GetBufferPointer()); }
};

}  // namespace esper::testing
