#include "fabric/job_state.hpp"

#include <string>

namespace esper::fabric {

wire::Problem JobState::apply(const wire::Event& event, std::int32_t source_rank, std::uint64_t sequence,
                             const wire::Bounds& bounds) {
  sequence_ = sequence;
  const auto* t = event.body_as_StateTransition();
  if (t == nullptr) return std::nullopt;  // only transitions change what a late joiner needs
  if (auto problem = wire::check(event, bounds)) return problem;
  if (source_rank < -1 || source_rank >= bounds.ranks) {
    return "source rank: " + std::to_string(source_rank) + " is not a rank id";
  }
  auto& s = seeds_[{event.layer(), t->seed()}];
  s.rank = source_rank;
  s.parent = t->from();
  s.state = t->to();
  return std::nullopt;
}

JobState::Skipped JobState::load(const wire::StateSnapshot& snapshot, const wire::Bounds& bounds) {
  seeds_.clear();
  sequence_ = snapshot.snapshot_sequence();
  Skipped skipped;
  if (snapshot.layers() == nullptr) return skipped;
  for (std::uint32_t i = 0; i < snapshot.layers()->size(); ++i) {
    const auto* layer = snapshot.layers()->Get(i);
    if (layer->seeds() == nullptr) continue;
    const std::string at = "layers[" + std::to_string(i) + "].";
    // A layer whose own fields are out of range costs all its seeds; a bad seed costs itself.
    if (auto problem = wire::check_fields(*layer, bounds)) {
      skipped.entries += layer->seeds()->size();
      if (!skipped.first) skipped.first = at + *problem;
      continue;
    }
    for (std::uint32_t j = 0; j < layer->seeds()->size(); ++j) {
      const auto* s = layer->seeds()->Get(j);
      if (auto problem = wire::check(*s, layer->layer(), bounds)) {
        ++skipped.entries;
        if (!skipped.first) skipped.first = at + "seeds[" + std::to_string(j) + "]." + *problem;
        continue;
      }
      seeds_[{layer->layer(), s->seed()}] = Seed{layer->rank(), s->state(), s->parent_state()};
    }
  }
  return skipped;
}

wire::StateSnapshotT JobState::snapshot() const {
  wire::StateSnapshotT out;
  out.snapshot_sequence = sequence_;
  out.parts = 1;
  // One LayerState per (layer, rank).
  std::map<std::pair<std::uint32_t, std::int32_t>, wire::LayerStateT*> by_layer;
  for (const auto& [key, seed] : seeds_) {
    auto& slot = by_layer[{key.first, seed.rank}];
    if (slot == nullptr) {
      out.layers.push_back(std::make_unique<wire::LayerStateT>());
      slot = out.layers.back().get();
      slot->layer = key.first;
      slot->rank = seed.rank;
    }
    slot->seeds.emplace_back(key.second, seed.state, seed.parent, 0, 0, 0, 0.0f);
  }
  return out;
}

}  // namespace esper::fabric
