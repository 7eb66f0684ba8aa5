// The main() of a fuzz target built without libFuzzer (g++, the asan preset): runs every input of
// the directories (or files) it is given through LLVMFuzzerTestOneInput once, in name order. A
// broken invariant aborts, which fails the CTest.
//
//   fuzz_envelope [--known-crashes=FILE] tests/fuzz/corpus/envelope [more dirs or files]
//
// --known-crashes names a list of corpus files, one "<target>/<file>" per line ('#' starts a
// comment), that reproduce a crash in code not yet fixed: they are skipped and listed, so that the
// reproducer can be committed before its fix (tests/fuzz/known_crashes.txt).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "fuzz_support.hpp"

namespace fs = std::filesystem;

namespace {

std::set<std::string> read_known(const std::string& path) {
  std::set<std::string> known;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    const auto last = line.find_last_not_of(" \t\r");
    known.insert(line.substr(first, last - first + 1));
  }
  return known;
}

std::vector<std::uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  std::set<std::string> known;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.starts_with("--known-crashes=")) {
      known = read_known(arg.substr(16));
      continue;
    }
    if (fs::is_directory(arg)) {
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(arg)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(arg)) {
      inputs.emplace_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s is neither a directory nor a file\n", arg.c_str());
      return 2;
    }
  }

  std::size_t ran = 0, skipped = 0, bytes = 0;
  for (const auto& path : inputs) {
    const std::string key = path.parent_path().filename().string() + "/" + path.filename().string();
    if (known.contains(key)) {
      std::printf("replay: skipped %s: a known open crash (see the known-crashes list)\n", path.c_str());
      ++skipped;
      continue;
    }
    // An exact-size heap copy, so that AddressSanitizer sees a read past the input's end.
    const std::vector<std::uint8_t> data = read_file(path);
    auto* copy = new std::uint8_t[std::max<std::size_t>(data.size(), 1)];
    std::copy(data.begin(), data.end(), copy);
    LLVMFuzzerTestOneInput(copy, data.size());
    delete[] copy;
    ++ran;
    bytes += data.size();
  }
  std::printf("replay: %zu inputs (%zu bytes) ran, %zu skipped\n", ran, bytes, skipped);
  if (ran == 0) {
    std::fprintf(stderr, "replay: no input ran: an empty or missing corpus tests nothing\n");
    return 1;
  }
  return 0;
}
