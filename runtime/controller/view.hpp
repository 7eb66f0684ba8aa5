// The controller's picture of a job (docs/design.md §7): which layers exist and which ranks hold them
// (from RankJoined announcements and telemetry), every seed's lifecycle state (from StateTransition
// events, the broker's snapshot and the outcomes of the controller's own commands) and its latest
// metrics (from telemetry).
//
// States come from three sources that lag differently, so each seed remembers the step its state
// was last set at: a telemetry record older than that does not overwrite it. Replicas publish the
// same records; whichever arrives first for a step wins, the rest agree.
//
// Selection is the query half of transition_population(): seeds of a layer filtered by state,
// metric bounds and failure count, worst chunk loss first, at most `limit`.
//
// Nothing from the wire is kept unchecked (wire/validate.hpp, against the view's Bounds): a batch
// or an event with a value out of range — a state past ROLLED_BACK, a seed past its layer, a layer
// the view does not watch, a negative loss — changes nothing and is counted (values_rejected())
// and logged; so is a snapshot entry or a command outcome out of range.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fabric/counters.hpp"
#include "fabric/job_state.hpp"
#include "fbs/envelope_generated.h"
#include "wire/validate.hpp"

namespace esper::controller {

inline constexpr std::size_t kStates = static_cast<std::size_t>(wire::SeedState::MAX) + 1;

[[nodiscard]] bool is_terminal(wire::SeedState s) noexcept;
// α > 0 from GRAFTING on: the seed contributes to the layer's output.
[[nodiscard]] bool contributes(wire::SeedState s) noexcept;
// GERMINATED or TRAINING: a seed grown in the shadow, which costs a second forward pass; policies
// cap how many there are at once.
[[nodiscard]] bool growing(wire::SeedState s) noexcept;

struct SeedView {
  wire::SeedState state = wire::SeedState::DORMANT;
  std::uint64_t state_step = 0;      // step at which `state` was set (event, outcome or telemetry)
  bool has_metrics = false;
  wire::SeedMetrics last{};          // the latest telemetry record
  // The chunk's loss while the seed did not contribute (α = 0): what "improvement" compares to.
  double baseline_loss = std::numeric_limits<double>::quiet_NaN();
  std::uint32_t failures = 0;        // times it entered CULLED, CANCELLED or ROLLED_BACK

  [[nodiscard]] double task_loss() const;    // NaN without metrics
  [[nodiscard]] double shadow_gain() const;  // (task − shadow) / task: how much better it would do at α = 1
  [[nodiscard]] double improvement() const;  // (baseline − task) / baseline: what it has brought
};

struct LayerView {
  std::uint32_t layer = 0;
  std::set<std::int32_t> ranks;
  std::map<std::uint32_t, SeedView> seeds;
  std::uint64_t step = 0;           // the latest step seen in its telemetry
  double loss = std::numeric_limits<double>::quiet_NaN();  // the latest layer-level loss, if published

  // Seeds per state, indexed by the state's value (a state out of range is counted nowhere).
  [[nodiscard]] std::array<std::uint32_t, kStates> counts() const;
  [[nodiscard]] double median_task_loss() const;  // over seeds with metrics; NaN if none
};

// Metrics a selection can bound.
enum class Metric : std::uint8_t { TaskLoss, ShadowLoss, ShadowGain, Improvement, Alpha, Health, GradNorm, StepsInState };
[[nodiscard]] const char* metric_name(Metric m) noexcept;
// NaN when unknown: no telemetry yet, or none since the seed's last transition.
[[nodiscard]] double metric_value(const SeedView& s, Metric m);

struct Bound {
  Metric metric;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
};

struct Selection {
  std::vector<wire::SeedState> from;  // empty: any state
  std::vector<Bound> bounds;          // all must hold; a NaN metric fails its bound
  std::uint32_t max_failures = std::numeric_limits<std::uint32_t>::max();
  std::size_t limit = 0;              // 0: no limit
  std::size_t batch_size = 0;         // seeds per command; 0: one command for all
  std::set<std::uint32_t> exclude;    // e.g. seeds with a command in flight
};

class PopulationView {
 public:
  // `bounds`: what the view accepts; wire::Bounds::job(layers, seeds) for a job of known shape.
  explicit PopulationView(wire::Bounds bounds = {});

  // Returns how many of the batch's records were new (a later step than the seed's last one);
  // their (layer, record) pairs are appended to `fresh` when given. Replicas' copies are not new.
  // A batch with a value out of range is rejected whole: 0.
  std::size_t on_telemetry(const wire::TelemetryBatch& batch,
                           std::vector<std::pair<std::uint32_t, wire::SeedMetrics>>* fresh = nullptr);
  // False when the event (or its source rank) was rejected.
  bool on_event(const wire::Event& event, std::int32_t source_rank);
  // Loads a late joiner's snapshot: the states it holds replace the ones known. Entries out of
  // range are skipped (and counted).
  void load(const fabric::JobState& state);
  // A command's outcome at step `step`: the seed is now in `state`. False (and counted) when the
  // layer, seed or state is out of range.
  bool set_state(std::uint32_t layer, std::uint32_t seed, wire::SeedState state, std::uint64_t step);

  [[nodiscard]] const wire::Bounds& bounds() const noexcept { return bounds_; }
  // Batches, events, snapshot entries and outcomes rejected for a value out of range.
  [[nodiscard]] std::uint64_t values_rejected() const noexcept { return values_rejected_; }

  [[nodiscard]] const std::map<std::uint32_t, LayerView>& layers() const noexcept { return layers_; }
  [[nodiscard]] const LayerView* layer(std::uint32_t id) const;
  [[nodiscard]] std::uint64_t step() const noexcept { return step_; }  // the latest step seen anywhere
  [[nodiscard]] std::uint64_t telemetry_records() const noexcept { return records_; }
  // Ranks that held a layer at some point, and those of them not reported lost since.
  [[nodiscard]] const std::set<std::int32_t>& ranks_seen() const noexcept { return ranks_seen_; }
  [[nodiscard]] std::set<std::int32_t> live_ranks() const;

  // The seeds of `layer` that `selection` picks, worst task loss first (seed id breaks ties).
  [[nodiscard]] std::vector<std::uint32_t> select(std::uint32_t layer, const Selection& selection) const;

 private:
  void enter(SeedView& s, wire::SeedState to, std::uint64_t step);
  void add_rank(LayerView& layer, std::int32_t rank);
  void reject(const char* kind, std::int32_t rank, const std::string& problem);

  wire::Bounds bounds_;
  std::uint64_t values_rejected_ = 0;
  fabric::ValueRejectLog reject_log_;
  std::map<std::uint32_t, LayerView> layers_;
  std::uint64_t step_ = 0;
  std::uint64_t records_ = 0;
  std::set<std::int32_t> ranks_seen_;
};

}  // namespace esper::controller
