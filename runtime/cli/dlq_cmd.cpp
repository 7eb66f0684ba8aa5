// esper dlq list|show|replay|purge DIR [filters]: the dead letters a process kept in DIR
// (docs/dead-letters.md). Filters: --reason, --destination, --since/--until (on when the message
// became a dead letter), --msg-id. `replay` sends each matching command again to its original
// destination, under a new msg_id whose envelope names the original (correlation_id), and prints
// each target's outcome; exit code 0 when every replayed command came back OK on every target.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>
#include <map>

#include "commands.hpp"
#include "core/terminal_text.hpp"
#include "fabric/client.hpp"
#include "outcome_text.hpp"
#include "parse.hpp"
#include "resilience/dead_letters.hpp"
#include "wire/validate.hpp"

namespace esper::cli {
namespace {

struct DlqArgs {
  std::string dir;
  std::string reason, destination, since, until, msg_id;
  bool all = false;
  std::string broker;
};

// "2026-12-02T03:04:05Z" (UTC, seconds or with a fraction) or seconds since the epoch.
std::optional<std::uint64_t> parse_time(const std::string& text, std::string& error) {
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end != nullptr && (*end == '\0' || ((*end == 'Z' || *end == 'z') && end[1] == '\0'))) {
    return static_cast<std::uint64_t>(::timegm(&tm)) * 1'000'000'000ull;
  }
  char* stop = nullptr;
  const double s = std::strtod(text.c_str(), &stop);
  if (!text.empty() && stop != nullptr && *stop == '\0' && s >= 0 && s < 1e11) {
    return static_cast<std::uint64_t>(s * 1e9);
  }
  error = "'" + text + "' is not a time; write 2026-12-02T03:04:05Z (UTC) or seconds since the epoch";
  return std::nullopt;
}

std::string format_time(std::uint64_t ns) {
  const auto secs = static_cast<std::time_t>(ns / 1'000'000'000ull);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char out[40];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", out, (ns / 1'000'000ull) % 1000);
}

resilience::DeadLetterFilter filter_of(const DlqArgs& a) {
  resilience::DeadLetterFilter f;
  std::string error;
  if (!a.reason.empty() && !(f.reason = parse_dead_letter_reason(a.reason, error))) throw CLI::ValidationError("--reason", error);
  if (!a.destination.empty()) f.destination = a.destination;
  if (!a.since.empty() && !(f.since_ns = parse_time(a.since, error))) throw CLI::ValidationError("--since", error);
  if (!a.until.empty() && !(f.until_ns = parse_time(a.until, error))) throw CLI::ValidationError("--until", error);
  if (!a.msg_id.empty() && !(f.msg_id = parse_msg_id(a.msg_id, error))) throw CLI::ValidationError("--msg-id", error);
  return f;
}

bool any_filter(const DlqArgs& a) {
  return !a.reason.empty() || !a.destination.empty() || !a.since.empty() || !a.until.empty() || !a.msg_id.empty();
}

// The letters that match, oldest first; what could not be read is reported on stderr.
std::vector<resilience::StoredLetter> matching(const DlqArgs& a) {
  const auto filter = filter_of(a);
  auto scan = resilience::read_dead_letters(a.dir);
  for (const auto& p : scan.problems) spdlog::warn("skipped: {}", terminal_safe(p));
  std::vector<resilience::StoredLetter> out;
  for (auto& s : scan.letters) {
    if (filter.matches(s.letter)) out.push_back(std::move(s));
  }
  return out;
}

std::string id_text(const std::unique_ptr<wire::MsgId>& id) { return id ? format_msg_id(*id) : "-"; }

std::string one_line(const wire::DeadLetterT& l) {
  return fmt::format("{} {} stage={} dest={} msg={} attempts={} bytes={} error={}", format_time(l.last_ns),
                     wire::EnumNameDeadLetterReason(l.reason), wire::EnumNameDeadLetterStage(l.stage),
                     l.destination.empty() ? "-" : l.destination, id_text(l.msg_id), l.attempts, l.original.size(),
                     l.error.empty() ? "-" : "\"" + l.error + "\"");
}

// The original message, decoded and checked like anything from the network: a dead letter may
// hold exactly the frame that was rejected.
std::string describe_original(const std::vector<std::uint8_t>& bytes) {
  if (bytes.empty()) return "no original bytes";
  wire::Decoder decoder;
  auto msg = decoder.decode(bytes);
  if (!msg) return "does not decode: " + msg.error().message();
  std::string text = std::string(wire::EnumNameBody(msg->kind())) + " from " +
                     wire::EnumNameRole(msg->envelope().source() ? msg->envelope().source()->role() : wire::Role::UNKNOWN);
  if (const auto* c = msg->body<wire::Command>()) {
    text += std::string(", ") + wire::EnumNameCommandBody(c->body_type()) + ", timeout " + std::to_string(c->timeout_ms()) + " ms";
  }
  if (auto problem = wire::check(*msg)) text += "; value out of range: " + *problem;
  return text;
}

int list(const DlqArgs& a, bool detail) {
  const auto letters = matching(a);
  for (const auto& s : letters) {
    std::printf("%s\n", terminal_safe(one_line(s.letter)).c_str());
    if (!detail) continue;
    const auto& l = s.letter;
    std::printf("  first %s, last %s, sender %016llx, destination rank %d\n", format_time(l.first_ns).c_str(),
                format_time(l.last_ns).c_str(), static_cast<unsigned long long>(l.sender), l.destination_rank);
    std::printf("  original: %s\n", terminal_safe(describe_original(l.original)).c_str());
    std::printf("  stored in %s at byte %llu\n", terminal_safe(s.segment.filename().string()).c_str(),
                static_cast<unsigned long long>(s.offset));
  }
  std::printf("%zu dead letter%s\n", letters.size(), letters.size() == 1 ? "" : "s");
  return 0;
}

int purge(const DlqArgs& a) {
  if (!a.all && !any_filter(a)) {
    throw CLI::ValidationError("purge", "say which letters: a filter (--reason, --destination, --since, --until, "
                                        "--msg-id) or --all");
  }
  const auto removed = resilience::purge_dead_letters(a.dir, filter_of(a));
  std::printf("purged %llu dead letter%s\n", static_cast<unsigned long long>(removed), removed == 1 ? "" : "s");
  return 0;
}

int replay(const DlqArgs& a) {
  const auto letters = matching(a);
  zmq::context_t ctx;
  fabric::Client client(ctx, a.broker);
  (void)client.wait_for_routes(std::chrono::seconds(5));
  wire::Decoder decoder;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::string> sent;  // new msg_id -> the original's
  std::size_t skipped = 0, ok = 0, failed = 0;
  for (const auto& s : letters) {
    const auto& l = s.letter;
    auto msg = decoder.decode(l.original);
    const auto* cmd = msg ? msg->body<wire::Command>() : nullptr;
    std::string problem = !msg ? "does not decode: " + msg.error().message() : cmd == nullptr ? "not a command" : "";
    if (problem.empty()) {
      if (auto p = wire::check(*msg)) problem = "value out of range: " + *p;
    }
    if (!problem.empty()) {
      ++skipped;
      std::printf("skip %s: %s\n", id_text(l.msg_id).c_str(), terminal_safe(problem).c_str());
      continue;
    }
    wire::CommandT command;
    cmd->UnPackTo(&command);
    command.attempt = 0;
    const auto original = msg->envelope().msg_id() ? std::optional<wire::MsgId>(*msg->envelope().msg_id()) : std::nullopt;
    for (;;) {
      auto id = client.send(command, msg->envelope().priority(), original);
      if (id) {
        sent[{id->sender(), id->seq()}] = id_text(l.msg_id);
        break;
      }
      (void)client.poll(std::chrono::milliseconds(10));  // make room
    }
  }
  const auto report = [&](const fabric::CommandOutcome& o) {
    const auto it = sent.find({o.id.sender(), o.id.seq()});
    std::printf("replay of %s as %s: %s\n", it != sent.end() ? it->second.c_str() : "?", format_msg_id(o.id).c_str(),
                o.all_ok() ? "all ok" : "not all ok");
    for (const auto& t : o.targets) std::printf("  %s\n", terminal_safe(describe(t), Newlines::Keep).c_str());
    (o.all_ok() ? ok : failed) += 1;
  };
  while (client.pending() > 0) {
    for (const auto& o : client.poll(std::chrono::milliseconds(100))) report(o);
  }
  std::printf("replayed %zu: %zu ok, %zu not ok; %zu skipped\n", ok + failed, ok, failed, skipped);
  return failed == 0 ? 0 : 1;
}

void add_filters(CLI::App& sub, DlqArgs& a) {
  sub.add_option("dir", a.dir, "the dead-letter directory (--dlq DIR of the process that wrote it)")->required();
  sub.add_option("--reason", a.reason, "only this reason: timeout, retries_exhausted, rank_lost, rejected, circuit_open, "
                                       "rate_limited, undecodable, invalid");
  sub.add_option("--destination", a.destination, "only this destination, as listed: rank:3, layer:1, all");
  sub.add_option("--since", a.since, "only letters from this time on (2026-12-02T03:04:05Z, or epoch seconds)");
  sub.add_option("--until", a.until, "only letters up to this time");
  sub.add_option("--msg-id", a.msg_id, "only the letter of this message (SENDER:SEQ as listed)");
}

}  // namespace

Run add_dlq(CLI::App& app) {
  auto a = std::make_shared<DlqArgs>();
  app.require_subcommand(1);
  auto* l = app.add_subcommand("list", "one line per dead letter: when, reason, stage, destination, msg id, error");
  add_filters(*l, *a);
  auto* show = app.add_subcommand("show", "every field of each dead letter, and its original message decoded");
  add_filters(*show, *a);
  auto* purge_cmd = app.add_subcommand("purge", "delete dead letters (those matching the filters, or --all)");
  add_filters(*purge_cmd, *a);
  purge_cmd->add_flag("--all", a->all, "every dead letter");
  auto* replay_cmd = app.add_subcommand("replay", "send each matching command again to its original destination");
  add_filters(*replay_cmd, *a);
  replay_cmd->add_option("--broker", a->broker, "the job's broker, e.g. tcp://node0:5555")->required();
  return [&app, a, l, show, purge_cmd, replay_cmd] {
    (void)app;
    if (l->parsed()) return list(*a, false);
    if (show->parsed()) return list(*a, true);
    if (purge_cmd->parsed()) return purge(*a);
    if (replay_cmd->parsed()) return replay(*a);
    return 2;
  };
}

}  // namespace esper::cli
