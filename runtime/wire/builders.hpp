// Builders for every message kind: short, named constructors of the object-API types that an
// Encoder encodes. Each fills the fields that kind needs; the rest keep their schema defaults.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fbs/envelope_generated.h"

namespace esper::wire {

// --- command targets and seed sets
[[nodiscard]] CommandTarget to_rank(std::int32_t rank);
[[nodiscard]] CommandTarget to_layer(std::uint32_t layer);
[[nodiscard]] CommandTarget to_all();

[[nodiscard]] SeedSetT all_seeds();
[[nodiscard]] SeedSetT seed_ids(std::vector<std::uint32_t> ids);
[[nodiscard]] SeedSetT seed_range(std::uint32_t first, std::uint32_t last);
// True when `seed` is selected by `set` (a null set selects nothing).
[[nodiscard]] bool contains(const SeedSet* set, std::uint32_t seed) noexcept;

// --- commands. Every command has a target, a timeout and an apply_at_step (-1: next boundary).
struct CommandOptions {
  std::uint32_t timeout_ms = 5000;
  std::int64_t apply_at_step = -1;
};

[[nodiscard]] CommandT transition_seeds(CommandTarget target, std::uint32_t layer, SeedSetT seeds, SeedState to,
                                        std::string reason, bool force = false, CommandOptions opts = {});
[[nodiscard]] CommandT set_blueprint(CommandTarget target, SetBlueprintT blueprint, CommandOptions opts = {});
[[nodiscard]] CommandT batch(CommandTarget target, std::vector<CommandT> commands, bool atomic, bool stop_on_error,
                             CommandOptions opts = {});
[[nodiscard]] CommandT emergency_stop(CommandTarget target, StopScope scope, std::uint32_t layer, std::uint32_t seed,
                                      std::string reason, CommandOptions opts = {});
[[nodiscard]] CommandT request_snapshot(CommandTarget target, std::vector<std::uint32_t> layers,
                                        std::string reply_topic, CommandOptions opts = {});
[[nodiscard]] CommandT shutdown(CommandTarget target, std::string reason, std::uint32_t grace_ms = 5000,
                                CommandOptions opts = {});

// --- results
[[nodiscard]] SeedOutcomeT seed_outcome(std::uint32_t seed, Status status, SeedState from, SeedState to,
                                        std::string error = {});
[[nodiscard]] CommandResultT command_result(Status status, std::int32_t rank, std::string error = {},
                                            std::vector<SeedOutcomeT> outcomes = {}, std::uint64_t execution_ns = 0,
                                            std::int64_t applied_at_step = -1);

// --- events
[[nodiscard]] EventT state_transition(std::uint32_t layer, std::uint64_t step, std::uint32_t seed, SeedState from,
                                      SeedState to, std::string reason, std::string triggered_by,
                                      MsgId command_id = {});
[[nodiscard]] EventT anomaly_alert(std::uint32_t layer, std::uint64_t step, std::uint32_t seed, std::string metric,
                                   double value, double expected_low, double expected_high, Severity severity,
                                   std::string detector, double score);
[[nodiscard]] EventT rank_joined(std::int32_t rank, std::int32_t world_size, std::string host, std::uint32_t pid,
                                 std::vector<std::uint32_t> layers);
[[nodiscard]] EventT rank_lost(std::int32_t rank, std::uint64_t last_heartbeat_ns, std::uint32_t missed,
                               std::string reason);
[[nodiscard]] EventT command_failed(MsgId command_id, std::int32_t target_rank, FailureReason reason,
                                    std::string detail, std::uint32_t attempts, bool dead_lettered);
// A controller's decision and how it ended (see fbs/event.fbs, Decision).
struct DecisionFields {
  std::string policy;
  DecisionAction action = DecisionAction::WAKE;
  SeedState target = SeedState::DORMANT;
  std::vector<std::uint32_t> seeds;
  std::string reason;
  MsgId command_id{};
  std::vector<std::uint32_t> applied, rejected;
  Status status = Status::OK;
  std::string failure;
  std::uint64_t latency_ns = 0;
};
[[nodiscard]] EventT decision(std::uint32_t layer, std::uint64_t step, DecisionFields d);
[[nodiscard]] EventT checkpoint(std::uint64_t step, std::string path, std::uint64_t digest, std::uint64_t bytes);

// --- liveness and state
[[nodiscard]] HeartbeatT heartbeat(std::uint64_t step, std::uint32_t interval_ms, std::uint64_t uptime_ns,
                                   std::uint32_t pending_commands, std::uint64_t telemetry_dropped,
                                   std::vector<std::uint32_t> layers, std::string command_endpoint = {},
                                   std::int32_t world_size = 0);
[[nodiscard]] LayerStateT layer_state(std::uint32_t layer, std::int32_t rank, std::uint64_t step,
                                      std::vector<SeedStatus> seeds);
[[nodiscard]] StateSnapshotT state_snapshot(std::uint64_t snapshot_sequence, std::vector<LayerStateT> layers,
                                            std::uint32_t part = 0, std::uint32_t parts = 1);

}  // namespace esper::wire
