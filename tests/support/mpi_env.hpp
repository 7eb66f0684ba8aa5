// What a test that starts `mpirun` jobs needs: permission to run as root and to oversubscribe
// (4 ranks on 2 cores), and a private directory per test for reports and ipc endpoints.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace esper::testing {

// mpirun refuses root without the first two; the third lets more ranks than cores run.
inline void allow_mpirun() {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
}

// /tmp/esper-<what>-<pid>-<test name>, created now and removed with everything in it at the end.
class TestDir {
 public:
  explicit TestDir(const std::string& what)
      : path_(std::filesystem::temp_directory_path() /
              ("esper-" + what + "-" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    std::filesystem::create_directories(path_);
  }
  ~TestDir() { std::filesystem::remove_all(path_); }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

#if defined(ESPER_MPIEXEC) && defined(ESPER_CLI)
// A test of `esper run` jobs under mpirun: the command line, the job's report, its exit code.
// ESPER_MPIEXEC and ESPER_CLI are the test target's compile definitions.
class MpiJobTest : public ::testing::Test {
 protected:
  explicit MpiJobTest(std::string what) : dir_(what) {}
  void SetUp() override { allow_mpirun(); }

  // mpirun -np RANKS esper run --report <this test's report> PREFIX... ARGS...
  [[nodiscard]] std::vector<std::string> mpirun(int ranks, const std::vector<std::string>& prefix,
                                                const std::vector<std::string>& args) const {
    std::vector<std::string> argv{ESPER_MPIEXEC, "--oversubscribe", "-np", std::to_string(ranks), ESPER_CLI, "run",
                                  "--report", report_path()};
    argv.insert(argv.end(), prefix.begin(), prefix.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  [[nodiscard]] std::string report_path() const { return (dir_ / "report.json").string(); }
  [[nodiscard]] nlohmann::json report() const {
    std::ifstream in(report_path());
    EXPECT_TRUE(in.good()) << "no report at " << report_path();
    return in.good() ? nlohmann::json::parse(in) : nlohmann::json{};
  }
  static int exit_code(const std::optional<int>& st) { return st && WIFEXITED(*st) ? WEXITSTATUS(*st) : -1; }

  TestDir dir_;
};
#endif

}  // namespace esper::testing
