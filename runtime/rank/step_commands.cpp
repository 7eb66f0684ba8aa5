#include "rank/step_commands.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>

#include "core/error.hpp"
#include "mpi/bootstrap.hpp"
#include "wire/builders.hpp"
#include "wire/validate.hpp"

namespace esper::rank {
namespace {

using Clock = std::chrono::steady_clock;

using Decision = wire::PlanDecision;
// Decisions are kept for copies still on their way; a copy arriving after this many decisions, or
// later than kKeepPastDeadline after its command's deadline, finds none (it is expired by then
// and is answered TIMEOUT, never applied).
constexpr std::size_t kDecidedWindow = 65536;
constexpr std::uint64_t kKeepPastDeadlineNs = 60'000'000'000ull;

wire::CommandResultT status_only(wire::Status s, std::string error) {
  wire::CommandResultT r;
  r.status = s;
  r.error = std::move(error);
  return r;
}

std::uint64_t deadline_ns(const wire::Command& c, const wire::Envelope& e) {
  const std::uint64_t sent = e.timestamp_ns() != 0 ? e.timestamp_ns() : wire::wall_clock_ns();
  return sent + static_cast<std::uint64_t>(c.timeout_ms()) * 1'000'000ull;
}

}  // namespace

StepCommands::StepCommands(fabric::Node* node, int world_rank, std::vector<std::uint32_t> layers, MPI_Comm comm)
    : node_(node), rank_(world_rank), layers_(std::move(layers)), comm_(comm) {
  mpi::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

void StepCommands::answer_or_keep(const Key& k, wire::Priority p, wire::CommandResultT result,
                                  std::uint64_t forget_after_ns, bool targets_me) {
  if (auto it = inbox_.find(k); it != inbox_.end()) {
    node_->answer(it->second.id(), p, std::move(result));  // the node answers its retries from its cache
    ++counts_.answered;
    inbox_.erase(it);
    return;
  }
  // Decided on another rank's copy: ours may still be on its way.
  if (decided_.emplace(k, Decided{std::move(result), forget_after_ns}).second) decided_order_.push_back(k);
  if (targets_me) owed_.insert(k);
}

void StepCommands::forget_old_decisions() {
  const auto now = wire::wall_clock_ns();
  while (!decided_order_.empty()) {
    const auto it = decided_.find(decided_order_.front());
    if (it != decided_.end() && decided_order_.size() <= kDecidedWindow && it->second.forget_after_ns > now) break;
    if (it != decided_.end()) decided_.erase(it);
    owed_.erase(decided_order_.front());
    decided_order_.pop_front();
  }
}

void StepCommands::take_own_copies() {
  for (auto& c : node_->take_commands()) {
    ++counts_.received;
    const auto id = c.id();
    const Key k{id.sender(), id.seq()};
    if (auto d = decided_.find(k); d != decided_.end()) {
      node_->answer(id, c.envelope().priority(), d->second.result);
      ++counts_.answered;
      owed_.erase(k);
      continue;
    }
    inbox_.emplace(k, std::move(c));
  }
}

std::size_t StepCommands::boundary(std::uint64_t step, const Apply& apply, bool* stop) {
  // Own copies: answer at once what was decided before they arrived; keep the rest.
  take_own_copies();
  forget_old_decisions();

  // This rank's part of the plan: the commands it holds that are decided now.
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<wire::PlanEntry>> entries;
  for (const auto& [k, c] : inbox_) {
    const std::int64_t at = c.command().apply_at_step();
    Decision d;
    if (c.expired()) {
      d = Decision::TIMEOUT;
    } else if (at >= 0 && static_cast<std::uint64_t>(at) < step) {
      d = Decision::STALE;
    } else if (at < 0 || static_cast<std::uint64_t>(at) == step) {
      d = Decision::APPLY;
    } else {
      continue;  // a future step
    }
    const auto bytes = fabric::bytes(*c.frame);
    entries.push_back(wire::CreatePlanEntry(fbb, d, fbb.CreateVector(bytes.data(), bytes.size())));
  }
  std::span<const std::uint8_t> mine;
  if (!entries.empty()) {
    fbb.Finish(wire::CreateStepPlan(fbb, step, rank_, fbb.CreateVector(entries)));
    mine = std::span<const std::uint8_t>(fbb.GetBufferPointer(), fbb.GetSize());
  }

  // {stopping, bytes} of every rank.
  const auto n = static_cast<std::size_t>(size_);
  std::uint64_t own[2] = {stop != nullptr && *stop ? 1u : 0u, mine.size()};
  std::vector<std::uint64_t> all(2 * n);
  mpi::check(MPI_Allgather(own, 2, MPI_UINT64_T, all.data(), 2, MPI_UINT64_T, comm_), "MPI_Allgather(boundary)");
  bool stopping = false;
  std::uint64_t total = 0;
  std::vector<int> counts(n), displs(n);
  for (std::size_t r = 0; r < n; ++r) {
    stopping = stopping || all[2 * r] != 0;
    if (all[2 * r + 1] > static_cast<std::uint64_t>(INT_MAX) - total) {
      throw Error("the commands of one step boundary exceed 2 GiB");
    }
    counts[r] = static_cast<int>(all[2 * r + 1]);
    displs[r] = static_cast<int>(total);
    total += all[2 * r + 1];
  }
  if (stop != nullptr) *stop = stopping;
  if (stopping) return 0;
  if (total == 0) return 0;
  std::vector<std::uint8_t> plan(total);
  mpi::check(MPI_Allgatherv(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, plan.data(), counts.data(),
                            displs.data(), MPI_BYTE, comm_),
             "MPI_Allgatherv(commands)");

  // Every rank reads the same plan the same way, rank by rank.
  std::vector<std::vector<PlanItem>> parts(n);
  for (std::size_t r = 0; r < n; ++r) {
    if (counts[r] == 0) continue;
    auto part = read_plan_part(std::span<const std::uint8_t>(plan.data() + displs[r], static_cast<std::size_t>(counts[r])),
                               step, static_cast<int>(r), decoder_);
    if (!part) throw Error(part.error().message());
    parts[r] = std::move(*part);
  }
  auto items = merge_plan(std::move(parts));

  std::size_t applied = 0;
  for (auto& item : items) {
    const auto& env = item.message.envelope();
    const auto& cmd = *item.message.body<wire::Command>();
    wire::CommandResultT result;
    switch (item.decision) {
      case Decision::APPLY: {
        const auto started = Clock::now();
        result = apply(cmd, env);
        result.execution_ns = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count());
        result.applied_at_step = static_cast<std::int64_t>(step);
        ++counts_.applied;
        ++applied;
        break;
      }
      case Decision::STALE:
        result = status_only(wire::Status::STALE, "arrived after its step " + std::to_string(cmd.apply_at_step()) +
                                                      " (now " + std::to_string(step) + "); re-issue it");
        ++counts_.stale;
        break;
      case Decision::TIMEOUT:
        result = status_only(wire::Status::TIMEOUT, "its sender's deadline passed before step " +
                                                        std::to_string(step) + "; not applied");
        ++counts_.timed_out;
        break;
    }
    answer_or_keep(item.key, env.priority(), std::move(result), deadline_ns(cmd, env) + kKeepPastDeadlineNs,
                   fabric::targets_rank(cmd.target(), rank_, layers_));
  }
  return applied;
}

void StepCommands::finish(std::uint64_t step, std::chrono::milliseconds linger) {
  const std::string reason = "the job ended at step " + std::to_string(step) + "; not applied";
  const auto until = Clock::now() + linger;
  for (;;) {
    take_own_copies();
    for (auto& [k, c] : inbox_) {
      node_->answer(c.id(), c.envelope().priority(), wire::command_result(wire::Status::REJECTED, rank_, reason));
      ++counts_.answered;
    }
    inbox_.clear();
    forget_old_decisions();
    if (owed_.empty() || Clock::now() >= until) break;
    (void)node_->wait_for_command(std::chrono::milliseconds(10));
  }
  node_->close_commands(reason);
  mpi::check(MPI_Barrier(comm_), "MPI_Barrier");
}

}  // namespace esper::rank
