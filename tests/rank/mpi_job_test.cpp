// The rank program under a real `mpirun`: 2 and 4 ranks over the embedded broker, replicas that stay
// identical under hundreds of random commands, and a rank killed mid-run.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/process.hpp"

namespace esper {
namespace {

using esper::testing::ChildProcess;
using json = nlohmann::json;
using namespace std::chrono_literals;

class MpiJob : public ::testing::Test {
 protected:
  void SetUp() override {
    // mpirun refuses root without these; --oversubscribe lets 4 ranks share 2 cores.
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    dir_ = std::filesystem::temp_directory_path() /
           ("esper-mpi-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> mpirun(int ranks, std::vector<std::string> args) {
    std::vector<std::string> argv{ESPER_MPIEXEC, "--oversubscribe", "-np", std::to_string(ranks), ESPER_CLI, "run",
                                  "--report", report_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::string report_path() const { return (dir_ / "report.json").string(); }
  json report() const {
    std::ifstream in(report_path());
    EXPECT_TRUE(in.good()) << "no report at " << report_path();
    return in.good() ? json::parse(in) : json{};
  }
  static int exit_code(const std::optional<int>& st) { return st && WIFEXITED(*st) ? WEXITSTATUS(*st) : -1; }

  std::filesystem::path dir_;
};

TEST_F(MpiJob, TwoRanksTrainTogetherAndLowerTheLoss) {
  ChildProcess job(mpirun(2, {"--steps", "400", "--progress-every", "100"}));
  const auto st = job.wait(90s);
  ASSERT_TRUE(st) << "the job did not finish: " << job.output();
  ASSERT_EQ(exit_code(st), 0) << job.output();
  const auto r = report();
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["world_size"], 2);
  EXPECT_EQ(r["steps_run"], 400);
  EXPECT_TRUE(r["digests"]["equal"].get<bool>()) << r["digests"].dump();
  EXPECT_GE(r["loss"]["reduction"].get<double>(), 0.5) << r["loss"].dump();
  const auto& s = r["schedule"];
  EXPECT_GT(s["sent"].get<int>(), 0);
  EXPECT_EQ(s["completed"], s["sent"]);
  EXPECT_EQ(s["outcomes"], s["targets_expected"]);
  EXPECT_EQ(s["duplicate_outcomes"], 0);
  EXPECT_NE(job.output().find("step 300/400"), std::string::npos) << "progress lines are printed";
}

TEST_F(MpiJob, FourReplicasStayIdenticalUnderHundredsOfRandomCommands) {
  ChildProcess job(mpirun(4, {"--steps", "400", "--schedule", "random:300", "--progress-every", "200"}));
  const auto st = job.wait(110s);
  ASSERT_TRUE(st) << "the job did not finish: " << job.output();
  ASSERT_EQ(exit_code(st), 0) << job.output();
  const auto r = report();
  EXPECT_EQ(r["status"], "completed");
  EXPECT_TRUE(r["digests"]["equal"].get<bool>()) << r["digests"].dump();
  const auto& s = r["schedule"];
  EXPECT_EQ(s["sent"], 300);
  EXPECT_EQ(s["completed"], 300) << "every command reaches a terminal outcome";
  EXPECT_EQ(s["outcomes"], 1200) << "exactly one outcome per command and rank";
  EXPECT_EQ(s["duplicate_outcomes"], 0);
  const auto& c = r["commands"];
  EXPECT_EQ(c["received"], 300) << "rank 0 saw every command";
  EXPECT_EQ(c["answered"], 300);
  EXPECT_GT(c["applied"].get<int>(), 0);
}

TEST_F(MpiJob, AKilledRankEndsTheJobWithANonZeroStatusAndAReport) {
  ChildProcess job(mpirun(3, {"--steps", "1000000", "--heartbeat-ms", "200", "--progress-every", "100"}));
  const auto victim = job.read_line_starting("rank 2/3 pid", 60s);
  ASSERT_TRUE(victim) << job.output();
  ASSERT_TRUE(job.read_line_starting("step 200/", 60s)) << job.output();
  const pid_t pid = static_cast<pid_t>(std::stol(victim->substr(victim->find("pid ") + 4)));
  const auto killed = std::chrono::steady_clock::now();
  ::kill(pid, SIGKILL);
  const auto st = job.wait(30s);
  ASSERT_TRUE(st) << "the job hung after a rank was killed: " << job.output();
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 30s);
  EXPECT_FALSE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "a lost rank must end the job with a non-zero status";
  const auto r = report();
  const auto status = r.value("status", std::string());
  EXPECT_TRUE(status.find("lost") != std::string::npos || status.find("terminated") != std::string::npos) << status;
  EXPECT_GT(r["steps_run"].get<int>(), 200);
}

}  // namespace
}  // namespace esper
