// Morphogenesis on a synthetic teacher task (docs/design.md §4–5, docs/lifecycle.md "Morphogenesis in
// numbers"): a frozen, deliberately imperfect base layer; one seed per chunk, grown by a lifecycle
// Population through TRAINING → GRAFTING → STABILIZATION → EVALUATING → FINE_TUNING → FOSSILIZED.
//
// The teacher: t = W* x + b* + Σ_c U_c V_c x (rows of chunk c only) + label noise, x ~ N(0, I).
// The residual U_c V_c (rank `residual_rank` per chunk) is what the frozen base lacks; the base is
// W* plus noise and b*. Everything is a pure function of Config::seed.
//
// One Driver::step(): the layer runs with the states and α the population holds; forward with the
// target (telemetry), MSE gradient, backward, optimizer step. A TRAINING seed trains "as if blended
// in" (docs/design.md §5): its chunk's upstream gradient is taken at the shadow output y_c + f_c, which a
// second forward with the TRAINING seeds at α = 1 provides (the gradient at the produced output
// y_c would make f_c's objective linear in f_c, with no minimum). Then per-chunk SeedMetrics from
// the telemetry; population.tick(metrics); each seed that has met its minimum steps in state tries
// its next transition (a rejection is counted by rule and the seed keeps going); the layer is set
// to the population's new states and α. Single-threaded and deterministic: the same Config gives
// the same digest().
//
// Backend: the layers run on the CPU reference or, with Config::backend = Cuda, as host-staged CUDA
// layers (kernels::Memory::Host): the driver keeps batches, targets, outputs and gradients on the
// host either way, and only Replication::reduce_gradients sees the backend's memory (through
// SeedLayer::gradient_buffer: device memory for CUDA, which NCCL reduces in place). A CUDA driver
// must be created after kernels::select_device, if the process picks a device.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <span>
#include <vector>

#include "kernels/seed_layer.hpp"
#include "lifecycle/population.hpp"

namespace esper::morphogenesis {

struct Config {
  // Layer and data.
  int in_features = 32;
  int out_features = 32;
  int chunks = 8;
  int rank = 4;  // the seeds' rank r
  int batch = 64;
  int held_out = 2048;  // held-out samples for held_out_loss()
  std::uint64_t seed = 1;
  std::uint64_t data_stream = 0;  // replicas draw different training batches from the same teacher

  // Teacher. Per output, W* x has variance ≈ 1; the residual ≈ residual_scale²; the base's own error
  // ≈ base_noise²; the label noise label_noise².
  int residual_rank = 2;
  float residual_scale = 0.5f;
  float base_noise = 0.1f;
  float label_noise = 0.05f;

  // Training of the seeds (the base is frozen). Backend::Cuda throws esper::Error from the Driver's
  // constructor, saying why, when the CUDA backend is unavailable.
  kernels::Backend backend = kernels::Backend::Cpu;
  kernels::Blueprint blueprint = kernels::Blueprint::LowRank;
  kernels::OptimizerConfig optimizer{kernels::OptimizerKind::Adam, 1e-2f};

  // Schedule. Seed c germinates at step c · germination_interval; a seed that waits on a guard for
  // more than `patience` steps past its minimum is culled (TRAINING, EVALUATING; FINE_TUNING only
  // when it does not improve on the base), reset and grown afresh.
  std::uint64_t steps = 600;
  std::uint32_t germination_interval = 10;
  std::uint32_t patience = 300;

  // Metrics: chunk losses are smoothed (EMA, weight `smoothing` on the past) before the guards
  // read them; stability = 1 − std/mean of the smoothed chunk loss over the last
  // `stability_window` steps (NaN until the window is full).
  double smoothing = 0.9;
  std::uint32_t stability_window = 20;

  lifecycle::LifecycleConfig lifecycle;  // defaults: docs/design.md §4 minimums and guards

  // true: the driver advances seeds itself (the schedule above); false: only transition() does.
  bool auto_advance = true;
};

// How data-parallel replicas stay identical: gradients are averaged between backward and the
// optimizer step, and the per-chunk losses the guards read are averaged before smoothing. Both
// are collectives, so every replica must step together. reduce_gradients gets the layer and reduces
// its gradient_buffer()s, which live in the backend's memory (host for Cpu, device for Cuda);
// reduce_losses gets host doubles.
struct Replication {
  std::function<void(kernels::SeedLayer&)> reduce_gradients;
  std::function<void(std::span<double>)> reduce_losses;  // mean over replicas, in place
};

// Deterministic Gaussian stream (splitmix64 + Box–Muller).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next_u64();
  double uniform();  // (0, 1)
  float normal();

 private:
  std::uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

class Teacher {
 public:
  explicit Teacher(const Config& config);

  // x: batch×in, target: batch×out.
  void sample(Rng& rng, int batch, std::span<float> x, std::span<float> target) const;
  // The frozen base the student starts from: W* + noise, b*.
  const std::vector<float>& base_weight() const { return base_weight_; }
  const std::vector<float>& base_bias() const { return bias_; }

 private:
  int in_, out_, chunks_, rank_;
  float label_noise_;
  std::vector<float> weight_, bias_, base_weight_;
  std::vector<float> u_, v_;  // out×q and chunks×q×in: the residual U_c V_c of chunk c
  std::vector<int> chunk_of_;
};

// The number of lifecycle rules (lifecycle::Rule, unknown_state .. no_such_seed).
inline constexpr std::size_t kRuleCount = 9;

struct StepReport {
  std::uint64_t step = 0;                                      // population step after this one
  double loss = 0;                                             // training-batch MSE of the output as produced
  double loss_without_seeds = 0;                               // the same batch through the base alone
  std::array<std::uint32_t, lifecycle::kStateCount> states{};  // seeds per state, after the transitions
  std::uint32_t transitions = 0;                               // applied in this step
  std::uint32_t rejections = 0;                                // rejected in this step
};

struct Summary {
  std::uint64_t steps = 0;
  double base_loss = 0;   // held-out MSE of the base-only layer
  double final_loss = 0;  // held-out MSE of the grown layer
  double reduction = 0;   // 1 − final / base
  std::array<std::uint32_t, lifecycle::kStateCount> states{};
  std::vector<lifecycle::State> seed_states;  // by chunk
  std::uint64_t transitions = 0;
  std::uint64_t culls = 0;
  std::array<std::uint64_t, kRuleCount> rejections{};  // by lifecycle::Rule
  std::uint64_t digest = 0;
};

class Driver {
 public:
  // Throws esper::Error on an invalid config.
  explicit Driver(const Config& config, Replication replication = {});

  // Applies a transition to the selected seeds now (at a step boundary), with the current metrics;
  // a seed reset to DORMANT gets fresh parameters. The report has one outcome per selected seed.
  lifecycle::TransitionReport transition(const lifecycle::Selection& selection, lifecycle::State to,
                                         const std::string& reason, bool force);

  // A SetBlueprint on seed `seed`: forwards to the layer (kernels::SeedLayer::set_seed_settings, which
  // throws esper::Error on a bad value). The rank program applies it to DORMANT seeds only, at a step
  // boundary on every replica; the reset to DORMANT (transition() or the schedule) restores the
  // defaults through reset_seed.
  void set_seed_settings(std::uint32_t seed, const kernels::SeedSettings& settings);
  // SetBlueprint's grafting strategy for seed `seed` (lifecycle::Seed::set_grafting: throws
  // esper::Error on an invalid config); the reset to DORMANT restores the default.
  void set_grafting(std::uint32_t seed, const lifecycle::GraftingConfig& grafting);

  StepReport step();
  // Steps until config().steps; calls `progress` after each step when given.
  template <class F>
  Summary run(F&& progress) {
    while (population_.step() < config_.steps) progress(step());
    return summary();
  }
  Summary run() {
    return run([](const StepReport&) {});
  }
  Summary summary();

  // Held-out MSE of the grown layer as it stands, and of the base alone.
  double held_out_loss();
  double base_held_out_loss();

  const Config& config() const { return config_; }
  kernels::SeedLayer& layer() { return *layer_; }
  const lifecycle::Population& population() const { return population_; }
  const lifecycle::SeedMetrics& metrics(int chunk) const { return metrics_[static_cast<std::size_t>(chunk)]; }
  // The last step's per-chunk telemetry from the layer (activation statistics of this replica's
  // batch; the losses averaged over replicas).
  const std::vector<kernels::ChunkTelemetry>& telemetry() const { return telemetry_; }
  const std::array<std::uint64_t, kRuleCount>& rejections() const { return rejections_; }
  std::uint64_t transitions() const { return transitions_; }

  // Layer digest (parameters, moments, states, α) mixed with the population digest.
  std::uint64_t digest() const;

 private:
  void update_metrics(const std::vector<kernels::ChunkTelemetry>& telemetry);
  std::uint32_t advance_seed(std::uint32_t id, std::uint32_t& rejected);
  bool try_transition(std::uint32_t id, lifecycle::State to, const char* reason, std::uint32_t& rejected);
  void sync_layer();
  bool shadow_forward();
  double mse(kernels::SeedLayer& layer);

  Config config_;
  Replication replication_;
  Teacher teacher_;
  Rng rng_;
  std::unique_ptr<kernels::SeedLayer> layer_;
  std::unique_ptr<kernels::SeedLayer> base_;  // the same frozen base, every seed DORMANT
  lifecycle::Population population_;
  std::vector<float> x_, target_, out_, shadow_out_, grad_;
  std::vector<float> held_x_, held_target_, held_out_;
  std::vector<float> params_, prev_params_;
  std::vector<lifecycle::SeedMetrics> metrics_;
  std::vector<kernels::ChunkTelemetry> telemetry_;
  std::vector<double> ema_loss_, ema_base_, ema_shadow_;
  std::vector<std::vector<double>> window_;  // per chunk, ring of smoothed losses
  std::size_t window_fill_ = 0, window_head_ = 0;
  std::array<std::uint64_t, kRuleCount> rejections_{};
  std::uint64_t transitions_ = 0, culls_ = 0;
};

}  // namespace esper::morphogenesis
