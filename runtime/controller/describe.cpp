#include "controller/describe.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <vector>

namespace esper::controller {
namespace {

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

std::string seeds(const flatbuffers::Vector<std::uint32_t>* v) {
  if (v == nullptr || v->size() == 0) return "-";
  return fmt::format("{}", fmt::join(std::vector<std::uint32_t>(v->begin(), v->end()), ","));
}

}  // namespace

std::string describe(const wire::Event& e) {
  switch (e.body_type()) {
    case wire::EventBody::StateTransition: {
      const auto* t = e.body_as_StateTransition();
      return fmt::format("transition layer={} seed={} {} -> {} step={} reason='{}' by='{}'", e.layer(), t->seed(),
                         wire::EnumNameSeedState(t->from()), wire::EnumNameSeedState(t->to()), e.step(), str(t->reason()),
                         str(t->triggered_by()));
    }
    case wire::EventBody::AnomalyAlert: {
      const auto* a = e.body_as_AnomalyAlert();
      return fmt::format("anomaly layer={} seed={} {}={:.4g} expected [{:.4g}, {:.4g}] {} score={:.1f} severity={}",
                         e.layer(), a->seed(), str(a->metric()), a->value(), a->expected_low(), a->expected_high(),
                         str(a->detector()), a->score(), wire::EnumNameSeverity(a->severity()));
    }
    case wire::EventBody::RankJoined: {
      const auto* j = e.body_as_RankJoined();
      return fmt::format("rank {} joined from {} (layers {})", j->rank(), str(j->host()), seeds(j->layers()));
    }
    case wire::EventBody::RankLost: {
      const auto* l = e.body_as_RankLost();
      return fmt::format("rank {} lost: {}", l->rank(), str(l->reason()));
    }
    case wire::EventBody::CommandFailed: {
      const auto* f = e.body_as_CommandFailed();
      return fmt::format("command failed at rank {}: {} {}", f->target_rank(), wire::EnumNameFailureReason(f->reason()),
                         str(f->detail()));
    }
    case wire::EventBody::Checkpoint: return fmt::format("checkpoint step={}", e.step());
    case wire::EventBody::Decision: {
      const auto* d = e.body_as_Decision();
      return fmt::format("decision {} layer={} {} seeds [{}] -> {}: applied [{}] rejected [{}] {} {:.1f} ms — {}{}",
                         str(d->policy()), e.layer(), wire::EnumNameDecisionAction(d->action()), seeds(d->seeds()),
                         wire::EnumNameSeedState(d->target()), seeds(d->applied()), seeds(d->rejected()),
                         wire::EnumNameStatus(d->status()), static_cast<double>(d->latency_ns()) / 1e6, str(d->reason()),
                         d->failure() && d->failure()->size() ? " (" + d->failure()->str() + ")" : "");
    }
    default: return "event of an unknown kind";
  }
}

}  // namespace esper::controller
