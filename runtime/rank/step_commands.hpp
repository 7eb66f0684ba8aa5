// Step-consistent commands (docs/design.md §6): every replica applies a command at the same step
// boundary, or none does — whichever rank received it.
//
// At each boundary every rank takes the commands its node received and decides for each of its
// own copies: apply now (apply_at_step is -1 or this step), STALE (its step has passed), TIMEOUT
// (its sender's deadline has passed: it will not be applied), or later (a future step: kept). One
// collective gathers every rank's decisions with the command bytes; every rank then reads the same
// plan: each command once (where several ranks hold a copy, the lowest rank's decision counts),
// the ones to apply in priority order (CRITICAL first), then in the order they were sent (the
// envelope's timestamp, then msg_id). Every rank applies exactly those, from those bytes, and
// answers its own copy of each with the result — at once if it has the copy, or when the copy
// arrives (results are kept until well past the command's deadline). So a command to `rank:1` is
// applied on every replica and answered by rank 1; a command to `all` is answered by every rank.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <chrono>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "fabric/node.hpp"
#include "mpi/collectives.hpp"
#include "rank/step_plan.hpp"

namespace esper::rank {

class StepCommands {
 public:
  // apply: runs one command on this replica and returns its result (same on every replica).
  using Apply = std::function<wire::CommandResultT(const wire::Command&, const wire::Envelope&)>;

  // `layers`: the layers this rank holds (which commands target it).
  StepCommands(fabric::Node* node, int world_rank, std::vector<std::uint32_t> layers, MPI_Comm comm = MPI_COMM_WORLD);

  // Collective: every rank calls it at every step boundary. Returns the number applied.
  // With `stop`, the same collective also agrees on it: on return *stop is true when any rank's
  // was, and then nothing is applied (what was taken stays for finish()). One allgather per step
  // carries both; the commands' bytes follow in a second one only when there are any.
  std::size_t boundary(std::uint64_t step, const Apply& apply, bool* stop = nullptr);
  // Collective, after the last boundary: every command not applied is answered REJECTED ("the job
  // ended"), on every rank, and so is every command that arrives later. Copies still owed — of
  // commands that target this rank and were applied from another rank's copy — are waited for
  // (at most `linger`) and answered with the result, so that their sender does not time out on a
  // command the job applied.
  void finish(std::uint64_t step, std::chrono::milliseconds linger = std::chrono::seconds(2));

  struct Counts {
    std::uint64_t received = 0, applied = 0, stale = 0, timed_out = 0, answered = 0;
  };
  [[nodiscard]] const Counts& counts() const noexcept { return counts_; }

 private:
  using Key = std::pair<std::uint64_t, std::uint64_t>;
  struct Decided {
    wire::CommandResultT result;
    std::uint64_t forget_after_ns;  // wall clock: well past the command's deadline
  };
  void answer_or_keep(const Key& k, wire::Priority p, wire::CommandResultT result, std::uint64_t forget_after_ns,
                      bool targets_me);
  void forget_old_decisions();
  // Takes the node's commands: a decided one is answered with its result, the rest kept.
  void take_own_copies();

  fabric::Node* node_;
  int rank_;
  std::vector<std::uint32_t> layers_;
  int size_ = 1;
  MPI_Comm comm_;
  std::map<Key, fabric::TakenCommand> inbox_;  // own copies not answered yet
  std::map<Key, Decided> decided_;             // results for copies still to arrive
  std::deque<Key> decided_order_;
  std::set<Key> owed_;  // decided, targeting this rank, own copy not yet here
  wire::Decoder decoder_;
  Counts counts_;
};

}  // namespace esper::rank
