#include "outcome_text.hpp"

#include <spdlog/fmt/fmt.h>

namespace esper::cli {

std::string describe_result(const wire::CommandResultT& r, const std::string& indent) {
  std::string line = std::string(wire::EnumNameStatus(r.status));
  if (r.applied_at_step >= 0) line += " at step " + std::to_string(r.applied_at_step);
  if (!r.error.empty()) line += " — " + r.error;
  for (const auto& o : r.outcomes) {
    line += "\n" + indent + "seed " + std::to_string(o->seed) + ": " + wire::EnumNameSeedState(o->from) + " -> " +
            wire::EnumNameSeedState(o->to) + " " + wire::EnumNameStatus(o->status) +
            (o->error.empty() ? "" : " (" + o->error + ")");
  }
  for (std::size_t i = 0; i < r.members.size(); ++i) {
    if (r.members[i]) line += "\n" + indent + "member " + std::to_string(i) + ": " + describe_result(*r.members[i], indent + "  ");
  }
  if (r.snapshot) {
    for (const auto& l : r.snapshot->layers) {
      if (!l) continue;
      line += "\n" + indent + "layer " + std::to_string(l->layer) + " at step " + std::to_string(l->step) + ":";
      for (const auto& s : l->seeds) {
        line += "\n" + indent + "  seed " + std::to_string(s.seed()) + " " + wire::EnumNameSeedState(s.state()) +
                " steps_in_state=" + std::to_string(s.steps_in_state()) + " alpha=" + fmt::format("{:.4f}", s.alpha()) +
                " errors=" + std::to_string(s.error_count());
      }
    }
  }
  return line;
}

std::string describe(const fabric::TargetOutcome& t) {
  const double ms = static_cast<double>(t.latency.count()) / 1e6;
  std::string line = "rank " + std::to_string(t.rank) + ": ";
  if (!t.has_result) {
    return line + "FAILED (" + wire::EnumNameFailureReason(t.failure) + ") " + t.detail + " [" +
           std::to_string(t.attempts) + " attempt(s), " + fmt::format("{:.3f}", ms) + " ms]" +
           (t.dead_lettered ? " [dead letter]" : "");
  }
  return line + describe_result(t.result, "  ") + (t.result.outcomes.empty() && t.result.members.empty() && !t.result.snapshot
                                                       ? " [" + fmt::format("{:.3f}", ms) + " ms]"
                                                       : "\n  [" + fmt::format("{:.3f}", ms) + " ms]");
}

}  // namespace esper::cli
