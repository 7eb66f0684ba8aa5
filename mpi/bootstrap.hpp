// MPI bootstrap (docs/design.md §6): who am I in the job, and how do the ranks find the broker.
// Works under `mpirun` and `srun --mpi=pmix`, and as a singleton (one process, no launcher).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace esper::mpi {

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;   // among the ranks on this node
  int local_size = 1;
  std::string node;     // this node's name
  std::string job_id;   // Slurm's job id, else Open MPI's job id, else "local-<pid of rank 0>"
  [[nodiscard]] bool spans_nodes() const { return local_size < size; }
};

// MPI_Init_thread / MPI_Finalize. One per process; MPI is used from one thread at a time.
class Session {
 public:
  Session(int& argc, char**& argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  [[nodiscard]] const World& world() const noexcept { return world_; }
  [[nodiscard]] MPI_Comm comm() const noexcept { return MPI_COMM_WORLD; }

 private:
  World world_;
};

// Broadcasts a string (or bytes) from `root` to every rank.
std::string broadcast(const std::string& value, int root, MPI_Comm comm = MPI_COMM_WORLD);
std::vector<std::uint8_t> broadcast(const std::vector<std::uint8_t>& value, int root, MPI_Comm comm = MPI_COMM_WORLD);

// The address other nodes reach this one at: the first non-loopback IPv4 address of the host name,
// else of any interface; "127.0.0.1" when there is none.
std::string node_address();

// Throws esper::Error with the MPI error string when rc is not MPI_SUCCESS.
void check(int rc, const char* call);

}  // namespace esper::mpi
