// Coordinator-side Ferret aggregation (docs/ferret.md, "Aggregation"): time and resident memory to parse and aggregate
// n simulated client coefficient uploads per round.
//
//   aggregation_bench [--params tests/peft/fixtures/datajuicer_1_3b_params.txt] [--k 200] [--reps 3]
//                     [--seed 1] [--max-uploads 10000]
//
// The block layout comes from the parameter list under the reference blocking rule (DataJuicer-1.3B:
// L = 194). Each client's K_l is drawn uniformly in [2, K] per block (seeded), so an upload carries
// ~K/2 coefficients per block. Every upload is serialized once up front; the timed columns are
// ParsePayload over all n uploads (what the coordinator does on receipt) and one AggregateCoefficients
// call over the parsed payloads. The last rows repeat n = max with every tensor 10x larger (the same L
// and K: the reference rule is scale-invariant), to show that nothing on this path depends on d.
// A second table times every aggregation rule (federation/aggregator.h) on the same uploads, as a ratio
// to the plain mean in the same run: clipping, central-DP noise, median, trimmed mean, (Multi-)Krum.
// Run from the repository root.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/arena.h"
#include "federation/ferret_method.h"
#include "peft/ferret.h"
#include "tests/common/tensor_list.h"

namespace tributary {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Args {
  std::string params = "tests/peft/fixtures/datajuicer_1_3b_params.txt";
  int k = 200;
  int reps = 3;
  uint64_t seed = 1;
  int max_uploads = 10'000;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "aggregation_bench: %s needs a value\n", f.c_str());
      std::exit(2);
    }
    const std::string v = argv[++i];
    if (f == "--params") {
      a.params = v;
    } else if (f == "--k") {
      a.k = std::atoi(v.c_str());
    } else if (f == "--reps") {
      a.reps = std::atoi(v.c_str());
    } else if (f == "--seed") {
      a.seed = std::strtoull(v.c_str(), nullptr, 10);
    } else if (f == "--max-uploads") {
      a.max_uploads = std::atoi(v.c_str());
    } else {
      std::fprintf(stderr, "aggregation_bench: unknown flag %s\n", f.c_str());
      std::exit(2);
    }
  }
  if (a.k < 2 || a.reps < 1 || a.max_uploads < 1) {
    std::fprintf(stderr, "aggregation_bench: need --k >= 2, --reps >= 1, --max-uploads >= 1\n");
    std::exit(2);
  }
  return a;
}

// The fixture's tensor list with every dim0 multiplied by `scale` (a model `scale` times larger with
// the same tensor count and the same size ratios).
std::shared_ptr<TensorTable> LoadTable(const std::string& path, int64_t scale) {
  auto table = testutil::ReadTensorList(path, scale);
  if (!table.ok()) {
    std::fprintf(stderr, "aggregation_bench: %s\n", table.status().ToString().c_str());
    std::exit(1);
  }
  return *table;
}

struct Memory {
  long rss_kb = 0;
  long hwm_kb = 0;
};

Memory ReadMemory() {
  Memory m;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss_kb = std::atol(line.c_str() + 6);
    if (line.rfind("VmHWM:", 0) == 0) m.hwm_kb = std::atol(line.c_str() + 6);
  }
  return m;
}

// Resets VmHWM to the current RSS (Linux >= 4.0); false where that is not allowed, and the peak
// columns then only show growth above the process's earlier peak.
bool ResetPeakRss() {
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return false;
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Mb(long kb) {
  return static_cast<double>(kb) / 1024.0;
}

struct Row {
  WireDtype dtype = WireDtype::kFp32;
  int64_t params = 0;
  int num_blocks = 0;
  int uploads = 0;
  double bytes_per_upload = 0;
  double parse_s = 0;
  double aggregate_s = 0;
  double parsed_mb = 0;          // RSS held by the n parsed payloads
  double aggregate_peak_mb = 0;  // peak RSS growth during AggregateCoefficients
  double process_peak_mb = 0;    // peak RSS growth of the whole row (uploads + parse + aggregate)
  size_t aggregate_bytes = 0;
};

Row RunOne(const Args& args, WireDtype dtype, int64_t params, int num_blocks, int uploads, bool reset_ok) {
  malloc_trim(0);
  const Memory start = ReadMemory();
  if (reset_ok) ResetPeakRss();
  const Memory start_peak = ReadMemory();

  // Simulated client uploads, serialized as they arrive on the wire. Seeded by (seed, n) only, so the
  // rows of the 10x model see exactly the uploads of the base model.
  std::mt19937_64 rng(args.seed * 1'000'003 + static_cast<uint64_t>(uploads));
  std::uniform_int_distribution<int> k_dist(2, args.k);
  std::normal_distribution<float> coef_dist(0.0f, 1e-3f);
  std::uniform_int_distribution<int64_t> samples_dist(1, 512);
  const uint32_t round = 7;
  std::vector<std::vector<uint8_t>> wire(uploads);
  std::vector<int64_t> num_samples(uploads);
  size_t total_bytes = 0;
  for (int i = 0; i < uploads; ++i) {
    Payload p;
    p.round = round;
    p.dtype = dtype;
    p.gamma.resize(num_blocks);
    for (auto& block : p.gamma) {
      block.resize(k_dist(rng));
      for (float& g : block) g = coef_dist(rng);
    }
    auto bytes = SerializePayload(p);
    TRIB_CHECK(bytes.ok());
    wire[i] = std::move(*bytes);
    total_bytes += wire[i].size();
    num_samples[i] = samples_dist(rng);
  }
  // Uploads arrive in no particular client order.
  std::vector<uint64_t> ids(uploads);
  std::iota(ids.begin(), ids.end(), uint64_t{1000});
  std::shuffle(ids.begin(), ids.end(), rng);

  const PayloadExpectation expect{num_blocks, args.k};
  std::vector<Payload> parsed;
  std::vector<double> parse_times;
  long parsed_kb = 0;
  for (int rep = 0; rep < args.reps; ++rep) {
    parsed.clear();
    parsed.shrink_to_fit();
    malloc_trim(0);
    const long before_kb = ReadMemory().rss_kb;
    const double t0 = Now();
    parsed.reserve(uploads);
    for (int i = 0; i < uploads; ++i) {
      auto p = ParsePayload(wire[i], expect);
      TRIB_CHECK(p.ok());
      parsed.push_back(std::move(*p));
    }
    parse_times.push_back(Now() - t0);
    parsed_kb = ReadMemory().rss_kb - before_kb;
  }

  std::vector<ClientCoefficients> clients(uploads);
  for (int i = 0; i < uploads; ++i) clients[i] = {ids[i], static_cast<uint64_t>(num_samples[i]), &parsed[i]};

  std::unique_ptr<Aggregation> mean = Aggregation::Create({}).value();
  std::vector<double> aggregate_times;
  long aggregate_peak_kb = 0;
  size_t aggregate_bytes = 0;
  for (int rep = 0; rep < args.reps; ++rep) {
    malloc_trim(0);
    const Memory before = ReadMemory();
    if (reset_ok) ResetPeakRss();
    const double t0 = Now();
    auto aggregate = AggregateCoefficients(clients, AggregationWeights::kSamples, *mean, round, num_blocks, dtype);
    aggregate_times.push_back(Now() - t0);
    const Memory after = ReadMemory();
    TRIB_CHECK(aggregate.ok());
    aggregate_bytes = PayloadBytes(*aggregate);
    const long base_kb = reset_ok ? before.rss_kb : before.hwm_kb;
    aggregate_peak_kb = std::max(aggregate_peak_kb, after.hwm_kb - base_kb);
  }
  const Memory end = ReadMemory();

  Row row;
  row.dtype = dtype;
  row.params = params;
  row.num_blocks = num_blocks;
  row.uploads = uploads;
  row.bytes_per_upload = static_cast<double>(total_bytes) / uploads;
  row.parse_s = Median(parse_times);
  row.aggregate_s = Median(aggregate_times);
  row.parsed_mb = Mb(parsed_kb);
  row.aggregate_peak_mb = Mb(aggregate_peak_kb);
  // Without the reset the whole-row figure is growth above the earlier peak (0 when below it).
  row.process_peak_mb = Mb(end.hwm_kb - (reset_ok ? start.rss_kb : start_peak.hwm_kb));
  row.aggregate_bytes = aggregate_bytes;
  return row;
}

// The base model's n uploads, parsed (seeded by the seed and n, like RunOne's).
std::vector<Payload> ParsedUploads(const Args& args, int num_blocks, int uploads) {
  std::mt19937_64 rng(args.seed * 1'000'003 + static_cast<uint64_t>(uploads));
  std::uniform_int_distribution<int> k_dist(2, args.k);
  std::normal_distribution<float> coef_dist(0.0f, 1e-3f);
  std::vector<Payload> parsed(uploads);
  for (Payload& p : parsed) {
    p.round = 7;
    p.gamma.resize(num_blocks);
    for (auto& block : p.gamma) {
      block.resize(k_dist(rng));
      for (float& g : block) g = coef_dist(rng);
    }
  }
  return parsed;
}

void RunRules(const Args& args, int num_blocks, int uploads) {
  const std::vector<Payload> parsed = ParsedUploads(args, num_blocks, uploads);
  std::vector<ClientCoefficients> clients(uploads);
  for (int i = 0; i < uploads; ++i) clients[i] = {static_cast<uint64_t>(1000 + i), 1, &parsed[i]};
  struct Case {
    const char* name;
    AggregationOptions options;
    bool noise = false;
  };
  AggregationOptions clip;
  clip.clip_norm = 0.01;
  AggregationOptions median;
  median.rule = AggregationRule::kMedian;
  AggregationOptions trimmed;
  trimmed.rule = AggregationRule::kTrimmedMean;
  trimmed.trim_fraction = 0.2;
  AggregationOptions krum;
  krum.rule = AggregationRule::kKrum;
  krum.byzantine = uploads / 5;
  AggregationOptions multi_krum = krum;
  multi_krum.rule = AggregationRule::kMultiKrum;
  const std::vector<Case> cases = {{"mean", {}},
                                   {"mean+clip", clip},
                                   {"mean+clip+noise", clip, true},
                                   {"median", median},
                                   {"trimmed_mean", trimmed},
                                   {"krum", krum},
                                   {"multi_krum", multi_krum}};
  double mean_s = 0;
  for (const Case& c : cases) {
    std::unique_ptr<Aggregation> aggregation = Aggregation::Create(c.options).value();
    std::vector<double> times;
    for (int rep = 0; rep < args.reps; ++rep) {
      if (c.noise) aggregation->SetNoise(1.0 * c.options.clip_norm, FreshNoiseKey());
      const double t0 = Now();
      auto aggregate =
          AggregateCoefficients(clients, AggregationWeights::kEqual, *aggregation, 7, num_blocks, WireDtype::kFp32);
      times.push_back(Now() - t0);
      TRIB_CHECK(aggregate.ok());
    }
    const double t = Median(times);
    if (mean_s == 0) mean_s = t;
    std::printf("%-16s %6d %10.2f %8.2fx\n", c.name, uploads, t * 1e3, t / mean_s);
    std::fflush(stdout);
  }
}

void PrintRow(const Row& r) {
  std::printf("%-5s %8.3fB %4d %6d %10.0f %9.1f %11.0f %9.1f %11.0f %9.1f %9.2f %9.1f %8zu\n", WireDtypeName(r.dtype),
              static_cast<double>(r.params) / 1e9, r.num_blocks, r.uploads, r.bytes_per_upload, r.parse_s * 1e3,
              r.uploads / r.parse_s, r.aggregate_s * 1e3, r.uploads / r.aggregate_s, r.parsed_mb, r.aggregate_peak_mb,
              r.process_peak_mb, r.aggregate_bytes);
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  const auto base = LoadTable(args.params, 1);
  const auto large = LoadTable(args.params, 10);
  const int base_blocks = static_cast<int>(GroupByReferenceRule(*base).size());
  const int large_blocks = static_cast<int>(GroupByReferenceRule(*large).size());
  if (base_blocks != large_blocks) {
    std::fprintf(stderr, "aggregation_bench: 10x model has %d blocks, base %d\n", large_blocks, base_blocks);
    return 1;
  }
  const bool reset_ok = ResetPeakRss();
  std::printf(
      "aggregation_bench: %s, K = %d, K_l ~ U[2, %d] per client and block, %d reps (median), "
      "sample-weighted, peak RSS reset via clear_refs: %s\n",
      args.params.c_str(), args.k, args.k, args.reps, reset_ok ? "yes" : "no");
  std::printf("%-5s %9s %4s %6s %10s %9s %11s %9s %11s %9s %9s %9s %8s\n", "dtype", "params", "L", "n", "B/upload",
              "parse ms", "parse up/s", "agg ms", "agg up/s", "parsed MB", "agg pk MB", "row pk MB", "agg B");
  std::vector<int> counts;
  for (int n : {100, 1'000, 10'000}) {
    if (n <= args.max_uploads) counts.push_back(n);
  }
  if (counts.empty() || counts.back() != args.max_uploads) counts.push_back(args.max_uploads);
  for (WireDtype dtype : {WireDtype::kFp32, WireDtype::kBf16}) {
    for (int n : counts) PrintRow(RunOne(args, dtype, base->param_count(), base_blocks, n, reset_ok));
    PrintRow(RunOne(args, dtype, large->param_count(), large_blocks, counts.back(), reset_ok));
  }
  std::printf("\naggregation rules on the same fp32 uploads (equal weights; Krum f = n / 5), %d reps (median)\n",
              args.reps);
  std::printf("%-16s %6s %10s %9s\n", "rule", "n", "ms", "vs mean");
  for (int n : {100, 1'000}) {
    if (n <= args.max_uploads) RunRules(args, base_blocks, n);
  }
  return 0;
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  return tributary::Main(argc, argv);
}
