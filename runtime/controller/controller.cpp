#include "controller/controller.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/stats.hpp"
#include "wire/builders.hpp"

namespace esper::controller {

using Clock = std::chrono::steady_clock;
using wire::DecisionAction;
using wire::SeedState;

struct Controller::Request {
  PopulationOutcome outcome;
  std::string policy;
  Clock::time_point sent;
  std::size_t commands_left = 0;
  wire::MsgId first_command{};
};

namespace {

// Metrics the detector watches, and which direction is worse for each.
struct Watched {
  const char* name;
  float (wire::SeedMetrics::*get)() const;
};
constexpr Watched kWatched[] = {{"task_loss", &wire::SeedMetrics::task_loss},
                                {"grad_norm", &wire::SeedMetrics::grad_norm}};

}  // namespace

Controller::Controller(zmq::context_t& ctx, ControllerOptions options)
    : options_(std::move(options)), anomalies_(options_.anomaly), view_(options_.bounds) {
  fabric::SubscriberOptions so;
  so.connect_timeout = options_.connect_timeout;
  so.bounds = options_.bounds;
  sub_ = std::make_unique<fabric::Subscriber>(ctx, options_.broker, so);
  fabric::ClientOptions co;
  co.job_id = options_.job_id;
  co.retry = options_.retry;
  co.dead_letters = options_.dead_letters;
  client_ = std::make_unique<fabric::Client>(ctx, options_.broker, co);
  if (options_.policy) policy_.emplace(*options_.policy);
}

Controller::~Controller() { stop(); }

void Controller::start() {
  worker_.start(
      "controller",
      [this](const std::stop_token& stop) {
        while (!stop.stop_requested()) pump(std::chrono::milliseconds(20));
      },
      [](const ThreadFailure& f) { spdlog::error("controller: {}", f.message()); });
}

std::string Controller::error() const {
  const auto f = worker_.failure();
  return f ? f->what : std::string();
}

void Controller::stop() noexcept {
  worker_.stop();
  // Commands in flight end with their outcomes (bounded by their timeout), so none is unaccounted.
  try {
    const auto until = Clock::now() + std::chrono::milliseconds(options_.command_timeout_ms + 1000);
    while (client_ && client_->pending() > 0 && Clock::now() < until) collect(std::chrono::milliseconds(20));
  } catch (const std::exception& e) {
    spdlog::warn("controller: stopping: {}", e.what());
  }
}

void Controller::join() {
  if (!sub_->wait_ready(options_.connect_timeout) || !sub_->sync(options_.connect_timeout)) {
    throw Error("controller: the broker at " + options_.broker + " did not answer within " +
                std::to_string(options_.connect_timeout.count()) + " ms");
  }
  std::lock_guard lock(mu_);
  view_.load(sub_->state());
  joined_ = true;
  stats_.joined = true;
  joined_at_ = Clock::now();
  next_decision_ = joined_at_ + options_.settle;
  spdlog::info("controller: joined at event sequence {} ({} seeds known), policy {}", sub_->state().sequence(),
               sub_->state().seeds().size(), policy_ ? policy_->config().name : "none");
}

void Controller::pump(std::chrono::milliseconds budget) {
  try {
    pump_once(budget);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;  // a signal: the caller decides whether to stop
  }
}

void Controller::pump_once(std::chrono::milliseconds budget) {
  if (!joined_) join();
  // Telemetry and results arrive on two sockets: short slices keep an outcome from waiting
  // behind a quiet subscription.
  const auto until = Clock::now() + budget;
  do {
    receive(std::min(budget, std::chrono::milliseconds(2)));
    collect(std::chrono::milliseconds(0));
  } while (Clock::now() < until);
  if (Clock::now() >= next_decision_) {
    next_decision_ = Clock::now() + options_.tick;
    decide();
  }
  std::lock_guard lock(mu_);
  while (!unsent_.empty()) {
    if (!client_->emit(unsent_.front())) break;
    unsent_.pop_front();
    ++stats_.events;
  }
}

void Controller::receive(std::chrono::milliseconds budget) {
  const auto until = Clock::now() + budget;
  std::vector<std::pair<std::uint32_t, wire::SeedMetrics>> fresh;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    auto d = sub_->next(std::max(left, std::chrono::milliseconds(0)));
    if (!d) break;
    if (d->duplicate || !d->message) continue;
    std::lock_guard lock(mu_);
    if (const auto* batch = d->message->body<wire::TelemetryBatch>()) {
      fresh.clear();
      stats_.telemetry_records += view_.on_telemetry(*batch, &fresh);
      // The detector samples each seed once per batch (its latest record): a rank's per-step
      // records are smoothed and strongly correlated from one step to the next, which a 3-sigma
      // test would read as a stream of anomalies.
      std::map<std::pair<std::uint32_t, std::uint32_t>, const wire::SeedMetrics*> latest;
      for (const auto& [layer, r] : fresh) latest[{layer, r.seed()}] = &r;
      for (const auto& [key, r] : latest) on_record(key.first, *r);
    } else if (const auto* event = d->message->body<wire::Event>()) {
      // Missed events are replayed and delivered; ones too old to be were covered by a new
      // snapshot instead, whose states the view takes.
      if (const auto resyncs = sub_->events_unrecovered(); resyncs != resyncs_seen_) {
        resyncs_seen_ = resyncs;
        view_.load(sub_->state());
      }
      const auto* src = d->message->envelope().source();
      view_.on_event(*event, src ? src->rank() : -1);
    }
    if (Clock::now() >= until) break;
  }
}

void Controller::on_record(std::uint32_t layer, const wire::SeedMetrics& r) {
  if (!options_.detect_anomalies) return;
  // Each state has its own regime (a seed's gradient is 0 until it trains, its loss drops as it
  // blends in): a series covers one stay in one state.
  auto& last = detected_state_[{layer, r.seed()}];
  if (last != r.state()) {
    for (const auto& w : kWatched) anomalies_.reset({layer, r.seed(), w.name});
    last = r.state();
  }
  if (r.state() == SeedState::DORMANT || is_terminal(r.state())) return;
  for (const auto& w : kWatched) {
    const double value = (r.*w.get)();
    for (const auto& a : anomalies_.add({layer, r.seed(), w.name}, value)) {
      // Falling losses and gradients are what training is for: only a worsening is an anomaly.
      if (std::isfinite(a.value) && a.value <= a.expected_high) continue;
      ++stats_.alerts;
      unsent_.push_back(wire::anomaly_alert(layer, r.step(), r.seed(), w.name, a.value, a.expected_low,
                                            a.expected_high, a.severity, a.detector, a.score));
    }
  }
}

std::uint64_t Controller::transition_population(std::uint32_t layer, SeedState target, Selection selection,
                                                std::string reason, DecisionAction action) {
  std::vector<std::uint32_t> seeds;
  std::size_t batch = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, req] : requests_) {
      if (req->outcome.layer == layer) selection.exclude.insert(req->outcome.seeds.begin(), req->outcome.seeds.end());
    }
    seeds = view_.select(layer, selection);
    batch = selection.batch_size;
  }
  if (seeds.empty()) return 0;
  return send_population(layer, target, std::move(seeds), batch, std::move(reason), action);
}

std::uint64_t Controller::send_population(std::uint32_t layer, SeedState target, std::vector<std::uint32_t> seeds,
                                          std::size_t batch_size, std::string reason, DecisionAction action) {
  auto req = std::make_unique<Request>();
  req->outcome.layer = layer;
  req->outcome.target = target;
  req->outcome.action = action;
  req->outcome.reason = reason;
  req->outcome.seeds = seeds;
  req->policy = policy_ ? policy_->config().name : "manual";
  req->sent = Clock::now();
  const std::size_t per = batch_size == 0 ? seeds.size() : batch_size;
  wire::CommandOptions co;
  co.timeout_ms = options_.command_timeout_ms;
  // One command per batch of seeds (an emergency stop: one, for the job).
  std::vector<std::pair<wire::CommandT, std::vector<std::uint32_t>>> cmds;
  if (action == DecisionAction::EMERGENCY_STOP) {
    cmds.emplace_back(
        wire::emergency_stop(wire::to_all(), wire::StopScope::JOB, layer, 0, req->policy + ": " + reason, co),
        std::vector<std::uint32_t>{});
  }
  for (std::size_t i = 0; action != DecisionAction::EMERGENCY_STOP && i < seeds.size(); i += per) {
    std::vector<std::uint32_t> part(seeds.begin() + static_cast<std::ptrdiff_t>(i),
                                    seeds.begin() + static_cast<std::ptrdiff_t>(std::min(seeds.size(), i + per)));
    auto cmd = wire::transition_seeds(wire::to_layer(layer), layer, wire::seed_ids(part), target,
                                      req->policy + ": " + reason, false, co);
    cmds.emplace_back(std::move(cmd), std::move(part));
  }
  const auto priority = action == DecisionAction::EMERGENCY_STOP ? wire::Priority::CRITICAL : wire::Priority::NORMAL;
  std::uint64_t rid = 0;
  {
    std::lock_guard lock(mu_);
    rid = next_request_++;
    req->outcome.id = rid;
    req->commands_left = cmds.size();
    ++stats_.decisions;
    requests_.emplace(rid, std::move(req));
  }
  // Each command is registered as soon as it is sent: an outcome collected while a later one
  // waits for room finds its request.
  for (auto& [cmd, part] : cmds) {
    for (;;) {
      auto id = client_->send(cmd, priority);
      if (id) {
        std::lock_guard lock(mu_);
        auto& r = *requests_.at(rid);
        if (!wire::is_set(r.first_command)) r.first_command = *id;
        commands_[fabric::key_of(*id)] = Sent{rid, std::move(part)};
        ++stats_.commands;
        break;
      }
      collect(std::chrono::milliseconds(5));  // would block: make room
    }
  }
  return rid;
}

void Controller::collect(std::chrono::milliseconds wait) {
  const auto outcomes = client_->poll(wait);
  std::lock_guard lock(mu_);
  for (const auto& o : outcomes) {
    const auto it = commands_.find(fabric::key_of(o.id));
    if (it == commands_.end()) continue;
    const Sent sent = std::move(it->second);
    commands_.erase(it);
    auto& req = *requests_.at(sent.request);
    auto& out = req.outcome;
    const bool stop_cmd = out.action == DecisionAction::EMERGENCY_STOP;
    // Per seed: applied by every target, or the first refusal / failure.
    std::map<std::uint32_t, std::size_t> ok;
    std::int64_t step = -1;
    for (const auto& t : o.targets) {
      if (!t.has_result) {
        const std::string why = std::string(wire::EnumNameFailureReason(t.failure)) + " at rank " +
                                std::to_string(t.rank) + (t.detail.empty() ? "" : ": " + t.detail);
        if (stop_cmd) out.failed.emplace(0, why);
        for (const auto s : sent.seeds) out.failed.emplace(s, why);
        continue;
      }
      step = std::max(step, t.result.applied_at_step);
      if (stop_cmd && t.result.status != wire::Status::OK) out.failed.emplace(0, t.result.error);
      for (const auto& so : t.result.outcomes) {
        if (so->status == wire::Status::OK) {
          ++ok[so->seed];
        } else {
          out.rejected.emplace(so->seed, std::string(wire::EnumNameStatus(so->status)) + ": " + so->error);
        }
      }
    }
    for (const auto& [seed, n] : ok) {
      if (n == o.targets.size() && !out.rejected.contains(seed) && !out.failed.contains(seed)) {
        out.applied.push_back(seed);
        view_.set_state(out.layer, seed, out.target, step >= 0 ? static_cast<std::uint64_t>(step) : view_.step());
      }
    }
    if (--req.commands_left > 0) continue;
    finish(req);
    done_.push_back(std::move(req.outcome));
    if (done_.size() > kKept) done_.pop_front();
    requests_.erase(sent.request);
  }
}

// Called with mu_ held, once every command of the request has its outcome.
void Controller::finish(Request& req) {
  auto& out = req.outcome;
  std::sort(out.applied.begin(), out.applied.end());
  out.latency = Clock::now() - req.sent;
  const double ms = std::chrono::duration<double, std::milli>(out.latency).count();
  latencies_ms_.push_back(ms);
  if (latencies_ms_.size() > 10'000) latencies_ms_.erase(latencies_ms_.begin(), latencies_ms_.begin() + 5'000);
  stats_.seeds_applied += out.applied.size();
  stats_.seeds_rejected += out.rejected.size();
  stats_.seeds_failed += out.failed.size();
  if (policy_) {
    for (const auto& [seed, why] : out.rejected) policy_->refused(out.layer, seed, view_.step());
    // Outcomes of growth: a seed fossilized, or culled, or a command that got no result.
    for (std::size_t i = 0; i < out.failed.size(); ++i) policy_->outcome(true);
    for (std::size_t i = 0; i < out.applied.size(); ++i) {
      if (out.action == DecisionAction::CULL) policy_->outcome(true);
      if (out.target == SeedState::FOSSILIZED) policy_->outcome(false);
    }
  }
  wire::DecisionFields f;
  f.policy = req.policy;
  f.action = out.action;
  f.target = out.target;
  f.seeds = out.seeds;
  f.reason = out.reason;
  f.command_id = req.first_command;
  f.applied = out.applied;
  for (const auto& [seed, why] : out.rejected) f.rejected.push_back(seed);
  f.status = out.failed.empty() ? (out.rejected.empty() ? wire::Status::OK : wire::Status::REJECTED)
                                : wire::Status::FAILED;
  f.failure = !out.failed.empty() ? out.failed.begin()->second
                                   : (!out.rejected.empty() ? out.rejected.begin()->second : std::string());
  f.latency_ns = static_cast<std::uint64_t>(out.latency.count());
  auto event = wire::decision(out.layer, view_.step(), std::move(f));
  spdlog::debug("controller: layer {} {} -> {} seeds [{}]: {} applied, {} rejected, {} failed ({})", out.layer,
                wire::EnumNameDecisionAction(out.action), wire::EnumNameSeedState(out.target), fmt::join(out.seeds, ","),
                out.applied.size(), out.rejected.size(), out.failed.size(), out.reason);
  decision_log_.push_back(event);
  ++decisions_logged_;
  if (decision_log_.size() > kKept) decision_log_.pop_front();
  unsent_.push_back(std::move(event));
}

void Controller::decide() {
  if (!policy_) return;
  std::vector<Decision> decisions;
  {
    std::lock_guard lock(mu_);
    if (stats_.emergency_stopped) return;
    Policy::InFlight busy;
    for (const auto& [rid, req] : requests_) {
      for (const auto s : req->outcome.seeds) busy[{req->outcome.layer, s}] = req->outcome.target;
    }
    decisions = policy_->decide(view_, busy);
  }
  for (auto& d : decisions) {
    if (d.action == DecisionAction::EMERGENCY_STOP) {
      spdlog::error("controller: emergency stop: {}", d.reason);
      {
        std::lock_guard lock(mu_);
        stats_.emergency_stopped = true;
      }
      send_population(0, SeedState::DORMANT, {}, 0, d.reason, d.action);
      continue;
    }
    send_population(d.layer, d.target, std::move(d.seeds), 0, std::move(d.reason), d.action);
  }
}

std::vector<PopulationOutcome> Controller::completed() {
  std::lock_guard lock(mu_);
  std::vector<PopulationOutcome> out(std::make_move_iterator(done_.begin()), std::make_move_iterator(done_.end()));
  done_.clear();
  return out;
}

std::size_t Controller::in_flight() const {
  std::lock_guard lock(mu_);
  return requests_.size();
}

PopulationView Controller::view() const {
  std::lock_guard lock(mu_);
  return view_;
}

ControllerStats Controller::stats() const {
  std::lock_guard lock(mu_);
  auto s = stats_;
  s.ranks_live = view_.live_ranks().size();
  s.ranks_seen = view_.ranks_seen().size();
  s.values_rejected = view_.values_rejected() + sub_->counters().values_rejected + client_->counters().values_rejected;
  s.broker_restarts = sub_->counters().broker_restarts;
  s.latency_p50_ms = percentile(latencies_ms_, 0.50);
  s.latency_p99_ms = percentile(latencies_ms_, 0.99);
  return s;
}

std::vector<wire::EventT> Controller::decision_events(std::uint64_t& cursor) const {
  std::lock_guard lock(mu_);
  const std::uint64_t first = decisions_logged_ - decision_log_.size();  // ordinal of the oldest kept
  std::vector<wire::EventT> out;
  for (auto k = std::max(cursor, first); k < decisions_logged_; ++k) out.push_back(decision_log_[k - first]);
  cursor = decisions_logged_;
  return out;
}

}  // namespace esper::controller
