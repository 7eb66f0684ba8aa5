// esper controller: a standalone controller for a running job (docs/design.md §1, §7), e.g.
//   esper controller --broker tcp://node0:5555 --policy balanced
// It joins late (snapshot, then deltas), drives the seeds with the policy, publishes its decisions
// and anomaly alerts as events, prints a line per decision, and stops cleanly with a summary line
// (commands in flight get their outcomes first) on SIGINT/SIGTERM, after an emergency stop, or
// once every rank it has seen is reported lost (the job ended), unless --keep-running. Telemetry
// and events with values out of range are rejected, counted (values_rejected= in the summary)
// and logged; --layers and --chunks narrow what is in range to the job's shape.
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "parse.hpp"
#include "controller/controller.hpp"
#include "controller/describe.hpp"
#include "core/signals.hpp"
#include "core/terminal_text.hpp"

namespace esper::cli {

Run add_controller(CLI::App& app) {
  auto opts = std::make_shared<controller::ControllerOptions>();
  auto policy = std::make_shared<std::string>("balanced");
  auto tick_ms = std::make_shared<int>(100);
  auto settle_ms = std::make_shared<int>(400);
  app.add_option("--broker", opts->broker, "the broker's command endpoint, e.g. tcp://node0:5555")->required();
  app.add_option("--policy", *policy, "aggressive, balanced, conservative, or none (observe and detect only)")
      ->capture_default_str();
  app.add_option("--tick-ms", *tick_ms, "milliseconds between decisions")->check(CLI::Range(1, 60'000))->capture_default_str();
  app.add_option("--settle-ms", *settle_ms, "milliseconds to listen after joining before the first decision")
      ->check(CLI::Range(0, 600'000))
      ->capture_default_str();
  app.add_option("--command-timeout-ms", opts->command_timeout_ms, "timeout of each command")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  app.add_flag("!--no-anomalies", opts->detect_anomalies, "do not run anomaly detection");
  auto keep_running = std::make_shared<bool>(false);
  app.add_flag("--keep-running", *keep_running,
               "keep running after every rank of the job has been lost (default: stop then, e.g. at the job's end)");
  auto dlq = std::make_shared<std::string>();
  app.add_option("--dlq", *dlq, "keep commands that fail at a rank as dead letters in this directory (esper dlq)");
  const auto job_shape = add_job_shape(app);
  return [opts, policy, tick_ms, settle_ms, keep_running, job_shape, dlq] {
    if (!dlq->empty()) opts->dead_letters = std::make_shared<resilience::DeadLetterQueue>(resilience::DeadLetterOptions{.dir = *dlq});
    if (*policy != "none") {
      opts->policy = controller::preset(*policy);
      if (!opts->policy) {
        throw CLI::ValidationError("--policy", "'" + *policy + "' is not aggressive, balanced, conservative or none");
      }
    }
    opts->tick = std::chrono::milliseconds(*tick_ms);
    opts->settle = std::chrono::milliseconds(*settle_ms);
    opts->bounds = job_shape();
    install_stop_handlers();
    zmq::context_t ctx;
    controller::Controller control(ctx, *opts);
    std::uint64_t printed = 0;  // decision events printed so far
    auto print_decisions = [&] {
      for (const auto& event : control.decision_events(printed)) {
        flatbuffers::FlatBufferBuilder fbb;
        fbb.Finish(wire::Event::Pack(fbb, &event));
        // A decision's failure text quotes what a rank or the broker said: printed terminal-safe.
        std::printf("%s\n",
                    terminal_safe(controller::describe(*flatbuffers::GetRoot<wire::Event>(fbb.GetBufferPointer()))).c_str());
      }
      std::fflush(stdout);
    };
    control.pump(std::chrono::milliseconds(0));  // joins: live subscription and the job's snapshot
    std::printf("joined %s, policy %s\n", opts->broker.c_str(), policy->c_str());
    std::fflush(stdout);
    while (!stop_requested()) {
      control.pump(std::chrono::milliseconds(20));
      print_decisions();
      const auto st = control.stats();
      if (st.emergency_stopped && control.in_flight() == 0) break;
      if (!*keep_running && st.ranks_seen > 0 && st.ranks_live == 0 && control.in_flight() == 0) {
        std::printf("every rank of the job is gone (%zu seen)\n", st.ranks_seen);
        break;
      }
    }
    control.stop();
    print_decisions();
    const auto st = control.stats();
    std::printf("stopped: decisions=%llu events=%llu commands=%llu applied=%llu rejected=%llu failed=%llu alerts=%llu "
                "values_rejected=%llu telemetry_records=%llu broker_restarts=%llu latency_ms p50=%.2f p99=%.2f%s\n",
                static_cast<unsigned long long>(st.decisions), static_cast<unsigned long long>(st.events),
                static_cast<unsigned long long>(st.commands),
                static_cast<unsigned long long>(st.seeds_applied), static_cast<unsigned long long>(st.seeds_rejected),
                static_cast<unsigned long long>(st.seeds_failed), static_cast<unsigned long long>(st.alerts),
                static_cast<unsigned long long>(st.values_rejected), static_cast<unsigned long long>(st.telemetry_records),
                static_cast<unsigned long long>(st.broker_restarts), st.latency_p50_ms, st.latency_p99_ms,
                st.emergency_stopped ? " (emergency stop)" : "");
    return 0;
  };
}

}  // namespace esper::cli
