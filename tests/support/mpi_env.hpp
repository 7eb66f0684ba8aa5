// What a test that starts `mpirun` jobs needs: permission to run as root and to oversubscribe
// (4 ranks on 2 cores), and a private directory per test for reports and ipc endpoints.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

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

}  // namespace esper::testing
