// esper ctl send [--target all|rank:N|layer:L] KIND ...: sends one command through the broker and
// prints each target's outcome and latency. Exit code 0 when every target answered OK, 1 otherwise.
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "fabric/client.hpp"
#include "parse.hpp"
#include "wire/builders.hpp"

namespace esper::cli {
namespace {

struct CtlArgs {
  std::string broker;
  std::string target = "all";
  std::string priority = "normal";
  std::uint32_t timeout_ms = 5000;
  std::int64_t apply_at_step = -1;
  std::uint32_t retries = 5;
  // transition
  std::uint32_t layer = 0;
  std::string seeds = "all";
  std::string to;
  std::string reason = "esper ctl";
  bool force = false;
  // emergency-stop
  std::string scope = "job";
  std::uint32_t seed = 0;
  // shutdown
  std::uint32_t grace_ms = 5000;
  // snapshot
  std::vector<std::uint32_t> layers;
};

std::string describe(const fabric::TargetOutcome& t) {
  const double ms = static_cast<double>(t.latency.count()) / 1e6;
  std::string line = "rank " + std::to_string(t.rank) + ": ";
  if (!t.has_result) {
    return line + "FAILED (" + wire::EnumNameFailureReason(t.failure) + ") " + t.detail + " [" +
           std::to_string(t.attempts) + " attempt(s), " + fmt::format("{:.3f}", ms) + " ms]";
  }
  line += std::string(wire::EnumNameStatus(t.result.status)) + " in " + fmt::format("{:.3f}", ms) + " ms";
  if (!t.result.error.empty()) line += " — " + t.result.error;
  for (const auto& o : t.result.outcomes) {
    line += "\n  seed " + std::to_string(o->seed) + ": " + wire::EnumNameSeedState(o->from) + " -> " +
            wire::EnumNameSeedState(o->to) + " " + wire::EnumNameStatus(o->status) +
            (o->error.empty() ? "" : " (" + o->error + ")");
  }
  return line;
}

}  // namespace

Run add_ctl(CLI::App& app) {
  auto a = std::make_shared<CtlArgs>();
  auto kind = std::make_shared<std::string>();
  app.require_subcommand(1);
  auto* send = app.add_subcommand("send", "send one command and print its outcome per target rank");
  send->require_subcommand(1);
  send->add_option("--broker", a->broker, "the broker's command endpoint, e.g. tcp://node0:5555")->required();
  send->add_option("--target", a->target, "all, rank:N or layer:L")->capture_default_str();
  send->add_option("--priority", a->priority, "low, normal, high or critical")->capture_default_str();
  send->add_option("--timeout-ms", a->timeout_ms, "give up after this long")->capture_default_str();
  send->add_option("--apply-at-step", a->apply_at_step, "apply at this step boundary (-1: the next one)");
  send->add_option("--attempts", a->retries, "sends at most (first try included)")->check(CLI::Range(1, 100));

  auto* tr = send->add_subcommand("transition", "move seeds to a lifecycle state");
  tr->add_option("--layer", a->layer, "layer id")->required();
  tr->add_option("--seeds", a->seeds, "all, or ids and ranges like 1,4,7-9")->capture_default_str();
  tr->add_option("--to", a->to, "target state, e.g. GERMINATED")->required();
  tr->add_option("--reason", a->reason)->capture_default_str();
  tr->add_flag("--force", a->force, "skip minimum steps in state (never the transition table)");
  auto* stop = send->add_subcommand("emergency-stop", "stop a job, a layer or a seed");
  stop->add_option("--scope", a->scope, "job, layer or seed")->check(CLI::IsMember({"job", "layer", "seed"}));
  stop->add_option("--layer", a->layer);
  stop->add_option("--seed", a->seed);
  stop->add_option("--reason", a->reason)->capture_default_str();
  auto* down = send->add_subcommand("shutdown", "ask ranks to shut down");
  down->add_option("--reason", a->reason)->capture_default_str();
  down->add_option("--grace-ms", a->grace_ms)->capture_default_str();
  auto* snap = send->add_subcommand("snapshot", "ask ranks for a state snapshot");
  snap->add_option("--layers", a->layers, "layer ids (default: all)");
  for (auto* k : {tr, stop, down, snap}) k->callback([kind, k] { *kind = k->get_name(); });

  return [a, kind] {
    std::string error;
    const auto target = parse_target(a->target, error);
    const auto priority = target ? parse_priority(a->priority, error) : std::nullopt;
    if (!target || !priority) throw CLI::ValidationError("--target/--priority", error);
    const wire::CommandOptions opts{a->timeout_ms, a->apply_at_step};
    wire::CommandT cmd;
    if (*kind == "transition") {
      auto seeds = parse_seeds(a->seeds, error);
      const auto to = seeds ? parse_state(a->to, error) : std::nullopt;
      if (!seeds || !to) throw CLI::ValidationError("--seeds/--to", error);
      cmd = wire::transition_seeds(*target, a->layer, std::move(*seeds), *to, a->reason, a->force, opts);
    } else if (*kind == "emergency-stop") {
      const auto scope = a->scope == "job" ? wire::StopScope::JOB : a->scope == "layer" ? wire::StopScope::LAYER
                                                                                       : wire::StopScope::SEED;
      cmd = wire::emergency_stop(*target, scope, a->layer, a->seed, a->reason, opts);
    } else if (*kind == "shutdown") {
      cmd = wire::shutdown(*target, a->reason, a->grace_ms, opts);
    } else {
      cmd = wire::request_snapshot(*target, a->layers, "", opts);
    }
    zmq::context_t ctx;
    fabric::ClientOptions co;
    co.retry.max_attempts = a->retries;
    fabric::Client client(ctx, a->broker, co);
    // With the broker's route table the command goes straight to the ranks; without it (an old or
    // slow broker), through the broker: either way it arrives.
    if (!client.wait_for_routes(std::chrono::seconds(1))) spdlog::debug("no route table yet: sending through the broker");
    spdlog::debug("sending {} to {}", *kind, a->target);
    const auto outcome = client.call(cmd, *priority);
    for (const auto& t : outcome.targets) std::printf("%s\n", describe(t).c_str());
    std::printf("outcome: %s (%zu target%s)\n", outcome.all_ok() ? "all ok" : "not all ok", outcome.targets.size(),
                outcome.targets.size() == 1 ? "" : "s");
    return outcome.all_ok() ? 0 : 1;
  };
}

}  // namespace esper::cli
