// Morphogenesis works (docs/lifecycle.md, "Morphogenesis in numbers"): seeds grown through the
// lifecycle lower a frozen base layer's loss on a teacher task, a seed in TRAINING leaves the layer's
// output bit-identical to the base, and the whole run is deterministic.
#include "morphogenesis/morphogenesis.hpp"
#include "morphogenesis/same_run.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace esper::morphogenesis {
namespace {

using kernels::Tensor;
using lifecycle::State;

std::vector<float> read(const kernels::SeedLayer& layer, Tensor t) {
  std::vector<float> v(kernels::tensor_size(layer.config(), t));
  layer.read(t, v);
  return v;
}

bool before_blending(State s) { return s == State::DORMANT || s == State::GERMINATED || s == State::TRAINING; }

// The states each seed went through, from its history (oldest first).
std::vector<State> path_of(const lifecycle::Seed& seed) {
  std::vector<State> path;
  for (const auto& record : seed.history().records()) path.push_back(record.to);
  return path;
}

TEST(Morphogenesis, GrownSeedsFossilizeAndHalveTheHeldOutLoss) {
  Config config;  // in=32 out=32 chunks=8 rank=4 batch=64, 600 steps, docs/design.md §4 minimums and guards
  Driver driver(config);
  const double base_before = driver.base_held_out_loss();
  EXPECT_EQ(driver.held_out_loss(), base_before);  // nothing grown yet: the layer is its base

  const Summary summary = driver.run();

  EXPECT_EQ(summary.steps, config.steps);
  EXPECT_EQ(summary.base_loss, base_before);  // the base is frozen
  EXPECT_GT(summary.base_loss, 0.2);          // the base really is imperfect
  EXPECT_LE(summary.final_loss, 0.5 * summary.base_loss) << "base " << summary.base_loss;
  EXPECT_GE(summary.reduction, 0.5);
  const auto fossilized = summary.states[lifecycle::index_of(State::FOSSILIZED)];
  ASSERT_GE(fossilized, 1U);
  EXPECT_EQ(fossilized, static_cast<std::uint32_t>(config.chunks));

  const std::vector<State> full_path = {State::GERMINATED, State::TRAINING,    State::GRAFTING,  State::STABILIZATION,
                                        State::EVALUATING, State::FINE_TUNING, State::FOSSILIZED};
  for (std::uint32_t id = 0; id < driver.population().size(); ++id) {
    const auto& seed = driver.population().seed(id);
    if (seed.state() != State::FOSSILIZED) continue;
    const auto path = path_of(seed);
    ASSERT_GE(path.size(), full_path.size()) << "seed " << id;
    EXPECT_TRUE(std::equal(full_path.begin(), full_path.end(), path.end() - static_cast<long>(full_path.size())))
        << "seed " << id << " did not walk the whole lifecycle";
  }
  // Every rejection is a guard that held a seed back, never a broken rule or a minimum ignored.
  for (const auto rule : {lifecycle::Rule::unknown_state, lifecycle::Rule::table, lifecycle::Rule::min_steps,
                          lifecycle::Rule::no_such_seed}) {
    EXPECT_EQ(summary.rejections[static_cast<std::size_t>(rule)], 0U) << lifecycle::rule_code(rule);
  }
}

TEST(Morphogenesis, TrainingSeedsLeaveTheOutputBitIdenticalToTheBase) {
  Config config;
  config.steps = 400;
  Driver driver(config);
  kernels::SeedLayer& layer = driver.layer();

  // An independent base-only layer: the same frozen W and b, every seed DORMANT.
  auto made = kernels::make_seed_layer(kernels::Backend::Cpu, layer.config());
  ASSERT_TRUE(made.has_value());
  auto base = std::move(made).value();
  base->write(Tensor::BaseWeight, read(layer, Tensor::BaseWeight));
  base->write(Tensor::BaseBias, read(layer, Tensor::BaseBias));

  const int batch = 32, out_features = config.out_features;
  Rng rng(12345);
  std::vector<float> x(static_cast<std::size_t>(batch) * static_cast<std::size_t>(config.in_features));
  std::vector<float> out(static_cast<std::size_t>(batch) * static_cast<std::size_t>(out_features));
  std::vector<float> expected(out.size());
  const auto& partition = layer.partition();

  int whole_checks = 0, chunk_checks = 0;
  bool parameters_moved = false, seeds_blended_in = false;
  std::vector<float> a_at_training, b_at_training;
  while (driver.population().step() < config.steps) {
    for (auto& v : x) v = rng.normal();
    layer.forward(x, out);
    base->forward(x, expected);

    const auto& states = layer.states();
    const bool all_before = std::all_of(states.begin(), states.end(), before_blending);
    const bool all_training = std::all_of(states.begin(), states.end(), [](State s) { return s == State::TRAINING; });
    if (all_before && std::any_of(states.begin(), states.end(), [](State s) { return s == State::TRAINING; })) {
      ASSERT_EQ(std::memcmp(out.data(), expected.data(), out.size() * sizeof(float)), 0)
          << "step " << driver.population().step();
      ++whole_checks;
    }
    for (int c = 0; c < layer.config().chunks; ++c) {
      if (states[static_cast<std::size_t>(c)] != State::TRAINING) continue;
      const auto width = static_cast<std::size_t>(partition.size(c)) * sizeof(float);
      for (int row = 0; row < batch; ++row) {
        const std::size_t at = static_cast<std::size_t>(row * out_features + partition.begin(c));
        ASSERT_EQ(std::memcmp(out.data() + at, expected.data() + at, width), 0)
            << "chunk " << c << " row " << row << " step " << driver.population().step();
      }
      ++chunk_checks;
    }
    if (all_training) {
      if (a_at_training.empty()) {
        a_at_training = read(layer, Tensor::SeedA);
        b_at_training = read(layer, Tensor::SeedB);
      } else if (read(layer, Tensor::SeedA) != a_at_training && read(layer, Tensor::SeedB) != b_at_training) {
        parameters_moved = true;
      }
    }
    if (std::memcmp(out.data(), expected.data(), out.size() * sizeof(float)) != 0) seeds_blended_in = true;
    (void)driver.step();
  }
  EXPECT_GT(whole_checks, 50);
  EXPECT_GT(chunk_checks, 500);
  EXPECT_TRUE(parameters_moved) << "the seeds did not train in the shadow";
  EXPECT_TRUE(seeds_blended_in) << "no seed ever changed the output: the comparison proves nothing";
}

TEST(Morphogenesis, TheSameSeedGivesTheSameRun) {
  Config config;
  config.steps = 300;
  const Summary a = testing::expect_identical_runs(config);

  config.seed = 2;
  Driver other(config);
  EXPECT_NE(other.run().digest, a.digest);
}

TEST(Morphogenesis, ASeedThatCannotHelpIsCulledAndNeverBlendedIn) {
  Config config;
  config.residual_scale = 0.0f;  // nothing for the seeds to learn but label noise
  config.base_noise = 0.0f;
  config.patience = 40;
  config.steps = 300;
  Driver driver(config);
  const Summary summary = driver.run();

  EXPECT_GT(summary.culls, 0U);
  EXPECT_GT(summary.rejections[static_cast<std::size_t>(lifecycle::Rule::guard_shadow_loss)], 0U);
  EXPECT_EQ(summary.states[lifecycle::index_of(State::FOSSILIZED)], 0U);
  for (const auto& seed : driver.population().seeds()) {
    const auto path = path_of(seed);
    EXPECT_EQ(std::count(path.begin(), path.end(), State::GRAFTING), 0);
    EXPECT_EQ(seed.alpha(), 0.0f);
  }
  EXPECT_EQ(summary.final_loss, summary.base_loss);  // never blended in: the output is the base's
}

TEST(Morphogenesis, AnInvalidConfigIsRefused) {
  Config config;
  config.chunks = config.out_features + 1;
  EXPECT_THROW(Driver{config}, Error);
  config = Config{};
  config.stability_window = 1;
  EXPECT_THROW(Driver{config}, Error);
}

}  // namespace
}  // namespace esper::morphogenesis
