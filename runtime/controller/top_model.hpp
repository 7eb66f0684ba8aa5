// What `esper top` shows of a running job, and how it draws it.
//
// TopModel is fed what a Subscriber delivers — telemetry batches, events, the late joiner's
// snapshot, the subscriber's loss counters — and keeps:
//  - the population (a PopulationView: states per layer, each seed's latest metrics);
//  - the last few events, as describe() prints them;
//  - the latencies of the last `latency_window` Decision events (a controller publishes one when a
//    command it sent has its outcome), for p50/p99;
//  - the telemetry records received per batch with their arrival times, for a records/s rate over
//    the last `rate_window`, and the drops: publisher-side (each batch's dropped_records) and
//    subscriber-side (records dropped, batches missing).
// Everything it keeps is bounded, so a long-running top costs the same per frame as a fresh one.
// What it is fed is range-checked first (wire/validate.hpp, against TopOptions::bounds): a batch or
// an event with a value out of range is counted (values_rejected()) and otherwise ignored.
//
// render() is a pure function of the model, the screen size and the time: it returns the frame as
// text (lines joined by '\n', none wider than `width` columns, at most `height` lines), with ANSI
// colors only when asked. The command decides how to put it on the terminal.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "controller/view.hpp"
#include "fabric/counters.hpp"
#include "fabric/job_state.hpp"
#include "fbs/envelope_generated.h"

namespace esper::controller {

struct TopOptions {
  std::string broker;                           // shown in the header
  std::size_t events_kept = 8;                  // recent events shown
  std::size_t latency_window = 1000;            // decisions the percentiles are taken over
  std::chrono::milliseconds rate_window{1000};  // telemetry rate: records over this long
  wire::Bounds bounds{};                        // what is accepted (wire::Bounds::job for a known shape)
};

// Losses the subscriber saw (fabric::Subscriber::counters() and telemetry_batches_missing()).
struct SubscriberLosses {
  std::uint64_t telemetry_records_dropped = 0;
  std::uint64_t telemetry_batches_missing = 0;
  std::uint64_t event_gaps = 0;
  std::uint64_t frames_rejected = 0;
  std::uint64_t values_rejected = 0;
  // By stage: records the streams' running totals say never arrived (dropped at a rank or the
  // broker), records that arrived but were rejected here; events replayed and given up on.
  std::uint64_t telemetry_records_missing = 0;
  std::uint64_t telemetry_records_rejected = 0;
  std::uint64_t events_recovered = 0;
  std::uint64_t events_unrecovered = 0;
};

struct LatencySummary {
  std::size_t count = 0;  // decisions the percentiles are over (at most latency_window)
  double p50_ms = 0, p99_ms = 0;
};

class TopModel {
 public:
  using Clock = std::chrono::steady_clock;

  explicit TopModel(TopOptions options = {});

  void on_telemetry(const wire::TelemetryBatch& batch, Clock::time_point received);
  // `in_state`: the event is already contained in the loaded snapshot (Delivery::duplicate); it is
  // listed and counted, but does not change the population.
  void on_event(const wire::Event& event, std::int32_t source_rank, bool in_state = false);
  // A late joiner's snapshot, or a newer one after an event gap.
  void load(const fabric::JobState& state);
  void set_losses(const SubscriberLosses& losses) { losses_ = losses; }

  [[nodiscard]] const TopOptions& options() const noexcept { return options_; }
  [[nodiscard]] const PopulationView& population() const noexcept { return view_; }
  [[nodiscard]] const std::deque<std::string>& recent_events() const noexcept { return events_; }
  [[nodiscard]] std::uint64_t events_seen() const noexcept { return events_seen_; }
  [[nodiscard]] std::uint64_t batches_seen() const noexcept { return batches_; }
  // When the latest batch arrived (meaningless while batches_seen() is 0).
  [[nodiscard]] Clock::time_point last_batch() const noexcept { return last_batch_; }
  // Records per second over the last rate_window before `now` (over the time since the first batch
  // while that is shorter).
  [[nodiscard]] double telemetry_rate(Clock::time_point now) const;
  // Publisher-side drops reported in batches plus the subscriber's dropped records.
  [[nodiscard]] std::uint64_t records_dropped() const noexcept;
  [[nodiscard]] const SubscriberLosses& losses() const noexcept { return losses_; }
  // Records the ranks said they dropped (the batches' dropped_records).
  [[nodiscard]] std::uint64_t publisher_dropped() const noexcept { return publisher_dropped_; }
  [[nodiscard]] LatencySummary latency() const;
  // Batches, events and snapshot entries this model rejected for a value out of range (the
  // subscriber's own rejects are in losses()).
  [[nodiscard]] std::uint64_t values_rejected() const noexcept { return values_rejected_ + view_.values_rejected(); }

 private:
  TopOptions options_;
  PopulationView view_;
  std::deque<std::string> events_;
  std::uint64_t events_seen_ = 0;
  std::deque<double> latencies_ms_;
  std::deque<std::pair<Clock::time_point, std::uint32_t>> arrivals_;  // (time, records) within rate_window
  Clock::time_point first_batch_{}, last_batch_{};
  std::uint64_t batches_ = 0;
  std::uint64_t publisher_dropped_ = 0;
  std::uint64_t values_rejected_ = 0;
  fabric::ValueRejectLog reject_log_;
  SubscriberLosses losses_;
};

struct RenderOptions {
  int width = 80;
  int height = 0;                   // 0: as many lines as it takes
  bool color = false;               // ANSI colors
  std::size_t seeds_per_layer = 8;  // rows of the seed table per layer, fewer when height is short
  TopModel::Clock::time_point now = TopModel::Clock::now();
};

// The frame: a header (broker, step, ranks, telemetry rate and drops, command latency), per layer
// the seeds per state with a proportional bar and a table of its most active seeds, then the
// recent events, newest last. Every string from the network is printed through terminal_safe()
// (core/terminal_text.hpp). The seed table lists seeds that left DORMANT first, by lifecycle
// state (GERMINATED ... FINE_TUNING, then the terminal ones), then by |grad_norm|, largest first.
[[nodiscard]] std::string render(const TopModel& model, const RenderOptions& options);

}  // namespace esper::controller
