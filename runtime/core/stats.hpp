// Percentiles of latency samples, one rule everywhere (reports, the controller, `esper top`):
// nearest rank on the sorted samples, p in [0, 1]; 0 for no samples.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace esper {

[[nodiscard]] inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace esper
