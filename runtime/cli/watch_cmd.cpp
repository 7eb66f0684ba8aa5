// esper watch: prints decoded telemetry batches and events from a broker, filtered by topic
// prefix (tel/, evt/, tel/3, ...), until SIGINT/SIGTERM or --count messages. Its subscriber drops
// messages with a value out of range (wire/validate.hpp; counted in the last line), and every line
// is printed terminal-safe (core/terminal_text.hpp): topics, reasons and hosts come from the wire.
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "controller/describe.hpp"
#include "fabric/subscriber.hpp"
#include "core/signals.hpp"
#include "core/terminal_text.hpp"

namespace esper::cli {

Run add_watch(CLI::App& app) {
  auto broker = std::make_shared<std::string>();
  auto topics = std::make_shared<std::vector<std::string>>();
  auto count = std::make_shared<std::uint64_t>(0);
  app.add_option("--broker", *broker, "the broker's command endpoint")->required();
  app.add_option("--topic", *topics, "topic prefixes to show (default: tel/ and evt/)");
  app.add_option("--count", *count, "stop after this many messages (0: run until interrupted)");
  return [broker, topics, count] {
    install_stop_handlers();
    zmq::context_t ctx;
    fabric::SubscriberOptions o;
    if (!topics->empty()) o.topics = *topics;
    fabric::Subscriber sub(ctx, *broker, o);
    if (!sub.wait_ready(std::chrono::seconds(10))) spdlog::warn("the broker did not confirm the subscription yet");
    std::printf("watching %s\n", broker->c_str());
    std::fflush(stdout);
    std::uint64_t shown = 0;
    while (!stop_requested() && (*count == 0 || shown < *count)) {
      std::optional<fabric::Delivery> d;
      try {
        d = sub.next(std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
        continue;  // a signal: the loop sees stop_requested()
      }
      if (!d) continue;
      ++shown;
      if (const auto* b = d->message->body<wire::TelemetryBatch>()) {
        const auto n = b->seeds() ? b->seeds()->size() : 0u;
        std::string first;
        if (n > 0) {
          const auto* r = b->seeds()->Get(0);
          first = fmt::format(" first: seed={} state={} loss={:.4g} alpha={:.3g}", r->seed(),
                              wire::EnumNameSeedState(r->state()), r->task_loss(), r->alpha());
        }
        const auto line = fmt::format("{} rank={} records={} dropped_before={}{}{}", d->topic, b->rank(), n,
                                      b->dropped_records(), d->message->was_packed() ? " packed" : "", first);
        std::printf("%s\n", terminal_safe(line).c_str());
      } else if (const auto* e = d->message->body<wire::Event>()) {
        const auto line = fmt::format("{} #{}{} {}", d->topic, d->meta.sequence, d->recovered ? " (replayed)" : "",
                                      controller::describe(*e));
        std::printf("%s\n", terminal_safe(line).c_str());
      }
      std::fflush(stdout);
    }
    const auto c = sub.counters();
    spdlog::info("watched {} messages; rejected {}, values rejected {}, event gaps {} (replayed {}, too old {}), "
                 "telemetry batches missing {}, records missing {} (dropped at ranks or the broker), rejected here {}",
                 shown, c.frames_rejected, c.values_rejected, c.event_gaps, c.events_recovered, c.events_unrecovered,
                 sub.telemetry_batches_missing(), c.telemetry_records_missing, c.telemetry_records_rejected);
    return 0;
  };
}

}  // namespace esper::cli
