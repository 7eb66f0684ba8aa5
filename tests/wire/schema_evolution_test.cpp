// A frame from a newer schema minor (tests/fbs/envelope_next.fbs: fields appended to
// Envelope and Heartbeat, a new body kind) is read by the current decoder, unknown fields ignored.
#include <gtest/gtest.h>

#include "fbs_next/envelope_next_generated.h"
#include "wire/codec.hpp"

namespace esper::wire {
namespace {

namespace nx = esper::wire::next;

std::vector<std::uint8_t> next_frame(bool probe) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<void> body;
  if (probe) {
    body = nx::CreateProbe(fbb, fbb.CreateString("hello from the next minor")).Union();
  } else {
    const std::vector<std::uint32_t> layers = {4, 5};
    const std::vector<float> load = {0.5f, 0.25f};
    body = nx::CreateHeartbeatV2(fbb, 77, 100, 9000, 2, 3, fbb.CreateVector(layers), fbb.CreateString(""), 4, 0.875f,
                                  fbb.CreateVector(load))
               .Union();
  }
  const auto source = CreateSource(fbb, 6, Role::RANK, fbb.CreateString("job"));
  const SchemaVersion version(kSchemaMajor, kSchemaMinor + 1);
  const MsgId id(1, 2);
  nx::EnvelopeBuilder b(fbb);
  b.add_version(&version);
  b.add_msg_id(&id);
  b.add_source(source);
  b.add_sequence(31);
  b.add_body_type(probe ? nx::Body::Probe : nx::Body::HeartbeatV2);
  b.add_body(body);
  b.add_route_hint(0);
  b.add_hop_count(3);
  const auto env = b.Finish();
  fbb.Finish(env, kFileIdentifier);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

TEST(SchemaEvolution, NewerMinorIsReadIgnoringUnknownFields) {
  Decoder dec;
  const auto frame = next_frame(false);
  auto msg = dec.decode(frame);
  ASSERT_TRUE(msg) << msg.error().message();
  EXPECT_TRUE(msg->newer_minor());
  EXPECT_EQ(msg->envelope().version()->minor(), kSchemaMinor + 1);
  EXPECT_EQ(msg->envelope().sequence(), 31u);
  EXPECT_EQ(msg->envelope().source()->rank(), 6);
  const auto* hb = msg->body<Heartbeat>();
  ASSERT_NE(hb, nullptr) << "HeartbeatV2 sits in Heartbeat's union slot and extends it";
  EXPECT_EQ(hb->step(), 77u);
  EXPECT_EQ(hb->uptime_ns(), 9000u);
  ASSERT_NE(hb->layers(), nullptr);
  EXPECT_EQ(hb->layers()->size(), 2u);
  EXPECT_EQ(hb->layers()->Get(1), 5u);
  EXPECT_EQ(hb->world_size(), 4) << "the current minor's last field, read in place";
}

TEST(SchemaEvolution, UnknownBodyKindIsReportedNotMisread) {
  Decoder dec;
  auto msg = dec.decode(next_frame(true));
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, DecodeErrc::UnknownKind);
  EXPECT_NE(msg.error().detail.find("body kind " + std::to_string(static_cast<int>(nx::Body::Probe))), std::string::npos)
      << msg.error().message();
  EXPECT_NE(msg.error().detail.find(std::to_string(kSchemaMajor) + "." + std::to_string(kSchemaMinor + 1)),
            std::string::npos)
      << msg.error().message();
}

TEST(SchemaEvolution, CurrentFramesReadAsNotNewer) {
  Encoder enc;
  Decoder dec;
  HeartbeatT hb;
  const auto f = enc.encode(Header{}, hb);
  const std::vector<std::uint8_t> frame(f.begin(), f.end());
  auto msg = dec.decode(frame);
  ASSERT_TRUE(msg);
  EXPECT_FALSE(msg->newer_minor());
}

}  // namespace
}  // namespace esper::wire
