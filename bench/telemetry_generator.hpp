// Realistic synthetic telemetry: every metric of every seed is a slowly varying random walk
// (not constants, which would flatter any compressor). Records come step-major — all seeds of
// step t, then all seeds of step t+1 — the order a rank produces them in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "fbs/telemetry_generated.h"

namespace esper::bench {

class TelemetryGenerator {
 public:
  explicit TelemetryGenerator(std::uint32_t seeds, std::uint64_t rng_seed = 42) : rng_(rng_seed), walks_(seeds) {
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (auto& w : walks_) {
      w.mean = 0.1f * (u(rng_) - 0.5f);
      w.var = 0.5f + u(rng_);
      w.dead = 0.05f * u(rng_);
      w.loss = 0.5f + u(rng_);
      w.shadow = w.loss * (0.9f + 0.2f * u(rng_));
      w.grad = 0.1f + u(rng_);
      w.health = 0.9f + 0.1f * u(rng_);
      w.state = static_cast<std::uint8_t>(rng_() % 7);
    }
  }

  // Appends `count` records, continuing the walks where the previous call stopped.
  void fill(std::vector<wire::SeedMetrics>& out, std::size_t count) {
    std::normal_distribution<float> step(0.0f, 1.0f);
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint32_t seed = next_seed_;
      auto& w = walks_[seed];
      // Relative steps of about 0.1-0.5% per window: slow drift, as training metrics move.
      w.mean += 0.0005f * step(rng_);
      w.var = std::max(1e-3f, w.var * (1.0f + 0.002f * step(rng_)));
      w.dead = std::clamp(w.dead + 0.0005f * step(rng_), 0.0f, 1.0f);
      w.loss = std::max(1e-4f, w.loss * (1.0f - 0.0005f + 0.003f * step(rng_)));
      w.shadow = std::max(1e-4f, w.shadow * (1.0f - 0.0008f + 0.003f * step(rng_)));
      w.grad = std::max(1e-6f, w.grad * (1.0f + 0.005f * step(rng_)));
      w.health = std::clamp(w.health + 0.001f * step(rng_), 0.0f, 1.0f);
      ++w.steps_in_state;
      if (w.steps_in_state > 50 && rng_() % 1000 == 0) {
        w.state = static_cast<std::uint8_t>((w.state + 1) % 11);
        w.steps_in_state = 0;
      }
      const float alpha = w.state == 3 ? std::min(1.0f, static_cast<float>(w.steps_in_state) / 50.0f)
                                       : (w.state >= 4 && w.state <= 7 ? 1.0f : 0.0f);
      out.emplace_back(step_, seed, w.steps_in_state, w.mean, w.var, w.dead, w.loss, w.shadow, w.grad, alpha,
                       w.health, static_cast<wire::SeedState>(w.state), std::uint8_t{0}, std::uint16_t{0});
      if (++next_seed_ == walks_.size()) {
        next_seed_ = 0;
        ++step_;
      }
    }
  }

  [[nodiscard]] std::vector<wire::SeedMetrics> batch(std::size_t count) {
    std::vector<wire::SeedMetrics> out;
    out.reserve(count);
    fill(out, count);
    return out;
  }

 private:
  struct Walk {
    float mean, var, dead, loss, shadow, grad, health;
    std::uint32_t steps_in_state = 0;
    std::uint8_t state;
  };
  std::mt19937_64 rng_;
  std::vector<Walk> walks_;
  std::uint32_t next_seed_ = 0;
  std::uint64_t step_ = 1000;
};

}  // namespace esper::bench
