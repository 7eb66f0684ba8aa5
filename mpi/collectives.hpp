// Collectives for data-parallel replicas (docs/design.md §6): one interface, an MPI implementation for
// CPU buffers and an NCCL implementation for device buffers (built with CUDA and NCCL).
// Every rank must call the same collectives in the same order.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <mpi.h>

namespace esper::mpi {

struct DigestAgreement {
  bool equal = true;
  std::vector<std::uint64_t> digests;  // one per rank
};

class Collectives {
 public:
  virtual ~Collectives() = default;
  // In place: the element-wise sum over ranks, divided by the number of ranks.
  virtual void allreduce_mean(std::span<float> values) = 0;
  // In place: the element-wise sum over ranks (host memory, small control data).
  virtual void allreduce_sum(std::span<double> values) = 0;
  // In place: root's values everywhere.
  virtual void broadcast(std::span<float> values, int root) = 0;
  // Every rank's digest, and whether they are all equal.
  virtual DigestAgreement agree(std::uint64_t digest) = 0;
  [[nodiscard]] virtual std::string name() const = 0;
};

// Host buffers over MPI_COMM_WORLD (or `comm`).
std::unique_ptr<Collectives> make_mpi_collectives(MPI_Comm comm = MPI_COMM_WORLD);

#ifdef ESPER_HAVE_NCCL
// Device buffers over an NCCL communicator; the unique id travels over MPI from rank 0. The caller
// has selected the device (by local rank) before.
std::unique_ptr<Collectives> make_nccl_collectives(MPI_Comm comm = MPI_COMM_WORLD);
#endif

}  // namespace esper::mpi
