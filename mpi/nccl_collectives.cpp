// NCCL collectives on device buffers. Compiled when CUDA and NCCL are found; the GPU job selects
// the device by local rank before creating them. Every NCCL and CUDA call is checked.
#include <cuda_runtime.h>
#include <nccl.h>

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


class NcclCollectives final : public Collectives {
 public:
  explicit NcclCollectives(MPI_Comm comm) : comm_(comm), host_(make_mpi_collectives(comm)) {
    int rank = 0;
    MPI_Comm_rank(comm_, &rank);
    MPI_Comm_size(comm_, &size_);
    ncclUniqueId id{};
    if (rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm_), "MPI_Bcast(ncclUniqueId)");
    nccl_check(ncclCommInitRank(&nccl_, size_, id, rank), "ncclCommInitRank");
    cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    cuda_check(cudaMalloc(&digest_dev_, sizeof(std::uint64_t) * static_cast<std::size_t>(size_)), "cudaMalloc");
  }
  ~NcclCollectives() override {
    cudaFree(digest_dev_);
    cudaStreamDestroy(stream_);
    ncclCommDestroy(nccl_);
  }

  void allreduce_mean(std::span<float> values) override {
    if (values.empty()) return;
    nccl_check(ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat, ncclAvg, nccl_, stream_),
               "ncclAllReduce");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  // Host control data: small, so MPI carries it.
  void allreduce_sum(std::span<double> values) override { host_->allreduce_sum(values); }

  void broadcast(std::span<float> values, int root) override {
    if (values.empty()) return;
    nccl_check(ncclBroadcast(values.data(), values.data(), values.size(), ncclFloat, root, nccl_, stream_),
               "ncclBroadcast");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  DigestAgreement agree(std::uint64_t digest) override {
    DigestAgreement out;
    out.digests.resize(static_cast<std::size_t>(size_));
    cuda_check(cudaMemcpy(digest_dev_, &digest, sizeof digest, cudaMemcpyHostToDevice), "cudaMemcpy");
    nccl_check(ncclAllGather(digest_dev_, digest_dev_, 1, ncclUint64, nccl_, stream_), "ncclAllGather");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    cuda_check(cudaMemcpy(out.digests.data(), digest_dev_, sizeof(std::uint64_t) * out.digests.size(),
                          cudaMemcpyDeviceToHost),
               "cudaMemcpy");
    for (const auto d : out.digests) out.equal = out.equal && d == out.digests.front();
    return out;
  }

  [[nodiscard]] std::string name() const override { return "nccl"; }

 private:
  MPI_Comm comm_;
  std::unique_ptr<Collectives> host_;
  int size_ = 1;
  ncclComm_t nccl_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::uint64_t* digest_dev_ = nullptr;
};

}  // namespace

std::unique_ptr<Collectives> make_nccl_collectives(MPI_Comm comm) { return std::make_unique<NcclCollectives>(comm); }

}  // namespace esper::mpi
