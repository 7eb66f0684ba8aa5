// esper ctl send [--target all|rank:N|layer:L] KIND ...: sends one command (transition, set-blueprint,
// emergency-stop, shutdown, snapshot, or a batch of them) and prints each target's outcome and
// latency. Exit code 0 when every target answered OK, 1 otherwise.
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "fabric/client.hpp"
#include "outcome_text.hpp"
#include "parse.hpp"
#include "wire/builders.hpp"

namespace esper::cli {
namespace {

// One command's fields, as the kind subcommands fill them.
struct KindArgs {
  std::string kind;
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
  // set-blueprint
  std::string blueprint = "low_rank";
  std::uint32_t rank = 0;
  std::string grafting = "linear";
  std::uint32_t ramp_steps = 0;
  float drift_threshold = 0.0f;
  float learning_rate = 0.0f;
  std::vector<std::string> params;
  // batch
  bool atomic = false;
  bool stop_on_error = false;
  std::vector<std::string> members;
};

struct CtlArgs {
  std::string broker;
  std::string target = "all";
  std::string priority = "normal";
  std::uint32_t timeout_ms = 5000;
  std::int64_t apply_at_step = -1;
  std::uint32_t retries = 5;
  std::string dlq;
  KindArgs k;
};

// The kind subcommands of `esper ctl send` (and of each `batch --command`, without batch itself).
void add_kinds(CLI::App& send, KindArgs& a, bool with_batch) {
  auto* tr = send.add_subcommand("transition", "move seeds to a lifecycle state");
  tr->add_option("--layer", a.layer, "layer id")->required();
  tr->add_option("--seeds", a.seeds, "all, or ids and ranges like 1,4,7-9")->capture_default_str();
  tr->add_option("--to", a.to, "target state, e.g. GERMINATED")->required();
  tr->add_option("--reason", a.reason)->capture_default_str();
  tr->add_flag("--force", a.force, "skip minimum steps in state (never the transition table)");
  auto* bp = send.add_subcommand("set-blueprint", "set a DORMANT seed's blueprint: adapter rank, learning rate, "
                                                  "grafting strategy");
  bp->add_option("--layer", a.layer, "layer id")->required();
  bp->add_option("--seed", a.seed, "seed id")->required();
  bp->add_option("--kind", a.blueprint, "low_rank or bottleneck_mlp (must be the layer's)")
      ->check(CLI::IsMember({"low_rank", "bottleneck_mlp"}))
      ->capture_default_str();
  bp->add_option("--rank", a.rank, "adapter rank, 1 .. the layer's (0: the layer's)")->capture_default_str();
  bp->add_option("--grafting", a.grafting, "linear, drift_controlled or adaptive")
      ->check(CLI::IsMember({"linear", "drift_controlled", "adaptive"}))
      ->capture_default_str();
  bp->add_option("--ramp-steps", a.ramp_steps, "grafting ramp length (0: the default)");
  bp->add_option("--drift-threshold", a.drift_threshold, "drift-controlled grafting's threshold (0: the default)");
  bp->add_option("--learning-rate", a.learning_rate, "the seed's learning rate (0: the layer's)");
  bp->add_option("--param", a.params, "adaptive grafting parameter NAME=VALUE (gain_min, gain_max, gain_up, "
                                      "gain_down, loss_tolerance); repeatable");
  auto* stop = send.add_subcommand("emergency-stop", "stop a job, or take a layer's or a seed's seeds out");
  stop->add_option("--scope", a.scope, "job, layer or seed")->check(CLI::IsMember({"job", "layer", "seed"}));
  stop->add_option("--layer", a.layer);
  stop->add_option("--seed", a.seed);
  stop->add_option("--reason", a.reason)->capture_default_str();
  auto* down = send.add_subcommand("shutdown", "ask the job to end cleanly at the next step boundary");
  down->add_option("--reason", a.reason)->capture_default_str();
  down->add_option("--grace-ms", a.grace_ms, "how long the job may take to end cleanly")->capture_default_str();
  auto* snap = send.add_subcommand("snapshot", "ask ranks for a state snapshot (printed per rank)");
  snap->add_option("--layers", a.layers, "layer ids (default: all)");
  std::vector<CLI::App*> kinds{tr, bp, stop, down, snap};
  if (with_batch) {
    auto* batch = send.add_subcommand("batch", "several commands applied together at one step boundary");
    batch->add_option("--command", a.members,
                      "a member, as after `esper ctl send`, e.g. \"transition --layer 0 --seeds 1 --to GERMINATED\"; "
                      "repeatable, in order")
        ->required();
    batch->add_flag("--atomic", a.atomic, "all or none: nothing is applied unless every member would be fully OK");
    batch->add_flag("--stop-on-error", a.stop_on_error, "skip the members after the first that is not OK");
    kinds.push_back(batch);
  }
  for (auto* k : kinds) k->callback([&a, k] { a.kind = k->get_name(); });
}

wire::CommandT build(const KindArgs& a, wire::CommandTarget target, const wire::CommandOptions& opts);

// A batch member from its command line, e.g. "transition --layer 0 --seeds 1 --to GERMINATED".
wire::CommandT member(const std::string& line, wire::CommandTarget target, const wire::CommandOptions& opts) {
  CLI::App app{"batch member"};
  app.require_subcommand(1);
  KindArgs a;
  add_kinds(app, a, false);
  try {
    app.parse(line, false);
  } catch (const CLI::Error& e) {
    throw CLI::ValidationError("--command", "'" + line + "': " + e.what());
  }
  return build(a, target, opts);
}

wire::CommandT build(const KindArgs& a, wire::CommandTarget target, const wire::CommandOptions& opts) {
  std::string error;
  if (a.kind == "transition") {
    auto seeds = parse_seeds(a.seeds, error);
    const auto to = seeds ? parse_state(a.to, error) : std::nullopt;
    if (!seeds || !to) throw CLI::ValidationError("--seeds/--to", error);
    return wire::transition_seeds(target, a.layer, std::move(*seeds), *to, a.reason, a.force, opts);
  }
  if (a.kind == "set-blueprint") {
    wire::SetBlueprintT b;
    b.layer = a.layer;
    b.seed = a.seed;
    b.kind = a.blueprint == "low_rank" ? wire::BlueprintKind::LOW_RANK : wire::BlueprintKind::BOTTLENECK_MLP;
    b.rank = a.rank;
    b.grafting = a.grafting == "linear"             ? wire::GraftingStrategy::LINEAR
                 : a.grafting == "drift_controlled" ? wire::GraftingStrategy::DRIFT_CONTROLLED
                                                    : wire::GraftingStrategy::ADAPTIVE;
    b.ramp_steps = a.ramp_steps;
    b.drift_threshold = a.drift_threshold;
    b.learning_rate = a.learning_rate;
    for (const auto& p : a.params) {
      const auto eq = p.find('=');
      double value = 0;
      try {
        if (eq == std::string::npos) throw std::invalid_argument("no '='");
        std::size_t used = 0;
        value = std::stod(p.substr(eq + 1), &used);
        if (used != p.size() - eq - 1) throw std::invalid_argument("trailing text");
      } catch (const std::exception&) {
        throw CLI::ValidationError("--param", "'" + p + "' is not NAME=NUMBER");
      }
      auto param = std::make_unique<wire::ParamT>();
      param->name = p.substr(0, eq);
      param->value = value;
      b.params.push_back(std::move(param));
    }
    return wire::set_blueprint(target, std::move(b), opts);
  }
  if (a.kind == "emergency-stop") {
    const auto scope = a.scope == "job" ? wire::StopScope::JOB : a.scope == "layer" ? wire::StopScope::LAYER
                                                                                   : wire::StopScope::SEED;
    return wire::emergency_stop(target, scope, a.layer, a.seed, a.reason, opts);
  }
  if (a.kind == "shutdown") return wire::shutdown(target, a.reason, a.grace_ms, opts);
  if (a.kind == "snapshot") return wire::request_snapshot(target, a.layers, "", opts);
  std::vector<wire::CommandT> members;
  for (const auto& line : a.members) members.push_back(member(line, target, opts));
  return wire::batch(target, std::move(members), a.atomic, a.stop_on_error, opts);
}

}  // namespace

Run add_ctl(CLI::App& app) {
  auto a = std::make_shared<CtlArgs>();
  app.require_subcommand(1);
  auto* send = app.add_subcommand("send", "send one command and print its outcome per target rank");
  send->require_subcommand(1);
  send->add_option("--broker", a->broker, "the broker's command endpoint, e.g. tcp://node0:5555")->required();
  send->add_option("--target", a->target, "all, rank:N or layer:L")->capture_default_str();
  send->add_option("--priority", a->priority, "low, normal, high or critical")->capture_default_str();
  send->add_option("--timeout-ms", a->timeout_ms, "give up after this long (the ranks apply it only before then)")
      ->capture_default_str();
  send->add_option("--apply-at-step", a->apply_at_step, "apply at this step boundary (-1: the next one)");
  send->add_option("--attempts", a->retries, "sends at most (first try included)")->check(CLI::Range(1, 100));
  send->add_option("--dlq", a->dlq, "keep a target's failure as a dead letter in this directory (esper dlq)");
  add_kinds(*send, a->k, true);

  return [a] {
    std::string error;
    const auto target = parse_target(a->target, error);
    const auto priority = target ? parse_priority(a->priority, error) : std::nullopt;
    if (!target || !priority) throw CLI::ValidationError("--target/--priority", error);
    const wire::CommandOptions opts{a->timeout_ms, a->apply_at_step};
    const wire::CommandT cmd = build(a->k, *target, opts);
    zmq::context_t ctx;
    fabric::ClientOptions co;
    co.retry.max_attempts = a->retries;
    if (!a->dlq.empty()) co.dead_letters = std::make_shared<resilience::DeadLetterQueue>(resilience::DeadLetterOptions{.dir = a->dlq});
    fabric::Client client(ctx, a->broker, co);
    // With the broker's route table the command goes straight to the ranks; without it (an old or
    // slow broker), through the broker: either way it arrives.
    if (!client.wait_for_routes(std::chrono::seconds(1))) spdlog::debug("no route table yet: sending through the broker");
    spdlog::debug("sending {} to {}", a->k.kind, a->target);
    const auto outcome = client.call(cmd, *priority);
    for (const auto& t : outcome.targets) std::printf("%s\n", describe(t).c_str());
    std::printf("outcome: %s (%zu target%s)\n", outcome.all_ok() ? "all ok" : "not all ok", outcome.targets.size(),
                outcome.targets.size() == 1 ? "" : "s");
    return outcome.all_ok() ? 0 : 1;
  };
}

}  // namespace esper::cli
