// The rank program behind `esper run` (DESIGN.md §1, §6): every MPI rank trains the same seed
// layers data-parallel on its own batches of a synthetic teacher task; gradients and the losses
// the lifecycle guards read are averaged over ranks, so replicas stay identical. Rank 0 embeds the
// broker and broadcasts its endpoint; every rank connects a fabric node, publishes telemetry,
// applies commands at step boundaries (StepCommands) and answers them. Until the controller lands,
// rank 0 drives the seeds with a scripted command schedule sent through the fabric like any client.
// Progress goes to stdout on rank 0; a JSON report is written at the end, also after SIGINT/SIGTERM.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "morphogenesis/morphogenesis.hpp"
#include "mpi/bootstrap.hpp"

namespace esper::rank {

struct RunConfig {
  int layers = 2;
  morphogenesis::Config layer;          // dims, chunks, rank, batch per rank, steps, teacher seed
  std::string broker;                   // empty: rank 0 runs an embedded broker
  std::chrono::milliseconds heartbeat{1000};
  std::string schedule = "advance";     // advance | random:N | none
  std::uint32_t schedule_every = 10;    // steps between the scripted commands
  std::uint32_t progress_every = 50;
  std::string report = "esper-report.json";
  bool fabric = true;                   // false: no broker, node or telemetry (overhead baseline)
  std::uint64_t schedule_seed = 7;
};

// Exit codes: 0 completed; 2 stopped by a signal; 3 stopped by an EmergencyStop/Shutdown command;
// 4 replicas diverged (state digests differ); 5 a peer rank was lost.
int run(const RunConfig& config, mpi::Session& session);

}  // namespace esper::rank
