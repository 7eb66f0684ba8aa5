// Fuzz target: the envelope decoder with every body kind (wire::Decoder::decode), then what a
// receiver does with what it accepted. The input is one frame.
//
// For a frame the decoder accepts:
//  - every field of the envelope and of the body is read through the accessors (strings to their
//    terminator, vectors element by element, telemetry records field by field — after the
//    decoder unpacked a zstd-compressed, XOR-shuffled body), which is what the fabric and the
//    controller do in place;
//  - the body is unpacked to the object API and encoded again; the new frame must decode, and
//    unpacking and encoding it once more must give the same bytes (encode ∘ decode is a fixed
//    point). The one frame allowed not to decode is one whose body holds a union member of a kind
//    this schema does not know: the object API keeps its type but not its value, and the decoder
//    rejects a union without a value (NoBody).
// For every frame: decode accepts or rejects (never throws), and the counters add up; a tighter
// decoder (the limits a small receiver might set) must agree with the default one or reject.
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/ids.hpp"

namespace esper::fuzz {
namespace {

using namespace esper::wire;

void walk(Sink& s, const MsgId* id) {
  if (id == nullptr) return s(std::uint64_t{1});
  s(id->sender());
  s(id->seq());
  s(wire::is_valid(id));
}

void walk(Sink& s, const SeedSet* set) {
  if (set == nullptr) return s(std::uint64_t{2});
  s(set->all());
  s(set->ids());
  if (const auto* ranges = set->ranges()) {
    for (const auto* r : *ranges) {
      s(r->first());
      s(r->last());
    }
  }
  // What a rank asks of a set, for a few seeds around the ones named.
  for (const std::uint32_t seed : {0u, 1u, 7u, 0xffffffffu}) s(contains(set, seed));
}

void walk(Sink& s, const Command* c, int depth);

void walk(Sink& s, const BatchCommand* b, int depth) {
  s(b->atomic());
  s(b->stop_on_error());
  if (const auto* cmds = b->commands()) {
    s(std::uint64_t{cmds->size()});
    for (const auto* inner : *cmds) walk(s, inner, depth + 1);
  }
}

void walk(Sink& s, const Command* c, int depth) {
  // The verifier bounds nesting (max_depth 32): deeper here would mean it did not.
  FUZZ_CHECK(depth <= 64, "a batch nested deeper than the verifier allows");
  if (const auto* t = c->target()) {
    s(t->kind());
    s(t->rank());
    s(t->layer());
  }
  s(c->timeout_ms());
  s(c->apply_at_step());
  s(c->attempt());
  s(c->body_type());
  s(EnumNameCommandBody(c->body_type()));
  switch (c->body_type()) {
    case CommandBody::TransitionSeeds: {
      const auto* t = c->body_as_TransitionSeeds();
      FUZZ_CHECK(t != nullptr, "the decoder let a command union without its value through");
      s(t->layer());
      walk(s, t->seeds());
      s(t->target());
      s(EnumNameSeedState(t->target()));
      s(t->reason());
      s(t->force());
      break;
    }
    case CommandBody::SetBlueprint: {
      const auto* b = c->body_as_SetBlueprint();
      FUZZ_CHECK(b != nullptr, "the decoder let a command union without its value through");
      s(b->layer());
      s(b->seed());
      s(b->kind());
      s(b->rank());
      s(b->grafting());
      s(b->ramp_steps());
      s(b->drift_threshold());
      s(b->learning_rate());
      if (const auto* params = b->params()) {
        for (const auto* p : *params) {
          s(p->name());
          s(p->value());
        }
      }
      break;
    }
    case CommandBody::BatchCommand: {
      const auto* b = c->body_as_BatchCommand();
      FUZZ_CHECK(b != nullptr, "the decoder let a command union without its value through");
      walk(s, b, depth);
      break;
    }
    case CommandBody::EmergencyStop: {
      const auto* e = c->body_as_EmergencyStop();
      FUZZ_CHECK(e != nullptr, "the decoder let a command union without its value through");
      s(e->scope());
      s(e->layer());
      s(e->seed());
      s(e->reason());
      break;
    }
    case CommandBody::RequestSnapshot: {
      const auto* r = c->body_as_RequestSnapshot();
      FUZZ_CHECK(r != nullptr, "the decoder let a command union without its value through");
      s(r->layers());
      s(r->reply_topic());
      break;
    }
    case CommandBody::Shutdown: {
      const auto* d = c->body_as_Shutdown();
      FUZZ_CHECK(d != nullptr, "the decoder let a command union without its value through");
      s(d->reason());
      s(d->grace_ms());
      break;
    }
    default: s(std::uint64_t{3});  // NONE, or a kind from a newer minor
  }
}

void walk(Sink& s, const CommandResult* r) {
  s(r->status());
  s(EnumNameStatus(r->status()));
  s(r->error());
  if (const auto* outcomes = r->outcomes()) {
    for (const auto* o : *outcomes) {
      s(o->seed());
      s(o->status());
      s(o->from());
      s(o->to());
      s(o->error());
    }
  }
  s(r->execution_ns());
  s(r->applied_at_step());
  s(r->rank());
}

void walk(Sink& s, const TelemetryBatch* b) {
  s(b->layer());
  s(b->rank());
  s(b->window_start_ns());
  s(b->window_end_ns());
  s(b->dropped_records());
  if (const auto* seeds = b->seeds()) {
    for (const auto* r : *seeds) {
      s(r->step());
      s(r->seed());
      s(r->steps_in_state());
      s(r->activation_mean());
      s(r->activation_var());
      s(r->dead_ratio());
      s(r->task_loss());
      s(r->shadow_loss());
      s(r->grad_norm());
      s(r->alpha());
      s(r->health());
      s(r->state());
      s(r->error_count());
      s(r->reserved());
    }
  }
  if (const auto* layers = b->layers()) {
    for (const auto* l : *layers) {
      s(l->step());
      s(l->step_time_ns());
      s(l->samples_per_s());
      s(l->loss());
    }
  }
}

void walk(Sink& s, const Event* e) {
  s(e->layer());
  s(e->step());
  s(e->body_type());
  s(EnumNameEventBody(e->body_type()));
  if (e->body_type() != EventBody::NONE) FUZZ_CHECK(e->body() != nullptr, "an event union without its value");
  if (const auto* t = e->body_as_StateTransition()) {
    s(t->seed());
    s(t->from());
    s(t->to());
    s(t->reason());
    s(t->triggered_by());
    walk(s, t->command_id());
  } else if (const auto* a = e->body_as_AnomalyAlert()) {
    s(a->seed());
    s(a->metric());
    s(a->value());
    s(a->expected_low());
    s(a->expected_high());
    s(a->severity());
    s(a->detector());
    s(a->score());
  } else if (const auto* j = e->body_as_RankJoined()) {
    s(j->rank());
    s(j->world_size());
    s(j->host());
    s(j->pid());
    s(j->layers());
  } else if (const auto* l = e->body_as_RankLost()) {
    s(l->rank());
    s(l->last_heartbeat_ns());
    s(l->missed_heartbeats());
    s(l->reason());
  } else if (const auto* f = e->body_as_CommandFailed()) {
    walk(s, f->command_id());
    s(f->target_rank());
    s(f->reason());
    s(EnumNameFailureReason(f->reason()));
    s(f->detail());
    s(f->attempts());
    s(f->dead_lettered());
  } else if (const auto* c = e->body_as_Checkpoint()) {
    s(c->path());
    s(c->digest());
    s(c->bytes());
  } else if (const auto* d = e->body_as_Decision()) {
    s(d->policy());
    s(d->action());
    s(EnumNameDecisionAction(d->action()));
    s(d->target());
    s(d->seeds());
    s(d->reason());
    walk(s, d->command_id());
    s(d->applied());
    s(d->rejected());
    s(d->status());
    s(d->failure());
    s(d->latency_ns());
  }
}

void walk(Sink& s, const Heartbeat* h) {
  s(h->step());
  s(h->interval_ms());
  s(h->uptime_ns());
  s(h->pending_commands());
  s(h->telemetry_dropped());
  s(h->layers());
  s(h->command_endpoint());
  s(h->world_size());
}

void walk(Sink& s, const StateSnapshot* snap) {
  s(snap->snapshot_sequence());
  s(snap->part());
  s(snap->parts());
  if (const auto* layers = snap->layers()) {
    for (const auto* l : *layers) {
      s(l->layer());
      s(l->rank());
      s(l->step());
      if (const auto* seeds = l->seeds()) {
        for (const auto* st : *seeds) {
          s(st->seed());
          s(st->state());
          s(st->parent_state());
          s(st->reserved());
          s(st->steps_in_state());
          s(st->error_count());
          s(st->alpha());
        }
      }
    }
  }
}

void walk(Sink& s, const RouteTable* t) {
  s(t->version());
  if (const auto* ranks = t->ranks()) {
    for (const auto* r : *ranks) {
      s(r->rank());
      s(r->layers());
      s(r->command_endpoint());
    }
  }
}

void walk(Sink& s, const CommandDispatch* d) {
  if (const auto* c = d->command()) {
    s(c->sender());
    s(c->seq());
  }
  s(static_cast<std::uint32_t>(d->reason()));
  s(d->ranks());
  s(d->detail());
}

void walk(Sink& s, const Envelope& e) {
  const auto* v = e.version();
  FUZZ_CHECK(v != nullptr && v->major() == kSchemaMajor, "an accepted frame of another major");
  s(v->minor());
  walk(s, e.msg_id());
  walk(s, e.correlation_id());
  if (const auto* src = e.source()) {
    s(src->rank());
    s(src->role());
    s(EnumNameRole(src->role()));
    s(src->job_id());
    s(src->host());
    s(src->pid());
  }
  s(e.priority());
  s(e.partition_key());
  s(e.sequence());
  s(e.lamport());
  s(e.timestamp_ns());
  if (const auto* t = e.trace()) {
    s(t->trace_hi());
    s(t->trace_lo());
    s(t->span());
  }
  if (const auto* p = e.packed()) {
    s(p->codec());
    s(p->kind());
    s(p->raw_size());
    s(p->transform());
    s(p->transform_offset());
    s(p->transform_stride());
    s(p->transform_count());
    s(p->transform_lag());
    s(std::uint64_t{p->data() != nullptr ? p->data()->size() : 0u});
  }
}

Header header_of(const Envelope& e) {
  Header h;
  if (e.msg_id() != nullptr) h.msg_id = *e.msg_id();
  if (e.correlation_id() != nullptr) h.correlation_id = *e.correlation_id();
  h.priority = e.priority();
  h.partition_key = e.partition_key();
  h.sequence = e.sequence();
  h.lamport = e.lamport();
  h.timestamp_ns = e.timestamp_ns();
  if (e.trace() != nullptr) h.trace = *e.trace();
  return h;
}

// Unpack, encode, decode, unpack, encode: the two encodings must be the same bytes.
template <class Table>
void round_trip(const Header& h, const Table& body) {
  using Object = typename Table::NativeTableType;
  static Encoder encoder(SourceInfo{3, Role::RANK, "fuzz-job", "fuzz-host", 42});
  static Decoder decoder;

  Object first;
  body.UnPackTo(&first);
  const auto f1 = encoder.encode(h, first);
  const std::vector<std::uint8_t> frame1(f1.begin(), f1.end());

  auto again = decoder.decode(frame1);
  if (!again) {
    // A union member of a kind this schema does not know keeps its type without its value.
    FUZZ_CHECK(again.error().code == DecodeErrc::NoBody, again.error().message().c_str());
    return;
  }
  const auto* body2 = again->template body<Table>();
  FUZZ_CHECK(body2 != nullptr, "the re-encoded frame decoded to another kind");
  Object second;
  body2->UnPackTo(&second);
  const auto f2 = encoder.encode(h, second);
  FUZZ_CHECK(f2.size() == frame1.size() && std::equal(f2.begin(), f2.end(), frame1.begin()),
             "encode(decode(encode(x))) differs from encode(x)");
}

void use(const Message& m) {
  Sink s;
  walk(s, m.envelope());
  s(m.kind());
  s(m.was_packed());
  s(m.newer_minor());
  const Header h = header_of(m.envelope());
  switch (m.kind()) {
    case Body::Command:
      walk(s, m.body<Command>(), 0);
      round_trip(h, *m.body<Command>());
      break;
    case Body::CommandResult:
      walk(s, m.body<CommandResult>());
      round_trip(h, *m.body<CommandResult>());
      break;
    case Body::TelemetryBatch:
      walk(s, m.body<TelemetryBatch>());
      round_trip(h, *m.body<TelemetryBatch>());
      break;
    case Body::Event:
      walk(s, m.body<Event>());
      round_trip(h, *m.body<Event>());
      break;
    case Body::Heartbeat:
      walk(s, m.body<Heartbeat>());
      round_trip(h, *m.body<Heartbeat>());
      break;
    case Body::StateSnapshot:
      walk(s, m.body<StateSnapshot>());
      round_trip(h, *m.body<StateSnapshot>());
      break;
    case Body::RouteTable:
      walk(s, m.body<RouteTable>());
      round_trip(h, *m.body<RouteTable>());
      break;
    case Body::CommandDispatch:
      walk(s, m.body<CommandDispatch>());
      round_trip(h, *m.body<CommandDispatch>());
      break;
    default: FUZZ_CHECK(false, "an accepted frame of no known kind");
  }
  s.publish();
}

}  // namespace
}  // namespace esper::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper::wire;
  static Decoder decoder;
  static Decoder tight(DecodeLimits{.max_frame_bytes = 1u << 16, .max_depth = 8, .max_tables = 64,
                                    .max_records_per_batch = 16});
  const std::span<const std::uint8_t> frame(data, size);

  const auto before = decoder.stats().accepted + decoder.stats().rejected_total();
  auto msg = decoder.decode(frame);
  FUZZ_CHECK(decoder.stats().accepted + decoder.stats().rejected_total() == before + 1,
             "one decode, one count");
  if (msg) {
    FUZZ_CHECK(msg->kind() != Body::NONE && msg->kind() <= Body::MAX, "an accepted frame without a known kind");
    esper::fuzz::use(*msg);
  } else {
    FUZZ_CHECK(!msg.error().message().empty(), "a rejection without a reason");
  }

  // Tighter limits: the same verdict, or a rejection (never an acceptance the default refused).
  auto small = tight.decode(frame);
  if (small) {
    FUZZ_CHECK(msg.has_value(), "tight limits accepted what the default limits rejected");
    FUZZ_CHECK(small->kind() == msg->kind(), "tight and default limits disagree on the kind");
  }
  return 0;
}
