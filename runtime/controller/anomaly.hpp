// Anomaly detection over telemetry: each metric series (one seed's task loss, one layer's
// gradient norm, ...) keeps a window of its last samples and runs two detectors on every new one.
//
//  - zscore: with n >= min_samples samples already in the window, the new value x is tested
//    before it is added: z = (x - mean) / sigma over those n samples (population std), and
//    |z| > z_threshold alerts. The expected range is mean ± z_threshold·sigma. Severity grows with
//    |z|: WARNING above 1x z_threshold, ERROR above 2x, CRITICAL above 4x (3, 6, 12 by default).
//  - trend: once the window holds >= 2·trend_span samples, after adding x, the mean m1 of the last
//    trend_span samples is compared with the mean m0 of the trend_span before them. Sigma is the
//    population std of the baseline: the window without the last trend_span samples. |m1 - m0| >
//    trend_threshold·sigma alerts with value m1, expected range m0 ± trend_threshold·sigma and
//    score |m1 - m0| / sigma; severity WARNING, ERROR above 2x trend_threshold.
//
// A sigma below sigma_floor·max(|mean|, 1) counts as 0 (a constant series): a value within that
// floor of the mean is normal; any other value alerts with score +inf and expected range
// [mean, mean] (m0 for the trend), which makes a zscore alert CRITICAL and a trend alert ERROR.
//
// A non-finite value is not tested against the window nor added to it: it raises a CRITICAL
// "zscore" alert with score +inf and the window's mean ± z_threshold·sigma as the expected range.
//
// Alerts are edge-triggered so that one incident raises one alert, not one per sample: each
// detector is latched while its condition holds and re-arms on the first sample where it does
// not. A spike re-arms the zscore detector on the next normal sample, so separate spikes alert
// separately, while a run of outliers alerts once; a level shift raises one trend alert, however
// long the plateau after it. A run of non-finite values raises one alert; a finite value re-arms.
//
// The window is a ring of fixed capacity. Its moments (mean, sum of squared deviations) and those
// of the trend baseline are kept with Welford's update for adding and removing a sample, and are
// recomputed from the ring once per `window` samples so that rounding cannot drift over a long run.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fbs/envelope_generated.h"

namespace esper::controller {

struct AnomalyConfig {
  std::size_t window = 100;      // samples kept per series
  std::size_t min_samples = 10;  // no zscore verdict before this many
  double z_threshold = 3.0;      // |x - mean| / sigma above this: a spike
  std::size_t trend_span = 10;   // mean of the last `trend_span` vs the `trend_span` before
  double trend_threshold = 2.0;  // difference of those means beyond this many sigma: a trend
  double sigma_floor = 1e-9;     // relative: sigma below sigma_floor * max(|mean|, 1) counts as 0

  friend bool operator==(const AnomalyConfig&, const AnomalyConfig&) = default;
};

// What is wrong with `config`, or nothing when it is usable: window >= 2,
// 1 <= min_samples <= window, trend_span >= 1 and 2·trend_span <= window, finite thresholds > 0,
// a finite sigma_floor >= 0.
[[nodiscard]] std::optional<std::string> check_config(const AnomalyConfig& config);

struct Alert {
  std::string detector;                        // "zscore" or "trend"
  double value = 0;                            // the sample (zscore) or the recent mean (trend)
  double expected_low = 0, expected_high = 0;  // the range that would not have alerted
  double score = 0;  // |z| (or the trend's difference in sigmas); +inf when sigma == 0 and the value differs
  wire::Severity severity = wire::Severity::WARNING;
};

// One metric series. Not thread-safe.
class SeriesDetector {
 public:
  // Throws Error when check_config(config) finds a problem.
  explicit SeriesDetector(AnomalyConfig config = {});

  // Tests `value` against the samples seen so far, then adds it to the window. Returns the alerts
  // it raises (0, 1 or 2; zscore first). A non-finite value is not added (see above).
  [[nodiscard]] std::vector<Alert> add(double value);

  [[nodiscard]] std::size_t samples() const noexcept { return count_; }    // in the window
  [[nodiscard]] double mean() const noexcept { return window_.mean; }      // over the window; 0 when empty
  [[nodiscard]] double sigma() const noexcept { return window_.sigma(); }  // population std over the window
  // Whether a detector's condition held on the last sample (it will not alert again until it fails).
  [[nodiscard]] bool zscore_latched() const noexcept { return zscore_latched_; }
  [[nodiscard]] bool trend_latched() const noexcept { return trend_latched_; }
  [[nodiscard]] const AnomalyConfig& config() const noexcept { return config_; }

 private:
  // Count, mean and sum of squared deviations of a multiset of samples that gains and loses members.
  struct Moments {
    std::size_t n = 0;
    double mean = 0;
    double m2 = 0;
    void add(double x) noexcept;
    void remove(double x) noexcept;
    [[nodiscard]] double sigma() const noexcept;
  };

  [[nodiscard]] double newest(std::size_t age) const noexcept;            // age 0: the last sample added
  [[nodiscard]] double block_mean(std::size_t first_age) const noexcept;  // trend_span samples from first_age
  [[nodiscard]] bool is_zero(double sigma, double mean) const noexcept;
  [[nodiscard]] std::optional<Alert> test_zscore(double x);
  [[nodiscard]] std::optional<Alert> test_trend();
  void push(double x);
  void rebuild() noexcept;

  AnomalyConfig config_;
  std::vector<double> ring_;  // config_.window slots
  std::size_t next_ = 0;      // slot the next sample goes to
  std::size_t count_ = 0;
  std::size_t since_rebuild_ = 0;
  Moments window_;    // every sample in the window
  Moments baseline_;  // the window without the last trend_span samples
  bool zscore_latched_ = false;
  bool trend_latched_ = false;
  bool non_finite_latched_ = false;
};

// Many series, each with its own SeriesDetector, keyed by (layer, seed, metric name). Not thread-safe.
class AnomalyDetector {
 public:
  struct Key {
    std::uint32_t layer = 0;
    std::uint32_t seed = 0;
    std::string metric;
    auto operator<=>(const Key&) const = default;
  };

  // Throws Error when check_config(config) finds a problem.
  explicit AnomalyDetector(AnomalyConfig config = {});

  // SeriesDetector::add on the series `key`, which starts empty on its first sample.
  [[nodiscard]] std::vector<Alert> add(const Key& key, double value);

  // Forgets the series: its next sample starts a new one (e.g. the seed entered another state,
  // whose metrics live on another scale).
  void reset(const Key& key) { series_.erase(key); }

  [[nodiscard]] std::size_t series() const noexcept { return series_.size(); }
  [[nodiscard]] const SeriesDetector* find(const Key& key) const;  // null before the series' first sample
  [[nodiscard]] const AnomalyConfig& config() const noexcept { return config_; }

 private:
  AnomalyConfig config_;
  std::map<Key, SeriesDetector> series_;
};

}  // namespace esper::controller
