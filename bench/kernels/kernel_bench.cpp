// Seed-layer benchmarks (docs/design.md §9: telemetry overhead < 3% of the step on CPU; on a GPU the fused
// forward within 10% of its bandwidth floor). Layer: 768×768, 100 chunks, LowRank r = 8, states
// cycling through all 11 (7 of 11 seeds evaluated), batch 32, 256, 4096.
//   BM_CpuForward/batch/telemetry, BM_CpuBackward/batch: time per call (one thread).
//   BM_CpuTelemetryOverhead/batch: forwards with and without telemetry interleaved in one loop;
//     overhead_pct = (with − without) / without.
//   BM_CudaForward/batch/telemetry, BM_CudaEpilogue/batch (registered only when a CUDA device is
//     present): the epilogue's floor = bytes it must move / device-to-device copy bandwidth;
//     vs_floor = measured / floor.
// wrong: results that disagree with a naive double-precision recomputation (CPU, rows 0 and last)
// or with the CPU reference (CUDA): must be 0.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/seed_layer.hpp"
#if defined(ESPER_KERNELS_WITH_CUDA)
#include "kernels/cuda/cuda_seed_layer.hpp"
#endif

namespace esper::kernels {
namespace {

constexpr int kFeatures = 768, kChunks = 100, kRank = 8;

SeedLayerConfig bench_config() {
  SeedLayerConfig c;
  c.in_features = kFeatures;
  c.out_features = kFeatures;
  c.chunks = kChunks;
  c.rank = kRank;
  c.blueprint = Blueprint::LowRank;
  c.init_seed = 1;
  return c;
}

std::vector<float> random_vector(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

std::unique_ptr<SeedLayer> bench_layer(Backend backend) {
  const auto c = bench_config();
  auto layer = std::move(make_seed_layer(backend, c)).value();
  layer->write(Tensor::SeedB, random_vector(tensor_size(c, Tensor::SeedB), 2, 0.1f));
  std::vector<SeedState> states;
  for (int i = 0; i < kChunks; ++i) states.push_back(static_cast<SeedState>(i % kSeedStateCount));
  layer->set_seeds(states, std::vector<float>(kChunks, 0.5f));
  return layer;
}

// Naive double-precision output of row `row`; returns the count of elements off by more than 1e-5.
int wrong_rows(const SeedLayer& layer, const std::vector<float>& x, const std::vector<float>& out, int batch) {
  const auto& c = layer.config();
  std::vector<float> w(tensor_size(c, Tensor::BaseWeight)), b(tensor_size(c, Tensor::BaseBias)),
      a(tensor_size(c, Tensor::SeedA)), bb(tensor_size(c, Tensor::SeedB));
  layer.read(Tensor::BaseWeight, w);
  layer.read(Tensor::BaseBias, b);
  layer.read(Tensor::SeedA, a);
  layer.read(Tensor::SeedB, bb);
  int wrong = 0;
  for (int row : {0, batch - 1}) {
    const float* xr = x.data() + static_cast<std::size_t>(row) * kFeatures;
    for (int j = 0; j < kFeatures; ++j) {
      double y = b[static_cast<std::size_t>(j)];
      for (int i = 0; i < kFeatures; ++i) y += static_cast<double>(w[static_cast<std::size_t>(j * kFeatures + i)]) * xr[i];
      const int chunk = layer.partition().chunk_of(j);
      double f = 0;
      if (seed_evaluated(layer.states()[static_cast<std::size_t>(chunk)])) {
        for (int k = 0; k < kRank; ++k) {
          double z = 0;
          const float* ak = a.data() + (static_cast<std::size_t>(chunk) * kRank + static_cast<std::size_t>(k)) * kFeatures;
          for (int i = 0; i < kFeatures; ++i) z += static_cast<double>(ak[i]) * xr[i];
          f += bb[static_cast<std::size_t>(j * kRank + k)] * z;
        }
      }
      const double o = y + layer.alpha_in_effect(chunk) * f;
      const double got = out[static_cast<std::size_t>(row) * kFeatures + static_cast<std::size_t>(j)];
      wrong += std::abs(got - o) > 1e-5 * std::max(1.0, std::abs(o)) ? 1 : 0;
    }
  }
  return wrong;
}

void BM_CpuForward(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const bool telemetry = state.range(1) != 0;
  auto layer = bench_layer(Backend::Cpu);
  const auto x = random_vector(static_cast<std::size_t>(batch) * kFeatures, 3);
  std::vector<float> out(x.size());
  for (auto _ : state) {
    layer->forward(x, out, {.telemetry = telemetry});
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["wrong"] = wrong_rows(*layer, x, out, batch);
  state.SetLabel(telemetry ? "telemetry" : "no telemetry");
}
BENCHMARK(BM_CpuForward)->ArgsProduct({{32, 256, 4096}, {0, 1}})->Unit(benchmark::kMicrosecond);

void BM_CpuTelemetryOverhead(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  auto layer = bench_layer(Backend::Cpu);
  const auto x = random_vector(static_cast<std::size_t>(batch) * kFeatures, 3);
  std::vector<float> out(x.size()), out_plain(x.size());
  using clock = std::chrono::steady_clock;
  clock::duration with{}, without{};
  for (auto _ : state) {
    const auto t0 = clock::now();
    layer->forward(x, out_plain, {.telemetry = false});
    const auto t1 = clock::now();
    layer->forward(x, out, {.telemetry = true});
    const auto t2 = clock::now();
    without += t1 - t0;
    with += t2 - t1;
    benchmark::DoNotOptimize(out.data());
  }
  const double on = std::chrono::duration<double>(with).count(), off = std::chrono::duration<double>(without).count();
  state.counters["overhead_pct"] = 100.0 * (on - off) / off;
  state.counters["fwd_us"] = 1e6 * off / static_cast<double>(state.iterations());
  state.counters["fwd_tel_us"] = 1e6 * on / static_cast<double>(state.iterations());
  state.counters["wrong"] = std::memcmp(out.data(), out_plain.data(), out.size() * sizeof(float)) != 0 ? 1 : 0;
}
BENCHMARK(BM_CpuTelemetryOverhead)->Arg(32)->Arg(256)->Arg(4096)->Unit(benchmark::kMicrosecond);

void BM_CpuBackward(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  auto layer = bench_layer(Backend::Cpu);
  const auto x = random_vector(static_cast<std::size_t>(batch) * kFeatures, 3);
  const auto g = random_vector(x.size(), 4);
  std::vector<float> out(x.size()), gx(x.size());
  layer->forward(x, out);
  for (auto _ : state) {
    layer->backward(g, gx);
    benchmark::DoNotOptimize(gx.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetLabel("seed + input gradients, base frozen");
}
BENCHMARK(BM_CpuBackward)->Arg(32)->Arg(256)->Arg(4096)->Unit(benchmark::kMicrosecond);

#if defined(ESPER_KERNELS_WITH_CUDA)
int wrong_against_cpu(SeedLayer& gpu, const std::vector<float>& x, const std::vector<float>& gpu_out) {
  auto cpu = bench_layer(Backend::Cpu);
  std::vector<float> out(gpu_out.size());
  cpu->forward(x, out);
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < out.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(gpu_out[i]) - out[i]));
    scale = std::max(scale, std::abs(static_cast<double>(out[i])));
  }
  int wrong = diff / scale > 1e-5 ? 1 : 0;
  const auto tc = cpu->telemetry(), tg = gpu.telemetry();
  for (std::size_t c = 0; c < tc.size(); ++c) wrong += tc[c].dead_units != tg[c].dead_units ? 1 : 0;
  return wrong;
}

void BM_CudaForward(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const bool telemetry = state.range(1) != 0;
  auto layer = bench_layer(Backend::Cuda);
  const auto x = random_vector(static_cast<std::size_t>(batch) * kFeatures, 3);
  cuda::DeviceFloats dx(x), dout(x.size());
  layer->forward(dx.span(), dout.span(), {.telemetry = telemetry});
  cuda::synchronize();
  for (auto _ : state) {
    layer->forward(dx.span(), dout.span(), {.telemetry = telemetry});
    cuda::synchronize();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  layer->forward(dx.span(), dout.span());
  state.counters["wrong"] = wrong_against_cpu(*layer, x, dout.download());
  state.SetLabel(telemetry ? "telemetry" : "no telemetry");
}

void BM_CudaEpilogue(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  auto layer = bench_layer(Backend::Cuda);
  const auto x = random_vector(static_cast<std::size_t>(batch) * kFeatures, 3);
  cuda::DeviceFloats dx(x), dout(x.size());
  layer->forward(dx.span(), dout.span());
  cuda::EpilogueTiming t;
  for (auto _ : state) {
    t = cuda::time_forward_epilogue(*layer, 20);
    state.SetIterationTime(t.milliseconds * 1e-3);
  }
  const double bandwidth = cuda::copy_bandwidth(static_cast<std::size_t>(t.bytes / 2), 20);
  const double floor_s = t.bytes / bandwidth;
  state.counters["bytes"] = t.bytes;
  state.counters["GB/s"] = t.bytes / (t.milliseconds * 1e-3) / 1e9;
  state.counters["copy_GB/s"] = bandwidth / 1e9;
  state.counters["floor_us"] = floor_s * 1e6;
  state.counters["vs_floor"] = t.milliseconds * 1e-3 / floor_s;
  state.counters["wrong"] = wrong_against_cpu(*layer, x, dout.download());
}
#endif

void register_gpu_benchmarks() {
#if defined(ESPER_KERNELS_WITH_CUDA)
  if (!cuda_available()) return;
  benchmark::RegisterBenchmark("BM_CudaForward", BM_CudaForward)
      ->ArgsProduct({{32, 256, 4096}, {0, 1}})
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_CudaEpilogue", BM_CudaEpilogue)
      ->Arg(32)->Arg(256)->Arg(4096)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
#endif
}

}  // namespace
}  // namespace esper::kernels

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  esper::kernels::register_gpu_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
