#include "rank/step_commands.hpp"

#include <cstring>

#include "mpi/bootstrap.hpp"
#include "wire/builders.hpp"

namespace esper::rank {
namespace {

enum class Decision : std::uint8_t { Apply = 0, Stale = 1, Timeout = 2 };
constexpr std::size_t kDecidedWindow = 4096;

void put(std::vector<std::uint8_t>& out, const void* p, std::size_t n) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

wire::CommandResultT status_only(wire::Status s, std::string error) {
  wire::CommandResultT r;
  r.status = s;
  r.error = std::move(error);
  return r;
}

}  // namespace

StepCommands::StepCommands(fabric::Node* node, int world_rank, MPI_Comm comm)
    : node_(node), rank_(world_rank), comm_(comm) {}

void StepCommands::answer_or_keep(const Key& k, wire::Priority p, wire::CommandResultT result) {
  if (auto it = inbox_.find(k); it != inbox_.end()) {
    node_->answer(it->second.id(), p, std::move(result));
    ++counts_.answered;
    inbox_.erase(it);
    return;
  }
  decided_.emplace(k, std::move(result));
  decided_order_.push_back(k);
  if (decided_order_.size() > kDecidedWindow) {
    decided_.erase(decided_order_.front());
    decided_order_.erase(decided_order_.begin());
  }
}

std::size_t StepCommands::boundary(std::uint64_t step, const Apply& apply, bool* stop) {
  // Own copies: answer at once what was decided before they arrived; keep the rest.
  for (auto& c : node_->take_commands()) {
    ++counts_.received;
    const auto id = c.id();
    const Key k{id.sender(), id.seq()};
    if (auto d = decided_.find(k); d != decided_.end()) {
      node_->answer(id, c.envelope().priority(), d->second);
      ++counts_.answered;
      continue;
    }
    inbox_.emplace(k, std::move(c));
  }

  // The leader decides and broadcasts [decision u8][priority u8][length u32][envelope]...
  std::vector<std::uint8_t> plan;
  if (rank_ == 0) {
    for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
      const auto& c = it->second;
      const std::int64_t at = c.command().apply_at_step();
      Decision d;
      if (c.expired()) {
        d = Decision::Timeout;
      } else if (at >= 0 && static_cast<std::uint64_t>(at) < step) {
        d = Decision::Stale;
      } else if (at < 0 || static_cast<std::uint64_t>(at) == step) {
        d = Decision::Apply;
      } else {
        continue;  // a future step
      }
      const auto bytes = fabric::bytes(*c.frame);
      const auto len = static_cast<std::uint32_t>(bytes.size());
      plan.push_back(static_cast<std::uint8_t>(d));
      plan.push_back(static_cast<std::uint8_t>(c.envelope().priority()));
      put(plan, &len, sizeof len);
      put(plan, bytes.data(), bytes.size());
    }
  }
  // {any rank stopping, the plan's size}: the leader's size is the only one that is not 0.
  std::uint64_t agreed[2] = {stop != nullptr && *stop ? 1u : 0u, plan.size()};
  mpi::check(MPI_Allreduce(MPI_IN_PLACE, agreed, 2, MPI_UINT64_T, MPI_MAX, comm_), "MPI_Allreduce(boundary)");
  if (stop != nullptr) *stop = agreed[0] != 0;
  if (agreed[0] != 0) return 0;
  if (agreed[1] > 0) {
    plan.resize(agreed[1]);
    mpi::check(MPI_Bcast(plan.data(), static_cast<int>(agreed[1]), MPI_BYTE, 0, comm_), "MPI_Bcast(commands)");
  }

  std::size_t applied = 0;
  for (std::size_t at = 0; at + 6 <= plan.size();) {
    const auto d = static_cast<Decision>(plan[at]);
    const auto priority = static_cast<wire::Priority>(plan[at + 1]);
    std::uint32_t len = 0;
    std::memcpy(&len, plan.data() + at + 2, sizeof len);
    const std::span<const std::uint8_t> bytes(plan.data() + at + 6, len);
    at += 6 + len;
    auto msg = decoder_.decode(bytes);  // the leader verified it; every replica reads the same bytes
    if (!msg || msg->kind() != wire::Body::Command) continue;
    const auto id = *msg->envelope().msg_id();
    wire::CommandResultT result;
    switch (d) {
      case Decision::Apply:
        result = apply(*msg->body<wire::Command>(), msg->envelope());
        result.applied_at_step = static_cast<std::int64_t>(step);
        ++counts_.applied;
        ++applied;
        break;
      case Decision::Stale:
        result = status_only(wire::Status::STALE, "arrived after its step " +
                                                      std::to_string(msg->body<wire::Command>()->apply_at_step()) +
                                                      " (now " + std::to_string(step) + "); re-issue it");
        ++counts_.stale;
        break;
      case Decision::Timeout:
        result = status_only(wire::Status::TIMEOUT, "its sender gave up before step " + std::to_string(step));
        ++counts_.timed_out;
        break;
    }
    answer_or_keep({id.sender(), id.seq()}, priority, std::move(result));
  }

  // Copies the leader never decided on (it never got them) are answered once their sender gave up.
  for (auto it = inbox_.begin(); it != inbox_.end();) {
    if (rank_ != 0 && it->second.expired()) {
      node_->answer(it->second.id(), it->second.envelope().priority(), fabric::Node::expired_result(it->second));
      ++counts_.timed_out;
      ++counts_.answered;
      it = inbox_.erase(it);
    } else {
      ++it;
    }
  }
  return applied;
}

void StepCommands::finish(std::uint64_t step) {
  const std::string reason = "the job ended at step " + std::to_string(step) + "; not applied";
  for (auto& c : node_->take_commands()) {
    const Key k{c.id().sender(), c.id().seq()};
    if (auto d = decided_.find(k); d != decided_.end()) {
      node_->answer(c.id(), c.envelope().priority(), d->second);
    } else {
      inbox_.emplace(k, std::move(c));
    }
  }
  for (auto& [k, c] : inbox_) {
    node_->answer(c.id(), c.envelope().priority(), wire::command_result(wire::Status::REJECTED, rank_, reason));
    ++counts_.answered;
  }
  inbox_.clear();
  node_->close_commands(reason);
  mpi::check(MPI_Barrier(comm_), "MPI_Barrier");
}

}  // namespace esper::rank
