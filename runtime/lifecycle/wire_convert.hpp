// Conversions between the lifecycle and the wire (docs/lifecycle.md, "On the wire"), for the
// fabric that applies TransitionSeeds / SetBlueprint and answers with CommandResult and snapshots.
#pragma once

#include <cstdint>
#include <vector>

#include "fbs/command_generated.h"
#include "fbs/control_generated.h"
#include "lifecycle/population.hpp"

namespace esper::lifecycle {

// SeedSet -> Selection. A null set selects nothing.
[[nodiscard]] Selection selection_from_wire(const wire::SeedSet* set);
[[nodiscard]] Selection selection_from_wire(const wire::SeedSetT& set);

// One outcome: status OK or REJECTED, from, to, and for a rejection the error "<rule code>: <detail>".
[[nodiscard]] wire::SeedOutcomeT to_wire(const SeedOutcome& outcome);
[[nodiscard]] std::vector<wire::SeedOutcomeT> to_wire(const TransitionReport& report);

// The command-level status for a TransitionSeeds result: OK when at least one seed moved (the
// outcomes say which did not), REJECTED when none did or the selection named no seed.
[[nodiscard]] wire::Status command_status(const TransitionReport& report) noexcept;

// A seed's snapshot record (StateSnapshot / LayerState).
[[nodiscard]] wire::SeedStatus to_wire_status(std::uint32_t id, const Seed& seed) noexcept;

// SetBlueprint's grafting fields over `base`: strategy; ramp_steps and drift_threshold when
// non-zero; the adaptive parameters by name from `params` ("loss_tolerance", "gain_min",
// "gain_max", "gain_up", "gain_down"). Validate the result with check_config before use.
[[nodiscard]] GraftingConfig grafting_from_wire(const wire::SetBlueprintT& blueprint, GraftingConfig base = {});

}  // namespace esper::lifecycle
