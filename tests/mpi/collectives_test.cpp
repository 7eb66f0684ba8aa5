// The collectives behind the replicas (mpi/collectives.hpp): the MPI implementation on host buffers
// and, where a CUDA device and NCCL are present, the NCCL one on device buffers — mean, sum,
// broadcast and the digest agreement, whose all-gather NCCL only allows in place at
// recvbuff + rank. Run as one MPI process by CTest; `mpirun -np N collectives_test` runs the same
// checks across N ranks (one GPU per rank for the NCCL suite).
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "mpi/bootstrap.hpp"
#include "mpi/collectives.hpp"
#ifdef ESPER_HAVE_NCCL
#include <cuda_runtime.h>
#endif

namespace esper::mpi {
namespace {

Session& session() {
  static int argc = 0;
  static char** argv = nullptr;
  static Session s(argc, argv);
  return s;
}

// The same checks on any implementation; `to_device`/`to_host` move the buffers where it works.
template <class ToDevice, class ToHost>
void check_collectives(Collectives& c, ToDevice to_device, ToHost to_host) {
  const auto& w = session().world();
  const auto n = static_cast<float>(w.size);
  std::vector<float> v(257);
  std::iota(v.begin(), v.end(), static_cast<float>(w.rank));  // rank r holds r, r+1, ...
  auto buf = to_device(v);
  c.allreduce_mean(buf);
  const auto mean = to_host(buf, v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    ASSERT_FLOAT_EQ(mean[i], static_cast<float>(i) + (n - 1) / 2) << "element " << i;
  }
  std::vector<float> b(33, static_cast<float>(w.rank + 7));
  auto bbuf = to_device(b);
  c.broadcast(bbuf, w.size - 1);
  for (const auto x : to_host(bbuf, b.size())) ASSERT_FLOAT_EQ(x, static_cast<float>(w.size - 1 + 7));

  std::vector<double> s = {1.0, static_cast<double>(w.rank)};
  c.allreduce_sum(s);
  EXPECT_DOUBLE_EQ(s[0], w.size);
  EXPECT_DOUBLE_EQ(s[1], w.size * (w.size - 1) / 2.0);

  const auto same = c.agree(0xfeedbeefULL);
  EXPECT_TRUE(same.equal);
  ASSERT_EQ(same.digests.size(), static_cast<std::size_t>(w.size));
  for (const auto d : same.digests) EXPECT_EQ(d, 0xfeedbeefULL);
  const auto differ = c.agree(1000u + static_cast<std::uint64_t>(w.rank));
  for (int r = 0; r < w.size; ++r) EXPECT_EQ(differ.digests[static_cast<std::size_t>(r)], 1000u + r) << "rank " << r;
  EXPECT_EQ(differ.equal, w.size == 1);
}

TEST(MpiCollectives, MeanSumBroadcastAndAgreementOnHostBuffers) {
  auto c = make_mpi_collectives(session().comm());
  check_collectives(
      *c, [](std::vector<float>& v) { return std::span<float>(v); },
      [](std::span<float> s, std::size_t) { return std::vector<float>(s.begin(), s.end()); });
}

#ifdef ESPER_HAVE_NCCL
TEST(NcclCollectives, MeanSumBroadcastAndAgreementOnDeviceBuffers) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < session().world().local_size) {
    GTEST_SKIP() << "needs one CUDA device per rank on this node";
  }
  ASSERT_EQ(cudaSetDevice(session().world().local_rank), cudaSuccess);
  auto c = make_nccl_collectives(session().comm());
  std::vector<float*> owned;
  check_collectives(
      *c,
      [&](std::vector<float>& v) {
        float* d = nullptr;
        EXPECT_EQ(cudaMalloc(&d, v.size() * sizeof(float)), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(d, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
        owned.push_back(d);
        return std::span<float>(d, v.size());
      },
      [](std::span<float> s, std::size_t n) {
        std::vector<float> h(n);
        EXPECT_EQ(cudaMemcpy(h.data(), s.data(), n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
        return h;
      });
  for (auto* d : owned) cudaFree(d);
}
#endif

}  // namespace
}  // namespace esper::mpi
