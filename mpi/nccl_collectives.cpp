// NCCL collectives on device buffers. Compiled when CUDA and NCCL are found; the GPU job selects
// the device by local rank before creating them. Every NCCL and CUDA call is checked.
#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <type_traits>

#include "core/error.hpp"
#include "mpi/bootstrap.hpp"
#include "mpi/collectives.hpp"

namespace esper::mpi {
namespace {

void nccl_check(ncclResult_t rc, const char* call) {
  if (rc != ncclSuccess) throw Error(std::string(call) + " failed: " + ncclGetErrorString(rc));
}
void cuda_check(cudaError_t rc, const char* call) {
  if (rc != cudaSuccess) throw Error(std::string(call) + " failed: " + cudaGetErrorString(rc));
}


// Owners that free on every path, the constructor's failures included.
struct CommFree {
  void operator()(ncclComm_t c) const noexcept { ncclCommDestroy(c); }
};
struct StreamFree {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
struct DeviceFree {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
using Comm = std::unique_ptr<std::remove_pointer_t<ncclComm_t>, CommFree>;
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamFree>;
using DeviceDigests = std::unique_ptr<std::uint64_t, DeviceFree>;

class NcclCollectives final : public Collectives {
 public:
  explicit NcclCollectives(MPI_Comm comm) : comm_(comm), host_(make_mpi_collectives(comm)) {
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    ncclUniqueId id{};
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm_), "MPI_Bcast(ncclUniqueId)");
    ncclComm_t nccl = nullptr;
    nccl_check(ncclCommInitRank(&nccl, size_, id, rank_), "ncclCommInitRank");
    nccl_.reset(nccl);
    cudaStream_t stream = nullptr;
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
    stream_.reset(stream);
    void* digests = nullptr;
    cuda_check(cudaMalloc(&digests, sizeof(std::uint64_t) * static_cast<std::size_t>(size_)), "cudaMalloc");
    digests_.reset(static_cast<std::uint64_t*>(digests));
  }

  void allreduce_mean(std::span<float> values) override {
    if (values.empty()) return;
    nccl_check(ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat, ncclAvg, nccl_.get(), stream_.get()),
               "ncclAllReduce");
    cuda_check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
  }

  // Host control data: small, so MPI carries it.
  void allreduce_sum(std::span<double> values) override { host_->allreduce_sum(values); }

  void broadcast(std::span<float> values, int root) override {
    if (values.empty()) return;
    nccl_check(ncclBroadcast(values.data(), values.data(), values.size(), ncclFloat, root, nccl_.get(), stream_.get()),
               "ncclBroadcast");
    cuda_check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
  }

  // In place, as NCCL allows it: each rank's digest at recvbuff + rank, the send buffer.
  DigestAgreement agree(std::uint64_t digest) override {
    DigestAgreement out;
    out.digests.resize(static_cast<std::size_t>(size_));
    std::uint64_t* mine = digests_.get() + rank_;
    cuda_check(cudaMemcpyAsync(mine, &digest, sizeof digest, cudaMemcpyHostToDevice, stream_.get()), "cudaMemcpyAsync");
    nccl_check(ncclAllGather(mine, digests_.get(), 1, ncclUint64, nccl_.get(), stream_.get()), "ncclAllGather");
    cuda_check(cudaMemcpyAsync(out.digests.data(), digests_.get(), sizeof(std::uint64_t) * out.digests.size(),
                               cudaMemcpyDeviceToHost, stream_.get()),
               "cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
    for (const auto d : out.digests) out.equal = out.equal && d == out.digests.front();
    return out;
  }

  [[nodiscard]] std::string name() const override { return "nccl"; }

 private:
  MPI_Comm comm_;
  std::unique_ptr<Collectives> host_;
  int rank_ = 0;
  int size_ = 1;
  // Destroyed in reverse: the buffer and the stream before the communicator.
  Comm nccl_;
  Stream stream_;
  DeviceDigests digests_;
};

}  // namespace

std::unique_ptr<Collectives> make_nccl_collectives(MPI_Comm comm) { return std::make_unique<NcclCollectives>(comm); }

}  // namespace esper::mpi
