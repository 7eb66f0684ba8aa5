#include "rank/rank_program.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "controller/controller.hpp"
#include "core/signals.hpp"
#include "core/stats.hpp"
#include "core/worker.hpp"
#include "fabric/broker.hpp"
#include "fabric/client.hpp"
#include "fabric/node.hpp"
#include "lifecycle/wire_convert.hpp"
#include "mpi/collectives.hpp"
#include "rank/job_commands.hpp"
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
    if (cfg.schedule.rfind("random:", 0) == 0) random_total_ = cfg.schedule_count;
    fabric::ClientOptions o;
    o.retry.first = std::chrono::milliseconds(100);
    client_ = std::make_unique<fabric::Client>(ctx, broker, o);
    worker_.start("schedule", [this](const std::stop_token&) { loop(); });
  }
  ~Schedule() { finish(); }

  // The training thread reached `step`. When the schedule thread is more than kMaxLag steps behind
  // with what is due, it waits for it (at most 10 s): how busy the machine is must not decide
  // whether a scripted command is sent before training ends (a schedule thread starved for a few
  // dozen steps would otherwise still be sending then).
  static constexpr std::uint64_t kMaxLag = 8;
  void at_step(std::uint64_t step) {
    std::unique_lock lock(mu_);
    step_ = step;
    sent_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return sent_through_ + kMaxLag >= step || !sending_; });
  }
  [[nodiscard]] std::optional<ThreadFailure> failure() const { return worker_.failure(); }
  void stop_sending() {
    std::lock_guard lock(mu_);
    sending_ = false;
    sent_cv_.notify_all();
  }
  // Waits (at most `wait`) for every outcome, then stops the thread.
  void finish(std::chrono::milliseconds wait = std::chrono::seconds(10)) {
    stop_sending();
    wait_ = wait;
    done_ = true;
    worker_.stop();
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
      std::uint64_t step;
      {
        std::lock_guard lock(mu_);
        step = step_;
      }
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
      {
        std::lock_guard lock(mu_);
        sent_through_ = std::max(sent_through_, step);
      }
      sent_cv_.notify_all();
      collect(std::chrono::milliseconds(5));
    }
    const auto until = Clock::now() + wait_.load();
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
  std::uint64_t step_ = 0;          // the training thread's step (guarded by mu_)
  std::uint64_t sent_through_ = 0;  // every command due by this step is sent (guarded by mu_)
  std::condition_variable sent_cv_;
  std::atomic<bool> done_{false};
  std::atomic<bool> sending_{true};
  std::atomic<std::chrono::milliseconds> wait_{std::chrono::seconds(10)};
  mutable std::mutex mu_;
  std::uint64_t sent_ = 0, completed_ = 0, outcomes_ = 0, duplicates_ = 0;
  std::map<std::string, std::uint64_t> by_status_;
  std::vector<double> latencies_ms_;
  Worker worker_;  // last: stopped before anything its thread uses goes
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

// Collective: every rank says whether its part of a setup phase failed (`mine` empty: it did not).
// Returns the first failure in rank order as "rank R on HOST: cause", or nothing when none failed.
std::optional<std::string> agree_on_failure(const std::string& mine, const std::string& where, MPI_Comm comm) {
  std::string text = mine.empty() ? "" : where + ": " + mine;
  if (text.size() > 4096) text.resize(4096);
  int size = 1;
  mpi::check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  int len = static_cast<int>(text.size());
  std::vector<int> lens(static_cast<std::size_t>(size)), displs(static_cast<std::size_t>(size));
  mpi::check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm), "MPI_Allgather(failure)");
  int total = 0, failed = 0;
  for (std::size_t r = 0; r < lens.size(); ++r) {
    displs[r] = total;
    total += lens[r];
    failed += lens[r] > 0 ? 1 : 0;
  }
  if (total == 0) return std::nullopt;
  std::string all(static_cast<std::size_t>(total), '\0');
  mpi::check(MPI_Allgatherv(text.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, comm),
             "MPI_Allgatherv(failure)");
  for (std::size_t r = 0; r < lens.size(); ++r) {
    if (lens[r] == 0) continue;
    auto first = all.substr(static_cast<std::size_t>(displs[r]), static_cast<std::size_t>(lens[r]));
    if (failed > 1) first += " (and " + std::to_string(failed - 1) + " other rank(s) failed)";
    return first;
  }
  return std::nullopt;
}

}  // namespace

int run(const RunConfig& cfg, mpi::Session& session) {
  const auto& world = session.world();
  const bool leader = world.rank == 0;
  const auto started = Clock::now();
  const std::string where = "rank " + std::to_string(world.rank) + " on " + world.node;
  install_stop_handlers();

  // What the report reads; created by the setup phases below, each of which ends in an agreement,
  // so that an error on any rank ends every rank with the same message instead of a hang.
  zmq::context_t ctx;
  Device device;
  std::unique_ptr<mpi::Collectives> coll, device_coll;
  std::unique_ptr<fabric::Broker> broker;
  std::unique_ptr<fabric::Node> node;
  std::vector<std::unique_ptr<morphogenesis::Driver>> drivers;
  std::unique_ptr<Schedule> schedule;
  std::unique_ptr<controller::Controller> control;
  std::unique_ptr<StepCommands> commands;
  std::unique_ptr<JobCommands> job_commands;
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
                             {"records_dropped", c.telemetry_records_dropped},
                             {"records_dropped_queue", c.telemetry_records_dropped_queue},
                             {"records_dropped_hwm", c.telemetry_records_dropped_hwm},
                             {"records_dropped_outage", c.telemetry_records_dropped_outage},
                             {"broker_outages", c.broker_outages},
                             {"broker_restarts", c.broker_restarts}};
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
  // A setup phase failed somewhere: every rank returns 1; rank 0 says where and why.
  auto setup_failed = [&](const std::string& failure) {
    if (leader) {
      write_report("failed", json{{"error", failure}});
      std::printf("done: failed before training: %s; report %s\n", failure.c_str(), cfg.report.c_str());
      std::fflush(stdout);
    }
    return 1;
  };
  std::string error;
  auto attempt = [&](auto&& phase) {
    try {
      phase();
    } catch (const std::exception& e) {
      error = e.what();
    }
    return agree_on_failure(error, where, session.comm());
  };

  // Devices and collectives. Gradients live where the layers run: NCCL reduces device buffers;
  // losses and digests stay on MPI.
  if (auto f = attempt([&] {
        coll = mpi::make_mpi_collectives(session.comm());
        device = choose_device(cfg.device, world, session.comm());
#ifdef ESPER_HAVE_NCCL
        if (device.cuda) device_coll = mpi::make_nccl_collectives(session.comm());
#endif
      })) {
    return setup_failed(*f);
  }
  mpi::Collectives* gradient_coll = device_coll ? device_coll.get() : coll.get();

  // The fabric: rank 0 embeds the broker; everyone learns its endpoint over MPI.
  std::string endpoint = cfg.broker;
  if (auto f = attempt([&] {
        if (leader && cfg.fabric && endpoint.empty()) {
          fabric::BrokerOptions bo;
          const bool tcp = cfg.transport == "tcp" || (cfg.transport == "auto" && world.spans_nodes());
          bo.bind = tcp ? "tcp://0.0.0.0:0" : "ipc:///tmp/esper-" + world.job_id + "-" + std::to_string(::getpid());
          if (cfg.fail_thread == "broker") bo.fail_at_heartbeat = 3;
          broker = std::make_unique<fabric::Broker>(ctx, bo);
          endpoint = fabric::connectable(broker->endpoints().cmd, "tcp://" + mpi::node_address() + ":0");
        }
      })) {
    return setup_failed(*f);
  }
  if (cfg.fabric && cfg.broker.empty()) endpoint = mpi::broadcast(endpoint, 0, session.comm());
  std::vector<std::uint32_t> layer_ids;
  for (int l = 0; l < cfg.layers; ++l) layer_ids.push_back(static_cast<std::uint32_t>(l));
  if (auto f = attempt([&] {
        if (!cfg.fabric) return;
        fabric::NodeOptions no;
        no.rank = world.rank;
        no.world_size = world.size;
        no.layers = layer_ids;
        no.job_id = world.job_id;
        no.host = world.node;
        no.heartbeat_interval = cfg.heartbeat;
        no.connect_timeout = cfg.connect_timeout;
        no.compression = cfg.compression == "always"  ? fabric::Compression::On
                         : cfg.compression == "never" ? fabric::Compression::Off
                                                      : fabric::Compression::Auto;
        if (cfg.fail_thread == "node" && cfg.fail_rank == world.rank) no.faults.fail_at_heartbeat = 3;
        node = std::make_unique<fabric::Node>(ctx, endpoint, no);
      })) {
    return setup_failed(*f);
  }
  std::printf("rank %d/%d pid %d on %s%s device %s\n", world.rank, world.size, static_cast<int>(::getpid()),
              world.node.c_str(), leader && cfg.fabric ? (" broker " + endpoint).c_str() : "", device.name.c_str());
  if (leader && !device.why_not_cuda.empty()) std::printf("device: CPU, %s\n", device.why_not_cuda.c_str());
  std::fflush(stdout);

  // Seed layers: one driver per layer, replicas kept identical by the collectives.
  const float world_size_f = static_cast<float>(world.size);
  if (auto f = attempt([&] {
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
      })) {
    return setup_failed(*f);
  }

  // Rank 0's command sources: the scripted schedule or the controller.
  if (auto f = attempt([&] {
        if (!leader || !cfg.fabric) return;
        if (cfg.schedule != "none") schedule = std::make_unique<Schedule>(ctx, endpoint, cfg, world.size);
        if (cfg.policy == "none") return;
        controller::ControllerOptions co;
        co.broker = cfg.inject_controller_join_failure ? "ipc:///nonexistent/esper-injected-failure" : endpoint;
        co.policy = controller::preset(cfg.policy);
        co.job_id = world.job_id;
        co.settle = std::chrono::milliseconds(0);  // a fresh job: no earlier controller's commands to wait for
        co.tick = std::chrono::milliseconds(20);
        co.connect_timeout = cfg.connect_timeout;
        const auto cannot_join = [&](const std::string& why) {
          return Error("the controller could not join the broker at " + co.broker + ": " + why);
        };
        try {
          control = std::make_unique<controller::Controller>(ctx, co);
          control->start();
        } catch (const std::exception& e) {
          throw cannot_join(e.what());
        }
        // Train once the controller listens, so that it sees the job from its first step.
        const auto until = Clock::now() + cfg.connect_timeout;
        while (!control->stats().joined && control->error().empty() && !(broker && broker->failure()) &&
               Clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (const auto broken = broker ? broker->failure() : std::nullopt) throw Error(broken->message());
        if (!control->stats().joined) {
          const auto why = control->error().empty()
                               ? "no answer within " + std::to_string(cfg.connect_timeout.count()) + " ms"
                               : control->error();
          control.reset();
          throw cannot_join(why);
        }
      })) {
    return setup_failed(*f);
  }

  // Commands: applied by every replica at the same boundary.
  std::uint64_t step = 0;
  if (cfg.fabric) {
    job_commands = std::make_unique<JobCommands>(drivers, world.rank, leader ? node.get() : nullptr);
    commands = std::make_unique<StepCommands>(node.get(), world.rank, layer_ids, session.comm());
  }
  auto apply = [&](const wire::Command& cmd, const wire::Envelope& env) { return job_commands->apply(cmd, env, step); };

  // The watchdog: a rank blocked in a collective (a peer died, or mpirun is tearing the job down)
  // cannot reach the next step boundary; a rank that reported its own failure will not come back;
  // a Shutdown's grace period can run out. Then rank 0 writes what it knows and the rank exits.
  std::atomic<bool> finished{false};
  std::atomic<std::int64_t> grace_deadline_ns{0};  // steady clock; 0: no shutdown under way
  progress.boundary_ns = now_ns();
  // No destructor runs past _Exit or MPI_Abort: remove the ipc socket files the fabric would have.
  auto remove_socket_files = [&] {
    if (node) fabric::remove_ipc_file(node->command_endpoint());
    if (broker) broker->remove_socket_files();
  };
  auto exit_now = [&](const std::string& status, json extra, int code) {
    if (leader && !finished.load()) {
      write_report(status, std::move(extra));
      std::printf("done: %s after %llu steps; report %s\n", status.c_str(),
                  static_cast<unsigned long long>(progress.step), cfg.report.c_str());
      std::fflush(stdout);
    }
    remove_socket_files();
    std::_Exit(code);
  };
  // A thread of this rank that failed (its exception captured by its Worker): the main thread ends
  // the job at its next step boundary; the watchdog does, should that boundary not come.
  Worker watchdog;
  auto thread_failure = [&]() -> std::optional<std::string> {
    std::optional<ThreadFailure> f;
    if (broker) f = broker->failure();
    if (!f && node) f = node->failure();
    if (!f && control) f = control->failure();
    if (!f && schedule) f = schedule->failure();
    if (!f) f = watchdog.failure();
    if (f) return f->message();
    return std::nullopt;
  };
  std::atomic<bool> failure_noticed{false};
  watchdog.start("watchdog", [&](const std::stop_token& stop) {
    std::optional<Clock::time_point> failed_since;
    while (!finished.load() && !stop.stop_requested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (const auto f = thread_failure(); f && !failure_noticed.load()) {
        if (!failed_since) failed_since = Clock::now();
        if (Clock::now() - *failed_since > std::chrono::seconds(1)) {  // the main thread is blocked
          const auto failure = where + ": " + *f;
          std::fprintf(stderr, "esper run: failed: %s\n", failure.c_str());
          std::fflush(stderr);
          if (!leader && node) (void)node->report_failure(*f, std::chrono::seconds(2));
          exit_now("failed: " + failure, json{{"error", failure}, {"failed_rank", world.rank}}, 1);
        }
      }
      if (broker) {
        for (const auto& l : broker->lost()) {
          if (!l.self_reported) continue;
          const auto failure = "rank " + std::to_string(l.rank) + " on " + l.host + ": " + l.reason;
          std::fprintf(stderr, "esper run: failed: %s\n", failure.c_str());
          exit_now("failed: " + failure, json{{"error", failure}, {"failed_rank", l.rank}}, 1);
        }
      }
      const auto grace = grace_deadline_ns.load();
      if (grace != 0 && now_ns() > grace) {
        exit_now("stopped by shutdown; its grace period ran out before the job ended cleanly", json{}, 3);
      }
      const auto stalled = std::chrono::nanoseconds(now_ns() - progress.boundary_ns.load());
      const bool lost = broker && broker->counters().ranks_lost > 0;
      const bool signalled = stop_requested();
      if (!((signalled && stalled > std::chrono::milliseconds(300)) || (lost && stalled > std::chrono::seconds(1)))) {
        continue;
      }
      const auto missing = broker ? lost_ranks(*broker, world.size) : std::vector<int>{};
      if (missing.empty()) exit_now("terminated by a signal while blocked", json{}, 2);
      json reasons = json::array();
      for (const auto& l : broker->lost()) reasons.push_back({{"rank", l.rank}, {"host", l.host}, {"reason", l.reason}});
      exit_now("rank " + json(missing).dump() + " lost", json{{"lost_ranks", missing}, {"lost", reasons}}, 5);
    }
  });
  // An error on this rank from here on: the others are, or will be, waiting in a collective for
  // it. Say where and why, let rank 0 write the report (it learns the cause through the fabric),
  // and end the whole job.
  auto fail_job = [&](const std::string& cause) {
    failure_noticed = true;  // the watchdog leaves it to this thread
    const auto failure = where + ": " + cause;
    std::fprintf(stderr, "esper run: failed: %s\n", failure.c_str());
    std::fflush(stderr);
    if (leader) {
      finished = true;  // the watchdog writes no report of its own now
      write_report("failed: " + failure, json{{"error", failure}, {"failed_rank", world.rank}});
      std::printf("done: failed: %s after %llu steps; report %s\n", failure.c_str(),
                  static_cast<unsigned long long>(progress.step), cfg.report.c_str());
      std::fflush(stdout);
    } else if (node && node->report_failure(cause, std::chrono::seconds(2))) {
      // Rank 0 ends the job once its broker has the notice; should it not, MPI_Abort does.
      const auto until = Clock::now() + std::chrono::seconds(5);
      while (Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    remove_socket_files();
    MPI_Abort(session.comm(), 1);
    std::_Exit(1);
  };

  std::string status = "completed";
  int exit_code = 0;
  try {
    // Training.
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
      if (const auto f = thread_failure()) fail_job(*f);
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
      if (job_commands && job_commands->stop().requested) {
        const auto& s = job_commands->stop();
        status = "stopped by " + s.reason;
        exit_code = 3;
        if (s.shutdown) {
          grace_deadline_ns = now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(s.grace).count();
        }
        break;
      }
      if (cfg.fail_at_step >= 0 && static_cast<std::uint64_t>(cfg.fail_at_step) == step &&
          cfg.fail_rank == world.rank) {
        throw Error("injected failure at step " + std::to_string(step) + " (--fail-at-step)");
      }
      if (cfg.step_sleep.count() > 0) std::this_thread::sleep_for(cfg.step_sleep);
      double loss = 0;
      std::array<std::uint32_t, lifecycle::kStateCount> states{};
      for (std::size_t l = 0; l < drivers.size(); ++l) {
        const auto layer_started = Clock::now();
        const auto r = drivers[l]->step();
        const double layer_seconds = std::chrono::duration<double>(Clock::now() - layer_started).count();
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
                                 static_cast<float>(m.chunk_loss), static_cast<float>(m.shadow_loss),
                                 static_cast<float>(m.weight_drift), seed.alpha(), static_cast<float>(m.stability),
                                 seed.state(), static_cast<std::uint8_t>(std::min<std::uint32_t>(seed.error_count(), 255)),
                                 0);
          }
          node->set_layer_stats(static_cast<std::uint32_t>(l), layer_seconds,
                                layer_seconds > 0 ? static_cast<double>(cfg.layer.batch) / layer_seconds : 0.0);
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
    // The end: no more commands; what was not applied is answered as such, on every rank. After a
    // Shutdown, what is left of its grace bounds the wait for the schedule's outcomes.
    const auto left = [&] {
      const auto g = grace_deadline_ns.load();
      if (g == 0) return std::chrono::milliseconds(10'000);
      return std::chrono::milliseconds(std::max<std::int64_t>(0, (g - now_ns()) / 2'000'000));
    };
    if (schedule) schedule->stop_sending();
    if (commands) commands->finish(step);
    if (schedule) schedule->finish(left());
    if (control) control->stop();
    mpi::check(MPI_Barrier(session.comm()), "MPI_Barrier");
    if (node) node->stop();  // flushes telemetry

    finished = true;
    watchdog.stop();
    // A thread that failed after the last boundary fails the job all the same.
    if (const auto f = thread_failure()) fail_job(*f);
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
        json held = json::array();
        for (std::uint32_t c = 0; c < sm.seed_states.size(); ++c) {
          if (job_commands && job_commands->held(static_cast<std::uint32_t>(l), c)) held.push_back(c);
        }
        layers.push_back({{"layer", l}, {"base_loss", sm.base_loss}, {"final_loss", sm.final_loss},
                          {"reduction", sm.reduction}, {"seeds", states}, {"seed_states", seed_states},
                          {"held_by_emergency_stop", held}, {"transitions", sm.transitions}});
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
  } catch (const std::exception& e) {
    fail_job(e.what());
  }
  return exit_code;
}

}  // namespace esper::rank
