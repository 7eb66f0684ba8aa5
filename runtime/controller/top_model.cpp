// TopModel and the frame `esper top` draws (see top_model.hpp).
//
// A frame is built from Lines: runs of text, each with a color, so that a line can be cut to the
// screen width by visible columns (UTF-8 code points; every glyph used here is one column wide)
// whether or not the escape codes are written. Every run of text goes through terminal_safe()
// (core/terminal_text.hpp) as it is added, so that nothing a rank publishes — an event's reason, a
// host, a policy name — can move the cursor or change the terminal, and columns are counted right.
//
// When the screen is short, the header and every layer's state counts are kept, then up to three
// events, then as many seed-table rows as fit (the same number for every layer), then more events.
#include "controller/top_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "controller/describe.hpp"
#include "core/stats.hpp"
#include "core/terminal_text.hpp"

namespace esper::controller {

using wire::SeedState;

TopModel::TopModel(TopOptions options) : options_(std::move(options)), view_(options_.bounds) {}

void TopModel::on_telemetry(const wire::TelemetryBatch& batch, Clock::time_point received) {
  // Checked before anything of it counts: a rejected batch adds neither records nor drops.
  if (auto problem = wire::check(batch, options_.bounds)) {
    ++values_rejected_;
    reject_log_.reject("top", "TelemetryBatch", batch.rank(), *problem);
    return;
  }
  view_.on_telemetry(batch);
  if (batches_++ == 0) first_batch_ = received;
  last_batch_ = std::max(last_batch_, received);
  publisher_dropped_ += batch.dropped_records();
  const auto records = batch.seeds() != nullptr ? batch.seeds()->size() : 0u;
  arrivals_.emplace_back(received, records);
  while (!arrivals_.empty() && arrivals_.front().first + options_.rate_window < received) arrivals_.pop_front();
}

void TopModel::on_event(const wire::Event& event, std::int32_t source_rank, bool in_state) {
  if (auto problem = wire::check(event, options_.bounds)) {
    ++values_rejected_;
    reject_log_.reject("top", "Event", source_rank, *problem);
    return;
  }
  ++events_seen_;
  if (!in_state) view_.on_event(event, source_rank);
  if (options_.events_kept > 0) {
    events_.push_back(describe(event));
    while (events_.size() > options_.events_kept) events_.pop_front();
  }
  if (const auto* d = event.body_as_Decision(); d != nullptr && options_.latency_window > 0) {
    latencies_ms_.push_back(static_cast<double>(d->latency_ns()) / 1e6);
    while (latencies_ms_.size() > options_.latency_window) latencies_ms_.pop_front();
  }
}

void TopModel::load(const fabric::JobState& state) { view_.load(state); }

double TopModel::telemetry_rate(Clock::time_point now) const {
  if (batches_ == 0) return 0.0;
  std::uint64_t records = 0;
  for (const auto& [when, n] : arrivals_) {
    if (when + options_.rate_window >= now && when <= now) records += n;
  }
  // Until a whole window has passed since the first batch, the rate is over the time there was.
  const auto span =
      std::clamp<Clock::duration>(now - first_batch_, std::chrono::milliseconds(200), options_.rate_window);
  return static_cast<double>(records) / std::chrono::duration<double>(span).count();
}

std::uint64_t TopModel::records_dropped() const noexcept {
  // The ranks tell their own drops (dropped_records); the running totals tell those and the
  // broker's, as far as this subscriber listened: the larger holds both.
  return std::max(publisher_dropped_, losses_.telemetry_records_missing) + losses_.telemetry_records_dropped;
}

LatencySummary TopModel::latency() const {
  LatencySummary s;
  s.count = latencies_ms_.size();
  if (s.count == 0) return s;
  const std::vector<double> v(latencies_ms_.begin(), latencies_ms_.end());
  s.p50_ms = percentile(v, 0.50);
  s.p99_ms = percentile(v, 0.99);
  return s;
}

namespace {

enum class Color : std::uint8_t { None, Bold, Dim, Red, Green, Yellow, Blue, Magenta, Cyan };

const char* escape(Color c) {
  switch (c) {
    case Color::None:
      return "";
    case Color::Bold:
      return "\x1b[1m";
    case Color::Dim:
      return "\x1b[2m";
    case Color::Red:
      return "\x1b[31m";
    case Color::Green:
      return "\x1b[32m";
    case Color::Yellow:
      return "\x1b[33m";
    case Color::Blue:
      return "\x1b[34m";
    case Color::Magenta:
      return "\x1b[35m";
    case Color::Cyan:
      return "\x1b[36m";
  }
  return "";
}

Color color_of(SeedState s) {
  switch (s) {
    case SeedState::DORMANT:
      return Color::Dim;
    case SeedState::GERMINATED:
      return Color::Cyan;
    case SeedState::TRAINING:
      return Color::Blue;
    case SeedState::GRAFTING:
    case SeedState::STABILIZATION:
    case SeedState::EVALUATING:
    case SeedState::FINE_TUNING:
      return Color::Yellow;
    case SeedState::FOSSILIZED:
      return Color::Green;
    default:
      return Color::Red;  // CULLED, CANCELLED, ROLLED_BACK
  }
}

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0u) == 0x80u; }

std::size_t columns(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) { return !is_continuation(c); }));
}

class Line {
 public:
  // `text` may hold strings from the network: it is made terminal-safe here, once for all.
  Line& add(std::string_view text, Color color = Color::None) {
    std::string safe = terminal_safe(text);
    width_ += columns(safe);
    runs_.push_back({std::move(safe), color});
    return *this;
  }
  [[nodiscard]] std::size_t width() const { return width_; }

  // The line cut to `max` columns (the last one then an ellipsis), with escapes when `color`.
  [[nodiscard]] std::string str(std::size_t max, bool color) const {
    std::string out;
    const bool cut = width_ > max;
    std::size_t left = cut ? (max > 0 ? max - 1 : 0) : width_;
    for (const auto& [text, c] : runs_) {
      if (left == 0) break;
      const bool colored = color && c != Color::None;
      if (colored) out += escape(c);
      std::size_t i = 0;
      for (; i < text.size(); ++i) {
        if (!is_continuation(text[i])) {
          if (left == 0) break;
          --left;
        }
        out += text[i];
      }
      if (colored) out += "\x1b[0m";
    }
    if (cut && max > 0) out += "…";
    return out;
  }

 private:
  struct Run {
    std::string text;
    Color color;
  };
  std::vector<Run> runs_;
  std::size_t width_ = 0;
};

std::string number(double v, const char* spec) {
  if (!std::isfinite(v)) return "-";
  return fmt::format(fmt::runtime(spec), v);
}

std::string rank_list(const std::set<std::int32_t>& ranks) {
  std::string s = "[";
  for (auto r : ranks) s += (s.size() > 1 ? "," : "") + std::to_string(r);
  return s + "]";
}

std::string repeat(const char* glyph, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += glyph;
  return s;
}

// Lifecycle position for the seed table: active states first, the terminal ones next, DORMANT last.
int activity_rank(SeedState s) {
  if (s == SeedState::DORMANT) return 100;
  return static_cast<int>(s);
}

std::vector<const std::pair<const std::uint32_t, SeedView>*> most_active(const LayerView& layer, std::size_t limit) {
  std::vector<const std::pair<const std::uint32_t, SeedView>*> v;
  v.reserve(layer.seeds.size());
  for (const auto& entry : layer.seeds) v.push_back(&entry);
  const auto grad = [](const SeedView& s) {
    return s.has_metrics && std::isfinite(s.last.grad_norm()) ? std::fabs(s.last.grad_norm()) : -1.0f;
  };
  const auto before = [&](const auto* a, const auto* b) {
    const int ra = activity_rank(a->second.state), rb = activity_rank(b->second.state);
    if (ra != rb) return ra < rb;
    const float ga = grad(a->second), gb = grad(b->second);
    if (ga != gb) return ga > gb;
    return a->first < b->first;
  };
  const auto n = std::min(limit, v.size());
  std::partial_sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n), v.end(), before);
  v.resize(n);
  return v;
}

// "  DORMANT 12 ████████████  TRAINING 2 ██", wrapped at `width`.
std::vector<Line> state_lines(const LayerView& layer, std::size_t width) {
  const auto counts = layer.counts();
  std::uint32_t total = 0;
  for (auto c : counts) total += c;
  std::vector<Line> lines;
  if (total == 0) {
    lines.emplace_back().add("  no seeds reported yet", Color::Dim);
    return lines;
  }
  const std::size_t budget = std::max<std::size_t>(10, width / 2);
  Line current;
  current.add(" ");
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    const auto state = static_cast<SeedState>(i);
    const std::size_t cells =
        total <= budget
            ? counts[i]
            : std::max<std::size_t>(
                  1, static_cast<std::size_t>(std::lround(static_cast<double>(counts[i]) * static_cast<double>(budget) /
                                                          static_cast<double>(total))));
    const std::string label = fmt::format("{} {} ", wire::EnumNameSeedState(state), counts[i]);
    if (current.width() > 1 && current.width() + 1 + columns(label) + cells > width) {
      lines.push_back(std::move(current));
      current = Line();
      current.add(" ");
    }
    current.add(" ").add(label, color_of(state)).add(repeat("█", cells), color_of(state));
  }
  lines.push_back(std::move(current));
  return lines;
}

Line seed_row(std::uint32_t id, const SeedView& s) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  const auto m = [&](float v) { return s.has_metrics ? static_cast<double>(v) : kNaN; };
  Line line;
  line.add(fmt::format("  {:>6} ", id));
  line.add(fmt::format("{:<13}", wire::EnumNameSeedState(s.state)), color_of(s.state));
  line.add(fmt::format(" {:>8} {:>7} {:>9} {:>9} {:>9} {:>6}",
                       s.has_metrics ? std::to_string(s.last.steps_in_state()) : std::string("-"),
                       number(m(s.last.alpha()), "{:.3f}"), number(m(s.last.task_loss()), "{:.4g}"),
                       number(m(s.last.shadow_loss()), "{:.4g}"), number(m(s.last.grad_norm()), "{:.3g}"),
                       number(m(s.last.health()), "{:.2f}")));
  return line;
}

}  // namespace

std::string render(const TopModel& model, const RenderOptions& options) {
  const std::size_t width = static_cast<std::size_t>(std::max(options.width, 20));
  const auto& view = model.population();

  std::vector<Line> header;
  std::set<std::int32_t> ranks;
  for (const auto& [id, layer] : view.layers()) ranks.insert(layer.ranks.begin(), layer.ranks.end());
  header.emplace_back()
      .add("esper top", Color::Bold)
      .add(fmt::format(" — broker {} — step {} — ranks {}", model.options().broker, view.step(),
                       rank_list(ranks)));
  const auto& losses = model.losses();
  std::string tel =
      fmt::format("telemetry {:.0f} rec/s, dropped {}, batches missing {}", model.telemetry_rate(options.now),
                  model.records_dropped(), losses.telemetry_batches_missing);
  if (losses.event_gaps > 0) {
    tel += fmt::format(", event gaps {} (replayed {}, resynced {})", losses.event_gaps, losses.events_recovered,
                       losses.events_unrecovered);
  }
  if (losses.frames_rejected > 0) tel += fmt::format(", rejected {}", losses.frames_rejected);
  // Well-formed messages with a value out of range, at the subscriber and in the model.
  const auto values_rejected = losses.values_rejected + model.values_rejected();
  if (values_rejected > 0) tel += fmt::format(", values rejected {}", values_rejected);
  // Where the dropped records went, by stage, when not all at the ranks (which tell theirs in
  // their batches): the rest were lost after them, at the broker. Records rejected here apart.
  if (losses.telemetry_records_missing > model.publisher_dropped()) {
    tel += fmt::format(", dropped at ranks {}, at the broker {}", model.publisher_dropped(),
                       losses.telemetry_records_missing - model.publisher_dropped());
  }
  if (losses.telemetry_records_rejected > 0) tel += fmt::format(", records rejected {}", losses.telemetry_records_rejected);
  // A job that ended, or a broker that went away, shows as silence.
  const auto quiet = std::chrono::duration<double>(options.now - model.last_batch()).count();
  if (model.batches_seen() > 0 && quiet >= 2.0) tel += fmt::format(", none for {:.0f} s", quiet);
  const bool lossy = model.records_dropped() > 0 || losses.telemetry_batches_missing > 0 || losses.event_gaps > 0 ||
                     values_rejected > 0 || losses.telemetry_records_rejected > 0;
  header.emplace_back().add(std::move(tel), lossy ? Color::Yellow : Color::None);
  const auto lat = model.latency();
  header.emplace_back().add(
      lat.count == 0 ? std::string("commands: no decisions seen yet")
                     : fmt::format("commands p50 {:.1f} ms p99 {:.1f} ms ({})", lat.p50_ms, lat.p99_ms, lat.count));

  struct Block {
    const LayerView* layer;
    Line title;
    std::vector<Line> states;
  };
  std::vector<Block> blocks;
  std::size_t most_seeds = 0;
  for (const auto& [id, layer] : view.layers()) {
    Block b{&layer, Line(), state_lines(layer, width)};
    b.title.add(fmt::format("layer {}", id), Color::Bold)
        .add(fmt::format(" · {} seeds · step {}{} · ranks {}", layer.seeds.size(), layer.step,
                         std::isfinite(layer.loss) ? " · loss " + number(layer.loss, "{:.4g}") : std::string(),
                         rank_list(layer.ranks)));
    most_seeds = std::max(most_seeds, layer.seeds.size());
    blocks.push_back(std::move(b));
  }

  // How much fits: see the file comment for the order things are given up in.
  const auto& events = model.recent_events();
  std::size_t rows = std::min(options.seeds_per_layer, most_seeds);
  std::size_t shown_events = events.size();
  if (options.height > 0) {
    std::size_t fixed = header.size() + 1 + 2;  // + blank line, + blank line and the events title
    for (const auto& b : blocks) fixed += 1 + b.states.size();
    if (blocks.empty()) fixed += 1;
    if (events.empty()) fixed += 1;
    std::size_t avail =
        static_cast<std::size_t>(options.height) > fixed ? static_cast<std::size_t>(options.height) - fixed : 0;
    const std::size_t first_events = std::min({events.size(), std::size_t{3}, avail});
    avail -= first_events;
    const auto table_lines = [&](std::size_t r) {
      std::size_t n = 0;
      for (const auto& b : blocks) {
        const auto k = std::min(r, b.layer->seeds.size());
        if (k > 0) n += k + 1;
      }
      return n;
    };
    while (rows > 0 && table_lines(rows) > avail) --rows;
    avail -= table_lines(rows);
    shown_events = first_events + std::min(events.size() - first_events, avail);
  }

  std::vector<Line> lines = std::move(header);
  lines.emplace_back();
  if (blocks.empty()) lines.emplace_back().add("no layers seen yet: waiting for ranks and telemetry", Color::Dim);
  for (auto& b : blocks) {
    lines.push_back(std::move(b.title));
    for (auto& l : b.states) lines.push_back(std::move(l));
    const auto seeds = most_active(*b.layer, rows);
    if (seeds.empty()) continue;
    lines.emplace_back().add(fmt::format("  {:>6} {:<13} {:>8} {:>7} {:>9} {:>9} {:>9} {:>6}", "seed", "state", "steps",
                                         "alpha", "loss", "shadow", "grad", "health"),
                             Color::Dim);
    for (const auto* s : seeds) lines.push_back(seed_row(s->first, s->second));
  }
  lines.emplace_back();
  lines.emplace_back().add(fmt::format("recent events ({} seen)", model.events_seen()), Color::Bold);
  if (events.empty()) lines.emplace_back().add("  none yet", Color::Dim);
  for (std::size_t i = events.size() - shown_events; i < events.size(); ++i) {
    lines.emplace_back().add("  " + events[i]);
  }

  if (options.height > 0 && lines.size() > static_cast<std::size_t>(options.height)) {
    lines.resize(static_cast<std::size_t>(options.height));
  }
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += '\n';
    out += lines[i].str(width, options.color);
  }
  return out;
}

}  // namespace esper::controller
