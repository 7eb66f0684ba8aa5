// The backend-independent half of a seed layer: the chunk partition, the per-chunk control that
// both backends share, config validation and the backend factory.
#include "kernels/seed_layer.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "kernels/layer_math.hpp"

#if defined(ESPER_KERNELS_WITH_CUDA)
#include "kernels/cuda/cuda_seed_layer.hpp"
#endif

namespace esper::kernels {

#if !defined(ESPER_KERNELS_STANDALONE)
static_assert(static_cast<int>(wire::SeedState::MAX) + 1 == kSeedStateCount,
              "fbs/common.fbs changed SeedState: update kernels/seed_state.hpp and seed_rules.hpp");
#endif

ChunkPartition partition_features(int features, int chunks) {
  if (chunks < 1 || chunks > features) {
    throw Error("partition_features: need 1 <= chunks <= features, got chunks=" + std::to_string(chunks) +
                " features=" + std::to_string(features));
  }
  ChunkPartition p;
  p.offsets.resize(static_cast<std::size_t>(chunks) + 1);
  const int base = features / chunks, larger = features % chunks;
  for (int c = 0; c < chunks; ++c) p.offsets[static_cast<std::size_t>(c) + 1] = p.begin(c) + base + (c < larger ? 1 : 0);
  return p;
}

int ChunkPartition::chunk_of(int feature) const {
  const auto it = std::upper_bound(offsets.begin(), offsets.end(), feature);
  return static_cast<int>(it - offsets.begin()) - 1;
}

double ChunkTelemetry::variance() const {
  if (elements == 0) return 0.0;
  const double m = mean();
  return std::max(0.0, sum_squares / static_cast<double>(elements) - m * m);
}

std::size_t tensor_size(const SeedLayerConfig& c, Tensor t) {
  const auto in = static_cast<std::size_t>(c.in_features), out = static_cast<std::size_t>(c.out_features);
  const auto r = static_cast<std::size_t>(c.rank), chunks = static_cast<std::size_t>(c.chunks);
  switch (t) {
    case Tensor::BaseWeight: return out * in;
    case Tensor::BaseBias: return out;
    case Tensor::SeedA: return chunks * r * in;
    case Tensor::SeedB: return out * r;
  }
  throw Error("tensor_size: unknown tensor");
}

SeedLayer::SeedLayer(const SeedLayerConfig& config)
    : config_(config),
      partition_(partition_features(config.out_features, config.chunks)),
      states_(static_cast<std::size_t>(config.chunks), SeedState::DORMANT),
      alphas_(static_cast<std::size_t>(config.chunks), 0.0f),
      settings_(static_cast<std::size_t>(config.chunks), default_seed_settings()) {}

void SeedLayer::set_seed(int chunk, SeedState state, float alpha) {
  if (chunk < 0 || chunk >= config_.chunks) throw Error("set_seed: chunk " + std::to_string(chunk) + " out of range");
  if (!(alpha >= 0.0f && alpha <= 1.0f)) throw Error("set_seed: alpha must lie in [0, 1], got " + std::to_string(alpha));
  if (static_cast<int>(state) >= kSeedStateCount) throw Error("set_seed: unknown state");
  states_[static_cast<std::size_t>(chunk)] = state;
  alphas_[static_cast<std::size_t>(chunk)] = alpha;
  seeds_changed();
}

void SeedLayer::set_seeds(std::span<const SeedState> states, std::span<const float> alphas) {
  if (states.size() != states_.size() || alphas.size() != alphas_.size()) {
    throw Error("set_seeds: need one state and one alpha per chunk (" + std::to_string(states_.size()) + ")");
  }
  for (std::size_t c = 0; c < states.size(); ++c) {
    if (!(alphas[c] >= 0.0f && alphas[c] <= 1.0f)) throw Error("set_seeds: alpha must lie in [0, 1]");
    if (static_cast<int>(states[c]) >= kSeedStateCount) throw Error("set_seeds: unknown state");
  }
  std::copy(states.begin(), states.end(), states_.begin());
  std::copy(alphas.begin(), alphas.end(), alphas_.begin());
  seeds_changed();
}

namespace {
std::string shortest(float value) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(value);
}
}  // namespace

void SeedLayer::set_seed_settings(int chunk, const SeedSettings& settings) {
  if (chunk < 0 || chunk >= config_.chunks) {
    throw Error("set_seed_settings: chunk " + std::to_string(chunk) + " out of range [0, " +
                std::to_string(config_.chunks) + ")");
  }
  if (settings.rank < 1 || settings.rank > config_.rank) {
    throw Error("set_seed_settings: rank must lie in [1, " + std::to_string(config_.rank) + "], got " +
                std::to_string(settings.rank));
  }
  if (!(settings.learning_rate > 0.0f) || !std::isfinite(settings.learning_rate)) {
    throw Error("set_seed_settings: learning_rate must be finite and > 0, got " + shortest(settings.learning_rate));
  }
  auto& current = settings_[static_cast<std::size_t>(chunk)];
  const SeedSettings previous = current;
  current = settings;
  seed_settings_changed(chunk, previous);
}

SeedSettings SeedLayer::seed_settings(int chunk) const {
  if (chunk < 0 || chunk >= config_.chunks) {
    throw Error("seed_settings: chunk " + std::to_string(chunk) + " out of range");
  }
  return settings_[static_cast<std::size_t>(chunk)];
}

std::uint64_t SeedLayer::settings_digest() const {
  std::uint64_t sum = 0;
  for (std::size_t c = 0; c < settings_.size(); ++c) {
    sum += detail::digest_element(detail::kTagSeedRank, c, static_cast<std::uint64_t>(settings_[c].rank));
    const auto lr_bits = std::bit_cast<std::uint32_t>(settings_[c].learning_rate);
    sum += detail::digest_element(detail::kTagSeedLearningRate, c, lr_bits);
  }
  return sum;
}

float SeedLayer::alpha_in_effect(int chunk) const {
  const auto c = static_cast<std::size_t>(chunk);
  return effective_alpha(states_.at(c), alphas_.at(c));
}

int SeedLayer::batch_of(std::span<const float> x, std::span<const float> out) const {
  const auto in = static_cast<std::size_t>(config_.in_features), n = static_cast<std::size_t>(config_.out_features);
  if (x.empty() || x.size() % in != 0 || out.size() != x.size() / in * n) {
    throw Error("seed layer: x must be batch×" + std::to_string(in) + " and out batch×" + std::to_string(n) +
                ", got " + std::to_string(x.size()) + " and " + std::to_string(out.size()) + " floats");
  }
  return static_cast<int>(x.size() / in);
}

namespace {

std::string validate(const SeedLayerConfig& c) {
  if (c.in_features < 1 || c.out_features < 1) return "in_features and out_features must be >= 1";
  if (c.chunks < 1 || c.chunks > c.out_features) return "chunks must lie in [1, out_features]";
  if (c.rank < 1) return "rank must be >= 1";
  const auto& o = c.optimizer;
  if (!(o.learning_rate > 0.0f) || !std::isfinite(o.learning_rate)) return "learning_rate must be finite and > 0";
  if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f) || !(o.beta2 >= 0.0f && o.beta2 < 1.0f)) return "Adam betas must lie in [0, 1)";
  if (!(o.epsilon > 0.0f)) return "Adam epsilon must be > 0";
  if (!std::isfinite(c.dead_threshold)) return "dead_threshold must be finite";
  return {};
}

CudaStatus probe_cuda() {
#if defined(ESPER_KERNELS_WITH_CUDA)
  CudaStatus s = cuda::probe_device();
#else
  CudaStatus s{false, "esper was built without CUDA (nvcc not found at configure time)"};
#endif
  return s;
}

}  // namespace

const CudaStatus& cuda_status() {
  static const CudaStatus status = probe_cuda();
  return status;
}

Expected<std::unique_ptr<SeedLayer>, LayerError> make_seed_layer(Backend backend, const SeedLayerConfig& config,
                                                                 [[maybe_unused]] Memory memory) {
  if (auto why = validate(config); !why.empty()) return unexpected(LayerError{"invalid seed layer config: " + why});
  if (backend == Backend::Cpu) return make_cpu_seed_layer(config);
  if (!cuda_available()) return unexpected(LayerError{"CUDA backend unavailable: " + cuda_status().reason});
#if defined(ESPER_KERNELS_WITH_CUDA)
  return cuda::make_cuda_seed_layer(config, memory);
#else
  return unexpected(LayerError{"CUDA backend unavailable"});
#endif
}

Expected<std::string, LayerError> select_device(int local_rank) {
  if (local_rank < 0) return unexpected(LayerError{"select_device: local rank must be >= 0"});
  if (!cuda_available()) return unexpected(LayerError{"CUDA backend unavailable: " + cuda_status().reason});
#if defined(ESPER_KERNELS_WITH_CUDA)
  return cuda::select_device(local_rank % cuda_status().devices);
#else
  return unexpected(LayerError{"CUDA backend unavailable"});
#endif
}

void detail::check_copy_size(std::size_t want, std::size_t got) {
  if (want != got) throw Error("tensor copy: expected " + std::to_string(want) + " floats, got " + std::to_string(got));
}

}  // namespace esper::kernels
