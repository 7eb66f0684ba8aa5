#include "rank/step_plan.hpp"

#include <algorithm>
#include <set>

#include "wire/ids.hpp"
#include "wire/validate.hpp"

namespace esper::rank {
namespace {

// Plans are small (a few commands); the verifier's limits are the codec's.
constexpr flatbuffers::uoffset_t kMaxPlanDepth = 16;
constexpr flatbuffers::uoffset_t kMaxPlanTables = 10'000'000;

}  // namespace

Expected<std::vector<PlanItem>, PlanError> read_plan_part(std::span<const std::uint8_t> bytes, std::uint64_t step,
                                                          int rank, wire::Decoder& decoder) {
  auto fail = [&](const std::string& why) {
    return unexpected(PlanError{"rank " + std::to_string(rank) + "'s plan for step " + std::to_string(step) + ": " + why});
  };
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), kMaxPlanDepth, kMaxPlanTables);
  if (!verifier.VerifyBuffer<wire::StepPlan>(nullptr)) return fail("does not verify as a StepPlan");
  const auto* plan = flatbuffers::GetRoot<wire::StepPlan>(bytes.data());
  if (plan->step() != step || plan->rank() != rank) {
    return fail("is stamped step " + std::to_string(plan->step()) + " of rank " + std::to_string(plan->rank()));
  }
  std::vector<PlanItem> items;
  if (plan->entries() == nullptr) return items;
  for (flatbuffers::uoffset_t i = 0; i < plan->entries()->size(); ++i) {
    const auto* e = plan->entries()->Get(i);
    if (e->decision() > wire::PlanDecision::MAX) {
      return fail("entry " + std::to_string(i) + ": decision " + std::to_string(static_cast<int>(e->decision())) +
                  " is not APPLY, STALE or TIMEOUT");
    }
    if (e->envelope() == nullptr) return fail("entry " + std::to_string(i) + " has no envelope");
    auto msg = decoder.decode(std::span<const std::uint8_t>(e->envelope()->data(), e->envelope()->size()));
    if (!msg) return fail("entry " + std::to_string(i) + ": " + msg.error().message());
    if (msg->kind() != wire::Body::Command) return fail("entry " + std::to_string(i) + " is not a Command");
    if (!wire::is_valid(msg->envelope().msg_id())) return fail("entry " + std::to_string(i) + " has no valid msg_id");
    // As the node checked it on arrival: its answer carries its priority, which must be one the
    // sender accepts.
    if (auto problem = wire::check(*msg)) return fail("entry " + std::to_string(i) + ": value out of range: " + *problem);
    items.push_back(PlanItem{e->decision(), std::move(*msg)});
  }
  return items;
}

std::vector<PlannedCommand> merge_plan(std::vector<std::vector<PlanItem>> parts) {
  std::vector<PlannedCommand> items;
  std::set<PlanKey> seen;
  for (auto& part : parts) {
    for (auto& p : part) {
      const auto id = *p.message.envelope().msg_id();
      const PlanKey k{id.sender(), id.seq()};
      if (!seen.insert(k).second) continue;  // another rank's copy: the lowest rank's decision counts
      items.push_back(PlannedCommand{p.decision, k, wire::priority_index(p.message.envelope().priority()),
                                     p.message.envelope().timestamp_ns(), std::move(p.message)});
    }
  }
  std::stable_sort(items.begin(), items.end(), [](const PlannedCommand& a, const PlannedCommand& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.sent_ns != b.sent_ns) return a.sent_ns < b.sent_ns;
    return a.key < b.key;
  });
  return items;
}

}  // namespace esper::rank
