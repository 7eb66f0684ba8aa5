// Fuzz target: a step boundary's plan (runtime/rank/step_plan.hpp), read and merged the way every
// rank reads it after the boundary's collective (rank/step_commands.cpp), then applied: commands to
// APPLY run through rank::JobCommands on real seed layers (two morphogenesis drivers, fresh per
// input), STALE and TIMEOUT ones are answered as the boundary answers them.
//
// The input is a sequence of frames (fuzz_support.hpp): frame r is rank r's part of the plan for
// step kStep (StepPlan bytes), at most kRanks of them; a frame whose control byte has bit 0 set
// stands for a rank that sent no part (its bytes are not read, as for a count of 0).
//
//  - read_plan_part: a part either reads whole or fails naming its rank and step; then, as in
//    boundary(), nothing of the plan is applied.
//  - merge_plan: every msg_id once, the lowest rank's first copy deciding (its decision, its
//    bytes); ordered by priority (CRITICAL first), then timestamp, then msg_id; a second reading
//    of the same bytes by another decoder gives the same plan (every replica applies the same).
//  - each command answered once, with a result that its sender accepts: encoded with the command's
//    msg_id as correlation id and the command's priority, decoded, range-checked (wire::check: a
//    result a client would reject as out of range is a bug of the rank).
//  - after the plan: every seed of every layer in a valid state, holds within the population.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "fabric/framing.hpp"
#include "fuzz_support.hpp"
#include "lifecycle/wire_convert.hpp"
#include "rank/job_commands.hpp"
#include "rank/step_plan.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/validate.hpp"

namespace esper::fuzz {
namespace {

constexpr std::uint64_t kStep = 7;
constexpr std::size_t kRanks = 4;
constexpr std::int32_t kRank = 1;  // the replica whose answers are checked
const std::vector<std::uint32_t> kLayers = {0, 1};

std::vector<std::unique_ptr<morphogenesis::Driver>> drivers() {
  std::vector<std::unique_ptr<morphogenesis::Driver>> d;
  for (std::uint32_t l = 0; l < kLayers.size(); ++l) {
    morphogenesis::Config c;
    c.in_features = 8;
    c.out_features = 8;
    c.chunks = 4;
    c.rank = 2;
    c.batch = 4;
    c.held_out = 8;
    c.seed = 11 + l;
    c.auto_advance = false;
    d.push_back(std::make_unique<morphogenesis::Driver>(c));
  }
  return d;
}

// The parts as boundary() reads them, or nothing when one fails.
std::optional<std::vector<std::vector<rank::PlanItem>>> read_parts(const std::vector<Frame>& frames, wire::Decoder& decoder) {
  std::vector<std::vector<rank::PlanItem>> parts(frames.size());
  for (std::size_t r = 0; r < frames.size(); ++r) {
    if (frames[r].control & 1) continue;
    auto part = rank::read_plan_part(frames[r].bytes, kStep, static_cast<int>(r), decoder);
    if (!part) {
      const auto& why = part.error().message();
      FUZZ_CHECK(why.starts_with("rank " + std::to_string(r) + "'s plan for step " + std::to_string(kStep) + ": "),
                 "a plan error does not name its rank and step");
      return std::nullopt;
    }
    for (const auto& item : *part) {
      FUZZ_CHECK(item.message.kind() == wire::Body::Command, "a plan item is not a Command");
      FUZZ_CHECK(wire::is_valid(item.message.envelope().msg_id()), "a plan item without a valid msg_id");
      FUZZ_CHECK(wire::is_known(item.decision), "a plan item with an unknown decision");
    }
    parts[r] = std::move(*part);
  }
  return parts;
}

// The result the boundary sends for one planned command, as the command's sender decodes it.
void check_answer(wire::Encoder& enc, wire::Decoder& dec, const rank::PlannedCommand& item, wire::CommandResultT result) {
  result.rank = kRank;
  wire::Header h;
  h.msg_id = wire::MsgId(0x0200000100000001ULL, 1);
  h.correlation_id = wire::MsgId(item.key.first, item.key.second);
  h.priority = item.message.envelope().priority();  // what boundary() answers with
  const auto f = enc.encode(h, result);
  auto back = dec.decode(f);
  FUZZ_CHECK(back.has_value(), "a result the rank encoded does not decode");
  FUZZ_CHECK(back->kind() == wire::Body::CommandResult, "a result decodes as another kind");
  const auto* c = back->envelope().correlation_id();
  FUZZ_CHECK(c != nullptr && c->sender() == item.key.first && c->seq() == item.key.second,
             "a result does not carry its command's msg_id");
  const auto problem = wire::check(*back);
  if (problem) std::fprintf(stderr, "result rejected by its receiver: %s\n", problem->c_str());
  FUZZ_CHECK(!problem, "the rank's result has a value its sender rejects as out of range");
}

}  // namespace
}  // namespace esper::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  using namespace esper::fuzz;
  // Each part in a buffer of its own, as aligned as in the gathered plan: a FlatBuffer finished
  // with 8-byte fields has a size that is a multiple of 8, so every part starts 8-byte aligned.
  std::vector<std::vector<std::uint8_t>> copies;
  std::vector<Frame> frames;
  Frames in({data, size});
  for (Frame f; frames.size() < kRanks && in.next(f);) {
    copies.emplace_back(f.bytes.begin(), f.bytes.end());
    frames.push_back(Frame{f.control, {}});
  }
  for (std::size_t i = 0; i < frames.size(); ++i) frames[i].bytes = copies[i];

  wire::Decoder decoder, replica_decoder, result_decoder;
  auto parts = read_parts(frames, decoder);
  if (!parts) return 0;  // boundary() throws: nothing of this plan is applied

  // What merge_plan must give, computed independently: first copies in rank order, then the order.
  std::map<rank::PlanKey, std::pair<wire::PlanDecision, const wire::Envelope*>> first;
  for (const auto& part : *parts) {
    for (const auto& item : part) {
      const auto* id = item.message.envelope().msg_id();
      first.try_emplace({id->sender(), id->seq()}, item.decision, &item.message.envelope());
    }
  }
  const auto plan = rank::merge_plan(std::move(*parts));
  FUZZ_CHECK(plan.size() == first.size(), "the plan does not hold every command exactly once");
  std::set<rank::PlanKey> keys;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const auto& p = plan[i];
    FUZZ_CHECK(keys.insert(p.key).second, "a command twice in the plan");
    const auto it = first.find(p.key);
    FUZZ_CHECK(it != first.end(), "a command in the plan that no part holds");
    FUZZ_CHECK(it->second.first == p.decision, "a command decided by another copy than the lowest rank's first");
    FUZZ_CHECK(it->second.second == &p.message.envelope(), "a command's bytes taken from another copy");
    const auto* id = p.message.envelope().msg_id();
    FUZZ_CHECK(id->sender() == p.key.first && id->seq() == p.key.second, "a plan item's key is not its msg_id");
    FUZZ_CHECK(p.priority == wire::priority_index(p.message.envelope().priority()), "a plan item's priority");
    FUZZ_CHECK(p.sent_ns == p.message.envelope().timestamp_ns(), "a plan item's send time");
    if (i > 0) {
      const auto& a = plan[i - 1];
      const bool ordered = a.priority > p.priority ||
                           (a.priority == p.priority && (a.sent_ns < p.sent_ns || (a.sent_ns == p.sent_ns && a.key < p.key)));
      FUZZ_CHECK(ordered, "the plan is not in (priority, timestamp, msg_id) order");
    }
  }
  // Another replica reads the same bytes: the same plan.
  {
    auto again = read_parts(frames, replica_decoder);
    FUZZ_CHECK(again.has_value(), "a plan that read once fails the second time");
    const auto other = rank::merge_plan(std::move(*again));
    FUZZ_CHECK(other.size() == plan.size(), "two replicas read plans of different sizes");
    for (std::size_t i = 0; i < plan.size(); ++i) {
      FUZZ_CHECK(other[i].key == plan[i].key && other[i].decision == plan[i].decision, "two replicas read different plans");
    }
  }

  // Applied as the boundary applies it, on this replica's seed layers.
  auto layers = drivers();
  rank::JobCommands commands(layers, kRank, nullptr);
  wire::Encoder enc(wire::SourceInfo{kRank, wire::Role::RANK, "fuzz", "node1", 2});
  Sink sink;
  for (const auto& item : plan) {
    const auto& env = item.message.envelope();
    const auto& cmd = *item.message.body<wire::Command>();
    sink(fabric::targets_rank(cmd.target(), kRank, kLayers));
    wire::CommandResultT result;
    switch (item.decision) {
      case wire::PlanDecision::APPLY:
        result = commands.apply(cmd, env, kStep);
        result.applied_at_step = static_cast<std::int64_t>(kStep);
        break;
      case wire::PlanDecision::STALE: result = wire::command_result(wire::Status::STALE, kRank, "stale"); break;
      case wire::PlanDecision::TIMEOUT: result = wire::command_result(wire::Status::TIMEOUT, kRank, "timeout"); break;
    }
    sink(result.status);
    check_answer(enc, result_decoder, item, std::move(result));
  }
  std::size_t seeds = 0;
  for (const auto& d : layers) {
    const auto& pop = d->population();
    seeds += pop.size();
    for (std::uint32_t s = 0; s < pop.size(); ++s) {
      FUZZ_CHECK(lifecycle::is_valid(pop.seed(s).state()), "a seed left in an invalid state");
      sink(pop.seed(s).state());
    }
  }
  FUZZ_CHECK(commands.held_count() <= seeds, "more seeds held than the layers have");
  sink(commands.stop().requested);
  sink.publish();
  return 0;
}
