// Measurement 1: telemetry records/s from P publisher processes through the broker to one
// subscriber, against raw ZeroMQ PUB/SUB (no broker) carrying the same records in the same number
// of frames of the same payload size, both in the same run, interleaved.
//
// esper side: each publisher process is an esper::fabric::Node; it publishes steps of 100 seeds
// (56-byte SeedMetrics each); the node closes a batch at 64 KiB (1200 records, 67,200 B), encodes
// it (zstd + XOR-shuffle by default, or uncompressed) and publishes it. The publisher paces itself
// with the node's own counters (at most kInflight closed batches not yet handed to the socket) and,
// in the default "paced" runs, with an end-to-end credit window: the subscriber publishes how many
// batches it has received from each publisher in a shared-memory file, and a publisher keeps at
// most kCredit batches beyond that in flight. That is the application-level equivalent of the raw
// side's blocking back-pressure, so both measure the fastest lossless rate. The "unpaced" runs
// leave it out: the broker then drops (and counts) whatever the subscriber cannot take. The broker runs as a
// thread of this process (as it does inside rank 0), the Subscriber on this process's main thread.
// raw side: each publisher process has an XPUB (ZMQ_XPUB_NODROP, blocking send = flow control)
// connected to one SUB bound by this process; a message is [topic][16-byte meta][67,200 B records].
// Accounting on both sides: records sent (publishers) vs received (subscriber); per publisher the
// batch sequence gives dup (seen twice) and reord (below the highest seen); drops counted by the
// node and the broker are reported next to the loss, so a silent loss shows as lost > counted.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "bench/telemetry_generator.hpp"
#include "core/error.hpp"
#include "fabric/broker.hpp"
#include "fabric/node.hpp"
#include "fabric/subscriber.hpp"
#include "measurements.hpp"

namespace esper::bench {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kSeeds = 100;                     // records per publish() call: one step
constexpr std::size_t kBatchRecords = 1200;             // first multiple of 100 with >= 64 KiB
constexpr std::size_t kRecordBytes = sizeof(wire::SeedMetrics);
constexpr std::uint64_t kInflight = 8;                  // closed batches not yet sent, per publisher
constexpr std::uint64_t kCredit = 64;                   // batches beyond the subscriber's count, per publisher
constexpr std::size_t kMaxPublishers = 64;

// The credit file: one counter per publisher (batches the subscriber has received), written by
// this process, read by the publishers. Lives in the TempDir; mapped shared.
class Credits {
 public:
  Credits(const std::string& path, bool create) {
    fd_ = ::open(path.c_str(), create ? O_RDWR | O_CREAT | O_TRUNC : O_RDWR, 0600);
    if (fd_ < 0 || (create && ::ftruncate(fd_, kBytes) != 0)) throw Error("cannot open credit file " + path);
    void* p = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw Error("cannot map credit file " + path);
    slots_ = static_cast<std::uint64_t*>(p);
  }
  ~Credits() {
    ::munmap(slots_, kBytes);
    ::close(fd_);
  }
  Credits(const Credits&) = delete;
  Credits& operator=(const Credits&) = delete;
  void set(std::size_t i, std::uint64_t v) { std::atomic_ref<std::uint64_t>(slots_[i]).store(v, std::memory_order_release); }
  [[nodiscard]] std::uint64_t get(std::size_t i) const {
    return std::atomic_ref<std::uint64_t>(slots_[i]).load(std::memory_order_acquire);
  }

 private:
  static constexpr std::size_t kBytes = kMaxPublishers * sizeof(std::uint64_t);
  int fd_ = -1;
  std::uint64_t* slots_ = nullptr;
};
static_assert(kBatchRecords * kRecordBytes >= 64 * 1024 && (kBatchRecords - kSeeds) * kRecordBytes < 64 * 1024);

struct PerPublisher {
  std::uint64_t max_seq = 0;
  std::vector<bool> seen;
};

// Sequence accounting per publisher: dup and reord.
struct Tracker {
  std::vector<PerPublisher> pubs;
  std::uint64_t dup = 0, reord = 0, wrong = 0;
  explicit Tracker(int n, std::uint64_t batches) : pubs(static_cast<std::size_t>(n)) {
    for (auto& p : pubs) p.seen.assign(batches + 2, false);
  }
  bool add(int rank, std::uint64_t seq) {
    if (rank < 0 || static_cast<std::size_t>(rank) >= pubs.size()) {
      ++wrong;
      return false;
    }
    auto& p = pubs[static_cast<std::size_t>(rank)];
    if (seq == 0 || seq >= p.seen.size()) {
      ++wrong;
      return false;
    }
    if (p.seen[seq]) {
      ++dup;
      return false;
    }
    p.seen[seq] = true;
    if (seq < p.max_seq) ++reord;
    p.max_seq = std::max(p.max_seq, seq);
    return true;
  }
};

struct TelResult {
  double secs = 0;
  std::uint64_t sent = 0, received = 0, counted_drops = 0, broker_drops = 0, wire_bytes = 0;
  std::uint64_t dup = 0, reord = 0, wrong = 0;
  double cpu_parent = 0, cpu_children = 0;
  [[nodiscard]] double rate() const { return secs > 0 ? static_cast<double>(received) / secs : 0; }
  [[nodiscard]] std::uint64_t lost() const { return sent > received ? sent - received : 0; }
};

// `pump` keeps this process's socket processing its commands meanwhile: a ZeroMQ socket attaches a
// new connection (and sends its subscriptions on it) only when its owner calls into it.
std::vector<std::unique_ptr<Child>> start_publishers(const std::string& kind, const std::string& endpoint, int n,
                                                     std::uint64_t per, bool compress, const std::string& credit_file,
                                                     const std::function<void()>& pump = [] {}) {
  std::vector<std::unique_ptr<Child>> pubs;
  for (int r = 0; r < n; ++r) {
    pubs.push_back(std::make_unique<Child>(std::vector<std::string>{
        "pub", "--kind", kind, "--endpoint", endpoint, "--rank", std::to_string(r), "--records", std::to_string(per),
        "--compress", compress ? "1" : "0", "--credit-file", credit_file.empty() ? "-" : credit_file}));
  }
  const auto until = Clock::now() + 20s;
  for (auto& p : pubs) {
    while (!p->read_line_starting("ready", 5ms)) {
      pump();
      if (Clock::now() > until) throw Error("a " + kind + " publisher process did not start");
    }
  }
  return pubs;
}

// After the last record or when everything stalled: collects the publishers' figures and stops them.
void finish_publishers(std::vector<std::unique_ptr<Child>>& pubs, TelResult& r) {
  for (auto& p : pubs) {
    const auto done = p->read_line_starting("done", 10s);
    if (done) {
      r.sent += static_cast<std::uint64_t>(field(*done, "sent"));
      r.counted_drops += static_cast<std::uint64_t>(field(*done, "dropped"));
    }
  }
  for (auto& p : pubs) {
    p->finish(5s);
    r.cpu_children += p->cpu_seconds();
  }
}

bool all_done(std::vector<std::unique_ptr<Child>>& pubs) {
  return std::all_of(pubs.begin(), pubs.end(), [](auto& p) { return p->read_line_starting("done", 0ms).has_value(); });
}

TelResult run_esper(const std::string& transport, int n, std::uint64_t total, bool compress, bool paced,
                    const TempDir& dir, int serial) {
  zmq::context_t ctx;
  fabric::BrokerOptions bo;
  bo.bind = base_endpoint(transport, dir, "tel" + std::to_string(serial));
  fabric::Broker broker(ctx, bo);
  fabric::SubscriberOptions so;
  so.topics = {std::string(fabric::kTelemetryPrefix)};
  fabric::Subscriber sub(ctx, broker.endpoints().cmd, so);
  if (!sub.wait_ready(5s)) throw Error("the subscriber did not become ready");
  const std::uint64_t per = total / static_cast<std::uint64_t>(n);
  const std::string credit_file = dir.path() + "/credits" + std::to_string(serial);
  Credits credits(credit_file, true);
  auto pubs = start_publishers("esper", broker.endpoints().cmd, n, per, compress, paced ? credit_file : "");

  TelResult r;
  Tracker track(n, per / kBatchRecords);
  const std::uint64_t expected = per * static_cast<std::uint64_t>(n);
  const auto cpu0 = cpu_seconds_self();
  const auto t0 = Clock::now();
  auto last = t0;
  for (auto& p : pubs) p->send_line("go");
  const auto deadline = t0 + 60s;
  while (r.received < expected && Clock::now() < deadline) {
    auto d = sub.next(100ms);
    if (!d) {
      if (Clock::now() - last > 1s && all_done(pubs)) break;  // nothing more is coming
      continue;
    }
    const auto* b = d->message ? d->message->body<wire::TelemetryBatch>() : nullptr;
    if (b == nullptr) continue;
    const auto records = b->seeds() ? b->seeds()->size() : 0u;
    if (records != d->meta.records || (records > 0 && b->seeds()->Get(0)->seed() >= kSeeds)) ++track.wrong;
    if (track.add(b->rank(), d->meta.sequence)) {
      r.received += records;
      credits.set(static_cast<std::size_t>(b->rank()), track.pubs[static_cast<std::size_t>(b->rank())].max_seq);
    }
    r.wire_bytes += d->frame->size();
    last = Clock::now();
  }
  r.secs = std::chrono::duration<double>(last - t0).count();
  r.cpu_parent = cpu_seconds_self() - cpu0;
  if (std::getenv("FABRIC_BENCH_DEBUG") != nullptr) {
    for (std::size_t p = 0; p < track.pubs.size(); ++p) {
      for (std::size_t q = 1; q < track.pubs[p].seen.size() - 1; ++q) {
        if (!track.pubs[p].seen[q]) std::fprintf(stderr, "    missing: publisher %zu batch %zu of %zu\n", p, q, track.pubs[p].seen.size() - 2);
      }
    }
  }
  finish_publishers(pubs, r);
  if (r.sent != expected) {  // a publisher that did not run to the end is a failure, not a smaller run
    ++track.wrong;
    r.sent = expected;
  }
  r.broker_drops = broker.counters().telemetry_records_dropped;
  r.counted_drops += r.broker_drops;
  r.dup = track.dup;
  r.reord = track.reord;
  r.wrong = track.wrong;
  return r;
}

TelResult run_raw(const std::string& transport, int n, std::uint64_t total, const TempDir& dir, int serial) {
  zmq::context_t ctx;
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvhwm, 1000);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, std::string(fabric::kTelemetryPrefix));
  sub.bind(base_endpoint(transport, dir, "raw-tel" + std::to_string(serial)));
  const std::string endpoint = sub.get(zmq::sockopt::last_endpoint);
  const std::uint64_t per = total / static_cast<std::uint64_t>(n);
  auto pubs = start_publishers("raw", endpoint, n, per, false, "", [&] { (void)sub.get(zmq::sockopt::events); });

  TelResult r;
  Tracker track(n, per / kBatchRecords);
  const std::uint64_t expected = per * static_cast<std::uint64_t>(n);
  zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
  const auto cpu0 = cpu_seconds_self();
  const auto t0 = Clock::now();
  auto last = t0;
  for (auto& p : pubs) p->send_line("go");
  const auto deadline = t0 + 60s;
  while (r.received < expected && Clock::now() < deadline) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(sub, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      if (Clock::now() - last > 1s && all_done(pubs)) break;
      zmq::poll(&item, 1, 100ms);
      continue;
    }
    fabric::Meta meta;
    if (parts.size() != 3 || !fabric::decode_meta(parts[1], meta) || parts[2].size() != meta.records * kRecordBytes) {
      ++track.wrong;
      continue;
    }
    if (track.add(static_cast<int>(meta.flags), meta.sequence)) r.received += meta.records;
    r.wire_bytes += parts[2].size();
    last = Clock::now();
  }
  r.secs = std::chrono::duration<double>(last - t0).count();
  r.cpu_parent = cpu_seconds_self() - cpu0;
  finish_publishers(pubs, r);
  if (r.sent != expected) {
    ++track.wrong;
    r.sent = expected;
  }
  r.dup = track.dup;
  r.reord = track.reord;
  r.wrong = track.wrong;
  return r;
}

// The median run by rate; losses are summed over all runs (one loss in any run is reported).
struct Series {
  std::vector<TelResult> runs;
  [[nodiscard]] TelResult median() const {
    auto v = runs;
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.rate() < b.rate(); });
    return v[v.size() / 2];
  }
  [[nodiscard]] std::uint64_t sum(std::uint64_t (*f)(const TelResult&)) const {
    std::uint64_t s = 0;
    for (const auto& r : runs) s += f(r);
    return s;
  }
};

Row make_row(const std::string& what, const std::string& transport, int n, const Series& esper, const Series& raw) {
  const auto e = esper.median();
  const auto b = raw.median();
  Row row;
  row.group = "telemetry";
  row.what = what;
  row.transport = transport;
  row.procs = n;
  row.unit = "rec/s";
  row.value = e.rate();
  row.baseline = "raw PUB/SUB 67KB";
  row.base_value = b.rate();
  row.ratio = b.rate() > 0 ? e.rate() / b.rate() : 0;  // same records, same payload bytes: = bytes/s ratio
  row.target = ">=0.5x,>=4M/s,0 lost";
  row.lost = esper.sum([](const TelResult& r) { return r.lost(); });
  row.dup = esper.sum([](const TelResult& r) { return r.dup; });
  row.reord = esper.sum([](const TelResult& r) { return r.reord; });
  row.wrong = esper.sum([](const TelResult& r) { return r.wrong; });
  row.met = row.ratio >= 0.5 && row.value >= 4e6 && row.lost + row.dup + row.wrong == 0 ? 1 : 0;
  const double mb = 1e6;
  row.extra = {{"runs", static_cast<double>(esper.runs.size())},
               {"records_per_run", static_cast<double>(e.sent)},
               {"payload_MBps", e.rate() * kRecordBytes / mb},
               {"wire_MBps", e.secs > 0 ? static_cast<double>(e.wire_bytes) / e.secs / mb : 0},
               {"wire_bytes_per_record", e.received ? static_cast<double>(e.wire_bytes) / static_cast<double>(e.received) : 0},
               {"raw_MBps", b.rate() * kRecordBytes / mb},
               {"seconds", e.secs},
               {"raw_seconds", b.secs},
               {"counted_drops", static_cast<double>(esper.sum([](const TelResult& r) { return r.counted_drops; }))},
               {"broker_drops", static_cast<double>(esper.sum([](const TelResult& r) { return r.broker_drops; }))},
               {"raw_lost", static_cast<double>(raw.sum([](const TelResult& r) { return r.lost(); }))},
               {"raw_dup_reord_wrong", static_cast<double>(raw.sum([](const TelResult& r) { return r.dup + r.reord + r.wrong; }))},
               {"cpu_s_per_Mrec_publishers", e.received ? e.cpu_children / (static_cast<double>(e.received) / 1e6) : 0},
               {"cpu_s_per_Mrec_broker_and_subscriber", e.received ? e.cpu_parent / (static_cast<double>(e.received) / 1e6) : 0},
               {"raw_cpu_s_per_Mrec_publishers", b.received ? b.cpu_children / (static_cast<double>(b.received) / 1e6) : 0},
               {"raw_cpu_s_per_Mrec_subscriber", b.received ? b.cpu_parent / (static_cast<double>(b.received) / 1e6) : 0}};
  return row;
}

}  // namespace

std::vector<Row> run_telemetry(const Config& cfg) {
  TempDir dir;
  const std::vector<int> procs{1, 4};
  struct Key {
    std::string transport;
    int n;
  };
  std::vector<Key> keys;
  for (const auto& t : cfg.transports) {
    if (t == "inproc") continue;  // publishers are processes
    for (const int n : procs) keys.push_back({t, n});
  }
  std::vector<Series> raw(keys.size()), zstd(keys.size()), plain(keys.size()), unpaced(keys.size());
  // Records per run: a whole number of batches per publisher.
  const std::uint64_t unit = kBatchRecords * 4;
  const std::uint64_t total = std::max<std::uint64_t>(unit, cfg.telemetry_records / unit * unit);
  int serial = 0;
  for (int rep = 0; rep < cfg.reps; ++rep) {
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const auto& [t, n] = keys[k];
      raw[k].runs.push_back(run_raw(t, n, total, dir, ++serial));
      zstd[k].runs.push_back(run_esper(t, n, total, true, true, dir, ++serial));
      plain[k].runs.push_back(run_esper(t, n, total, false, true, dir, ++serial));
      std::fprintf(stderr, "  telemetry rep %d %s np=%d: raw %.2fM/s, zstd %.2fM/s, plain %.2fM/s\n", rep + 1,
                   t.c_str(), n, raw[k].runs.back().rate() / 1e6, zstd[k].runs.back().rate() / 1e6,
                   plain[k].runs.back().rate() / 1e6);
    }
  }
  // Overload: the same without the end-to-end window, once (the broker drops what the subscriber
  // cannot take; every drop must be counted: lost == counted_drops).
  for (std::size_t k = 0; k < keys.size(); ++k) {
    unpaced[k].runs.push_back(run_esper(keys[k].transport, keys[k].n, total, true, false, dir, ++serial));
    std::fprintf(stderr, "  telemetry unpaced %s np=%d: zstd %.2fM/s received, %llu lost, %llu counted\n",
                 keys[k].transport.c_str(), keys[k].n, unpaced[k].runs.back().rate() / 1e6,
                 static_cast<unsigned long long>(unpaced[k].runs.back().lost()),
                 static_cast<unsigned long long>(unpaced[k].runs.back().counted_drops));
  }
  std::vector<Row> rows;
  for (std::size_t k = 0; k < keys.size(); ++k) {
    // NodeOptions::compression = Auto (the default) compresses only when the link leaves the host;
    // every link here stays on it (tcp over 127.0.0.1), so the uncompressed row is the default one.
    rows.push_back(make_row("records/s zstd", keys[k].transport, keys[k].n, zstd[k], raw[k]));
    rows.push_back(make_row("records/s uncompressed (default)", keys[k].transport, keys[k].n, plain[k], raw[k]));
    auto overload = make_row("records/s zstd unpaced", keys[k].transport, keys[k].n, unpaced[k], raw[k]);
    overload.target = "lost == counted";
    overload.loss_expected = true;
    overload.met = overload.lost == static_cast<std::uint64_t>(overload.extra["counted_drops"]) ? 1 : 0;
    rows.push_back(overload);
  }
  return rows;
}

// --- the publisher process

int child_publisher(const Args& a) {
  ParentLink parent;
  const std::string kind = a.str("--kind", "esper");
  const std::string endpoint = a.str("--endpoint");
  const auto rank = static_cast<std::int32_t>(a.num("--rank", 0));
  const auto records = static_cast<std::uint64_t>(a.num("--records", 120'000)) / kBatchRecords * kBatchRecords;
  const bool compress = a.num("--compress", 1) != 0;
  const auto limit = std::chrono::seconds(a.num("--seconds", 40));
  const std::string credit_file = a.str("--credit-file", "-");
  std::unique_ptr<Credits> credits;
  if (credit_file != "-") credits = std::make_unique<Credits>(credit_file, false);

  // A pool of distinct steps (4 batches' worth), reused cyclically: generating records is the
  // trainer's cost, not the fabric's.
  TelemetryGenerator gen(kSeeds, static_cast<std::uint64_t>(rank) + 1);
  std::vector<std::vector<wire::SeedMetrics>> pool;
  for (std::size_t i = 0; i < 4 * kBatchRecords / kSeeds; ++i) pool.push_back(gen.batch(kSeeds));

  zmq::context_t ctx;
  std::uint64_t sent = 0, published = 0, dropped = 0;
  double secs = 0;
  if (kind == "esper") {
    fabric::NodeOptions o;
    o.rank = rank;
    o.layers = {static_cast<std::uint32_t>(rank)};
    o.compression = compress ? fabric::Compression::On : fabric::Compression::Off;
    fabric::Node node(ctx, endpoint, o);
    parent.say("ready");
    if (!parent.wait_go(30s)) return 1;
    const auto t0 = Clock::now();
    const auto layer = static_cast<std::uint32_t>(rank);
    std::uint64_t closed = 0;
    std::size_t i = 0;
    const auto handed = [&] {
      const auto c = node.counters();
      return c.telemetry_batches + c.telemetry_batches_dropped;
    };
    while (sent < records && !parent.stop() && Clock::now() - t0 < limit) {
      node.publish(layer, pool[i++ % pool.size()]);
      sent += kSeeds;
      if (sent % kBatchRecords != 0) continue;
      ++closed;
      // Sleeps, not spins: on 2 cores a spinning publisher takes the CPU the broker needs.
      while (closed - handed() >= kInflight && Clock::now() - t0 < limit) std::this_thread::sleep_for(50us);
      while (credits && closed - credits->get(static_cast<std::size_t>(rank)) >= kCredit && !parent.stop() &&
             Clock::now() - t0 < limit) {
        std::this_thread::sleep_for(100us);
      }
    }
    node.flush();
    while (handed() < closed && Clock::now() - t0 < limit) std::this_thread::sleep_for(50us);
    secs = seconds_since(t0);
    const auto c = node.counters();
    published = c.telemetry_records;
    dropped = c.telemetry_records_dropped;
    parent.say("done sent=" + std::to_string(sent) + " published=" + std::to_string(published) +
               " dropped=" + std::to_string(dropped) + " secs=" + std::to_string(secs));
    parent.wait_stop(120s);  // keep the sockets open until the parent has everything
    node.stop();
    return 0;
  }

  zmq::socket_t pub(ctx, zmq::socket_type::xpub);
  pub.set(zmq::sockopt::sndhwm, 1000);
  pub.set(zmq::sockopt::xpub_nodrop, 1);
  pub.set(zmq::sockopt::sndtimeo, 10'000);
  pub.set(zmq::sockopt::linger, 0);
  pub.connect(endpoint);
  zmq::pollitem_t item{pub.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, 10s) == 0) return 1;  // the subscription did not arrive
  zmq::message_t subscription;
  (void)pub.recv(subscription);
  std::vector<std::vector<std::uint8_t>> frames;
  for (std::size_t b = 0; b < 4; ++b) {
    std::vector<std::uint8_t> f;
    for (std::size_t s = 0; s < kBatchRecords / kSeeds; ++s) {
      const auto& step = pool[b * kBatchRecords / kSeeds + s];
      const auto* p = reinterpret_cast<const std::uint8_t*>(step.data());
      f.insert(f.end(), p, p + step.size() * kRecordBytes);
    }
    frames.push_back(std::move(f));
  }
  parent.say("ready");
  if (!parent.wait_go(30s)) return 1;
  const auto t0 = Clock::now();
  const std::string topic = fabric::telemetry_topic(static_cast<std::uint32_t>(rank));
  std::uint64_t seq = 0;
  while (sent < records && !parent.stop() && Clock::now() - t0 < limit) {
    const auto& f = frames[seq % frames.size()];
    ++seq;
    if (!pub.send(zmq::buffer(topic), zmq::send_flags::sndmore)) {
      dropped += kBatchRecords;
      sent += kBatchRecords;
      continue;
    }
    pub.send(fabric::encode_meta(fabric::Meta{seq, static_cast<std::uint32_t>(kBatchRecords), static_cast<std::uint16_t>(rank)}),
             zmq::send_flags::sndmore);
    pub.send(zmq::message_t(f.data(), f.size()), zmq::send_flags::none);
    sent += kBatchRecords;
    published += kBatchRecords;
  }
  secs = seconds_since(t0);
  parent.say("done sent=" + std::to_string(sent) + " published=" + std::to_string(published) +
             " dropped=" + std::to_string(dropped) + " secs=" + std::to_string(secs));
  parent.wait_stop(120s);
  return 0;
}

}  // namespace esper::bench
