#include "parse.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>

namespace esper::cli {
namespace {

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

template <class Int>
bool to_int(const std::string& s, Int& out) {
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc() && p == end && !s.empty();
}

template <class Enum>
std::optional<Enum> by_name(const std::string& text, const char* const* names, Enum max, const char* what,
                            std::string& error) {
  const std::string want = upper(text);
  std::string known;
  for (int i = 0; i <= static_cast<int>(max); ++i) {
    if (want == names[i]) return static_cast<Enum>(i);
    known += (i ? ", " : "") + std::string(names[i]);
  }
  error = "'" + text + "' is not a " + what + "; use one of " + known;
  return std::nullopt;
}

}  // namespace

std::optional<wire::CommandTarget> parse_target(const std::string& text, std::string& error) {
  if (text == "all") return wire::CommandTarget(wire::TargetKind::ALL, -1, 0);
  const auto colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  const std::string value = colon == std::string::npos ? "" : text.substr(colon + 1);
  std::int32_t rank = 0;
  std::uint32_t layer = 0;
  if (kind == "rank" && to_int(value, rank) && rank >= 0) return wire::CommandTarget(wire::TargetKind::RANK, rank, 0);
  if (kind == "layer" && to_int(value, layer)) return wire::CommandTarget(wire::TargetKind::LAYER, -1, layer);
  error = "target '" + text + "' is not valid; use all, rank:N or layer:L";
  return std::nullopt;
}

std::optional<wire::SeedSetT> parse_seeds(const std::string& text, std::string& error) {
  wire::SeedSetT set;
  if (text == "all") {
    set.all = true;
    return set;
  }
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto dash = item.find('-');
    std::uint32_t first = 0, last = 0;
    if (dash == std::string::npos && to_int(item, first)) {
      set.ids.push_back(first);
    } else if (dash != std::string::npos && to_int(item.substr(0, dash), first) &&
               to_int(item.substr(dash + 1), last) && first <= last) {
      set.ranges.emplace_back(first, last);
    } else {
      error = "seed set '" + text + "' is not valid at '" + item + "'; use all, or ids and ranges like 1,4,7-9";
      return std::nullopt;
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return set;
}

std::optional<wire::SeedState> parse_state(const std::string& text, std::string& error) {
  return by_name(text, wire::EnumNamesSeedState(), wire::SeedState::MAX, "seed state", error);
}

std::optional<wire::Priority> parse_priority(const std::string& text, std::string& error) {
  return by_name(text, wire::EnumNamesPriority(), wire::Priority::MAX, "priority", error);
}

std::optional<wire::DeadLetterReason> parse_dead_letter_reason(const std::string& text, std::string& error) {
  return by_name(text, wire::EnumNamesDeadLetterReason(), wire::DeadLetterReason::MAX, "dead-letter reason", error);
}

std::optional<wire::MsgId> parse_msg_id(const std::string& text, std::string& error) {
  const auto colon = text.find(':');
  std::uint64_t sender = 0, seq = 0;
  if (colon != std::string::npos) {
    std::string hex = text.substr(0, colon);
    if (hex.rfind("0x", 0) == 0 || hex.rfind("0X", 0) == 0) hex = hex.substr(2);
    const std::string dec = text.substr(colon + 1);
    const auto [e1, c1] = std::from_chars(hex.data(), hex.data() + hex.size(), sender, 16);
    const auto [e2, c2] = std::from_chars(dec.data(), dec.data() + dec.size(), seq, 10);
    if (!hex.empty() && !dec.empty() && c1 == std::errc() && c2 == std::errc() && e1 == hex.data() + hex.size() &&
        e2 == dec.data() + dec.size()) {
      return wire::MsgId(sender, seq);
    }
  }
  error = "'" + text + "' is not a msg id; write SENDER:SEQ, the sender in hex (as esper dlq list prints it)";
  return std::nullopt;
}

std::string format_msg_id(const wire::MsgId& id) {
  char out[48];
  std::snprintf(out, sizeof out, "%016llx:%llu", static_cast<unsigned long long>(id.sender()),
                static_cast<unsigned long long>(id.seq()));
  return out;
}

std::function<wire::Bounds()> add_job_shape(CLI::App& app) {
  auto layers = std::make_shared<std::uint32_t>(0);
  auto chunks = std::make_shared<std::uint32_t>(0);
  app.add_option("--layers", *layers,
                 "the job's layers (esper run --layers): telemetry and events of other layers are rejected "
                 "(0: not known, any layer id below 4096)")
      ->check(CLI::Range(0u, wire::kMaxLayers))
      ->capture_default_str();
  app.add_option("--chunks", *chunks,
                 "seeds per layer (esper run --chunks): seed ids past them are rejected (0: not known, below 65536)")
      ->check(CLI::Range(0u, wire::kMaxSeedsPerLayer))
      ->capture_default_str();
  return [layers, chunks] { return wire::Bounds::job(*layers, *chunks); };
}

}  // namespace esper::cli
