// Seed layers (docs/design.md §5): a base linear layer y = W x + b whose output features are split into
// C chunks, each with a seed f_c blended in as o_c = y_c + α_c f_c(x). One interface, two backends:
// the CPU reference (the test oracle) and CUDA kernels. docs: docs/seed-layers.md.
//
// Layouts (row-major, fp32): x batch×in, out/target/grad_out batch×out, grad_x batch×in,
// W out×in, b out, A C×r×in (seed c's A_c is r×in), B out×r (rows of chunk c form B_c, n_c×r).
// Blueprints: LowRank f = B A x; BottleneckMlp f = B relu(A x). B starts at zero, so a fresh seed
// changes nothing at any α.
// Where the data lives (Memory, chosen at make_seed_layer):
//   span                                  Cpu     Cuda, Native   Cuda, Host
//   forward x, out, options.target        host    device         host (staged through device copies)
//   backward grad_out, grad_x             host    device         host (staged through device copies)
//   read/write/read_gradient values       host    host           host
//   gradient_buffer()                     host    device         device (what NCCL reduces)
// Parameters, states, alphas, optimizer state and telemetry accumulators live in the backend's
// memory; read() and write() copy them. The CUDA backend, staging included, works on the legacy
// default stream: its copies and kernels are ordered with each other and with work on any blocking
// stream (NCCL's), and a copy to a host span has completed when the call returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "kernels/seed_rules.hpp"
#include "kernels/seed_state.hpp"

namespace esper::kernels {

enum class Backend : std::uint8_t { Cpu, Cuda };
// Where forward's and backward's spans live: Native, the backend's own memory (host for Cpu, device
// for Cuda); Host, host memory on either backend. A host-staged CUDA layer copies x and the target
// to device buffers it owns (x stays there for backward), and out, grad_x back; it is for callers
// that keep their data on the host, such as the morphogenesis driver.
enum class Memory : std::uint8_t { Native, Host };
enum class Blueprint : std::uint8_t { LowRank, BottleneckMlp };
enum class OptimizerKind : std::uint8_t { Sgd, Adam };

// Plain SGD (p -= lr g) or Adam with bias correction (Kingma & Ba), no weight decay. Each seed counts
// its own Adam steps (it starts training at its own time); the base layer has one counter.
struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::Adam;
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
};

struct SeedLayerConfig {
  int in_features = 0;
  int out_features = 0;
  int chunks = 1;  // C, 1 ≤ C ≤ out_features
  int rank = 4;    // r
  Blueprint blueprint = Blueprint::LowRank;
  bool train_base = false;  // W and b get gradients and optimizer steps
  OptimizerConfig optimizer;
  // An output feature is dead in a batch when o ≤ dead_threshold for every sample (it would stay
  // zero through a following ReLU).
  float dead_threshold = 0.0f;
  std::uint64_t init_seed = 0;  // parameters are a pure function of (init_seed, tensor, index)
};

// Output features split into C contiguous chunks: the first (features mod C) have one more feature.
struct ChunkPartition {
  std::vector<int> offsets;  // C + 1 entries, offsets[0] = 0, offsets[C] = features
  int chunks() const { return static_cast<int>(offsets.size()) - 1; }
  int begin(int chunk) const { return offsets[static_cast<std::size_t>(chunk)]; }
  int end(int chunk) const { return offsets[static_cast<std::size_t>(chunk) + 1]; }
  int size(int chunk) const { return end(chunk) - begin(chunk); }
  int chunk_of(int feature) const;
};
// Precondition (else esper::Error): 1 ≤ chunks ≤ features.
ChunkPartition partition_features(int features, int chunks);

// Per chunk, over batch × n_c elements of o_c, computed in the forward pass that produced o.
// Losses are the chunk's share of the layer's MSE: Σ_chunk (value − target)² / (batch · out), so the
// chunks' shares add up to the layer's MSE. Without a target they are 0 and has_loss is false.
struct ChunkTelemetry {
  double sum = 0;
  double sum_squares = 0;
  std::int64_t elements = 0;
  std::int32_t dead_units = 0;   // see SeedLayerConfig::dead_threshold
  bool has_loss = false;
  double loss = 0;               // of the output o_c as produced
  double loss_without_seed = 0;  // of y_c (α = 0)
  double shadow_loss = 0;        // of y_c + f_c (α = 1); = loss_without_seed when f_c is not evaluated
  double mean() const { return elements ? sum / static_cast<double>(elements) : 0.0; }
  double variance() const;
  // EVALUATING's performance delta: chunk loss without the seed minus with it (α = 1); > 0 helps.
  double performance_delta() const { return loss_without_seed - shadow_loss; }
};

// One seed's blueprint settings (SetBlueprint, applied at a step boundary on every replica). A seed
// of rank r_c < config.rank is exactly an adapter of rank r_c: rows r_c..r−1 of A_c and columns
// r_c..r−1 of B_c are 0 (parameters, gradients and optimizer moments) and stay 0 through backward,
// step and write. The optimizer updates the seed's parameters with its learning_rate (the base
// layer keeps config.optimizer.learning_rate). Defaults: config.rank, config.optimizer.learning_rate.
struct SeedSettings {
  int rank = 0;                // 1..config.rank
  float learning_rate = 0.0f;  // finite, > 0
  bool operator==(const SeedSettings&) const = default;
};

enum class Tensor : std::uint8_t { BaseWeight, BaseBias, SeedA, SeedB };
std::size_t tensor_size(const SeedLayerConfig& config, Tensor tensor);

struct ForwardOptions {
  std::span<const float> target;  // batch×out, optional: enables the loss telemetry
  bool telemetry = true;
};

class SeedLayer {
 public:
  virtual ~SeedLayer() = default;
  SeedLayer(const SeedLayer&) = delete;
  SeedLayer& operator=(const SeedLayer&) = delete;

  virtual Backend backend() const = 0;
  const SeedLayerConfig& config() const { return config_; }
  const ChunkPartition& partition() const { return partition_; }

  // Per-chunk control, set by the caller each step. alpha is used in GRAFTING only (docs/design.md §5) and
  // must lie in [0, 1] (else esper::Error); it is stored and digested as given in every state.
  void set_seed(int chunk, SeedState state, float alpha = 0.0f);
  void set_seeds(std::span<const SeedState> states, std::span<const float> alphas);
  const std::vector<SeedState>& states() const { return states_; }
  const std::vector<float>& alphas() const { return alphas_; }
  float alpha_in_effect(int chunk) const;

  // Draws seed `chunk` afresh: A_c from a new generation of the init stream, B_c = 0, its optimizer
  // state cleared, its settings back to the defaults (the slot is free for a new blueprint). The
  // state and alpha are left to the caller.
  virtual void reset_seed(int chunk) = 0;

  // Takes effect at once (a pending gradient is masked too). Lowering the rank zeroes the seed's
  // tail; raising it redraws the newly enabled rows of A_c from the seed's init stream (its B_c
  // columns stay 0, so the output does not change), as a fresh seed of that rank has them. Throws
  // esper::Error naming the bad value: chunk, rank outside [1, config.rank], learning_rate not
  // finite and > 0. The settings are part of digest().
  void set_seed_settings(int chunk, const SeedSettings& settings);
  SeedSettings seed_settings(int chunk) const;
  SeedSettings default_seed_settings() const { return {config_.rank, config_.optimizer.learning_rate}; }

  // o = the blended output. Keeps x (by pointer: it must stay unchanged until backward) and the
  // seeds' hidden activations for backward. Telemetry, when asked, is computed in the same pass.
  virtual void forward(std::span<const float> x, std::span<float> out, const ForwardOptions& options = {}) = 0;
  // From dL/do: gradients of the training seeds' parameters (others get 0), of W and b when
  // train_base, and, when grad_x is not empty, dL/dx (which sees a seed only through its α).
  virtual void backward(std::span<const float> grad_out, std::span<float> grad_x) = 0;
  // One optimizer step from the last backward's gradients on the seeds that trained in it (and on W,
  // b when train_base); it consumes them: a second step without a backward changes nothing.
  virtual void step() = 0;

  // The telemetry of the last forward with telemetry on (CUDA: waits for it).
  virtual std::vector<ChunkTelemetry> telemetry() const = 0;

  virtual void read(Tensor tensor, std::span<float> values) const = 0;
  virtual void write(Tensor tensor, std::span<const float> values) = 0;
  virtual void read_gradient(Tensor tensor, std::span<float> values) const = 0;
  // The gradient of the last backward, in the backend's own memory (host for Cpu, device for Cuda),
  // for collectives to reduce in place between backward() and step() (data-parallel replicas).
  virtual std::span<float> gradient_buffer(Tensor tensor) = 0;

  // 64-bit digest of states, alphas, seed settings, parameters, optimizer moments and step counts,
  // for replica checks. Equal content gives equal digests on either backend.
  virtual std::uint64_t digest() const = 0;

 protected:
  SeedLayer(const SeedLayerConfig& config);
  virtual void seeds_changed() = 0;  // states_/alphas_ were updated
  // settings_[chunk] was updated from `previous` (validated): mask or redraw, and take it over.
  virtual void seed_settings_changed(int chunk, const SeedSettings& previous) = 0;
  void restore_default_settings(int chunk) { settings_[static_cast<std::size_t>(chunk)] = default_seed_settings(); }
  std::uint64_t settings_digest() const;  // the settings' share of digest(), the same on both backends
  int batch_of(std::span<const float> x, std::span<const float> out) const;

  SeedLayerConfig config_;
  ChunkPartition partition_;
  std::vector<SeedState> states_;
  std::vector<float> alphas_;
  std::vector<SeedSettings> settings_;
};

namespace detail {
// The one of a backend's four buffers (W, b, A, B) that holds `tensor`.
template <class T>
T& select(Tensor tensor, T& weight, T& bias, T& a, T& b) {
  switch (tensor) {
    case Tensor::BaseWeight: return weight;
    case Tensor::BaseBias: return bias;
    case Tensor::SeedA: return a;
    case Tensor::SeedB: return b;
  }
  throw Error("unknown tensor");
}
// Throws esper::Error when a tensor copy's buffer does not have the tensor's size.
void check_copy_size(std::size_t want, std::size_t got);
}  // namespace detail

struct LayerError {
  std::string text;
  std::string message() const { return text; }
};

// Validates the config; Backend::Cuda fails with "CUDA backend unavailable: <reason>" when no device
// is usable (always in a build without CUDA). For Backend::Cpu, Memory::Host and Native are the same.
Expected<std::unique_ptr<SeedLayer>, LayerError> make_seed_layer(Backend backend, const SeedLayerConfig& config,
                                                                 Memory memory = Memory::Native);
std::unique_ptr<SeedLayer> make_cpu_seed_layer(const SeedLayerConfig& config);  // precondition: valid config

// Whether CUDA seed layers can run here, and if not why (`reason`). Probed once, silently: callers
// that fall back to the CPU say so where their user looks.
struct CudaStatus {
  bool available = false;
  std::string reason;  // why not, or the device name
  int devices = 0;     // visible CUDA devices
};
const CudaStatus& cuda_status();
inline bool cuda_available() { return cuda_status().available; }

// Makes device (local_rank mod device count) current for this process's CUDA calls and returns its
// name as "cuda:<index> <device name>". Call it before creating any CUDA layer or NCCL communicator:
// their memory belongs to the device current at creation. Fails like make_seed_layer when CUDA is
// unusable, or when the selected device is.
Expected<std::string, LayerError> select_device(int local_rank);

}  // namespace esper::kernels
