// Fuzz target: the fabric's JobState (runtime/fabric/job_state.hpp) fed decoded events and
// snapshots the way a Subscriber feeds it. The input is a sequence of frames (fuzz_support.hpp);
// each is decoded, and:
//  - a StateSnapshot replaces the state (JobState::load);
//  - an Event with an envelope sequence above the state's is applied (JobState::apply) with the
//    sending rank; one at or below it is a duplicate and skipped, as Subscriber does;
//  - other kinds are ignored.
// After every frame: the state's snapshot(), encoded and decoded like the broker's answer to a late
// joiner, loads into a JobState equal to it (what the broker holds is what a joiner gets), and
// the sequence never goes down except through a snapshot.
#include <vector>

#include "fabric/job_state.hpp"
#include "fuzz_support.hpp"
#include "wire/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  static wire::Decoder decoder;
  static wire::Decoder joiner_decoder;
  static wire::Encoder encoder(wire::SourceInfo{-1, wire::Role::BROKER, "fuzz-job", "fuzz-host", 1});

  fabric::JobState state;
  fuzz::Frames frames({data, size});
  fuzz::Frame frame;
  while (frames.next(frame)) {
    auto msg = decoder.decode(frame.bytes);
    if (!msg) continue;
    const std::uint64_t before = state.sequence();
    if (const auto* snap = msg->body<wire::StateSnapshot>()) {
      (void)state.load(*snap);
      FUZZ_CHECK(state.sequence() == snap->snapshot_sequence(), "load takes the snapshot's sequence");
    } else if (const auto* event = msg->body<wire::Event>()) {
      const std::uint64_t seq = msg->envelope().sequence();
      if (seq <= state.sequence()) continue;  // a duplicate
      const auto* src = msg->envelope().source();
      const auto* t = event->body_as_StateTransition();
      const auto old = state.seeds();
      (void)state.apply(*event, src != nullptr ? src->rank() : -1, seq);
      FUZZ_CHECK(state.sequence() == seq && seq > before, "apply takes the event's sequence");
      if (t != nullptr) {
        // The transition's seed takes its state and parent, or (a value out of range) nothing changes.
        const auto it = state.seeds().find({event->layer(), t->seed()});
        const bool moved = it != state.seeds().end() && it->second.state == t->to() && it->second.parent == t->from();
        FUZZ_CHECK(moved || state.seeds() == old, "a transition changed something other than its seed");
        FUZZ_CHECK(state.seeds().size() <= old.size() + 1, "a transition added more than its seed");
      } else {
        FUZZ_CHECK(state.seeds() == old, "an event other than a transition changed a seed");
      }
    } else {
      continue;
    }

    // What a late joiner would get from the broker.
    const wire::StateSnapshotT snapshot = state.snapshot();
    std::size_t seeds = 0;
    for (const auto& layer : snapshot.layers) seeds += layer->seeds.size();
    FUZZ_CHECK(seeds == state.seeds().size(), "the snapshot holds every seed once");
    const auto bytes = encoder.encode(wire::Header{}, snapshot);
    const std::vector<std::uint8_t> copy(bytes.begin(), bytes.end());
    auto answer = joiner_decoder.decode(copy);
    FUZZ_CHECK(answer.has_value(), "the broker's snapshot does not decode");
    fabric::JobState joiner;
    (void)joiner.load(*answer->body<wire::StateSnapshot>());
    FUZZ_CHECK(joiner == state, "a joiner loading the snapshot differs from the state it was taken of");
  }
  return 0;
}
