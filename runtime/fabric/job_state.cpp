#include "fabric/job_state.hpp"

namespace esper::fabric {

void JobState::apply(const wire::Event& event, std::int32_t source_rank, std::uint64_t sequence) {
  sequence_ = sequence;
  if (const auto* t = event.body_as_StateTransition()) {
    auto& s = seeds_[{event.layer(), t->seed()}];
    s.rank = source_rank;
    s.parent = t->from();
    s.state = t->to();
  }
}

void JobState::load(const wire::StateSnapshot& snapshot) {
  seeds_.clear();
  sequence_ = snapshot.snapshot_sequence();
  if (snapshot.layers() == nullptr) return;
  for (const auto* layer : *snapshot.layers()) {
    if (layer->seeds() == nullptr) continue;
    for (const auto* s : *layer->seeds()) {
      seeds_[{layer->layer(), s->seed()}] = Seed{layer->rank(), s->state(), s->parent_state()};
    }
  }
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
