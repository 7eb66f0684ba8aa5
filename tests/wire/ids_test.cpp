#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "wire/ids.hpp"

namespace esper::wire {
namespace {

TEST(MsgIds, AreUniqueAcrossThreads) {
  MsgIdGenerator gen(Role::CONTROLLER, 0);
  constexpr int kThreads = 4, kPer = 20'000;
  std::vector<std::vector<std::uint64_t>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        const auto id = gen.next();
        ASSERT_EQ(id.sender(), gen.sender());
        seen[static_cast<std::size_t>(t)].push_back(id.seq());
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::uint64_t> all;
  for (const auto& v : seen) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), std::size_t{kThreads} * kPer);
  EXPECT_EQ(*all.begin(), 1u) << "seq 0 is reserved for 'no id'";
}

TEST(MsgIds, SenderCarriesRoleRankAndANonce) {
  const auto a = make_sender_id(Role::RANK, 5);
  const auto b = make_sender_id(Role::RANK, 5);
  EXPECT_EQ(a >> 56, static_cast<std::uint64_t>(Role::RANK));
  EXPECT_EQ((a >> 32) & 0xffffff, 5u);
  EXPECT_NE(a, b) << "a restarted process must not reuse its predecessor's ids";
  EXPECT_EQ((make_sender_id(Role::TOOL, -1) >> 32) & 0xffffff, 0xffffffu);
  EXPECT_FALSE(is_set(MsgId()));
  EXPECT_TRUE(is_set(MsgIdGenerator(1).next()));
}

// Valid is what a generator can produce: present, seq > 0 — even with a sender of 0.
TEST(MsgIds, ValidMeansPresentWithANonZeroSeq) {
  const MsgId zero{};
  const MsgId no_seq(7, 0);
  EXPECT_FALSE(is_valid(nullptr));
  EXPECT_FALSE(is_valid(&zero));
  EXPECT_FALSE(is_valid(&no_seq));
  MsgIdGenerator gen(0);
  const auto first = gen.next();
  EXPECT_TRUE(is_valid(&first)) << "a sender of 0 is possible (role UNKNOWN, rank 0, nonce 0)";
  MsgIdGenerator tool(Role::TOOL, -1);
  for (int i = 0; i < 1000; ++i) {
    const auto id = tool.next();
    ASSERT_TRUE(is_valid(&id));
  }
}

TEST(LamportClock, TickIncreasesAndObserveJumpsPastRemote) {
  LamportClock c;
  EXPECT_EQ(c.tick(), 1u);
  EXPECT_EQ(c.tick(), 2u);
  EXPECT_EQ(c.observe(10), 11u);
  EXPECT_EQ(c.observe(3), 12u) << "an older remote stamp still advances the clock";
  EXPECT_EQ(c.now(), 12u);
}

TEST(LamportClock, ConcurrentUseNeverGoesBackwards) {
  LamportClock c;
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::uint64_t last = 0;
      for (int i = 0; i < 10'000; ++i) {
        const auto v = (i % 3 == 0) ? c.observe(static_cast<std::uint64_t>(i * t)) : c.tick();
        if (v <= last) ok = false;
        last = v;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(ok);
  EXPECT_GE(c.now(), 40'000u);
}

}  // namespace
}  // namespace esper::wire
