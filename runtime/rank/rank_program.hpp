// The rank program behind `esper run` (docs/design.md §1, §6): every MPI rank trains the same seed
// layers data-parallel on its own batches of a synthetic teacher task; gradients and the losses
// the lifecycle guards read are averaged over ranks, so replicas stay identical. Rank 0 embeds the
// broker and broadcasts its endpoint; every rank connects a fabric node, publishes telemetry,
// applies commands at step boundaries (StepCommands) and answers them. Rank 0 also runs the
// controller (controller/controller.hpp) with a growth policy, which drives the seeds through the
// fabric like any client; or, for tests and benchmarks, a scripted command schedule.
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
  // The embedded broker's transport: ipc on one node, tcp on the node's address when the ranks
  // span nodes (auto), or forced (tcp also lets consumers on other machines reach it).
  std::string transport = "auto";       // auto | ipc | tcp
  // Whether ranks compress telemetry and other large bodies: auto (only when the link to the broker
  // leaves the host), always, or never.
  std::string compression = "auto";     // auto | always | never
  std::chrono::milliseconds heartbeat{1000};
  std::string policy = "balanced";      // the embedded controller's preset, or "none"
  std::string schedule = "none";        // scripted commands instead: advance | random:N | none
  std::uint64_t schedule_count = 0;     // N of random:N (checked by the command line)
  std::uint32_t schedule_every = 10;    // steps between the scripted commands
  std::uint32_t progress_every = 50;
  std::string report = "esper-report.json";
  bool fabric = true;                   // false: no broker, node or telemetry (overhead baseline)
  std::uint64_t schedule_seed = 7;
  // auto | cpu | cuda. auto: CUDA when every rank has a usable device of its own and the build has
  // NCCL, else CPU; cuda without that is an error. Every rank uses the same kind (docs/seed-layers.md).
  std::string device = "auto";
  // How long a rank's node and rank 0's controller wait to join the broker before the job fails.
  std::chrono::milliseconds connect_timeout{10'000};

  // Test hooks (hidden options): a step that sleeps this long before it runs (a slow job); an
  // error thrown on rank `fail_rank` at the boundary before step `fail_at_step` (-1: never); a
  // controller pointed at a broker that does not exist; an exception in a fabric thread
  // (`fail_thread`: "node" on rank `fail_rank`, or rank 0's "broker"; at the 3rd heartbeat).
  std::chrono::milliseconds step_sleep{0};
  std::int64_t fail_at_step = -1;
  int fail_rank = 0;
  bool inject_controller_join_failure = false;
  std::string fail_thread;  // empty, "node" or "broker"
};

// Exit codes: 0 completed; 1 an error on any rank (an invalid option, a broker that cannot be
// reached, a controller that cannot join, an exception mid-training or in one of the rank's
// threads — broker, node I/O, controller, schedule, watchdog: the whole job ends, rank 0's report
// says which rank failed, on which host, and why); 2 stopped by a signal; 3 stopped by a
// job-wide EmergencyStop or a Shutdown command; 4 replicas diverged (state digests differ); 5 a
// peer rank was lost (no heartbeat, or it died).
int run(const RunConfig& config, mpi::Session& session);

}  // namespace esper::rank
