// Range checks at the boundary (docs/hostile-input.md). The Decoder proves that a frame is
// well-formed FlatBuffers; it does not prove that the values in it are sane. A SeedState of 200, a
// seed index past its layer or a layer this receiver does not host verify fine and would index
// past an array, create phantom seeds, or steer a policy. Every consumer runs the check for the
// message kind it uses, once, before it uses any value, and treats a problem as a counted, logged
// reject — never as a value to act on.
//
// check() returns the first problem as "field: why", naming the field the way the schema does
// (`seeds[3].state: 200 is not a SeedState (0..10)`), or nothing when every value is in range.
// What is checked, per kind:
//  - enum fields: the value is one this schema version knows (an enum value a newer minor appends
//    must be understood before it can be acted on);
//  - layer ids below Bounds::layers and, when the receiver says what it hosts, one of its layers;
//    seed ids below the layer's seed count (Bounds::hosted) or Bounds::seeds; ranks in
//    [-1 or 0, Bounds::ranks); steps and counts at most Bounds::steps / Bounds::counts; strings at
//    most Bounds::text bytes; lists at most as long as the ids they may hold;
//  - telemetry metrics where a consumer decides on them: losses NaN (unknown) or >= 0 (+inf is a
//    diverged loss: a signal, not a lie), alpha and health NaN or within [0, 1], a layer's
//    throughput NaN or finite >= 0.
// A command's seed ids are not bounded here (a rank answers an id past its layer `no_such_seed`,
// and ranges are clipped to the layer): the rank program checks layers and seeds itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>

#include "fbs/envelope_generated.h"

namespace esper::wire {

class Message;

inline constexpr std::uint32_t kMaxLayers = 4096;            // layer ids 0 .. 4095 (esper run: at most 64)
inline constexpr std::uint32_t kMaxSeedsPerLayer = 1u << 16;  // seed ids 0 .. 65535 (esper run --chunks)
inline constexpr std::int32_t kMaxRanks = 1 << 20;           // rank ids 0 .. 2^20 - 1
inline constexpr std::uint64_t kMaxStep = (1ull << 53) - 1;   // exact as a double, as steps are shown
inline constexpr std::uint64_t kMaxCount = (1ull << 53) - 1;  // records dropped and other counts
inline constexpr std::size_t kMaxText = 64 * 1024;            // bytes in one string field

// What a receiver accepts. The defaults are sane bounds for any esper job; a receiver that knows
// the job's shape narrows them with `hosted`.
struct Bounds {
  std::uint32_t layers = kMaxLayers;        // a layer id must be below this
  std::uint32_t seeds = kMaxSeedsPerLayer;  // a seed id must be below this (unless `hosted` says less)
  std::int32_t ranks = kMaxRanks;           // a rank id must be below this
  std::uint64_t steps = kMaxStep;
  std::uint64_t counts = kMaxCount;
  std::size_t text = kMaxText;
  // The layers this receiver hosts or watches, each with its number of seeds (0: not known). Empty:
  // any layer below `layers`. A seed-carrying message for another layer is rejected.
  std::map<std::uint32_t, std::uint32_t> hosted;

  // Layers 0 .. layers-1 of `seeds` seeds each (0 seeds: not known), as `esper run --layers
  // --chunks` lays a job out.
  [[nodiscard]] static Bounds job(std::uint32_t layers, std::uint32_t seeds);
  // The seed count a seed id of `layer` must stay below.
  [[nodiscard]] std::uint32_t seeds_in(std::uint32_t layer) const;
  bool operator==(const Bounds&) const = default;
};

// The first problem, "field: why"; nothing when the values are sane.
using Problem = std::optional<std::string>;

[[nodiscard]] Problem check(const TelemetryBatch& batch, const Bounds& bounds = {});
[[nodiscard]] Problem check(const Event& event, const Bounds& bounds = {});
[[nodiscard]] Problem check(const StateSnapshot& snapshot, const Bounds& bounds = {});
// Pieces of a snapshot, for a receiver that keeps what is sane and skips the rest: one layer with
// its seeds; a layer's own fields (id, rank, step); one seed of `layer`.
[[nodiscard]] Problem check(const LayerState& layer, const Bounds& bounds = {});
[[nodiscard]] Problem check_fields(const LayerState& layer, const Bounds& bounds = {});
[[nodiscard]] Problem check(const SeedStatus& seed, std::uint32_t layer, const Bounds& bounds = {});
[[nodiscard]] Problem check(const CommandResult& result, const Bounds& bounds = {});
[[nodiscard]] Problem check(const Command& command, const Bounds& bounds = {});
[[nodiscard]] Problem check(const RouteTable& table, const Bounds& bounds = {});
[[nodiscard]] Problem check(const Heartbeat& heartbeat, const Bounds& bounds = {});
[[nodiscard]] Problem check(const CommandDispatch& dispatch, const Bounds& bounds = {});
// A (layer, seed) pair and a state kept outside a message (a JobState's entries, a command's
// outcome): "layer: ...", "seed: ...", "state: ...".
[[nodiscard]] Problem check_seed(std::uint32_t layer, std::uint32_t seed, SeedState state, const Bounds& bounds = {});
// The envelope's own fields: priority, the source's role, rank and strings.
[[nodiscard]] Problem check_envelope(const Envelope& envelope, const Bounds& bounds = {});
// The envelope, then the body by its kind ("source.rank: ...", "body.seeds[0].state: ...").
[[nodiscard]] Problem check(const Message& message, const Bounds& bounds = {});

// True when `value` is one of the enum's values in this schema version.
template <class E>
[[nodiscard]] constexpr bool is_known(E value) noexcept {
  using U = std::underlying_type_t<E>;
  const U v = static_cast<U>(value), lo = static_cast<U>(E::MIN), hi = static_cast<U>(E::MAX);
  if constexpr (std::is_unsigned_v<U>) {
    return static_cast<U>(v - lo) <= static_cast<U>(hi - lo);  // one comparison: no "always true" for MIN = 0
  } else {
    return v >= lo && v <= hi;
  }
}

// The index of a wire enum value in a table with one entry per value (std::array<T, MAX + 1>), or
// nothing for a value this schema does not know. For arrays indexed by a value that came from the
// wire, so that a value past the table never indexes it, checked or not.
template <class E>
[[nodiscard]] constexpr std::optional<std::size_t> index_of_checked(E value) noexcept {
  using U = std::underlying_type_t<E>;
  if (!is_known(value)) return std::nullopt;
  return static_cast<std::size_t>(static_cast<U>(static_cast<U>(value) - static_cast<U>(E::MIN)));
}

// A priority's index, LOW 0 .. CRITICAL 3, for queues and orderings; an unknown priority counts as
// NORMAL (its check rejects it where that matters).
[[nodiscard]] constexpr std::size_t priority_index(Priority p) noexcept {
  return index_of_checked(p).value_or(static_cast<std::size_t>(Priority::NORMAL));
}

// The field a problem names, with list indices dropped: "seeds[3].state: 200 ..." -> "seeds[].state".
[[nodiscard]] std::string field_of(std::string_view problem);

// Decides which rejects to log, so that a flood of bad frames costs a counter, not a log line
// each: the first reject of every field is logged, later ones of that field at most once per
// `interval`, with how many were not logged since. Not thread-safe: one per receiving thread.
class RejectThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RejectThrottle(std::chrono::milliseconds interval = std::chrono::seconds(10)) : interval_(interval) {}

  // Counts a reject of `problem`'s field (of a message of `kind`: fields of different kinds are
  // apart); true when it is to be logged now. `suppressed` is then set to the rejects of that field
  // not logged since its previous log line.
  bool should_log(std::string_view kind, std::string_view problem, std::uint64_t& suppressed,
                  Clock::time_point now = Clock::now());
  bool should_log(std::string_view problem, std::uint64_t& suppressed, Clock::time_point now = Clock::now()) {
    return should_log({}, problem, suppressed, now);
  }
  [[nodiscard]] std::uint64_t total() const noexcept { return total_; }

 private:
  struct Field {
    Clock::time_point logged{};
    std::uint64_t suppressed = 0;
  };
  static constexpr std::size_t kMaxFields = 256;  // fields remembered; past that, rejects are counted only
  std::chrono::milliseconds interval_;
  std::unordered_map<std::string, Field> fields_;
  std::uint64_t total_ = 0;
  std::uint64_t overflow_ = 0;  // rejects of fields past kMaxFields
};

}  // namespace esper::wire
