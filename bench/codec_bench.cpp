// Codec benchmarks: encode and verify+decode per message kind and per telemetry batch, and zstd
// ratio and speed on realistic telemetry. Metrics are defined in docs/performance.md.
// Counters: s_per_record (encode/decode seconds per telemetry record), ratio (body bytes / frame
// bytes), MB/s of raw body bytes, and wrong (round trips that did not reproduce the input: must be 0).
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>

#include "bench/telemetry_generator.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"

namespace esper::wire {
namespace {

const SourceInfo kSource{0, Role::RANK, "bench", "localhost", 1};
const EncodeOptions kNoCompression{.compression = {.enabled = false}};

Header header(std::uint64_t seq) {
  Header h;
  h.msg_id = MsgId(1, seq);
  h.sequence = seq;
  h.timestamp_ns = seq * 1000;
  return h;
}

// s_per_record is shown with SI prefixes: "708p" is 0.708 ns per record.
void set_per_record(benchmark::State& state, std::size_t records) {
  state.counters["s_per_record"] = benchmark::Counter(static_cast<double>(state.iterations() * records),
                                                      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * records));
}

// Decodes `frame` and compares its records with `expected`; returns 1 when they differ.
int wrong_records(Decoder& dec, std::span<const std::uint8_t> frame, const std::vector<SeedMetrics>& expected,
                  int mantissa_bits = 23) {
  auto msg = dec.decode(frame);
  if (!msg) return 1;
  const auto* seeds = msg->body<TelemetryBatch>()->seeds();
  if ((seeds ? seeds->size() : 0) != expected.size()) return 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto* r = seeds->Get(static_cast<flatbuffers::uoffset_t>(i));
    if (r->step() != expected[i].step() || r->seed() != expected[i].seed()) return 1;
    if (mantissa_bits == 23 && std::memcmp(r, &expected[i], sizeof(SeedMetrics)) != 0) return 1;
  }
  return 0;
}

// --- telemetry batches of 1, 100, 1000 records

void BM_TelemetryEncode(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  bench::TelemetryGenerator gen(100);
  const auto recs = gen.batch(n);
  Encoder enc(kSource, kNoCompression);
  Decoder dec;
  std::uint64_t seq = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    const auto f = enc.encode_telemetry(header(++seq), TelemetryBatchInfo{1, 0, 0, 0, 0}, recs);
    benchmark::DoNotOptimize(f.data());
    bytes = f.size();
  }
  set_per_record(state, n);
  state.counters["frame_bytes"] = static_cast<double>(bytes);
  state.counters["wrong"] = wrong_records(dec, enc.encode_telemetry(header(0), {}, recs), recs);
}
BENCHMARK(BM_TelemetryEncode)->Arg(1)->Arg(100)->Arg(1000);

void BM_TelemetryDecode(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  bench::TelemetryGenerator gen(100);
  const auto recs = gen.batch(n);
  Encoder enc(kSource, kNoCompression);
  const auto f = enc.encode_telemetry(header(1), TelemetryBatchInfo{1, 0, 0, 0, 0}, recs);
  const std::vector<std::uint8_t> frame(f.begin(), f.end());
  Decoder dec;
  for (auto _ : state) {
    auto msg = dec.decode(frame);
    benchmark::DoNotOptimize(msg->body<TelemetryBatch>()->seeds()->Get(0));
  }
  set_per_record(state, n);
  state.counters["wrong"] = wrong_records(dec, frame, recs);
}
BENCHMARK(BM_TelemetryDecode)->Arg(1)->Arg(100)->Arg(1000);

// The same records through the object API (TelemetryBatchT): what a caller pays for convenience.
void BM_TelemetryEncodeObjectApi(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  bench::TelemetryGenerator gen(100);
  TelemetryBatchT batch;
  batch.seeds = gen.batch(n);
  Encoder enc(kSource, kNoCompression);
  std::uint64_t seq = 0;
  for (auto _ : state) benchmark::DoNotOptimize(enc.encode(header(++seq), batch).data());
  set_per_record(state, n);
}
BENCHMARK(BM_TelemetryEncodeObjectApi)->Arg(1000);

// --- zstd on realistic telemetry: mode 0 plain, 1 xor-shuffle (lossless), 2..5 xor-shuffle with
// the float metrics rounded to 16, 14, 12, 10 mantissa bits (lossy); levels 1 and 3. Batches of 1000 records (56 KB) from 100 seeds.

int mode_mantissa(int mode) { return mode <= 1 ? 23 : 16 - 2 * (mode - 2); }

EncodeOptions compression_mode(int mode, int level) {
  EncodeOptions o;
  o.compression = {.enabled = true, .threshold_bytes = 1024, .level = level, .max_ratio = 1.0};
  o.telemetry.xor_shuffle = mode != 0;
  o.telemetry.mantissa_bits = mode_mantissa(mode);
  return o;
}

std::string mode_name(int mode) {
  if (mode == 0) return "plain";
  if (mode == 1) return "xor_shuffle";
  return "xor_shuffle+m" + std::to_string(mode_mantissa(mode));
}

void BM_TelemetryCompress(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  const int level = static_cast<int>(state.range(1));
  bench::TelemetryGenerator gen(100);
  std::vector<std::vector<SeedMetrics>> batches;
  for (int i = 0; i < 16; ++i) batches.push_back(gen.batch(1000));
  Encoder enc(kSource, compression_mode(mode, level));
  std::uint64_t seq = 0;
  for (auto _ : state) {
    const auto& b = batches[seq % batches.size()];
    benchmark::DoNotOptimize(enc.encode_telemetry(header(++seq), TelemetryBatchInfo{1, 0, 0, 0, 0}, b).data());
  }
  const auto& s = enc.stats();
  state.SetBytesProcessed(static_cast<std::int64_t>(s.body_bytes));
  state.counters["ratio"] = static_cast<double>(s.body_bytes) / static_cast<double>(s.frame_bytes);
  Decoder dec;
  int wrong = 0;
  for (const auto& b : batches) {
    wrong += wrong_records(dec, enc.encode_telemetry(header(0), {}, b), b, mode_mantissa(mode));
  }
  state.counters["wrong"] = wrong;
  state.SetLabel(mode_name(mode) + " zstd-" + std::to_string(level));
}
BENCHMARK(BM_TelemetryCompress)->ArgsProduct({{0, 1, 2, 3, 4, 5}, {1, 3}});

void BM_TelemetryDecompress(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  bench::TelemetryGenerator gen(100);
  const auto recs = gen.batch(1000);
  Encoder enc(kSource, compression_mode(mode, 1));
  const auto f = enc.encode_telemetry(header(1), TelemetryBatchInfo{1, 0, 0, 0, 0}, recs);
  const std::vector<std::uint8_t> frame(f.begin(), f.end());
  Decoder dec;
  for (auto _ : state) {
    auto msg = dec.decode(frame);
    benchmark::DoNotOptimize(msg->body<TelemetryBatch>());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * enc.stats().body_bytes));
  state.counters["wrong"] = wrong_records(dec, frame, recs, mode_mantissa(mode));
  state.SetLabel(mode_name(mode) + " zstd-1");
}
BENCHMARK(BM_TelemetryDecompress)->DenseRange(0, 5);

// --- one message of each other kind

template <class T>
void encode_decode(benchmark::State& state, const T& body) {
  Encoder enc(kSource);
  Decoder dec;
  std::uint64_t seq = 0;
  std::size_t bytes = 0;
  if (state.range(0) == 0) {
    for (auto _ : state) {
      const auto f = enc.encode(header(++seq), body);
      benchmark::DoNotOptimize(f.data());
      bytes = f.size();
    }
    state.SetLabel("encode");
  } else {
    const auto f = enc.encode(header(1), body);
    const std::vector<std::uint8_t> frame(f.begin(), f.end());
    bytes = frame.size();
    for (auto _ : state) {
      auto msg = dec.decode(frame);
      benchmark::DoNotOptimize(msg->template body<typename T::TableType>());
    }
    state.SetLabel("verify+decode");
  }
  state.counters["frame_bytes"] = static_cast<double>(bytes);
  const auto f = enc.encode(header(2), body);
  auto msg = dec.decode(f);
  T out;
  if (msg) msg->template body<typename T::TableType>()->UnPackTo(&out);
  state.counters["wrong"] = (msg && out == body) ? 0 : 1;
}

void BM_Command(benchmark::State& state) {
  encode_decode(state, transition_seeds(to_layer(3), 3, seed_range(0, 15), SeedState::TRAINING, "policy:balanced"));
}
BENCHMARK(BM_Command)->Arg(0)->Arg(1);

void BM_CommandResult(benchmark::State& state) {
  std::vector<SeedOutcomeT> outcomes;
  for (std::uint32_t s = 0; s < 16; ++s) outcomes.push_back(seed_outcome(s, Status::OK, SeedState::GERMINATED, SeedState::TRAINING));
  encode_decode(state, command_result(Status::OK, 1, "", std::move(outcomes), 1500, 200));
}
BENCHMARK(BM_CommandResult)->Arg(0)->Arg(1);

void BM_Event(benchmark::State& state) {
  encode_decode(state, state_transition(3, 200, 7, SeedState::TRAINING, SeedState::GRAFTING, "shadow loss 2% below chunk",
                                        "policy:balanced", MsgId(1, 2)));
}
BENCHMARK(BM_Event)->Arg(0)->Arg(1);

void BM_Heartbeat(benchmark::State& state) { encode_decode(state, heartbeat(200, 100, 1'000'000, 0, 0, {0, 1, 2, 3})); }
BENCHMARK(BM_Heartbeat)->Arg(0)->Arg(1);

void BM_StateSnapshot(benchmark::State& state) {
  std::vector<SeedStatus> seeds;
  for (std::uint32_t s = 0; s < 100; ++s) seeds.emplace_back(s, SeedState::TRAINING, SeedState::GERMINATED, 0, s, 0, 0.0f);
  std::vector<LayerStateT> layers;
  layers.push_back(layer_state(0, 0, 200, std::move(seeds)));
  encode_decode(state, state_snapshot(9, std::move(layers)));
}
BENCHMARK(BM_StateSnapshot)->Arg(0)->Arg(1);

}  // namespace
}  // namespace esper::wire

BENCHMARK_MAIN();
