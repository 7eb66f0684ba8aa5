// esper broker: a standalone broker. Prints its endpoints, then a line of counters every
// --stats-every seconds; stops cleanly on SIGINT/SIGTERM with a final line. Should the broker's
// thread fail, it says so (thread, host, cause) and exits with status 1.
#include <spdlog/spdlog.h>

#include <thread>

#include "commands.hpp"
#include "fabric/broker.hpp"
#include "core/signals.hpp"

namespace esper::cli {
namespace {

void log_counters(const char* what, const fabric::Broker& b) {
  const auto c = b.counters();
  spdlog::info("{}: ranks={} telemetry batches={} records={} dropped_at_broker={} events={} events_dropped={} "
               "event_replays={} commands={} commands_held={} results={} rejected={} values_rejected={} ranks_lost={}",
               what, b.live_ranks().size(), c.telemetry_batches, c.telemetry_records, c.telemetry_records_dropped_broker,
               c.events, c.events_dropped, c.event_replays, c.commands_sent, c.commands_held, c.results_received,
               c.frames_rejected, c.values_rejected, c.ranks_lost);
}

}  // namespace

Run add_broker(CLI::App& app) {
  auto opts = std::make_shared<fabric::BrokerOptions>();
  auto stats_every = std::make_shared<double>(10.0);
  app.add_option("--bind", opts->bind,
                 "base endpoint: tcp://HOST:PORT (the command endpoint; pub, sub and evt on the next three ports, so "
                 "that a restarted broker is found again; port 0 picks free ones), ipc://PATH or inproc://NAME")
      ->capture_default_str();
  app.add_option("--bind-pub", opts->pub_bind, "the publishers' endpoint, instead of the one derived from --bind");
  app.add_option("--bind-sub", opts->sub_bind, "the telemetry subscribers' endpoint, instead of the derived one");
  app.add_option("--bind-evt", opts->evt_bind, "the event subscribers' endpoint, instead of the derived one");
  app.add_option("--pub-hwm", opts->pub_hwm, "messages queued per publisher and subscriber")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lost-after", opts->lost_after, "heartbeat intervals without a heartbeat before a rank is lost")
      ->check(CLI::Range(1.0, 100.0))
      ->capture_default_str();
  auto join_grace_ms = std::make_shared<int>(static_cast<int>(opts->join_grace.count()));
  app.add_option("--join-grace-ms", *join_grace_ms,
                 "for this long after it starts, a command for ranks that have not registered yet is held until "
                 "they do, not answered 'no rank' (a restarted broker learns the ranks from their next heartbeats)")
      ->check(CLI::Range(0, 600'000))
      ->capture_default_str();
  auto dlq = std::make_shared<std::string>();
  app.add_option("--dlq", *dlq, "keep every frame the broker rejects (undecodable, or a value out of range) as a dead "
                                "letter in this directory (esper dlq)");
  app.add_option("--stats-every", *stats_every, "seconds between counter lines (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--fail-at-heartbeat", opts->fail_at_heartbeat,
                 "test hook: the broker thread throws when it receives its N-th heartbeat")
      ->group("");
  return [opts, stats_every, join_grace_ms, dlq] {
    opts->join_grace = std::chrono::milliseconds(*join_grace_ms);
    if (!dlq->empty()) opts->dead_letters = std::make_shared<resilience::DeadLetterQueue>(resilience::DeadLetterOptions{.dir = *dlq});
    install_stop_handlers();
    zmq::context_t ctx;
    fabric::Broker broker(ctx, *opts);
    const auto& e = broker.endpoints();
    // One machine-readable line first: scripts and tests read the endpoints from it.
    std::printf("endpoints cmd=%s pub=%s sub=%s evt=%s epoch=%016llx\n", e.cmd.c_str(), e.pub.c_str(), e.sub.c_str(),
                e.evt.c_str(), static_cast<unsigned long long>(broker.epoch()));
    std::fflush(stdout);
    spdlog::info("broker up (epoch {:016x}): clients and ranks connect to {}", broker.epoch(), e.cmd);
    auto next_stats = std::chrono::steady_clock::now() + std::chrono::duration<double>(*stats_every);
    while (!stop_requested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (const auto f = broker.failure()) {
        broker.stop();
        log_counters("failed", broker);
        spdlog::error("esper broker: failed: {}", f->message());
        return 1;
      }
      if (*stats_every > 0 && std::chrono::steady_clock::now() >= next_stats) {
        log_counters("stats", broker);
        next_stats += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(*stats_every));
      }
    }
    broker.stop();
    log_counters("stopped", broker);
    return 0;
  };
}

}  // namespace esper::cli
