// The collective layer's allreduce of seed gradients vs plain MPI_Allreduce of the same buffer, in
// the same run (issue 5). Run under mpirun:  mpirun -np 4 build/default/bench/mpi/allreduce_bench
// Prints a fixed table (size, esper time, MPI time, ratio, #wrong) and a JSON line per size.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "mpi/bootstrap.hpp"
#include "mpi/collectives.hpp"

int main(int argc, char** argv) {
  esper::mpi::Session session(argc, argv);
  const auto& w = session.world();
  auto coll = esper::mpi::make_mpi_collectives();
  // Seed gradients of a 768x768 layer with 100 chunks at rank 8: A is 800x768, B 768x8.
  const std::vector<std::size_t> sizes{1'000, 16'384, 620'544, 4'000'000};
  if (w.rank == 0) {
    std::printf("# ranks %d\n#%12s %14s %14s %8s %7s\n", w.size, "floats", "esper_us", "mpi_us", "ratio", "#wrong");
  }
  for (const auto n : sizes) {
    std::vector<float> a(n), b(n);
    const int iters = n > 1'000'000 ? 10 : n > 100'000 ? 30 : 300;
    auto fill = [&](std::vector<float>& v) {
      for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>((i % 97) + w.rank);
    };
    // Interleaved, so that both see the same machine state; medians of `iters` samples each.
    std::vector<double> ours_us, plain_us;
    auto sample = [&](auto&& op, std::vector<float>& v, std::vector<double>& into) {
      fill(v);
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = std::chrono::steady_clock::now();
      op(v);
      into.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    };
    auto plain_op = [&](std::vector<float>& v) {
      MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      const float scale = 1.0f / static_cast<float>(w.size);
      for (auto& x : v) x *= scale;
    };
    for (int i = 0; i < iters + 1; ++i) {
      sample([&](std::vector<float>& v) { coll->allreduce_mean(v); }, a, ours_us);
      sample(plain_op, b, plain_us);
    }
    auto median = [](std::vector<double> v) {
      v.erase(v.begin());  // warm-up
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const double ours = median(ours_us);
    const double plain = median(plain_us);
    // Check: the mean of (i % 97) + rank over ranks.
    int wrong = 0;
    const float mean_rank = static_cast<float>(w.size - 1) / 2.0f;
    for (std::size_t i = 0; i < n; i += 997) {
      const float want = static_cast<float>(i % 97) + mean_rank;
      if (std::abs(a[i] - want) > 1e-4f * std::max(1.0f, want) || a[i] != b[i]) ++wrong;
    }
    int wrong_all = 0;
    MPI_Reduce(&wrong, &wrong_all, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (w.rank == 0) {
      std::printf(" %12zu %14.1f %14.1f %8.3f %7d\n", n, ours, plain, ours / plain, wrong_all);
      std::printf("{\"floats\": %zu, \"esper_us\": %.1f, \"mpi_us\": %.1f, \"ratio\": %.3f, \"wrong\": %d}\n", n, ours,
                  plain, ours / plain, wrong_all);
    }
  }
  return 0;
}
