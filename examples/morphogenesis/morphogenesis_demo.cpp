// morphogenesis_demo [--steps N] [--seed S] [--every N]: grows the seeds of a frozen base layer on
// the synthetic teacher task and prints progress every N steps, then one summary line.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "morphogenesis/morphogenesis.hpp"

namespace {

using esper::lifecycle::kAllStates;
using esper::lifecycle::kStateCount;
using esper::lifecycle::State;

std::string states_line(const std::array<std::uint32_t, kStateCount>& counts) {
  std::string line;
  for (const State s : kAllStates) {
    const auto n = counts[esper::lifecycle::index_of(s)];
    if (n == 0) continue;
    if (!line.empty()) line += ' ';
    line += std::string(esper::lifecycle::name(s)) + '=' + std::to_string(n);
  }
  return line;
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--steps N] [--seed S] [--every N]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  esper::morphogenesis::Config config;
  std::uint64_t every = 50;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    const std::uint64_t value = std::strtoull(argv[++i], nullptr, 10);
    if (arg == "--steps") {
      config.steps = value;
    } else if (arg == "--seed") {
      config.seed = value;
    } else if (arg == "--every") {
      every = value == 0 ? 1 : value;
    } else {
      return usage(argv[0]);
    }
  }

  try {
    const auto start = std::chrono::steady_clock::now();
    esper::morphogenesis::Driver driver(config);
    std::printf("morphogenesis: in=%d out=%d chunks=%d rank=%d batch=%d steps=%llu seed=%llu\n", config.in_features,
                config.out_features, config.chunks, config.rank, config.batch,
                static_cast<unsigned long long>(config.steps), static_cast<unsigned long long>(config.seed));
    std::printf("%6s %10s %10s %10s  %s\n", "step", "loss", "base", "held-out", "seeds");
    const auto summary = driver.run([&](const esper::morphogenesis::StepReport& r) {
      if (r.step % every != 0 && r.step != config.steps) return;
      std::printf("%6llu %10.5f %10.5f %10.5f  %s\n", static_cast<unsigned long long>(r.step), r.loss,
                  r.loss_without_seeds, driver.held_out_loss(), states_line(r.states).c_str());
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::string rejections;
    for (std::size_t rule = 0; rule < summary.rejections.size(); ++rule) {
      if (summary.rejections[rule] == 0) continue;
      rejections += ' ' + std::string(esper::lifecycle::rule_code(static_cast<esper::lifecycle::Rule>(rule))) + '=' +
                    std::to_string(summary.rejections[rule]);
    }
    std::string per_seed;
    for (const State s : summary.seed_states) per_seed += ' ' + std::string(esper::lifecycle::name(s));
    std::printf("seeds:%s\n", per_seed.c_str());
    std::printf("transitions=%llu culls=%llu rejections:%s\n", static_cast<unsigned long long>(summary.transitions),
                static_cast<unsigned long long>(summary.culls), rejections.empty() ? " none" : rejections.c_str());
    std::printf("summary: steps=%llu base_loss=%.6f final_loss=%.6f reduction=%.1f%% %s digest=%016llx wall=%.2fs\n",
                static_cast<unsigned long long>(summary.steps), summary.base_loss, summary.final_loss,
                100.0 * summary.reduction, states_line(summary.states).c_str(),
                static_cast<unsigned long long>(summary.digest), seconds);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "morphogenesis_demo: %s\n", e.what());
    return 1;
  }
}
