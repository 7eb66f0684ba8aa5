// Population commands. A command resolves its selection, checks every selected seed against the
// rules and only then applies the accepted ones, so an exception (out of memory while building the
// report) leaves every seed as it was. Seeds are independent: one seed's rejection never stops
// another's transition.
#include "lifecycle/population.hpp"

#include <algorithm>
#include <bit>
#include <string>

namespace esper::lifecycle {

Selection Selection::all() {
  Selection s;
  s.all_ = true;
  return s;
}

Selection Selection::ids(std::vector<std::uint32_t> ids) {
  Selection s;
  s.ids_ = std::move(ids);
  return s;
}

Selection Selection::range(std::uint32_t first, std::uint32_t last) {
  Selection s;
  s.add_range(first, last);
  return s;
}

Selection& Selection::add_id(std::uint32_t id) {
  ids_.push_back(id);
  return *this;
}

Selection& Selection::add_range(std::uint32_t first, std::uint32_t last) {
  if (first <= last) ranges_.emplace_back(first, last);
  return *this;
}

bool Selection::contains(std::uint32_t id) const noexcept {
  if (all_) return true;
  if (std::find(ids_.begin(), ids_.end(), id) != ids_.end()) return true;
  return std::any_of(ranges_.begin(), ranges_.end(), [id](const auto& r) { return r.first <= id && id <= r.second; });
}

std::vector<std::uint32_t> Selection::resolve(std::uint32_t size) const {
  std::vector<std::uint32_t> out;
  if (all_) {
    out.resize(size);
    for (std::uint32_t i = 0; i < size; ++i) out[i] = i;
    return out;
  }
  out = ids_;
  for (const auto& [first, last] : ranges_) {
    if (size == 0 || first >= size) continue;
    const std::uint32_t end = std::min(last, size - 1);
    for (std::uint32_t i = first; i <= end; ++i) out.push_back(i);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::size_t TransitionReport::applied_count() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(outcomes.begin(), outcomes.end(), [](const SeedOutcome& o) { return o.applied(); }));
}

Population::Population(std::uint32_t size, LifecycleConfig config, std::uint64_t start_step)
    : config_(std::move(config)), step_(start_step), seeds_(size, Seed(config_)) {}

void Population::check_id(std::uint32_t id) const {
  if (id >= seeds_.size())
    throw Error("seed " + std::to_string(id) + " is not in a population of " + std::to_string(seeds_.size()));
}

const Seed& Population::seed(std::uint32_t id) const {
  check_id(id);
  return seeds_[id];
}

Seed& Population::seed(std::uint32_t id) {
  check_id(id);
  return seeds_[id];
}

const SeedMetrics* Population::metrics_for(std::span<const SeedMetrics> metrics, std::uint32_t id) const {
  if (metrics.empty()) return nullptr;
  if (metrics.size() != seeds_.size())
    throw Error("metrics has " + std::to_string(metrics.size()) + " entries for a population of " +
                std::to_string(seeds_.size()));
  return &metrics[id];
}

TransitionReport Population::check(const Selection& selection, State target, bool force,
                                   std::span<const SeedMetrics> metrics) const {
  TransitionReport report;
  const std::vector<std::uint32_t> ids = selection.resolve(size());
  report.outcomes.reserve(ids.size());
  for (const std::uint32_t id : ids) {
    if (id >= seeds_.size()) {
      report.outcomes.push_back(
          {id, State::DORMANT, target,
           Rejection{Rule::no_such_seed,
                     "seed " + std::to_string(id) + " is not in a population of " + std::to_string(seeds_.size())}});
      continue;
    }
    const Seed& s = seeds_[id];
    auto verdict = s.check(target, force, metrics_for(metrics, id));
    SeedOutcome outcome{id, s.state(), target, std::nullopt};
    if (!verdict) outcome.rejection = verdict.error();
    report.outcomes.push_back(std::move(outcome));
  }
  return report;
}

TransitionReport Population::transition(const Selection& selection, State target, std::string_view reason, bool force,
                                        std::span<const SeedMetrics> metrics) {
  TransitionReport report = check(selection, target, force, metrics);
  for (const SeedOutcome& outcome : report.outcomes) {
    if (!outcome.applied()) continue;
    auto applied = seeds_[outcome.seed].transition(target, reason, force, metrics_for(metrics, outcome.seed), step_);
    if (!applied)
      throw Error("seed " + std::to_string(outcome.seed) +
                  " accepted on check, rejected on apply: " + applied.error().message());
  }
  return report;
}

void Population::tick(std::span<const SeedMetrics> metrics) {
  if (!metrics.empty()) (void)metrics_for(metrics, 0);  // size check before any seed moves
  for (std::uint32_t id = 0; id < size(); ++id) seeds_[id].tick(metrics_for(metrics, id));
  ++step_;
}

std::array<std::uint32_t, kStateCount> Population::count_by_state() const noexcept {
  std::array<std::uint32_t, kStateCount> counts{};
  for (const Seed& s : seeds_) {
    if (const auto i = index_of_checked(s.state()); i < kStateCount) ++counts[i];
  }
  return counts;
}

namespace {

class Fnv1a {
 public:
  void add(std::uint64_t v, int bytes) noexcept {
    for (int i = 0; i < bytes; ++i) {
      hash_ ^= (v >> (8 * i)) & 0xFFU;
      hash_ *= 0x100000001B3ULL;
    }
  }
  [[nodiscard]] std::uint64_t value() const noexcept { return hash_; }

 private:
  std::uint64_t hash_ = 0xCBF29CE484222325ULL;
};

}  // namespace

std::uint64_t Population::digest() const noexcept {
  Fnv1a h;
  h.add(step_, 8);
  h.add(seeds_.size(), 8);
  for (const Seed& s : seeds_) {
    h.add(index_of(s.state()), 1);
    h.add(s.steps_in_state(), 4);
    h.add(std::bit_cast<std::uint32_t>(s.alpha()), 4);
  }
  return h.value();
}

}  // namespace esper::lifecycle
