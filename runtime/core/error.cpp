#include "core/error.hpp"

#include <unistd.h>

#include <array>

namespace esper {
namespace {

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0) return "unknown-host";
  return buf.data();
}

std::string locate(const std::string& what, const std::source_location& where) {
  static const std::string host = host_name();
  std::string file = where.file_name();
  if (auto slash = file.find_last_of('/'); slash != std::string::npos) file.erase(0, slash + 1);
  return host + ":" + file + ":" + std::to_string(where.line()) + ": " + what;
}

}  // namespace

Error::Error(const std::string& what, std::source_location where) : std::runtime_error(locate(what, where)) {}

}  // namespace esper
