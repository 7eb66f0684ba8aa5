#include "resilience/dead_letters.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "core/error.hpp"
#include "core/little_endian.hpp"

namespace esper::resilience {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::array<std::uint8_t, 4> kMagic{'E', 'D', 'L', 'Q'};
constexpr std::size_t kHeader = 12;                 // magic, length, crc32
constexpr std::uint32_t kMaxRecord = 64u << 20;     // a longer length is not a record
constexpr const char* kLockName = ".lock";

std::uint32_t checksum(std::span<const std::uint8_t> bytes) {
  return static_cast<std::uint32_t>(::crc32_z(0L, bytes.data(), bytes.size()));
}

// dlq-00000042.seg -> 42; nothing for any other name.
std::optional<std::uint64_t> segment_number(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.size() != 16 || name.rfind("dlq-", 0) != 0 || name.substr(12) != ".seg") return std::nullopt;
  std::uint64_t n = 0;
  for (std::size_t i = 4; i < 12; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return n;
}
fs::path segment_path(const fs::path& dir, std::uint64_t n) {
  char name[32];
  std::snprintf(name, sizeof name, "dlq-%08llu.seg", static_cast<unsigned long long>(n));
  return dir / name;
}

// The segments of `dir`, oldest first.
std::vector<std::pair<std::uint64_t, fs::path>> segments_of(const fs::path& dir) {
  std::vector<std::pair<std::uint64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (const auto n = segment_number(e.path()); n && e.is_regular_file()) out.emplace_back(*n, e.path());
  }
  if (ec) throw Error("dead-letter directory " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error("cannot read " + p.string() + ": " + std::strerror(errno));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every record of one segment: the intact ones handed to `use`, the others described in `problems`.
template <class Use>
void scan_segment(const fs::path& path, std::vector<std::string>& problems, Use&& use) {
  const auto bytes = read_file(path);
  std::size_t at = 0;
  while (at < bytes.size()) {
    auto r = decode_record(std::span<const std::uint8_t>(bytes).subspan(at));
    if (!r.problem.empty()) {
      problems.push_back(path.filename().string() + " at byte " + std::to_string(at) + ": " + r.problem);
    }
    if (r.consumed == 0) break;  // nothing can be framed after this point
    if (r.letter) use(std::move(*r.letter), at, r.consumed);
    at += r.consumed;
  }
}

bool write_all(int fd, std::span<const std::uint8_t> bytes) {
  while (!bytes.empty()) {
    const auto n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

// An exclusive lock on DIR/.lock: one writer (a queue or a purge) at a time.
int lock_dir(const fs::path& dir, bool wait) {
  const auto path = dir / kLockName;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      throw Error("dead-letter directory " + dir.string() + " is in use by another process (it holds " + path.string() + ")");
    }
    throw Error("cannot lock " + path.string() + ": " + std::strerror(err));
  }
  return fd;
}

}  // namespace

std::vector<std::uint8_t> encode_record(const wire::DeadLetterT& letter) {
  flatbuffers::FlatBufferBuilder fbb(256);
  fbb.Finish(wire::DeadLetter::Pack(fbb, &letter), wire::DeadLetterIdentifier());
  const std::span<const std::uint8_t> payload(fbb.GetBufferPointer(), fbb.GetSize());
  std::vector<std::uint8_t> out(kHeader + payload.size());
  std::copy(kMagic.begin(), kMagic.end(), out.begin());
  le::put(out.data() + 4, payload.size(), 4);
  le::put(out.data() + 8, checksum(payload), 4);
  std::copy(payload.begin(), payload.end(), out.begin() + kHeader);
  return out;
}

RecordRead decode_record(std::span<const std::uint8_t> bytes) {
  RecordRead r;
  if (bytes.size() < kHeader) {
    r.problem = "torn record: " + std::to_string(bytes.size()) + " bytes, shorter than a record header";
    return r;
  }
  if (!std::equal(kMagic.begin(), kMagic.end(), bytes.begin())) {
    r.problem = "no record starts here (" + std::to_string(bytes.size()) + " bytes left unread)";
    return r;
  }
  const std::uint32_t length = static_cast<std::uint32_t>(le::get(bytes.data() + 4, 4));
  if (length > kMaxRecord) {
    r.problem = "record length " + std::to_string(length) + " is over the limit of " + std::to_string(kMaxRecord) +
                " (" + std::to_string(bytes.size()) + " bytes left unread)";
    return r;
  }
  if (bytes.size() - kHeader < length) {
    r.problem = "torn record: " + std::to_string(bytes.size() - kHeader) + " of " + std::to_string(length) +
                " bytes written";
    r.consumed = bytes.size();
    return r;
  }
  r.consumed = kHeader + length;
  const auto payload = bytes.subspan(kHeader, length);
  if (checksum(payload) != static_cast<std::uint32_t>(le::get(bytes.data() + 8, 4))) {
    r.problem = "checksum mismatch in a record of " + std::to_string(length) + " bytes";
    return r;
  }
  // The verifier and the accessors want the buffer aligned as it was built.
  std::vector<std::uint64_t> aligned((length + 7) / 8);
  std::memcpy(aligned.data(), payload.data(), length);
  const auto* data = reinterpret_cast<const std::uint8_t*>(aligned.data());
  flatbuffers::Verifier v(data, length, flatbuffers::Verifier::Options{});
  if (!wire::VerifyDeadLetterBuffer(v)) {
    r.problem = "a record of " + std::to_string(length) + " bytes whose checksum matches holds no valid dead letter";
    return r;
  }
  r.letter.emplace();
  wire::GetDeadLetter(data)->UnPackTo(&*r.letter);
  return r;
}

DeadLetterScan read_dead_letters(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw Error("dead-letter directory " + dir.string() + " does not exist");
  DeadLetterScan scan;
  for (const auto& [n, path] : segments_of(dir)) {
    scan_segment(path, scan.problems, [&](wire::DeadLetterT&& l, std::size_t at, std::size_t) {
      scan.letters.push_back(StoredLetter{std::move(l), path, at});
    });
  }
  return scan;
}

DeadLetterQueue::DeadLetterQueue(DeadLetterOptions options) : options_(std::move(options)) {
  if (options_.max_letters == 0 || options_.max_bytes == 0) {
    throw Error("dead-letter queue bounds must be positive (max_letters, max_bytes)");
  }
  if (options_.dir.empty()) return;
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  if (ec) throw Error("cannot create dead-letter directory " + options_.dir.string() + ": " + ec.message());
  lock_fd_ = lock_dir(options_.dir, false);
  std::vector<std::string> problems;
  for (const auto& [n, path] : segments_of(options_.dir)) {
    Segment s{path, fs::file_size(path), 0};
    scan_segment(path, problems, [&](wire::DeadLetterT&&, std::size_t, std::size_t) { ++s.letters; });
    counts_.letters += s.letters;
    counts_.bytes += s.bytes;
    segments_.push_back(std::move(s));
    next_segment_ = n + 1;
  }
  for (const auto& p : problems) spdlog::warn("dead letters in {}: {} (skipped)", options_.dir.string(), p);
  // A torn tail stays where it is: appends go to a new segment, so a reader skips it only once.
  enforce_bounds();
}

DeadLetterQueue::~DeadLetterQueue() {
  std::lock_guard lock(mu_);
  if (fd_ >= 0) {
    sync();
    ::close(fd_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void DeadLetterQueue::open_segment() {
  if (fd_ >= 0) {
    sync();
    ::close(fd_);
    fd_ = -1;
  }
  const auto path = segment_path(options_.dir, next_segment_++);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) throw Error("cannot create dead-letter segment " + path.string() + ": " + std::strerror(errno));
  segments_.push_back(Segment{path, 0, 0});
}

void DeadLetterQueue::sync() {
  if (fd_ < 0 || unsynced_ == 0) return;
  if (::fdatasync(fd_) == 0) {
    ++counts_.syncs;
  } else {
    ++counts_.write_errors;
    spdlog::error("dead letters: fdatasync of {} failed: {}", segments_.back().path.string(), std::strerror(errno));
  }
  unsynced_ = 0;
}

void DeadLetterQueue::enforce_bounds() {
  if (options_.dir.empty()) {
    while (!memory_.empty() && (memory_.size() > options_.max_letters || memory_bytes_ > options_.max_bytes)) {
      memory_bytes_ -= memory_.front().second;
      memory_.pop_front();
      ++counts_.evicted;
    }
    counts_.letters = memory_.size();
    counts_.bytes = memory_bytes_;
    return;
  }
  while (!segments_.empty() && (counts_.letters > options_.max_letters || counts_.bytes > options_.max_bytes)) {
    if (segments_.size() == 1 && fd_ >= 0) break;  // the open segment is never deleted under a writer
    const Segment s = segments_.front();
    segments_.pop_front();
    std::error_code ec;
    fs::remove(s.path, ec);
    if (ec) spdlog::error("dead letters: cannot delete {}: {}", s.path.string(), ec.message());
    counts_.letters -= s.letters;
    counts_.bytes -= s.bytes;
    counts_.evicted += s.letters;
  }
}

void DeadLetterQueue::add(const wire::DeadLetterT& letter) {
  const auto record = encode_record(letter);
  std::lock_guard lock(mu_);
  ++counts_.added;
  memory_.emplace_back(letter, record.size());
  memory_bytes_ += record.size();
  if (options_.dir.empty()) {
    enforce_bounds();
    return;
  }
  while (memory_.size() > options_.keep_in_memory) {
    memory_bytes_ -= memory_.front().second;
    memory_.pop_front();
  }
  // Segments close at segment_bytes or at an eighth of a bound, so that deleting the oldest one
  // keeps the queue within its bounds without dropping far more than needed.
  const std::uint64_t seg_bytes = std::max<std::uint64_t>(1, std::min<std::uint64_t>(options_.segment_bytes, options_.max_bytes / 8));
  const std::uint64_t seg_letters = std::max<std::uint64_t>(1, options_.max_letters / 8);
  try {
    if (fd_ < 0 || segments_.back().bytes + record.size() > seg_bytes || segments_.back().letters >= seg_letters) {
      open_segment();
    }
  } catch (const Error& e) {
    ++counts_.write_errors;
    spdlog::error("dead letters: {}", e.what());
    return;
  }
  if (!write_all(fd_, record)) {
    ++counts_.write_errors;
    spdlog::error("dead letters: writing {} failed: {} (the letter is kept in memory only)",
                  segments_.back().path.string(), std::strerror(errno));
    return;
  }
  auto& s = segments_.back();
  s.bytes += record.size();
  ++s.letters;
  ++counts_.letters;
  counts_.bytes += record.size();
  const auto now = Clock::now();
  if (unsynced_++ == 0) oldest_unsynced_ = now;
  if (unsynced_ >= options_.sync_every || now - oldest_unsynced_ >= options_.sync_interval) sync();
  enforce_bounds();
}

void DeadLetterQueue::flush() {
  std::lock_guard lock(mu_);
  sync();
}

DeadLetterCounts DeadLetterQueue::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

std::vector<wire::DeadLetterT> DeadLetterQueue::recent() const {
  std::lock_guard lock(mu_);
  std::vector<wire::DeadLetterT> out;
  out.reserve(memory_.size());
  for (const auto& [l, size] : memory_) out.push_back(l);
  return out;
}

bool DeadLetterFilter::matches(const wire::DeadLetterT& l) const {
  if (reason && l.reason != *reason) return false;
  if (destination && l.destination != *destination) return false;
  if (since_ns && l.last_ns < *since_ns) return false;
  if (until_ns && l.last_ns > *until_ns) return false;
  if (msg_id && !(l.msg_id && l.msg_id->sender() == msg_id->sender() && l.msg_id->seq() == msg_id->seq())) return false;
  return true;
}

std::uint64_t purge_dead_letters(const fs::path& dir, const DeadLetterFilter& filter) {
  if (!fs::is_directory(dir)) throw Error("dead-letter directory " + dir.string() + " does not exist");
  const int lock = lock_dir(dir, false);
  std::uint64_t removed = 0;
  try {
    for (const auto& [n, path] : segments_of(dir)) {
      std::vector<std::string> problems;
      std::vector<std::uint8_t> kept;
      std::uint64_t here = 0;
      const auto bytes = read_file(path);
      scan_segment(path, problems, [&](wire::DeadLetterT&& l, std::size_t at, std::size_t size) {
        if (filter.matches(l)) {
          ++here;
        } else {
          kept.insert(kept.end(), bytes.begin() + static_cast<std::ptrdiff_t>(at),
                      bytes.begin() + static_cast<std::ptrdiff_t>(at + size));
        }
      });
      if (here == 0 && problems.empty()) continue;
      removed += here;
      if (kept.empty()) {
        fs::remove(path);
        continue;
      }
      const auto tmp = fs::path(path).concat(".tmp");
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || !write_all(fd, kept) || ::fsync(fd) != 0) {
        const std::string why = std::strerror(errno);
        if (fd >= 0) ::close(fd);
        throw Error("cannot rewrite " + path.string() + ": " + why);
      }
      ::close(fd);
      fs::rename(tmp, path);
    }
  } catch (...) {
    ::close(lock);
    throw;
  }
  ::close(lock);
  return removed;
}

}  // namespace esper::resilience
