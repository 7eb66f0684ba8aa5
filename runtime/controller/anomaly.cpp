#include "controller/anomaly.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "core/error.hpp"

namespace esper::controller {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

bool positive_finite(double x) { return std::isfinite(x) && x > 0; }

const AnomalyConfig& checked(const AnomalyConfig& config) {
  if (auto problem = check_config(config)) throw Error("anomaly config: " + *problem);
  return config;
}

double floor_of(const AnomalyConfig& config, double mean) { return config.sigma_floor * std::max(std::abs(mean), 1.0); }

wire::Severity zscore_severity(const AnomalyConfig& config, double score) {
  if (!(score <= 4 * config.z_threshold)) return wire::Severity::CRITICAL;
  if (score > 2 * config.z_threshold) return wire::Severity::ERROR;
  return wire::Severity::WARNING;
}

}  // namespace

std::optional<std::string> check_config(const AnomalyConfig& config) {
  if (config.window < 2) return "window must be at least 2, is " + std::to_string(config.window);
  if (config.min_samples < 1 || config.min_samples > config.window) {
    return "min_samples must be in 1..window (" + std::to_string(config.window) + "), is " +
           std::to_string(config.min_samples);
  }
  if (config.trend_span < 1 || config.trend_span > config.window / 2) {
    return "trend_span must be in 1..window/2 (" + std::to_string(config.window / 2) + "), is " +
           std::to_string(config.trend_span);
  }
  if (!positive_finite(config.z_threshold)) return "z_threshold must be finite and > 0";
  if (!positive_finite(config.trend_threshold)) return "trend_threshold must be finite and > 0";
  if (!std::isfinite(config.sigma_floor) || config.sigma_floor < 0) return "sigma_floor must be finite and >= 0";
  return std::nullopt;
}

void SeriesDetector::Moments::add(double x) noexcept {
  ++n;
  const double d = x - mean;
  mean += d / static_cast<double>(n);
  m2 += d * (x - mean);
}

void SeriesDetector::Moments::remove(double x) noexcept {
  if (n <= 1) {
    *this = {};
    return;
  }
  --n;
  const double d = x - mean;
  mean -= d / static_cast<double>(n);
  m2 = std::max(0.0, m2 - d * (x - mean));
}

double SeriesDetector::Moments::sigma() const noexcept {
  return n > 0 && m2 > 0 ? std::sqrt(m2 / static_cast<double>(n)) : 0.0;
}

SeriesDetector::SeriesDetector(AnomalyConfig config) : config_(checked(config)), ring_(config.window, 0.0) {}

std::vector<Alert> SeriesDetector::add(double value) {
  std::vector<Alert> alerts;
  if (!std::isfinite(value)) {
    if (!non_finite_latched_) {
      non_finite_latched_ = true;
      const double half = config_.z_threshold * window_.sigma();
      alerts.push_back(
          {"zscore", value, window_.mean - half, window_.mean + half, kInfinity, wire::Severity::CRITICAL});
    }
    return alerts;
  }
  non_finite_latched_ = false;
  if (auto alert = test_zscore(value)) alerts.push_back(std::move(*alert));
  push(value);
  if (auto alert = test_trend()) alerts.push_back(std::move(*alert));
  return alerts;
}

double SeriesDetector::newest(std::size_t age) const noexcept {
  return ring_[(next_ + ring_.size() - 1 - age) % ring_.size()];
}

double SeriesDetector::block_mean(std::size_t first_age) const noexcept {
  double sum = 0;
  for (std::size_t i = 0; i < config_.trend_span; ++i) sum += newest(first_age + i);
  return sum / static_cast<double>(config_.trend_span);
}

bool SeriesDetector::is_zero(double sigma, double mean) const noexcept { return sigma <= floor_of(config_, mean); }

std::optional<Alert> SeriesDetector::test_zscore(double x) {
  if (count_ < config_.min_samples) {
    zscore_latched_ = false;
    return std::nullopt;
  }
  const double mean = window_.mean;
  const double sigma = window_.sigma();
  const double deviation = std::abs(x - mean);
  Alert alert{"zscore", x, mean, mean, kInfinity, wire::Severity::CRITICAL};
  bool condition = false;
  if (is_zero(sigma, mean)) {
    condition = deviation > floor_of(config_, mean);
  } else {
    alert.score = deviation / sigma;
    alert.expected_low = mean - config_.z_threshold * sigma;
    alert.expected_high = mean + config_.z_threshold * sigma;
    alert.severity = zscore_severity(config_, alert.score);
    condition = alert.score > config_.z_threshold;
  }
  const bool raise = condition && !zscore_latched_;
  zscore_latched_ = condition;
  if (!raise) return std::nullopt;
  return alert;
}

std::optional<Alert> SeriesDetector::test_trend() {
  const std::size_t span = config_.trend_span;
  if (count_ < 2 * span) {
    trend_latched_ = false;
    return std::nullopt;
  }
  const double recent = block_mean(0);
  const double before = block_mean(span);
  const double sigma = baseline_.sigma();
  const double difference = std::abs(recent - before);
  Alert alert{"trend", recent, before, before, kInfinity, wire::Severity::ERROR};
  bool condition = false;
  if (is_zero(sigma, baseline_.mean)) {
    condition = difference > floor_of(config_, baseline_.mean);
  } else {
    alert.score = difference / sigma;
    alert.expected_low = before - config_.trend_threshold * sigma;
    alert.expected_high = before + config_.trend_threshold * sigma;
    alert.severity = alert.score > 2 * config_.trend_threshold ? wire::Severity::ERROR : wire::Severity::WARNING;
    condition = alert.score > config_.trend_threshold;
  }
  const bool raise = condition && !trend_latched_;
  trend_latched_ = condition;
  if (!raise) return std::nullopt;
  return alert;
}

void SeriesDetector::push(double x) {
  if (count_ == ring_.size()) {
    const double oldest = ring_[next_];
    window_.remove(oldest);
    baseline_.remove(oldest);
    --count_;
  }
  ring_[next_] = x;
  next_ = (next_ + 1) % ring_.size();
  ++count_;
  window_.add(x);
  if (count_ > config_.trend_span) baseline_.add(newest(config_.trend_span));
  if (++since_rebuild_ >= ring_.size()) rebuild();
}

void SeriesDetector::rebuild() noexcept {
  window_ = {};
  baseline_ = {};
  for (std::size_t age = count_; age-- > 0;) {
    const double x = newest(age);
    window_.add(x);
    if (age >= config_.trend_span) baseline_.add(x);
  }
  since_rebuild_ = 0;
}

AnomalyDetector::AnomalyDetector(AnomalyConfig config) : config_(checked(config)) {}

std::vector<Alert> AnomalyDetector::add(const Key& key, double value) {
  auto it = series_.find(key);
  if (it == series_.end()) it = series_.emplace(key, SeriesDetector(config_)).first;
  return it->second.add(value);
}

const SeriesDetector* AnomalyDetector::find(const Key& key) const {
  const auto it = series_.find(key);
  return it == series_.end() ? nullptr : &it->second;
}

}  // namespace esper::controller
