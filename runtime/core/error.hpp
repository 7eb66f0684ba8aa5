// esper's one error convention (docs/protocol.md, "Errors"):
//  - expected outcomes — a malformed frame from the network, a rejected transition, would-block —
//    are values: functions return Expected<T, E> and the caller decides;
//  - faults — a broken invariant, a failed system or library call — throw esper::Error, whose
//    message carries host:file:line so that at scale one knows which process failed.
#pragma once

#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace esper {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, std::source_location where = std::source_location::current());
};

template <class E>
struct Unexpected {
  E error;
};

template <class E>
Unexpected<std::decay_t<E>> unexpected(E&& e) {
  return {std::forward<E>(e)};
}

// A value or an error, in the spirit of C++23 std::expected (not available in C++20).
// E must provide `std::string message() const` so that value() on an error can say what it was.
template <class T, class E>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Expected(Unexpected<E> e) : v_(std::in_place_index<1>, std::move(e.error)) {}  // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { check(); return std::get<0>(v_); }
  const T& value() const& { check(); return std::get<0>(v_); }
  T&& value() && { check(); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Precondition: !has_value().
  const E& error() const& { return std::get<1>(v_); }

 private:
  void check() const {
    if (!has_value()) throw Error("Expected holds an error: " + std::get<1>(v_).message());
  }
  std::variant<T, E> v_;
};

}  // namespace esper
