// Fuzz target: the controller's picture of a job (runtime/controller/view.hpp) and `esper top`'s
// model and frame (top_model.hpp), fed decoded telemetry, events and snapshots the way the
// controller's receive loop and `esper top` feed them. The input is a sequence of frames
// (fuzz_support.hpp); a frame's control byte: bit 0 marks an event as already in the loaded state
// (Delivery::duplicate for TopModel), bits 1-7 are milliseconds since the previous frame.
//
// Per frame, by kind:
//  - TelemetryBatch: PopulationView::on_telemetry (its fresh records must number what it returns,
//    all of this batch's layer), the latest record per seed into an AnomalyDetector as the
//    controller does, then TopModel::on_telemetry;
//  - Event: PopulationView::on_event with the sender's rank, TopModel::on_event (describe());
//  - StateSnapshot: JobState::load, then PopulationView::load and TopModel::load.
// At the end: the three policy presets decide over the view (every seed they name must exist in
// its layer), selections over each layer, and render() of the top model at two sizes: no line
// wider than the screen, no more lines than its height, and no control character from the network
// (without colors, the only byte below 0x20 is the newline).
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "controller/anomaly.hpp"
#include "controller/policy.hpp"
#include "controller/top_model.hpp"
#include "controller/view.hpp"
#include "fabric/job_state.hpp"
#include "fuzz_support.hpp"
#include "wire/codec.hpp"

namespace esper::fuzz {
namespace {

using namespace esper::controller;
using wire::SeedState;

std::size_t columns(std::string_view line) {
  std::size_t n = 0;
  for (const char c : line) n += (static_cast<unsigned char>(c) & 0xC0u) != 0x80u;
  return n;
}

void check_frame(const std::string& frame, int width, int height, bool color) {
  std::size_t lines = 0;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = frame.find('\n', start);
    const std::string_view line(frame.data() + start, (end == std::string::npos ? frame.size() : end) - start);
    ++lines;
    if (!color) {
      FUZZ_CHECK(columns(line) <= static_cast<std::size_t>(std::max(width, 20)), "a line wider than the screen");
      for (const char c : line) {
        const auto u = static_cast<unsigned char>(c);
        FUZZ_CHECK(u >= 0x20u && u != 0x7Fu, "a control character reached the terminal");
      }
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (height > 0) FUZZ_CHECK(lines <= static_cast<std::size_t>(height), "more lines than the screen has");
}

}  // namespace
}  // namespace esper::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  using namespace esper::controller;
  using wire::SeedState;
  static wire::Decoder decoder;
  // What the view and the model log about rejected values would drown the fuzzer's output.
  static const bool quiet = (spdlog::set_level(spdlog::level::off), true);
  (void)quiet;

  PopulationView view;
  TopModel top(TopOptions{.broker = "ipc:///fuzz", .events_kept = 4, .latency_window = 16,
                          .rate_window = std::chrono::milliseconds(500)});
  AnomalyDetector anomalies;
  std::map<std::pair<std::uint32_t, std::uint32_t>, SeedState> detected_state;
  auto now = TopModel::Clock::time_point{} + std::chrono::hours(1);
  std::vector<std::pair<std::uint32_t, wire::SeedMetrics>> fresh;

  fuzz::Frames frames({data, size});
  fuzz::Frame frame;
  while (frames.next(frame)) {
    now += std::chrono::milliseconds(frame.control >> 1);
    auto msg = decoder.decode(frame.bytes);
    if (!msg) continue;
    const auto* src = msg->envelope().source();
    const std::int32_t rank = src != nullptr ? src->rank() : -1;
    if (const auto* batch = msg->body<wire::TelemetryBatch>()) {
      fresh.clear();
      const auto records_before = view.telemetry_records();
      const std::size_t n = view.on_telemetry(*batch, &fresh);
      const std::size_t in_batch = batch->seeds() != nullptr ? batch->seeds()->size() : 0;
      FUZZ_CHECK(n == fresh.size() && n <= in_batch, "on_telemetry's count and its fresh records disagree");
      // Every record is counted, or (a view that checks values) the batch is rejected whole.
      FUZZ_CHECK(view.telemetry_records() == records_before + in_batch ||
                     (n == 0 && view.telemetry_records() == records_before),
                 "records counted in part");
      for (const auto& [layer, r] : fresh) FUZZ_CHECK(layer == batch->layer(), "a fresh record of another layer");
      // As Controller::receive and on_record: one sample per seed per batch, a series per stay in a state.
      std::map<std::pair<std::uint32_t, std::uint32_t>, const wire::SeedMetrics*> latest;
      for (const auto& [layer, r] : fresh) latest[{layer, r.seed()}] = &r;
      for (const auto& [key, r] : latest) {
        auto& last = detected_state[key];
        if (last != r->state()) {
          anomalies.reset({key.first, key.second, "task_loss"});
          anomalies.reset({key.first, key.second, "grad_norm"});
          last = r->state();
        }
        if (r->state() == SeedState::DORMANT || is_terminal(r->state())) continue;
        for (const auto& a : anomalies.add({key.first, key.second, "task_loss"}, r->task_loss())) {
          FUZZ_CHECK(!a.detector.empty(), "an alert without its detector");
        }
        (void)anomalies.add({key.first, key.second, "grad_norm"}, r->grad_norm());
      }
      top.on_telemetry(*batch, now);
    } else if (const auto* event = msg->body<wire::Event>()) {
      const bool in_state = (frame.control & 1u) != 0;
      if (!in_state) view.on_event(*event, rank);
      top.on_event(*event, rank, in_state);
      FUZZ_CHECK(top.recent_events().size() <= 4, "more events kept than asked");
    } else if (const auto* snap = msg->body<wire::StateSnapshot>()) {
      fabric::JobState state;
      (void)state.load(*snap);
      view.load(state);
      top.load(state);
    }
  }

  for (const auto& name : preset_names()) {
    Policy policy(*preset(name));
    for (const auto& d : policy.decide(view)) {
      const auto* layer = view.layer(d.layer);
      for (const auto seed : d.seeds) {
        FUZZ_CHECK(layer != nullptr && layer->seeds.contains(seed), "a decision names a seed the view does not hold");
      }
    }
  }
  for (const auto& [id, layer] : view.layers()) {
    std::uint32_t total = 0;
    for (const auto c : layer.counts()) total += c;
    FUZZ_CHECK(total == layer.seeds.size(), "the state counts do not add up to the seeds");
    (void)layer.median_task_loss();
    Selection sel;
    sel.from = {SeedState::DORMANT, SeedState::TRAINING};
    sel.bounds = {{Metric::TaskLoss, 0.0}, {Metric::ShadowGain}, {Metric::Improvement}};
    sel.limit = 3;
    FUZZ_CHECK(view.select(id, sel).size() <= 3, "a selection beyond its limit");
  }
  (void)top.latency();
  (void)top.telemetry_rate(now);

  // A whole frame, and a short narrow one (with colors for an odd-sized input: escapes are ours).
  const bool color = (size & 1u) != 0;
  for (const auto& [width, height] : {std::pair{80, 0}, std::pair{color ? 132 : 20, color ? 40 : 6}}) {
    RenderOptions options;
    options.width = width;
    options.height = height;
    options.color = color && width == 132;
    options.now = now;
    fuzz::check_frame(render(top, options), width, height, options.color);
  }
  return 0;
}
