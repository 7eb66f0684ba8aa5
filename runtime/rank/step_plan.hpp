// A step boundary's plan (fbs/control.fbs, StepPlan): what every rank reads back after the
// boundary's collective, and the merge of every rank's part into the one list of commands every
// replica applies, in the same order (rank/step_commands.hpp). MPI-free: the rank program and the
// fuzz target tests/fuzz/fuzz_step_plan.cpp both use it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "wire/codec.hpp"

namespace esper::rank {

// One command of a rank's part of a boundary's plan, read back.
struct PlanItem {
  wire::PlanDecision decision;
  wire::Message message;  // verified; points into the plan's bytes
};
struct PlanError {
  std::string text;
  [[nodiscard]] std::string message() const { return text; }
};
// Reads one rank's part of a plan: verifies it as a StepPlan for `step` from `rank`, every entry's
// decision and envelope (a Command, verified by `decoder`, its values range-checked: wire::check). A part that fails is an error as a
// whole: the ranks wrote it with the same code, so a failure is a fault, not input to skip.
// `bytes` must be 8-byte aligned, as every part is in the gathered plan (a StepPlan is finished
// to a multiple of 8 bytes).
[[nodiscard]] Expected<std::vector<PlanItem>, PlanError> read_plan_part(std::span<const std::uint8_t> bytes,
                                                                        std::uint64_t step, int rank,
                                                                        wire::Decoder& decoder);

// A command's msg_id (sender, seq).
using PlanKey = std::pair<std::uint64_t, std::uint64_t>;

// One command of the merged plan.
struct PlannedCommand {
  wire::PlanDecision decision;
  PlanKey key;
  std::size_t priority;  // wire::priority_index of the envelope's priority
  std::uint64_t sent_ns;  // the envelope's timestamp
  wire::Message message;
};

// Every rank's part (parts[r]: rank r's, read by read_plan_part; empty when it sent none) merged
// into the plan: each command once — where several ranks hold a copy, the lowest rank's decision
// counts (within a part, the first entry's) — the ones of higher priority first (CRITICAL first),
// then in the order they were sent (timestamp, then msg_id).
[[nodiscard]] std::vector<PlannedCommand> merge_plan(std::vector<std::vector<PlanItem>> parts);

}  // namespace esper::rank
