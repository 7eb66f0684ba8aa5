// The `esper` executable as a user runs it: a standalone broker process, `esper ctl send` and
// `esper watch` against it, clear errors for bad arguments, clean shutdown on SIGTERM.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>

#include "core/signals.hpp"
#include "support/process.hpp"

namespace esper {
namespace {

using esper::testing::ChildProcess;
using namespace std::chrono_literals;

std::string endpoint_of(const std::string& line, const std::string& key) {
  const auto at = line.find(key + "=");
  return line.substr(at + key.size() + 1, line.find(' ', at) - at - key.size() - 1);
}

int exit_code(const std::optional<int>& status) {
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

int g_hook_fd = -1;

// The first SIGINT asks for a clean stop; the second exits at once with 130, running the forced-exit
// hook first (esper top puts the terminal back there). In a forked child: raise() delivers at once.
TEST(Signals, TheSecondSignalRunsTheHookThenExitsWith130) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    g_hook_fd = fds[1];
    install_stop_handlers();
    set_forced_exit_hook(+[] { (void)!::write(g_hook_fd, "h", 1); });
    std::raise(SIGINT);
    if (!stop_requested()) ::_exit(1);
    std::raise(SIGINT);
    ::_exit(2);  // not reached
  }
  ::close(fds[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(exit_code(status), 130);
  char c = 0;
  EXPECT_EQ(::read(fds[0], &c, 1), 1) << "the hook did not run";
  EXPECT_EQ(c, 'h');
  ::close(fds[0]);
}

TEST(Cli, BrokerCtlAndWatchWorkTogetherAndStopCleanly) {
  ChildProcess broker({ESPER_CLI, "broker", "--bind", "tcp://127.0.0.1:0", "--stats-every", "0"});
  const auto line = broker.read_line_starting("endpoints", 10s);
  ASSERT_TRUE(line) << broker.output();
  const std::string cmd = endpoint_of(*line, "cmd");
  ASSERT_EQ(cmd.rfind("tcp://127.0.0.1:", 0), 0u) << *line;

  ChildProcess watch({ESPER_CLI, "watch", "--broker", cmd, "--topic", "evt/", "--count", "1"});
  ASSERT_TRUE(watch.read_line_starting("watching", 10s));
  ChildProcess rank({ESPER_FABRIC_PEER, "rank", "--broker", cmd, "--rank", "5", "--heartbeat-ms", "100"});
  ASSERT_TRUE(rank.read_line_starting("ready", 10s));
  // The broker announces the rank; `watch` prints that event and exits after --count 1.
  EXPECT_EQ(exit_code(watch.wait(10s)), 0);
  EXPECT_NE(watch.output().find("rank 5 joined"), std::string::npos) << watch.output();

  ChildProcess ctl({ESPER_CLI, "ctl", "send", "--broker", cmd, "--target", "rank:5", "transition", "--layer", "0",
                    "--seeds", "1,3-4", "--to", "germinated"});
  EXPECT_EQ(exit_code(ctl.wait(10s)), 0) << ctl.output();
  EXPECT_NE(ctl.output().find("rank 5: OK"), std::string::npos) << ctl.output();
  EXPECT_NE(ctl.output().find("outcome: all ok"), std::string::npos) << ctl.output();

  ChildProcess unknown({ESPER_CLI, "ctl", "send", "--broker", cmd, "--target", "rank:9", "shutdown"});
  EXPECT_EQ(exit_code(unknown.wait(10s)), 1) << unknown.output();
  EXPECT_NE(unknown.output().find("RANK_LOST"), std::string::npos) << unknown.output();

  broker.signal(SIGTERM);
  EXPECT_EQ(exit_code(broker.wait(5s)), 0) << broker.output();
  EXPECT_NE(broker.output().find("stopped"), std::string::npos) << broker.output();
}

// A fault in the broker's thread (test hook: it throws at the first heartbeat it receives) ends
// `esper broker` with status 1 and a message naming the thread, the host and the cause, instead
// of std::terminate. Synchronised on the endpoints line and the exit.
TEST(Cli, AFailedBrokerThreadEndsEsperBrokerWithStatusOneAndTheCause) {
  ChildProcess broker({ESPER_CLI, "broker", "--bind", "tcp://127.0.0.1:0", "--stats-every", "0", "--fail-at-heartbeat",
                       "1"});
  const auto line = broker.read_line_starting("endpoints", 10s);
  ASSERT_TRUE(line) << broker.output();
  ChildProcess rank({ESPER_FABRIC_PEER, "rank", "--broker", endpoint_of(*line, "cmd"), "--rank", "2", "--heartbeat-ms",
                     "100"});
  const auto st = broker.wait(10s);
  ASSERT_TRUE(st) << "esper broker still running: " << broker.output();
  EXPECT_TRUE(WIFEXITED(*st)) << "killed by signal " << (WIFSIGNALED(*st) ? WTERMSIG(*st) : 0) << ": " << broker.output();
  EXPECT_EQ(exit_code(st), 1) << broker.output();
  const auto& out = broker.output();
  EXPECT_NE(out.find("esper broker: failed: the broker thread on "), std::string::npos) << out;
  EXPECT_NE(out.find("injected failure at heartbeat 1"), std::string::npos) << out;
  EXPECT_EQ(out.find("terminate called"), std::string::npos) << out;
  rank.signal(SIGTERM);  // its broker is gone: it stops on the signal all the same
  EXPECT_TRUE(rank.wait(10s)) << rank.output();
}

TEST(Cli, BadArgumentsFailWithAMessageThatSaysWhatToFix) {
  ChildProcess bad_target({ESPER_CLI, "ctl", "send", "--broker", "tcp://127.0.0.1:1", "--target", "rnk:1", "shutdown"});
  EXPECT_NE(exit_code(bad_target.wait(10s)), 0);
  EXPECT_NE(bad_target.output().find("use all, rank:N or layer:L"), std::string::npos) << bad_target.output();

  ChildProcess bad_state({ESPER_CLI, "ctl", "send", "--broker", "tcp://127.0.0.1:1", "transition", "--layer", "0",
                          "--to", "ASLEEP"});
  EXPECT_NE(exit_code(bad_state.wait(10s)), 0);
  EXPECT_NE(bad_state.output().find("GERMINATED"), std::string::npos) << bad_state.output();

  ChildProcess bad_bind({ESPER_CLI, "broker", "--bind", "udp://x"});
  EXPECT_EQ(exit_code(bad_bind.wait(10s)), 1);
  EXPECT_NE(bad_bind.output().find("tcp, ipc, inproc"), std::string::npos) << bad_bind.output();
}

}  // namespace
}  // namespace esper
