// The dead-letter queue (runtime/resilience/dead_letters.hpp): bounds with evictions counted, segment
// files that survive a restart, torn and corrupt records detected and skipped, purge, and the
// `esper dlq` tool — list, show, purge and replay against a real broker and rank — plus a writer
// process killed with SIGKILL mid-append.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <numeric>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "fabric/framing.hpp"
#include "resilience/dead_letters.hpp"
#include "support/process.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"

namespace esper::resilience {
namespace {

namespace fs = std::filesystem;
using esper::testing::ChildProcess;
using namespace std::chrono_literals;

int exit_code(const std::optional<int>& status) { return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1; }

class DeadLetters : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "esper-dlq-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = root_ / "dlq";
  }
  void TearDown() override { fs::remove_all(root_); }

  static wire::DeadLetterT letter(std::uint64_t seq, wire::DeadLetterReason reason = wire::DeadLetterReason::TIMEOUT,
                                  std::string destination = "rank:1", std::size_t original = 64) {
    wire::DeadLetterT l;
    l.reason = reason;
    l.stage = wire::DeadLetterStage::CLIENT;
    l.attempts = 3;
    l.first_ns = 1'000'000'000ull * seq;
    l.last_ns = l.first_ns + 5'000'000'000ull;
    l.destination_rank = 1;
    l.destination = std::move(destination);
    l.sender = 0x0300000112345678ull;
    l.msg_id = std::make_unique<wire::MsgId>(0x0300000112345678ull, seq);
    l.error = "no result in 5000 ms";
    l.original.assign(original, static_cast<std::uint8_t>(seq));
    return l;
  }
  static std::vector<std::uint64_t> seqs(const DeadLetterScan& scan) {
    std::vector<std::uint64_t> out;
    for (const auto& s : scan.letters) out.push_back(s.letter.msg_id ? s.letter.msg_id->seq() : 0);
    return out;
  }
  static std::vector<fs::path> segments(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".seg") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // `esper broker` on a private ipc endpoint, and the command endpoint it prints (empty if none).
  // join_grace_ms: how long the new broker holds a command for ranks that have not registered
  // (docs/broker-restarts.md); 0 answers one for a rank it does not know at once.
  std::unique_ptr<ChildProcess> start_broker(const std::string& join_grace_ms = "5000") const {
    return std::make_unique<ChildProcess>(std::vector<std::string>{ESPER_CLI, "broker", "--bind",
                                                                   "ipc://" + (root_ / "b").string(), "--stats-every",
                                                                   "0", "--join-grace-ms", join_grace_ms});
  }
  static std::string broker_cmd(ChildProcess& broker) {
    const auto line = broker.read_line_starting("endpoints", 10s);
    if (!line) return {};
    const auto at = line->find("cmd=");
    return line->substr(at + 4, line->find(' ', at) - at - 4);
  }

  fs::path root_, dir_;
};

TEST_F(DeadLetters, InMemoryTheOldestAreEvictedAndCounted) {
  DeadLetterQueue q(DeadLetterOptions{.max_letters = 10});
  for (std::uint64_t i = 1; i <= 25; ++i) q.add(letter(i));
  const auto c = q.counts();
  EXPECT_EQ(c.added, 25u);
  EXPECT_EQ(c.letters, 10u);
  EXPECT_EQ(c.evicted, 15u);
  const auto recent = q.recent();
  ASSERT_EQ(recent.size(), 10u);
  EXPECT_EQ(recent.front().msg_id->seq(), 16u);
  EXPECT_EQ(recent.back().msg_id->seq(), 25u);

  DeadLetterQueue by_bytes(DeadLetterOptions{.max_bytes = 5 * encode_record(letter(1)).size()});
  for (std::uint64_t i = 1; i <= 8; ++i) by_bytes.add(letter(i));
  EXPECT_EQ(by_bytes.counts().letters, 5u);
  EXPECT_EQ(by_bytes.counts().evicted, 3u);
}

TEST_F(DeadLetters, PersistedLettersSurviveARestartWithEveryField) {
  {
    DeadLetterQueue q(DeadLetterOptions{.dir = dir_});
    for (std::uint64_t i = 1; i <= 100; ++i) q.add(letter(i));
    EXPECT_EQ(q.counts().letters, 100u);
  }
  {
    DeadLetterQueue again(DeadLetterOptions{.dir = dir_});
    EXPECT_EQ(again.counts().letters, 100u) << "what the directory holds counts against the bounds";
    for (std::uint64_t i = 101; i <= 120; ++i) again.add(letter(i));
  }
  const auto scan = read_dead_letters(dir_);
  EXPECT_TRUE(scan.problems.empty()) << scan.problems.front();
  ASSERT_EQ(scan.letters.size(), 120u);
  std::vector<std::uint64_t> want(120);
  std::iota(want.begin(), want.end(), 1);
  EXPECT_EQ(seqs(scan), want) << "oldest first, across the restart";
  EXPECT_EQ(scan.letters[41].letter, letter(42)) << "every field as written";
  EXPECT_EQ(segments(dir_).size(), 2u) << "the restarted queue appends in a segment of its own";
  EXPECT_EQ(fs::status(segments(dir_).front()).permissions() & (fs::perms::group_all | fs::perms::others_all),
            fs::perms::none)
      << "dead letters may hold commands: readable by the owner only";
}

TEST_F(DeadLetters, ATornLastRecordIsReportedAndSkippedAndTheQueueCarriesOn) {
  {
    DeadLetterQueue q(DeadLetterOptions{.dir = dir_});
    for (std::uint64_t i = 1; i <= 10; ++i) q.add(letter(i));
  }
  const auto seg = segments(dir_).back();
  fs::resize_file(seg, fs::file_size(seg) - 7);  // a crash in the middle of the last write
  auto scan = read_dead_letters(dir_);
  ASSERT_EQ(scan.problems.size(), 1u);
  EXPECT_NE(scan.problems[0].find("torn record"), std::string::npos) << scan.problems[0];
  EXPECT_EQ(scan.letters.size(), 9u);

  {
    DeadLetterQueue q(DeadLetterOptions{.dir = dir_});  // opening it is not fatal
    EXPECT_EQ(q.counts().letters, 9u);
    q.add(letter(11));
  }
  scan = read_dead_letters(dir_);
  EXPECT_EQ(scan.problems.size(), 1u) << "the torn record is still reported, once";
  EXPECT_EQ(seqs(scan), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 11}));
}

TEST_F(DeadLetters, ACorruptRecordInTheMiddleIsSkippedAndTheRestRead) {
  {
    DeadLetterQueue q(DeadLetterOptions{.dir = dir_});
    for (std::uint64_t i = 1; i <= 5; ++i) q.add(letter(i));
  }
  const auto seg = segments(dir_).back();
  const auto size = encode_record(letter(1)).size();
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(2 * size + size / 2));  // inside the third record's payload
    f.put('\x5a');
  }
  const auto scan = read_dead_letters(dir_);
  ASSERT_EQ(scan.problems.size(), 1u);
  EXPECT_NE(scan.problems[0].find("checksum mismatch"), std::string::npos) << scan.problems[0];
  EXPECT_EQ(seqs(scan), (std::vector<std::uint64_t>{1, 2, 4, 5}));

  // Bytes that are no record at all: reported, never a crash, nothing invented.
  for (const std::vector<std::uint8_t>& junk : {std::vector<std::uint8_t>{}, std::vector<std::uint8_t>(5, 'E'),
                                               std::vector<std::uint8_t>{'E', 'D', 'L', 'Q', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
                                               std::vector<std::uint8_t>{'E', 'D', 'L', 'Q', 4, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}}) {
    const auto r = decode_record(junk);
    EXPECT_FALSE(r.letter);
    EXPECT_FALSE(r.problem.empty());
  }
}

TEST_F(DeadLetters, BoundsDeleteTheOldestSegmentsAndCountTheEvictions) {
  DeadLetterQueue q(DeadLetterOptions{.dir = dir_, .max_letters = 80});
  for (std::uint64_t i = 1; i <= 200; ++i) q.add(letter(i));
  const auto c = q.counts();
  EXPECT_LE(c.letters, 80u);
  EXPECT_GE(c.letters, 70u) << "whole segments of an eighth of the bound go, not more";
  EXPECT_EQ(c.evicted + c.letters, 200u);
  q.flush();
  const auto scan = read_dead_letters(dir_);
  EXPECT_EQ(scan.letters.size(), c.letters);
  EXPECT_EQ(scan.letters.back().letter.msg_id->seq(), 200u);
  EXPECT_EQ(scan.letters.front().letter.msg_id->seq(), 200u - c.letters + 1) << "the oldest went first";
}

TEST_F(DeadLetters, PurgeRemovesWhatMatchesAndRefusesWhileAWriterHoldsTheDirectory) {
  {
    DeadLetterQueue q(DeadLetterOptions{.dir = dir_});
    for (std::uint64_t i = 1; i <= 30; ++i) {
      q.add(letter(i, i % 3 == 0 ? wire::DeadLetterReason::RANK_LOST : wire::DeadLetterReason::TIMEOUT,
                   "rank:" + std::to_string(i % 2)));
    }
    EXPECT_THROW((void)purge_dead_letters(dir_, {}), Error) << "a live writer holds the directory";
  }
  DeadLetterFilter lost;
  lost.reason = wire::DeadLetterReason::RANK_LOST;
  EXPECT_EQ(purge_dead_letters(dir_, lost), 10u);
  auto scan = read_dead_letters(dir_);
  EXPECT_EQ(scan.letters.size(), 20u);
  for (const auto& s : scan.letters) EXPECT_EQ(s.letter.reason, wire::DeadLetterReason::TIMEOUT);

  DeadLetterFilter f;
  f.destination = "rank:1";
  f.since_ns = letter(10).last_ns;
  f.until_ns = letter(20).last_ns;
  std::size_t expected = 0;
  for (const auto& s : scan.letters) expected += f.matches(s.letter) ? 1 : 0;
  EXPECT_EQ(expected, 4u);  // 11, 13, 17, 19: odd, in 10..20, not a multiple of 3
  f = {};
  f.msg_id = wire::MsgId(letter(7).sender, 7);
  EXPECT_EQ(purge_dead_letters(dir_, f), 1u);
  EXPECT_EQ(read_dead_letters(dir_).letters.size(), 19u);
}

// A writer killed with SIGKILL in the middle of appending: everything it wrote is readable after,
// except at most the one record it was writing, which is reported; a new queue carries on.
TEST_F(DeadLetters, AWriterKilledMidAppendLosesAtMostTheTornRecord) {
  ChildProcess writer({ESPER_DLQ_WRITER, dir_.string()});
  ASSERT_TRUE(writer.read_line_starting("wrote 3000", 60s)) << writer.output();
  writer.signal(SIGKILL);
  ASSERT_TRUE(writer.wait(10s));
  const auto scan = read_dead_letters(dir_);
  ASSERT_GE(scan.letters.size(), 3000u);
  EXPECT_LE(scan.problems.size(), 1u);
  for (const auto& p : scan.problems) EXPECT_NE(p.find("torn record"), std::string::npos) << p;
  const auto s = seqs(scan);
  for (std::size_t i = 0; i < s.size(); ++i) ASSERT_EQ(s[i], i + 1) << "no letter lost or reordered before the tear";

  DeadLetterQueue after(DeadLetterOptions{.dir = dir_});
  EXPECT_EQ(after.counts().letters, scan.letters.size());
}

// The tool: list and show with filters, purge, and replay through a real broker to a real rank.
TEST_F(DeadLetters, EsperDlqListsShowsPurgesAndReplaysToARank) {
  auto broker = start_broker();
  const std::string cmd = broker_cmd(*broker);
  ASSERT_FALSE(cmd.empty()) << broker->output();
  ChildProcess rank({ESPER_FABRIC_PEER, "rank", "--broker", cmd, "--rank", "1", "--layers", "0"});
  ASSERT_TRUE(rank.read_line_starting("ready", 10s)) << rank.output();

  // Two commands that once timed out on rank 1, and a frame that did not decode.
  wire::Encoder enc(wire::SourceInfo{-1, wire::Role::TOOL, "job", "host", 1});
  {
    DeadLetterQueue q(DeadLetterOptions{.dir = dir_});
    for (std::uint64_t seq : {41u, 42u}) {
      wire::Header h;
      h.msg_id = wire::MsgId(0x0500000100000001ull, seq);
      const auto f = enc.encode(h, wire::transition_seeds(wire::to_rank(1), 0, wire::seed_ids({1}),
                                                          wire::SeedState::GERMINATED, "replayed", false));
      auto l = letter(seq);
      l.msg_id = std::make_unique<wire::MsgId>(h.msg_id);
      l.original.assign(f.begin(), f.end());
      q.add(l);
    }
    q.add(letter(43, wire::DeadLetterReason::UNDECODABLE, "broker", 20));
  }
  ChildProcess list({ESPER_CLI, "dlq", "list", dir_.string()});
  ASSERT_EQ(exit_code(list.wait(20s)), 0) << list.output();
  EXPECT_NE(list.output().find("3 dead letters"), std::string::npos) << list.output();
  EXPECT_NE(list.output().find("TIMEOUT stage=CLIENT dest=rank:1 msg=0500000100000001:41"), std::string::npos)
      << list.output();

  ChildProcess show({ESPER_CLI, "dlq", "show", dir_.string(), "--reason", "undecodable"});
  ASSERT_EQ(exit_code(show.wait(20s)), 0) << show.output();
  EXPECT_NE(show.output().find("1 dead letter\n"), std::string::npos) << show.output();
  EXPECT_NE(show.output().find("original: does not decode"), std::string::npos) << show.output();

  ChildProcess replay({ESPER_CLI, "dlq", "replay", dir_.string(), "--broker", cmd, "--reason", "timeout"});
  ASSERT_EQ(exit_code(replay.wait(30s)), 0) << replay.output();
  EXPECT_NE(replay.output().find("replay of 0500000100000001:41 as "), std::string::npos) << replay.output();
  EXPECT_NE(replay.output().find("replay of 0500000100000001:42 as "), std::string::npos) << replay.output();
  EXPECT_NE(replay.output().find("replayed 2: 2 ok, 0 not ok; 0 skipped"), std::string::npos) << replay.output();

  ChildProcess refuse({ESPER_CLI, "dlq", "purge", dir_.string()});
  EXPECT_NE(exit_code(refuse.wait(20s)), 0) << "purge without a filter or --all is refused";
  ChildProcess purge({ESPER_CLI, "dlq", "purge", dir_.string(), "--msg-id", "0500000100000001:42"});
  ASSERT_EQ(exit_code(purge.wait(20s)), 0) << purge.output();
  EXPECT_NE(purge.output().find("purged 1 dead letter"), std::string::npos) << purge.output();
  EXPECT_EQ(read_dead_letters(dir_).letters.size(), 2u);

  rank.signal(SIGTERM);
  EXPECT_TRUE(rank.wait(10s));
  broker->signal(SIGTERM);
  EXPECT_EQ(exit_code(broker->wait(10s)), 0) << broker->output();
}

// The client writes the dead letter: `esper ctl send --dlq` to a rank that is not there fails
// (RANK_LOST), is kept with the command's bytes, and once the rank has come back `esper dlq replay`
// gets its result.
TEST_F(DeadLetters, AFailedCtlCommandIsDeadLetteredAndReplayedOnceItsRankIsBack) {
  auto broker = start_broker("0");  // the missing rank is not waited for
  const std::string cmd = broker_cmd(*broker);
  ASSERT_FALSE(cmd.empty()) << broker->output();

  ChildProcess ctl({ESPER_CLI, "ctl", "send", "--broker", cmd, "--target", "rank:2", "--timeout-ms", "2000", "--dlq",
                    dir_.string(), "transition", "--layer", "0", "--seeds", "1", "--to", "GERMINATED"});
  EXPECT_EQ(exit_code(ctl.wait(30s)), 1) << ctl.output();
  EXPECT_NE(ctl.output().find("[dead letter]"), std::string::npos) << ctl.output();
  auto scan = read_dead_letters(dir_);
  ASSERT_EQ(scan.letters.size(), 1u);
  const auto& l = scan.letters[0].letter;
  EXPECT_EQ(l.reason, wire::DeadLetterReason::RANK_LOST);
  EXPECT_EQ(l.stage, wire::DeadLetterStage::CLIENT);
  EXPECT_EQ(l.destination, "rank:2");
  ASSERT_NE(l.msg_id, nullptr);
  wire::Decoder decoder;
  const auto original = decoder.decode(l.original);
  ASSERT_TRUE(original) << "the command's own bytes are kept";
  ASSERT_NE(original->body<wire::Command>(), nullptr);
  EXPECT_EQ(original->envelope().msg_id()->seq(), l.msg_id->seq());

  ChildProcess rank({ESPER_FABRIC_PEER, "rank", "--broker", cmd, "--rank", "2", "--layers", "0"});
  ASSERT_TRUE(rank.read_line_starting("ready", 10s)) << rank.output();
  ChildProcess replay({ESPER_CLI, "dlq", "replay", dir_.string(), "--broker", cmd});
  ASSERT_EQ(exit_code(replay.wait(30s)), 0) << replay.output();
  EXPECT_NE(replay.output().find("rank 2: OK"), std::string::npos) << replay.output();
  EXPECT_NE(replay.output().find("replayed 1: 1 ok"), std::string::npos) << replay.output();

  rank.signal(SIGTERM);
  EXPECT_TRUE(rank.wait(10s));
  EXPECT_NE(rank.output().find("done applied=1"), std::string::npos) << "applied once, by the replay: " << rank.output();
  broker->signal(SIGTERM);
  EXPECT_EQ(exit_code(broker->wait(10s)), 0) << broker->output();
}

// The broker writes dead letters too: every frame it rejects on its command endpoint (one that
// does not decode, an event with a value out of range, a command without a valid msg_id) is kept
// with its bytes, readable after the broker has gone.
TEST_F(DeadLetters, ABrokerKeepsEveryFrameItRejectsAsADeadLetter) {
  auto broker = std::make_unique<ChildProcess>(std::vector<std::string>{
      ESPER_CLI, "broker", "--bind", "ipc://" + (root_ / "b").string(), "--stats-every", "0", "--dlq", dir_.string()});
  const std::string cmd = broker_cmd(*broker);
  ASSERT_FALSE(cmd.empty()) << broker->output();
  zmq::context_t ctx;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(cmd);
  const auto send = [&](std::span<const std::uint8_t> body, char type = fabric::frame::kCommand) {
    dealer.send(fabric::type_frame(type), zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(body.data(), body.size()), zmq::send_flags::none);
  };
  wire::Encoder enc(wire::SourceInfo{-1, wire::Role::CONTROLLER, "job", "host", 1});
  const std::vector<std::uint8_t> garbage{'n', 'o', 't', ' ', 'a', ' ', 'f', 'r', 'a', 'm', 'e'};
  const auto out_of_range =
      wire::state_transition(0, 1, 1, wire::SeedState::DORMANT, static_cast<wire::SeedState>(200), "x", "x");
  const auto bad_value = enc.encode(wire::Header{wire::MsgId(9, 1)}, out_of_range);
  const std::vector<std::uint8_t> bad_value_bytes(bad_value.begin(), bad_value.end());
  const auto no_id = enc.encode(wire::Header{wire::MsgId(9, 0)}, wire::shutdown(wire::to_all(), "x"));
  const std::vector<std::uint8_t> no_id_bytes(no_id.begin(), no_id.end());
  send(garbage);
  send(bad_value_bytes, fabric::frame::kEvent);
  send(no_id_bytes);
  // The broker answers the last ('D', INVALID_ID) after it has handled the two before it.
  zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq::poll(&item, 1, 10s), 1);
  broker->signal(SIGTERM);
  ASSERT_EQ(exit_code(broker->wait(10s)), 0) << broker->output();

  const auto scan = read_dead_letters(dir_);
  EXPECT_TRUE(scan.problems.empty()) << ::testing::PrintToString(scan.problems);
  ASSERT_EQ(scan.letters.size(), 3u);
  const auto& l = scan.letters;
  for (const auto& s : l) {
    EXPECT_EQ(s.letter.stage, wire::DeadLetterStage::BROKER);
    EXPECT_EQ(s.letter.destination, "broker");
    EXPECT_FALSE(s.letter.error.empty());
  }
  EXPECT_EQ(l[0].letter.reason, wire::DeadLetterReason::UNDECODABLE);
  EXPECT_EQ(l[0].letter.original, garbage);
  EXPECT_EQ(l[1].letter.reason, wire::DeadLetterReason::INVALID);
  EXPECT_NE(l[1].letter.error.find("body.to: 200"), std::string::npos) << l[1].letter.error;
  EXPECT_EQ(l[1].letter.original, bad_value_bytes);
  ASSERT_NE(l[1].letter.msg_id, nullptr);
  EXPECT_EQ(l[1].letter.msg_id->sender(), 9u);
  EXPECT_EQ(l[2].letter.reason, wire::DeadLetterReason::INVALID);
  EXPECT_NE(l[2].letter.error.find("msg_id"), std::string::npos) << l[2].letter.error;
  EXPECT_EQ(l[2].letter.original, no_id_bytes);

  ChildProcess list({ESPER_CLI, "dlq", "list", dir_.string(), "--reason", "undecodable"});
  ASSERT_EQ(exit_code(list.wait(20s)), 0) << list.output();
  EXPECT_NE(list.output().find("UNDECODABLE"), std::string::npos) << list.output();
}

}  // namespace
}  // namespace esper::resilience
