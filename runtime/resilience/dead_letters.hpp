// The dead-letter queue (docs/dead-letters.md): where a message that reached no good end is kept —
// a command that timed out, exhausted its retries, lost its rank or was refused; a frame that did
// not decode or held a value out of range — with why, where, how often it was tried, and its
// original bytes, so that it can be inspected and sent again (`esper dlq`).
//
// Bounded by count and bytes: the oldest letters go first, and every eviction is counted. With a
// directory, letters are also persisted: append-only segment files `dlq-<n>.seg`, each record
// `[magic "EDLQ"][length u32][crc32 u32][DeadLetter FlatBuffer]` (little-endian, crc32 of the
// payload), fsync'ed in batches (every `sync_every` letters or `sync_interval`, and on flush() and
// destruction). A queue that opens a directory continues after what is there, in a new segment;
// a record torn by a crash mid-write (kill -9) is detected by its length or checksum when read,
// reported and skipped, never fatal. Segments rotate at `segment_bytes`; whole old segments are
// deleted to stay within the bounds. One process writes a directory at a time (it holds DIR/.lock);
// readers need no lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fbs/dead_letter_generated.h"

namespace esper::resilience {

struct DeadLetterOptions {
  std::filesystem::path dir;              // empty: memory only
  std::size_t max_letters = 100'000;
  std::size_t max_bytes = 256u << 20;     // of encoded letters (on disk: of segment files)
  std::size_t segment_bytes = 8u << 20;   // a segment is closed once it reaches this size
  std::size_t sync_every = 256;           // fsync after this many letters ...
  std::chrono::milliseconds sync_interval{200};  // ... or when the oldest unsynced letter is this old
  std::size_t keep_in_memory = 1024;      // the most recent letters, for recent()
};

struct DeadLetterCounts {
  std::uint64_t added = 0;
  std::uint64_t evicted = 0;       // dropped to stay within the bounds, oldest first
  std::uint64_t letters = 0;       // held now (on disk with a directory)
  std::uint64_t bytes = 0;         // held now
  std::uint64_t syncs = 0;
  std::uint64_t write_errors = 0;  // a letter that could not be written (disk full, ...): kept in memory only
};

// One decoded letter, with where it was read from.
struct StoredLetter {
  wire::DeadLetterT letter;
  std::filesystem::path segment;
  std::uint64_t offset = 0;
};

// What reading a directory found: every intact letter, oldest first, and each record skipped.
struct DeadLetterScan {
  std::vector<StoredLetter> letters;
  std::vector<std::string> problems;  // "dlq-3.seg at byte 4096: torn record (12 of 230 bytes)"
};

// Reads every segment of `dir` in order. Throws esper::Error when `dir` cannot be read at all.
DeadLetterScan read_dead_letters(const std::filesystem::path& dir);

// Encodes a letter as one record (header and payload), and decodes one from the front of `bytes`.
std::vector<std::uint8_t> encode_record(const wire::DeadLetterT& letter);
struct RecordRead {
  std::optional<wire::DeadLetterT> letter;  // nothing: `problem` says why
  std::size_t consumed = 0;                 // bytes of this record (0: none could be framed)
  std::string problem;
};
RecordRead decode_record(std::span<const std::uint8_t> bytes);

class DeadLetterQueue {
 public:
  // Opens (creating) the directory when one is given, counting what it already holds against the
  // bounds. Throws esper::Error when the directory cannot be created or read.
  explicit DeadLetterQueue(DeadLetterOptions options = {});
  ~DeadLetterQueue();
  DeadLetterQueue(const DeadLetterQueue&) = delete;
  DeadLetterQueue& operator=(const DeadLetterQueue&) = delete;

  // Keeps a letter (thread-safe). Never throws for an I/O error: it is counted (write_errors) and
  // logged, and the letter stays in memory.
  void add(const wire::DeadLetterT& letter);
  void flush();  // fsync what was written

  [[nodiscard]] DeadLetterCounts counts() const;
  [[nodiscard]] std::vector<wire::DeadLetterT> recent() const;  // oldest first
  [[nodiscard]] const DeadLetterOptions& options() const noexcept { return options_; }

 private:
  struct Segment {
    std::filesystem::path path;
    std::uint64_t bytes = 0;
    std::uint64_t letters = 0;
  };
  void open_segment();      // mu_ held
  void sync();              // mu_ held
  void enforce_bounds();    // mu_ held

  DeadLetterOptions options_;
  mutable std::mutex mu_;
  DeadLetterCounts counts_;
  std::deque<std::pair<wire::DeadLetterT, std::size_t>> memory_;  // with its encoded size
  std::uint64_t memory_bytes_ = 0;
  std::deque<Segment> segments_;  // oldest first; the back one is open for appending
  int fd_ = -1;       // the open segment
  int lock_fd_ = -1;  // DIR/.lock, held while the queue lives: one writer per directory
  std::uint64_t next_segment_ = 0;
  std::size_t unsynced_ = 0;
  std::chrono::steady_clock::time_point oldest_unsynced_{};
};

// Filters of `esper dlq list|show|replay|purge`.
struct DeadLetterFilter {
  std::optional<wire::DeadLetterReason> reason;
  std::optional<std::string> destination;  // equal to the letter's destination ("rank:3", ...)
  std::optional<std::uint64_t> since_ns, until_ns;  // on last_ns, inclusive
  std::optional<wire::MsgId> msg_id;
  [[nodiscard]] bool matches(const wire::DeadLetterT& letter) const;
};

// Removes the letters that match from `dir` by rewriting each segment that holds one (to a
// temporary name, then renamed over it); returns how many were removed. Torn records are dropped.
std::uint64_t purge_dead_letters(const std::filesystem::path& dir, const DeadLetterFilter& filter);

}  // namespace esper::resilience
