#include "rank/rank_program.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "controller/controller.hpp"
#include "core/signals.hpp"
#include "core/stats.hpp"
#include "fabric/broker.hpp"
#include "fabric/client.hpp"
#include "fabric/node.hpp"
#include "lifecycle/wire_convert.hpp"
#include "mpi/collectives.hpp"
#include "rank/step_commands.hpp"
#include "wire/builders.hpp"

namespace esper::rank {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using lifecycle::State;

constexpr State kAdvanceCycle[] = {State::GERMINATED,    State::TRAINING,   State::GRAFTING,  State::STABILIZATION,
                                   State::EVALUATING,    State::FINE_TUNING, State::FOSSILIZED};

std::string state_counts(const std::array<std::uint32_t, lifecycle::kStateCount>& counts) {
  std::string out;
  for (std::size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    out += (out.empty() ? "" : " ") + std::string(wire::EnumNamesSeedState()[s]) + "=" + std::to_string(counts[s]);
  }
  return out;
}

// Rank 0's stand-in for the controller: commands on a fixed schedule, sent through the fabric.
class Schedule {
 public:
  Schedule(zmq::context_t& ctx, const std::string& broker, const RunConfig& cfg, int world_size)
      : cfg_(cfg), world_size_(world_size), rng_(cfg.schedule_seed) {
    if (cfg.schedule.rfind("random:", 0) == 0) random_total_ = std::stoul(cfg.schedule.substr(7));
    fabric::ClientOptions o;
    o.retry.first = std::chrono::milliseconds(100);
    client_ = std::make_unique<fabric::Client>(ctx, broker, o);
    thread_ = std::thread([this] { loop(); });
  }
  ~Schedule() { finish(); }

  void at_step(std::uint64_t step) { step_.store(step, std::memory_order_relaxed); }
  void stop_sending() { sending_ = false; }
  // Waits (bounded) for every outcome, then stops the thread.
  void finish() {
    sending_ = false;
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

  json report() const {
    std::lock_guard lock(mu_);
    json j;
    j["sent"] = sent_;
    j["completed"] = completed_;
    j["targets_expected"] = sent_ * static_cast<std::uint64_t>(world_size_);
    j["outcomes"] = outcomes_;
    j["duplicate_outcomes"] = duplicates_;
    j["by_status"] = by_status_;
    j["latency_ms"] = {{"p50", percentile(latencies_ms_, 0.50)},
                       {"p99", percentile(latencies_ms_, 0.99)},
                       {"max", percentile(latencies_ms_, 1.0)}};
    return j;
  }

 private:
  void loop() {
    std::uint64_t next = cfg_.schedule_every;
    std::size_t k = 0;
    const std::uint64_t steps = cfg_.layer.steps;
    const std::uint64_t spacing = random_total_ ? std::max<std::uint64_t>(1, steps / (random_total_ + 1)) : 0;
    while (!done_) {
      const auto step = step_.load(std::memory_order_relaxed);
      if (!sending_) {
        collect(std::chrono::milliseconds(5));
        continue;
      }
      if (cfg_.schedule == "advance" && step >= next) {
        for (int l = 0; l < cfg_.layers; ++l) {
          send(wire::transition_seeds(wire::to_layer(static_cast<std::uint32_t>(l)), static_cast<std::uint32_t>(l),
                                      wire::all_seeds(), kAdvanceCycle[k % std::size(kAdvanceCycle)], "schedule"));
        }
        ++k;
        next += cfg_.schedule_every;
      }
      while (random_total_ > 0 && random_sent_ < random_total_ && step >= random_sent_ * spacing) send_random();
      collect(std::chrono::milliseconds(5));
    }
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (client_->pending() > 0 && Clock::now() < until) collect(std::chrono::milliseconds(20));
  }

  void send_random() {
    std::uniform_int_distribution<int> layer(0, cfg_.layers - 1), state(0, 10), count(1, 4),
        seed(0, cfg_.layer.chunks - 1), coin(0, 4);
    std::vector<std::uint32_t> ids;
    for (int i = count(rng_); i > 0; --i) ids.push_back(static_cast<std::uint32_t>(seed(rng_)));
    const auto l = static_cast<std::uint32_t>(layer(rng_));
    send(wire::transition_seeds(wire::to_all(), l, wire::seed_ids(std::move(ids)),
                                static_cast<wire::SeedState>(state(rng_)), "random", coin(rng_) == 0));
    ++random_sent_;
  }

  void send(const wire::CommandT& cmd) {
    for (;;) {
      auto id = client_->send(cmd);
      if (id) break;
      collect(std::chrono::milliseconds(5));  // would block: make room and try again
    }
    std::lock_guard lock(mu_);
    ++sent_;
  }

  void collect(std::chrono::milliseconds wait) {
    for (const auto& o : client_->poll(wait)) {
      std::lock_guard lock(mu_);
      ++completed_;
      std::vector<int> ranks;
      for (const auto& t : o.targets) {
        if (std::find(ranks.begin(), ranks.end(), t.rank) != ranks.end()) ++duplicates_;
        ranks.push_back(t.rank);
        ++outcomes_;
        const std::string key = t.has_result ? wire::EnumNameStatus(t.result.status)
                                             : std::string("FAILED_") + wire::EnumNameFailureReason(t.failure);
        ++by_status_[key];
        latencies_ms_.push_back(static_cast<double>(t.latency.count()) / 1e6);
      }
    }
  }

  const RunConfig& cfg_;
  int world_size_;
  std::mt19937_64 rng_;
  std::uint64_t random_total_ = 0, random_sent_ = 0;
  std::unique_ptr<fabric::Client> client_;
  std::atomic<std::uint64_t> step_{0};
  std::atomic<bool> done_{false};
  std::atomic<bool> sending_{true};
  mutable std::mutex mu_;
  std::uint64_t sent_ = 0, completed_ = 0, outcomes_ = 0, duplicates_ = 0;
  std::map<std::string, std::uint64_t> by_status_;
  std::vector<double> latencies_ms_;
  std::thread thread_;
};

// What the report says so far; written by the training thread, read by the watchdog.
struct Progress {
  std::mutex mu;
  std::uint64_t step = 0;
  double first_loss = -1, last_loss = 0;
  json curve = json::array();
  std::atomic<std::int64_t> boundary_ns{0};  // steady-clock time of the last step boundary
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Ranks the broker has not heard from (of 0..size-1).
std::vector<int> lost_ranks(const fabric::Broker& broker, int size) {
  const auto live = broker.live_ranks();
  std::vector<int> lost;
  for (int r = 0; r < size; ++r) {
    if (std::find(live.begin(), live.end(), r) == live.end()) lost.push_back(r);
  }
  return lost;
}

// The device every rank trains on. CUDA needs, on every rank, a usable device of its own (NCCL
// refuses two ranks of one communicator on one device), selected by local rank before any layer
// or communicator exists, and NCCL in the build for the gradients. The ranks agree over MPI: CUDA
// only when every rank can use it.
struct Device {
  bool cuda = false;
  std::string name = "cpu";  // or "cuda:<index> <device name>"
  std::string why_not_cuda;  // --device auto fell back to the CPU: why
};

Device choose_device(const std::string& wanted, [[maybe_unused]] const mpi::World& world,
                     [[maybe_unused]] MPI_Comm comm) {
  if (wanted == "cpu") return {};
#ifndef ESPER_HAVE_NCCL
  if (wanted == "cuda") {
    throw Error("--device cuda: this build of esper has no NCCL, which training on CUDA needs for the gradients "
                "(configure with CUDA and NCCL, e.g. the cuda preset)");
  }
  return {};
#else
  Device mine{true, {}};
  std::string why_not;
  if (!kernels::cuda_available()) {
    why_not = "CUDA backend unavailable: " + kernels::cuda_status().reason;
  } else if (kernels::cuda_status().devices < world.local_size) {
    why_not = std::to_string(world.local_size) + " ranks on " + world.node + " but " +
              std::to_string(kernels::cuda_status().devices) + " CUDA device(s); NCCL needs one per rank";
  } else if (auto selected = kernels::select_device(world.local_rank)) {
    mine.name = std::move(selected).value();
  } else {
    why_not = selected.error().message();
  }
  int usable = why_not.empty() ? 1 : 0;
  std::vector<int> all(static_cast<std::size_t>(world.size));
  mpi::check(MPI_Allgather(&usable, 1, MPI_INT, all.data(), 1, MPI_INT, comm), "MPI_Allgather(device)");
  std::string lacking;
  for (int r = 0; r < world.size; ++r) {
    if (all[static_cast<std::size_t>(r)] == 0) lacking += (lacking.empty() ? "" : ", ") + std::to_string(r);
  }
  if (lacking.empty()) return mine;
  if (wanted == "cuda") {
    const std::string here =
        usable ? "" : " (rank " + std::to_string(world.rank) + " on " + world.node + ": " + why_not + ")";
    throw Error("--device cuda: no usable CUDA device on rank(s) " + lacking + here);
  }
  Device cpu;
  cpu.why_not_cuda = "no usable CUDA device on rank(s) " + lacking + (usable ? "" : " (here: " + why_not + ")");
  return cpu;
#endif
}

}  // namespace

int run(const RunConfig& cfg, mpi::Session& session) {
  const auto& world = session.world();
  const bool leader = world.rank == 0;
  const auto started = Clock::now();
  install_stop_handlers();
  auto coll = mpi::make_mpi_collectives(session.comm());
  // Gradients live where the layers run: NCCL reduces device buffers; losses and digests stay on MPI.
  const Device device = choose_device(cfg.device, world, session.comm());
  std::unique_ptr<mpi::Collectives> device_coll;
#ifdef ESPER_HAVE_NCCL
  if (device.cuda) device_coll = mpi::make_nccl_collectives(session.comm());
#endif
  mpi::Collectives* gradient_coll = device_coll ? device_coll.get() : coll.get();

  // The fabric: rank 0 embeds the broker; everyone learns its endpoint over MPI.
  zmq::context_t ctx;
  std::unique_ptr<fabric::Broker> broker;
  std::string endpoint = cfg.broker;
  if (cfg.fabric && endpoint.empty()) {
    if (leader) {
      fabric::BrokerOptions bo;
      const bool tcp = cfg.transport == "tcp" || (cfg.transport == "auto" && world.spans_nodes());
      bo.bind = tcp ? "tcp://0.0.0.0:0" : "ipc:///tmp/esper-" + world.job_id + "-" + std::to_string(::getpid());
      broker = std::make_unique<fabric::Broker>(ctx, bo);
      endpoint = fabric::connectable(broker->endpoints().cmd, "tcp://" + mpi::node_address() + ":0");
    }
    endpoint = mpi::broadcast(endpoint, 0, session.comm());
  }
  std::unique_ptr<fabric::Node> node;
  std::vector<std::uint32_t> layer_ids;
  for (int l = 0; l < cfg.layers; ++l) layer_ids.push_back(static_cast<std::uint32_t>(l));
  if (cfg.fabric) {
    fabric::NodeOptions no;
    no.rank = world.rank;
    no.layers = layer_ids;
    no.job_id = world.job_id;
    no.host = world.node;
    no.heartbeat_interval = cfg.heartbeat;
    node = std::make_unique<fabric::Node>(ctx, endpoint, no);
  }
  std::printf("rank %d/%d pid %d on %s%s device %s\n", world.rank, world.size, static_cast<int>(::getpid()),
              world.node.c_str(), leader && cfg.fabric ? (" broker " + endpoint).c_str() : "", device.name.c_str());
  if (leader && !device.why_not_cuda.empty()) std::printf("device: CPU, %s\n", device.why_not_cuda.c_str());
  std::fflush(stdout);

  // Seed layers: one driver per layer, replicas kept identical by the collectives.
  std::vector<std::unique_ptr<morphogenesis::Driver>> drivers;
  const float world_size_f = static_cast<float>(world.size);
  for (int l = 0; l < cfg.layers; ++l) {
    auto lc = cfg.layer;
    lc.seed = cfg.layer.seed + static_cast<std::uint64_t>(l) * 7919u;
    lc.data_stream = static_cast<std::uint64_t>(world.rank) + 1;
    lc.auto_advance = false;
    lc.backend = device.cuda ? kernels::Backend::Cuda : kernels::Backend::Cpu;
    morphogenesis::Replication rep;
    rep.reduce_gradients = [gradient_coll](kernels::SeedLayer& layer) {
      gradient_coll->allreduce_mean(layer.gradient_buffer(kernels::Tensor::SeedA));
      gradient_coll->allreduce_mean(layer.gradient_buffer(kernels::Tensor::SeedB));
    };
    rep.reduce_losses = [&coll, world_size_f](std::span<double> v) {
      coll->allreduce_sum(v);
      for (auto& x : v) x /= static_cast<double>(world_size_f);
    };
    drivers.push_back(std::make_unique<morphogenesis::Driver>(lc, std::move(rep)));
  }

  std::unique_ptr<Schedule> schedule;
  if (leader && cfg.fabric && cfg.schedule != "none") schedule = std::make_unique<Schedule>(ctx, endpoint, cfg, world.size);
  std::unique_ptr<controller::Controller> control;
  if (leader && cfg.fabric && cfg.policy != "none") {
    controller::ControllerOptions co;
    co.broker = endpoint;
    co.policy = controller::preset(cfg.policy);
    co.job_id = world.job_id;
    co.settle = std::chrono::milliseconds(0);  // a fresh job: no earlier controller's commands to wait for
    co.tick = std::chrono::milliseconds(20);
    control = std::make_unique<controller::Controller>(ctx, co);
    control->start();
    // Train once the controller listens, so that it sees the job from its first step.
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (!control->stats().joined && control->error().empty() && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!control->stats().joined) {
      throw Error("the controller could not join the broker at " + endpoint + ": " +
                  (control->error().empty() ? "no answer within 10 s" : control->error()));
    }
  }

  // Commands: applied by every replica at the same boundary.
  std::atomic<bool> stop_by_command{false};
  std::string stop_reason;
  std::uint64_t step = 0;
  auto apply = [&](const wire::Command& cmd, const wire::Envelope& env) {
    wire::CommandResultT r;
    switch (cmd.body_type()) {
      case wire::CommandBody::TransitionSeeds: {
        const auto* t = cmd.body_as_TransitionSeeds();
        if (t->layer() >= drivers.size()) {
          r.status = wire::Status::REJECTED;
          r.error = "layer " + std::to_string(t->layer()) + " does not exist (0.." + std::to_string(drivers.size() - 1) + ")";
          return r;
        }
        const auto report = drivers[t->layer()]->transition(lifecycle::selection_from_wire(t->seeds()), t->target(),
                                                            t->reason() ? t->reason()->str() : "", t->force());
        r.status = lifecycle::command_status(report);
        for (auto& o : lifecycle::to_wire(report)) r.outcomes.push_back(std::make_unique<wire::SeedOutcomeT>(std::move(o)));
        if (leader && node) {
          for (const auto& o : report.outcomes) {
            if (o.applied()) {
              node->emit(wire::state_transition(t->layer(), step, o.seed, o.from, o.to,
                                                t->reason() ? t->reason()->str() : "", "command", *env.msg_id()));
            }
          }
        }
        return r;
      }
      case wire::CommandBody::EmergencyStop:
      case wire::CommandBody::Shutdown:
        stop_by_command = true;
        stop_reason = cmd.body_type() == wire::CommandBody::Shutdown ? "shutdown command" : "emergency stop";
        r.status = wire::Status::OK;
        return r;
      default:
        r.status = wire::Status::REJECTED;
        r.error = std::string("ranks do not handle ") + wire::EnumNameCommandBody(cmd.body_type()) + " commands yet";
        return r;
    }
  };
  std::unique_ptr<StepCommands> commands;
  if (cfg.fabric) commands = std::make_unique<StepCommands>(node.get(), world.rank, session.comm());

  // The report: rank 0 writes it at the end, or from the watchdog if training cannot end normally.
  Progress progress;
  std::mutex report_mu;
  auto write_report = [&](const std::string& status, json extra) {
    std::lock_guard once(report_mu);
    json report = std::move(extra);
    report["status"] = status;
    report["job_id"] = world.job_id;
    report["world_size"] = world.size;
    report["device"] = device.name;
    report["wall_seconds"] = std::chrono::duration<double>(Clock::now() - started).count();
    {
      std::lock_guard lock(progress.mu);
      report["steps_run"] = progress.step;
      report["loss"]["first_step"] = progress.first_loss;
      report["loss"]["last_step"] = progress.last_loss;
      report["loss"]["curve"] = progress.curve;
    }
    if (node) {
      const auto c = node->counters();
      report["telemetry"] = {{"batches", c.telemetry_batches},
                             {"records", c.telemetry_records},
                             {"records_dropped", c.telemetry_records_dropped}};
    }
    if (schedule) report["schedule"] = schedule->report();
    if (control) {
      const auto st = control->stats();
      report["controller"] = {{"policy", cfg.policy},
                              {"decisions", st.decisions},
                              {"commands", st.commands},
                              {"seeds_applied", st.seeds_applied},
                              {"seeds_rejected", st.seeds_rejected},
                              {"seeds_failed", st.seeds_failed},
                              {"anomaly_alerts", st.alerts},
                              {"emergency_stopped", st.emergency_stopped},
                              {"latency_ms", {{"p50", st.latency_p50_ms}, {"p99", st.latency_p99_ms}}}};
    }
    std::ofstream(cfg.report) << report.dump(2) << "\n";
  };

  // The watchdog: a rank blocked in a collective (a peer died, or mpirun is tearing the job down)
  // cannot reach the next step boundary. Then rank 0 writes what it knows and the rank exits.
  std::atomic<bool> finished{false};
  progress.boundary_ns = now_ns();
  std::thread watchdog([&] {
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      const auto stalled = std::chrono::nanoseconds(now_ns() - progress.boundary_ns.load());
      const bool lost = broker && broker->counters().ranks_lost > 0;
      const bool signalled = stop_requested();
      if (!((signalled && stalled > std::chrono::milliseconds(300)) || (lost && stalled > std::chrono::seconds(1)))) {
        continue;
      }
      const auto missing = broker ? lost_ranks(*broker, world.size) : std::vector<int>{};
      std::string status = signalled ? "terminated by a signal while blocked" : "stopped";
      int code = 2;
      if (!missing.empty()) {
        status = "rank " + json(missing).dump() + " lost";
        code = 5;
      }
      if (leader && !finished.load()) {
        write_report(status, json{{"lost_ranks", missing}});
        std::printf("done: %s after %llu steps; report %s\n", status.c_str(),
                    static_cast<unsigned long long>(progress.step), cfg.report.c_str());
        std::fflush(stdout);
      }
      // No destructor runs past _Exit: remove the ipc socket files the fabric would have removed.
      if (node) fabric::remove_ipc_file(node->command_endpoint());
      if (broker) broker->remove_socket_files();
      std::_Exit(code);
    }
  });

  // Training.
  std::string status = "completed";
  int exit_code = 0;
  std::uint64_t transitions = 0;
  std::vector<wire::SeedMetrics> records;
  auto last_report = Clock::now();
  std::uint64_t records_at_last_report = 0;
  std::uint64_t records_published = 0;  // handed to the node (it batches them per 100 ms window)
  const auto training_started = Clock::now();
  // Steady state: the steps after the first tenth, past start-up transients (connections, the
  // first heartbeats and batches, caches) — what a long job's step costs.
  const std::uint64_t steady_from = cfg.layer.steps / 10;
  auto steady_started = training_started;
  for (step = 0; step < cfg.layer.steps; ++step) {
    if (step == steady_from) steady_started = Clock::now();
    // One collective per boundary: whether any rank was signalled, and (with the fabric) the
    // commands every replica applies now.
    progress.boundary_ns = now_ns();
    bool stop = stop_requested();
    if (commands) {
      commands->boundary(step, apply, &stop);
    } else {
      int any = stop ? 1 : 0;
      mpi::check(MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, session.comm()), "MPI_Allreduce(stop)");
      stop = any != 0;
    }
    if (stop) {
      status = "stopped by a signal";
      exit_code = 2;
      break;
    }
    if (stop_by_command) {
      status = "stopped by " + stop_reason;
      exit_code = 3;
      break;
    }
    double loss = 0;
    std::array<std::uint32_t, lifecycle::kStateCount> states{};
    for (std::size_t l = 0; l < drivers.size(); ++l) {
      const auto r = drivers[l]->step();
      loss += r.loss / static_cast<double>(drivers.size());
      for (std::size_t s = 0; s < states.size(); ++s) states[s] += r.states[s];
      if (node) {
        records.clear();
        const auto& pop = drivers[l]->population();
        for (std::uint32_t c = 0; c < pop.size(); ++c) {
          const auto& seed = pop.seed(c);
          const auto& m = drivers[l]->metrics(static_cast<int>(c));
          const auto& t = drivers[l]->telemetry()[c];
          const auto& part = drivers[l]->layer().partition();
          const auto width = part.end(static_cast<int>(c)) - part.begin(static_cast<int>(c));
          records.emplace_back(step, c, seed.steps_in_state(), static_cast<float>(t.mean()),
                               static_cast<float>(t.variance()),
                               width > 0 ? static_cast<float>(t.dead_units) / static_cast<float>(width) : 0.0f,
                               static_cast<float>(m.chunk_loss),
                               static_cast<float>(m.shadow_loss), static_cast<float>(m.weight_drift), seed.alpha(),
                               static_cast<float>(m.stability), seed.state(),
                               static_cast<std::uint8_t>(std::min<std::uint32_t>(seed.error_count(), 255)), 0);
        }
        node->publish(static_cast<std::uint32_t>(l), records);
        records_published += records.size();
      }
    }
    if (node) node->set_step(step + 1);
    if (schedule) schedule->at_step(step + 1);
    const bool tick = step % cfg.progress_every == 0 || step + 1 == cfg.layer.steps;
    {
      std::lock_guard lock(progress.mu);
      if (progress.first_loss < 0) progress.first_loss = loss;
      progress.last_loss = loss;
      progress.step = step + 1;
      if (tick) progress.curve.push_back({{"step", step}, {"loss", loss}});
    }
    if (leader && tick) {
      const auto now = Clock::now();
      const auto published = records_published;
      const double secs = std::chrono::duration<double>(now - last_report).count();
      const double rate = secs > 0 ? static_cast<double>(published - records_at_last_report) / secs : 0.0;
      last_report = now;
      records_at_last_report = published;
      std::printf("step %llu/%llu loss %.5f seeds %s telemetry %.0f rec/s commands %llu\n",
                  static_cast<unsigned long long>(step), static_cast<unsigned long long>(cfg.layer.steps), loss,
                  state_counts(states).c_str(), rate,
                  static_cast<unsigned long long>(commands ? commands->counts().applied : 0));
      std::fflush(stdout);
    }
  }

  // The training loop alone: what a step costs, without start-up and shutdown.
  const auto training_ended = Clock::now();
  const double train_seconds = std::chrono::duration<double>(training_ended - training_started).count();
  const double steady_seconds = std::chrono::duration<double>(training_ended - steady_started).count();

  // Replicas must agree, layer by layer.
  json digests = json::array();
  bool equal = true;
  for (const auto& d : drivers) {
    const auto agreement = coll->agree(d->digest());
    equal = equal && agreement.equal;
    json per_rank = json::array();
    for (const auto v : agreement.digests) per_rank.push_back(fmt::format("{:016x}", v));
    digests.push_back(per_rank);
    transitions += d->transitions();
  }
  if (!equal) {
    status = "replicas diverged";
    exit_code = 4;
  }
  // The end: no more commands; what was not applied is answered as such, on every rank.
  if (schedule) schedule->stop_sending();
  if (commands) commands->finish(step);
  if (schedule) schedule->finish();
  if (control) control->stop();
  mpi::check(MPI_Barrier(session.comm()), "MPI_Barrier");
  if (node) node->stop();

  finished = true;
  watchdog.join();
  if (leader) {
    json layers = json::array();
    double base = 0, final_loss = 0;
    for (std::size_t l = 0; l < drivers.size(); ++l) {
      const auto sm = drivers[l]->summary();
      base += sm.base_loss / static_cast<double>(drivers.size());
      final_loss += sm.final_loss / static_cast<double>(drivers.size());
      json states = json::object();
      for (std::size_t i = 0; i < sm.states.size(); ++i) {
        if (sm.states[i]) states[wire::EnumNamesSeedState()[i]] = sm.states[i];
      }
      json seed_states = json::array();
      for (const auto s : sm.seed_states) seed_states.push_back(wire::EnumNameSeedState(static_cast<wire::SeedState>(s)));
      layers.push_back({{"layer", l}, {"base_loss", sm.base_loss}, {"final_loss", sm.final_loss},
                        {"reduction", sm.reduction}, {"seeds", states}, {"seed_states", seed_states},
                        {"transitions", sm.transitions}});
    }
    json extra;
    extra["loss"] = {{"base_held_out", base},
                     {"final_held_out", final_loss},
                     {"reduction", base > 0 ? 1.0 - final_loss / base : 0.0}};
    extra["layers"] = layers;
    extra["transitions"] = transitions;
    extra["train_seconds"] = train_seconds;
    extra["step_ms"] = step > 0 ? 1000.0 * train_seconds / static_cast<double>(step) : 0.0;
    extra["steady_step_ms"] =
        step > steady_from ? 1000.0 * steady_seconds / static_cast<double>(step - steady_from) : 0.0;
    extra["digests"] = {{"equal", equal}, {"per_layer", digests}};
    if (commands) {
      const auto& k = commands->counts();
      extra["commands"] = {{"received", k.received}, {"applied", k.applied}, {"stale", k.stale},
                           {"timed_out", k.timed_out}, {"answered", k.answered}};
    }
    write_report(status, std::move(extra));
    std::printf("done: %s after %llu steps; held-out loss %.5f -> %.5f (%.1f%% lower); digests %s; report %s\n",
                status.c_str(), static_cast<unsigned long long>(step), base, final_loss,
                base > 0 ? 100.0 * (1.0 - final_loss / base) : 0.0, equal ? "equal" : "DIFFER", cfg.report.c_str());
    std::fflush(stdout);
  }
  return exit_code;
}

}  // namespace esper::rank
