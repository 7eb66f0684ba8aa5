#include "mpi/bootstrap.hpp"
#include "mpi/collectives.hpp"

namespace esper::mpi {
namespace {

class MpiCollectives final : public Collectives {
 public:
  explicit MpiCollectives(MPI_Comm comm) : comm_(comm) { MPI_Comm_size(comm_, &size_); }

  void allreduce_mean(std::span<float> values) override {
    if (values.empty()) return;
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_FLOAT, MPI_SUM, comm_),
          "MPI_Allreduce");
    const float scale = 1.0f / static_cast<float>(size_);
    for (auto& v : values) v *= scale;
  }

  void allreduce_sum(std::span<double> values) override {
    if (values.empty()) return;
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM, comm_),
          "MPI_Allreduce");
  }

  void broadcast(std::span<float> values, int root) override {
    if (values.empty()) return;
    check(MPI_Bcast(values.data(), static_cast<int>(values.size()), MPI_FLOAT, root, comm_), "MPI_Bcast");
  }

  DigestAgreement agree(std::uint64_t digest) override {
    DigestAgreement out;
    out.digests.resize(static_cast<std::size_t>(size_));
    check(MPI_Allgather(&digest, 1, MPI_UINT64_T, out.digests.data(), 1, MPI_UINT64_T, comm_), "MPI_Allgather");
    for (const auto d : out.digests) out.equal = out.equal && d == out.digests.front();
    return out;
  }

  [[nodiscard]] std::string name() const override { return "mpi"; }

 private:
  MPI_Comm comm_;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Collectives> make_mpi_collectives(MPI_Comm comm) { return std::make_unique<MpiCollectives>(comm); }

}  // namespace esper::mpi
