// What the fuzz targets share (tests/fuzz/README.md): the entry point's declaration, a check that
// aborts (libFuzzer reports an abort as a crash, the replay as a failed test), a sink that keeps
// every field read alive, and the split of one input into a sequence of frames for the targets
// that feed a stateful consumer.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <type_traits>

#include <flatbuffers/flatbuffers.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

// A broken invariant: print where and why, then abort.
#define FUZZ_CHECK(cond, what)                                                                            \
  do {                                                                                                    \
    if (!(cond)) {                                                                                        \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s (%s)\n", __FILE__, __LINE__, #cond, (what));    \
      std::abort();                                                                                       \
    }                                                                                                     \
  } while (false)

namespace esper::fuzz {

// Mixes every value read into a hash, so that the compiler cannot drop the reads; publish() stores
// it where the optimizer must assume it is used.
class Sink {
 public:
  void operator()(std::uint64_t v) noexcept { h_ = (h_ ^ v) * 0x100000001B3ULL; }
  void operator()(std::int64_t v) noexcept { (*this)(static_cast<std::uint64_t>(v)); }
  void operator()(std::uint32_t v) noexcept { (*this)(std::uint64_t{v}); }
  void operator()(std::int32_t v) noexcept { (*this)(static_cast<std::uint64_t>(static_cast<std::int64_t>(v))); }
  void operator()(bool v) noexcept { (*this)(std::uint64_t{v}); }
  void operator()(float v) noexcept { (*this)(std::uint64_t{std::bit_cast<std::uint32_t>(v)}); }
  void operator()(double v) noexcept { (*this)(std::bit_cast<std::uint64_t>(v)); }
  void operator()(std::string_view s) noexcept {
    (*this)(std::uint64_t{s.size()});
    for (const char c : s) (*this)(std::uint64_t{static_cast<unsigned char>(c)});
  }
  void operator()(const flatbuffers::String* s) noexcept {
    if (s == nullptr) return (*this)(std::uint64_t{0xffff});
    // The verifier promised the terminator: c_str() and size() must agree with it.
    (*this)(std::string_view(s->c_str(), s->size()));
    (*this)(std::uint64_t{static_cast<unsigned char>(s->c_str()[s->size()])});
  }
  template <class E>
    requires std::is_enum_v<E>
  void operator()(E e) noexcept {
    (*this)(static_cast<std::uint64_t>(e));
  }
  template <class T>
  void operator()(const flatbuffers::Vector<T>* v) noexcept {
    if (v == nullptr) return (*this)(std::uint64_t{0xfffe});
    (*this)(std::uint64_t{v->size()});
    for (const auto x : *v) (*this)(x);
  }

  [[nodiscard]] std::uint64_t value() const noexcept { return h_; }
  void publish() const noexcept;

 private:
  std::uint64_t h_ = 0xCBF29CE484222325ULL;
};

// Where Sink::publish() stores its hash: the compiler must assume something reads it.
inline volatile std::uint64_t g_published = 0;
inline void Sink::publish() const noexcept { g_published = h_; }

// Holds the asynchronous signals (libFuzzer's timer, SIGINT, ...) of the calling thread while it
// lives; they are delivered when it ends. For the targets that wait on ZeroMQ sockets, where a
// signal would make a wait fail with EINTR (a zmq::error_t): a pending one is delivered at the end
// of the input, so libFuzzer still sees a run that took too long. Threads started meanwhile
// inherit the mask.
class HoldSignals {
 public:
  HoldSignals() noexcept {
    sigset_t block;
    sigemptyset(&block);
    for (const int s : {SIGALRM, SIGVTALRM, SIGPROF, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD}) sigaddset(&block, s);
    pthread_sigmask(SIG_BLOCK, &block, &old_);
  }
  ~HoldSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  HoldSignals(const HoldSignals&) = delete;
  HoldSignals& operator=(const HoldSignals&) = delete;

 private:
  sigset_t old_;
};

// One input as a sequence of records: [control: u8][length: u16 little-endian][length bytes]. A
// last record shorter than its length takes what is left; a record without a whole header ends
// the sequence. `control` is the target's to interpret (a flag, a time step).
struct Frame {
  std::uint8_t control = 0;
  std::span<const std::uint8_t> bytes;
};

class Frames {
 public:
  explicit Frames(std::span<const std::uint8_t> input) noexcept : rest_(input) {}

  bool next(Frame& out) noexcept {
    if (rest_.size() < 3) return false;
    out.control = rest_[0];
    const std::size_t len = std::min<std::size_t>(rest_[1] | (std::size_t{rest_[2]} << 8), rest_.size() - 3);
    out.bytes = rest_.subspan(3, len);
    rest_ = rest_.subspan(3 + len);
    return true;
  }

 private:
  std::span<const std::uint8_t> rest_;
};

}  // namespace esper::fuzz
