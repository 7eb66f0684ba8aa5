// What each command kind does to a rank's seed layers (docs/design.md §2, §6; docs/protocol.md
// "Commands in a job"). StepCommands decides when a command is applied — at the same step
// boundary on every replica — and JobCommands applies it, the same way on every replica:
//
//   TransitionSeeds  the population transition (rules, guards, minimum steps) on the selected seeds
//   SetBlueprint     a DORMANT seed's adapter rank, learning rate and grafting strategy; the kind
//                    must be the layer's (a layer has one blueprint kind)
//   BatchCommand     its commands in order; atomic: all or none (checked on copies first);
//                    stop_on_error: the rest are skipped after the first that is not OK
//   EmergencyStop    JOB: the job stops at this boundary; LAYER / SEED: those seeds are taken out
//                    of the computation (TRAINING/GERMINATED -> CANCELLED, GRAFTING..FINE_TUNING ->
//                    ROLLED_BACK; DORMANT and FOSSILIZED stay) and held there for the rest of the job
//   RequestSnapshot  the rank's layers and seeds, in the result
//   Shutdown         the job ends at this boundary, cleanly, within the grace period
//
// A seed held by an emergency stop rejects every later transition or blueprint with the rule
// `emergency_stopped`. Rank 0 publishes a StateTransition event for every seed that moved.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fabric/node.hpp"
#include "morphogenesis/morphogenesis.hpp"

namespace esper::rank {

class JobCommands {
 public:
  // The job asked to end: by a Shutdown (graceful, within `grace`) or a job-wide EmergencyStop.
  struct Stop {
    bool requested = false;
    bool shutdown = false;  // a Shutdown command, else an emergency stop
    std::string reason;
    std::chrono::milliseconds grace{0};
  };

  // `events`: where StateTransition events go (rank 0's node), or null.
  JobCommands(std::vector<std::unique_ptr<morphogenesis::Driver>>& drivers, std::int32_t rank, fabric::Node* events);

  // Applies one command at the boundary before `step` and returns its result.
  wire::CommandResultT apply(const wire::Command& command, const wire::Envelope& envelope, std::uint64_t step);

  [[nodiscard]] const Stop& stop() const noexcept { return stop_; }
  [[nodiscard]] bool held(std::uint32_t layer, std::uint32_t seed) const { return held_.contains({layer, seed}); }
  [[nodiscard]] std::size_t held_count() const noexcept { return held_.size(); }

 private:
  struct Simulation;  // copies of the populations and holds, for checking an atomic batch
  wire::CommandResultT run(const wire::Command& command, const wire::MsgId* id, std::uint64_t step, Simulation* sim);
  wire::CommandResultT transition(const wire::TransitionSeeds& t, const wire::MsgId* id, std::uint64_t step,
                                  Simulation* sim, const std::string& triggered_by);
  wire::CommandResultT set_blueprint(const wire::SetBlueprint& b, Simulation* sim);
  wire::CommandResultT batch(const wire::BatchCommand& b, const wire::MsgId* id, std::uint64_t step, Simulation* sim);
  wire::CommandResultT emergency_stop(const wire::EmergencyStop& s, const wire::MsgId* id, std::uint64_t step,
                                      Simulation* sim);
  wire::CommandResultT snapshot(const wire::RequestSnapshot& r, std::uint64_t step) const;
  wire::CommandResultT rejected(std::string why) const;

  std::vector<std::unique_ptr<morphogenesis::Driver>>& drivers_;
  std::int32_t rank_;
  fabric::Node* events_;
  std::set<std::pair<std::uint32_t, std::uint32_t>> held_;  // (layer, seed) under an emergency stop
  Stop stop_;
};

}  // namespace esper::rank
