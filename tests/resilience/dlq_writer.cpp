// A process that writes dead letters until it is killed (tests/resilience): the kill -9 mid-append
// test. Usage: dlq_writer DIR. Prints "wrote N" after every 500 letters; each letter's msg_id seq is
// its number (1, 2, ...) and its original bytes are 1-3 kB, so that writes are caught mid-record.
#include <cstdio>
#include <string>

#include "resilience/dead_letters.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: dlq_writer DIR\n");
    return 2;
  }
  esper::resilience::DeadLetterOptions o;
  o.dir = argv[1];
  o.segment_bytes = 1u << 20;
  o.sync_every = 64;
  esper::resilience::DeadLetterQueue q(o);
  for (std::uint64_t n = 1;; ++n) {
    esper::wire::DeadLetterT l;
    l.reason = esper::wire::DeadLetterReason::TIMEOUT;
    l.stage = esper::wire::DeadLetterStage::CLIENT;
    l.msg_id = std::make_unique<esper::wire::MsgId>(7, n);
    l.destination = "rank:" + std::to_string(n % 4);
    l.error = "no result in 5000 ms";
    l.original.assign(1000 + (n * 37) % 2000, static_cast<std::uint8_t>(n));
    q.add(l);
    if (n % 500 == 0) {
      std::printf("wrote %llu\n", static_cast<unsigned long long>(n));
      std::fflush(stdout);
    }
  }
}
