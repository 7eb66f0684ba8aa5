// The eleven seed states and the transition table (docs/lifecycle.md), constexpr. What each state
// computes (α, evaluated, trains, trains in the shadow) is the seed-layer kernels' rule,
// kernels/seed_rules.hpp, included here: one definition for the lifecycle and the kernels.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <type_traits>

#include "fbs/common_generated.h"
#include "kernels/seed_rules.hpp"

namespace esper::lifecycle {

// One definition of the states: the wire enum (DORMANT = 0 .. ROLLED_BACK = 10).
using State = wire::SeedState;
static_assert(std::is_same_v<State, kernels::SeedState>, "the lifecycle and the kernels share one state type");

inline constexpr std::size_t kStateCount = 11;

inline constexpr std::array<State, kStateCount> kAllStates = {
    State::DORMANT,     State::GERMINATED, State::TRAINING, State::GRAFTING,  State::STABILIZATION, State::EVALUATING,
    State::FINE_TUNING, State::FOSSILIZED, State::CULLED,   State::CANCELLED, State::ROLLED_BACK};

[[nodiscard]] constexpr std::size_t index_of(State s) noexcept { return static_cast<std::size_t>(s); }

// False for a value that arrived from the wire outside DORMANT..ROLLED_BACK.
[[nodiscard]] constexpr bool is_valid(State s) noexcept { return index_of(s) < kStateCount; }

// index_of() for a table of kStateCount entries, or kStateCount (past every such table) for a
// state out of range: `if (i < kStateCount) table[i]`, so that no index derived from a state that
// came from the wire can reach past a table, whether or not the state was checked before.
[[nodiscard]] constexpr std::size_t index_of_checked(State s) noexcept { return is_valid(s) ? index_of(s) : kStateCount; }

// FOSSILIZED, CULLED, CANCELLED, ROLLED_BACK.
[[nodiscard]] constexpr bool is_terminal(State s) noexcept {
  return s == State::FOSSILIZED || s == State::CULLED || s == State::CANCELLED || s == State::ROLLED_BACK;
}

// "DORMANT", ...; "UNKNOWN" for an invalid value.
[[nodiscard]] constexpr std::string_view name(State s) noexcept {
  constexpr std::array<std::string_view, kStateCount> names = {
      "DORMANT",     "GERMINATED", "TRAINING", "GRAFTING",  "STABILIZATION", "EVALUATING",
      "FINE_TUNING", "FOSSILIZED", "CULLED",   "CANCELLED", "ROLLED_BACK"};
  return is_valid(s) ? names[index_of(s)] : std::string_view("UNKNOWN");
}

namespace detail {
constexpr std::uint16_t bit(State s) noexcept { return static_cast<std::uint16_t>(1U << index_of(s)); }
constexpr std::uint16_t bits(std::initializer_list<State> states) noexcept {
  std::uint16_t mask = 0;
  for (const State s : states) mask = static_cast<std::uint16_t>(mask | bit(s));
  return mask;
}
// Row = from, bit = to. docs/design.md §4.
inline constexpr std::array<std::uint16_t, kStateCount> kTable = {
    bits({State::GERMINATED}),                                      // DORMANT
    bits({State::TRAINING, State::CANCELLED}),                      // GERMINATED
    bits({State::GRAFTING, State::CULLED, State::CANCELLED}),       // TRAINING
    bits({State::STABILIZATION, State::ROLLED_BACK}),               // GRAFTING
    bits({State::EVALUATING, State::ROLLED_BACK}),                  // STABILIZATION
    bits({State::FINE_TUNING, State::CULLED, State::ROLLED_BACK}),  // EVALUATING
    bits({State::FOSSILIZED, State::CULLED, State::ROLLED_BACK}),   // FINE_TUNING
    0,                                                              // FOSSILIZED: forever
    bits({State::DORMANT}),                                         // CULLED: reset
    bits({State::DORMANT}),                                         // CANCELLED: reset
    bits({State::DORMANT}),                                         // ROLLED_BACK: reset
};
}  // namespace detail

// True when the table allows from -> to. Never true for from == to or an invalid state.
[[nodiscard]] constexpr bool is_transition(State from, State to) noexcept {
  return is_valid(from) && is_valid(to) && (detail::kTable[index_of(from)] & detail::bit(to)) != 0;
}

// The reset CULLED|CANCELLED|ROLLED_BACK -> DORMANT, which frees the slot for a new blueprint.
[[nodiscard]] constexpr bool is_reset(State from, State to) noexcept {
  return to == State::DORMANT && is_transition(from, to);
}

}  // namespace esper::lifecycle
