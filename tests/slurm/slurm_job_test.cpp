// slurm/esper.sbatch and slurm/esper-mpirun.sbatch under a real single-node Slurm: the test brings up
// a private cluster with scripts/slurm-up.sh (own munged, free ports, everything in a temp dir),
// submits 2- and 4-task jobs, polls squeue until they end, checks each job's report and exit state
// from the files the script writes (accounting is off, so no sacct), and always tears the cluster
// down with scripts/slurm-down.sh; slurm-up's watcher does it too should the test be killed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/process.hpp"

namespace esper {
namespace {

using esper::testing::ChildProcess;
using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Result {
  int code = -1;  // exit status; -1 when it did not finish in time
  std::string output;
};

// Runs a shell command line, stdout and stderr together, with a time limit.
Result sh(const std::string& command, std::chrono::milliseconds timeout) {
  ChildProcess p({"/bin/bash", "-c", command + " 2>&1"});
  const auto st = p.wait(timeout);
  Result r;
  r.output = p.output();
  if (st && WIFEXITED(*st)) r.code = WEXITSTATUS(*st);
  return r;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& s, std::size_t n = 3000) { return s.size() > n ? s.substr(s.size() - n) : s; }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class SlurmJob : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "run as root: slurmd and munged of the private cluster run as root";
    dir_ = fs::temp_directory_path() / ("esper-slurm-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "out");
    state_ = dir_ / "state";
    ::setenv("SLURM_CONF", (state_ / "slurm.conf").c_str(), 1);
    ::setenv("ESPER_BIN", ESPER_CLI, 1);
    ::setenv("ESPER_OUT", (dir_ / "out").c_str(), 1);
    ::setenv("ESPER_ARGS", "--progress-every 50", 1);
    const auto started = Clock::now();
    // 75 s: under a second with the packages present (scripts/setup.sh installs them), ~45 s with apt.
    const auto up = sh("bash " + quote(script("scripts/slurm-up.sh")) + " " + quote(state_.string()) + " --owner " +
                           std::to_string(::getpid()),
                       75s);
    ASSERT_EQ(up.code, 0) << "slurm-up.sh failed:\n" << up.output;
    std::printf("slurm-up: %.1f s\n%s", seconds_since(started), up.output.c_str());
  }

  void TearDown() override {
    if (dir_.empty()) return;
    if (HasFailure()) {
      for (const auto* log : {"log/slurmctld.log", "log/slurmd.log", "munge/munged.log"}) {
        if (fs::exists(state_ / log)) std::printf("--- %s:\n%s\n", log, tail(slurp(state_ / log)).c_str());
      }
    }
    const auto down = sh("bash " + quote(script("scripts/slurm-down.sh")) + " " + quote(state_.string()), 40s);
    EXPECT_EQ(down.code, 0) << "slurm-down.sh failed:\n" << down.output;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static std::string script(const std::string& rel) { return std::string(ESPER_SOURCE_DIR) + "/" + rel; }
  static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

  // sbatch with the given options and `esper run` arguments; returns the job id.
  std::string submit(const std::string& sbatch_script, const std::string& options, const std::string& esper_args) {
    const auto r = sh("cd " + quote(dir_.string()) + " && sbatch --parsable --output=" + quote((dir_ / "job-%j.log").string()) +
                          " " + options + " " + quote(script(sbatch_script)) + " " + esper_args,
                      20s);
    EXPECT_EQ(r.code, 0) << "sbatch failed: " << r.output;
    auto id = trim(r.output);
    id = id.substr(0, id.find(';'));
    EXPECT_FALSE(id.empty() || id.find_first_not_of("0123456789") != std::string::npos) << "no job id in: " << r.output;
    return id;
  }

  // Polls `squeue -h -t all -j ID -o %T` every 0.2 s until every job has left the pending/running
  // states (sbatch --wait reacts far slower here); returns each job's final state (COMPLETED,
  // FAILED, ...; GONE once Slurm forgot the job, after MinJobAge = 300 s), "" when it never ended.
  std::map<std::string, std::string> wait_all(const std::vector<std::string>& ids, std::chrono::seconds limit) {
    std::map<std::string, std::string> done;
    const auto until = Clock::now() + limit;
    while (done.size() < ids.size() && Clock::now() < until) {
      for (const auto& id : ids) {
        if (done.count(id)) continue;
        const auto r = sh("squeue -h -t all -j " + id + " -o %T", 10s);
        const auto state = trim(r.output);
        if (r.code == 0 && state != "PENDING" && state != "CONFIGURING" && state != "RUNNING" && state != "COMPLETING") {
          done[id] = state.empty() ? "GONE" : state;
        }
      }
      if (done.size() < ids.size()) std::this_thread::sleep_for(200ms);
    }
    for (const auto& id : ids) {
      if (!done.count(id)) {
        done[id] = "";
        std::printf("job %s did not end in time:\n%s\n", id.c_str(), sh("scontrol show job " + id, 10s).output.c_str());
        sh("scancel " + id, 10s);
      }
    }
    return done;
  }

  fs::path out_dir(const std::string& id) const { return dir_ / "out" / ("esper-" + id); }
  std::string job_log(const std::string& id) const { return slurp(dir_ / ("job-" + id + ".log")); }
  std::string diagnostics(const std::string& id) const {
    return "job log:\n" + tail(job_log(id)) + "\nstdout.log:\n" + tail(slurp(out_dir(id) / "stdout.log")) +
           "\nstderr.log:\n" + tail(slurp(out_dir(id) / "stderr.log"));
  }

  void expect_completed(const std::string& id, const std::string& state, int tasks) {
    SCOPED_TRACE("job " + id + " with " + std::to_string(tasks) + " tasks");
    ASSERT_EQ(state, "COMPLETED") << diagnostics(id);
    EXPECT_EQ(trim(slurp(out_dir(id) / "exit_code")), "0") << diagnostics(id);
    const auto path = out_dir(id) / "report.json";
    ASSERT_TRUE(fs::exists(path)) << "no report at " << path << "\n" << diagnostics(id);
    const auto r = json::parse(slurp(path));
    EXPECT_EQ(r["status"], "completed") << r.dump();
    EXPECT_EQ(r["world_size"], tasks);
    EXPECT_EQ(r["job_id"], id) << "the ranks see Slurm's job id";
    EXPECT_EQ(r["steps_run"], 200);
    EXPECT_TRUE(r["digests"]["equal"].get<bool>()) << r["digests"].dump();
    EXPECT_NE(slurp(out_dir(id) / "stdout.log").find("step 150/200"), std::string::npos)
        << "ESPER_ARGS (--progress-every 50) reaches esper run\n" << diagnostics(id);
  }

  fs::path dir_;
  fs::path state_;
};

TEST_F(SlurmJob, SrunJobsOfTwoAndFourTasksCompleteWithIdenticalReplicas) {
  const auto started = Clock::now();
  // Submitted together: the node advertises 4 CPUs, so Slurm runs the 2-task job (with the 1-task
  // one beside it) and then the 4-task one.
  const auto two = submit("slurm/esper.sbatch", "-n 2", "--steps 200");
  const auto four = submit("slurm/esper.sbatch", "-n 4", "--steps 200 --schedule random:40");
  const auto missing = submit("slurm/esper.sbatch", "-n 1 --export=ALL,ESPER_BIN=/nonexistent/esper", "--steps 200");
  // An error on one rank mid-training ends the whole step, not at the walltime.
  const auto failing = submit("slurm/esper.sbatch", "-n 2 --time=5", "--steps 1000000 --fail-at-step 30 --fail-rank 1");
  ASSERT_FALSE(HasFailure());
  const auto states = wait_all({two, four, missing, failing}, 150s);
  std::printf("four jobs ended after %.1f s\n", seconds_since(started));

  expect_completed(two, states.at(two), 2);
  expect_completed(four, states.at(four), 4);
  const auto four_report = json::parse(slurp(out_dir(four) / "report.json"), nullptr, false);
  EXPECT_EQ(four_report.value(json::json_pointer("/schedule/sent"), 0), 40) << "arguments after the script reach esper run";

  SCOPED_TRACE("job " + missing + " without a binary");
  EXPECT_EQ(states.at(missing), "FAILED");
  EXPECT_EQ(trim(slurp(out_dir(missing) / "exit_code")), "127");
  EXPECT_NE(job_log(missing).find("esper binary not found or not executable: /nonexistent/esper"), std::string::npos)
      << job_log(missing);
  EXPECT_FALSE(fs::exists(out_dir(missing) / "stdout.log")) << "no rank started";

  SCOPED_TRACE("job " + failing + " whose rank 1 fails at step 30");
  EXPECT_EQ(states.at(failing), "FAILED") << diagnostics(failing);
  EXPECT_NE(trim(slurp(out_dir(failing) / "exit_code")), "0");
  const auto failed = json::parse(slurp(out_dir(failing) / "report.json"), nullptr, false);
  EXPECT_EQ(failed.value("status", std::string()).rfind("failed: rank 1 on ", 0), 0u) << failed.dump();
  EXPECT_NE(slurp(out_dir(failing) / "stderr.log").find("injected failure at step 30"), std::string::npos)
      << diagnostics(failing);
}

TEST_F(SlurmJob, MpirunInsideTheAllocationCompletes) {
  const auto id = submit("slurm/esper-mpirun.sbatch", "-n 2", "--steps 200");
  ASSERT_FALSE(HasFailure());
  const auto states = wait_all({id}, 90s);
  expect_completed(id, states.at(id), 2);
}

}  // namespace
}  // namespace esper
