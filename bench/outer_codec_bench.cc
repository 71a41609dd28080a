// Outer-sync codec throughput (federation/outer_codec.h; B14 of the low-communication anchors): encode and
// decode time of one pseudo-gradient of n fp32 values per codec, against the line rate of a cross-island link.
//
//   outer_codec_bench [--elems 16777216] [--reps 5] [--seed 1]
//
// The input is Gaussian (mean 0, stddev 1e-3, a DiLoCo Delta's scale) with one value in 10^5 an outlier at
// 50 stddev. Each codec is timed with 1 thread and with all threads (base/parallel.h), best of --reps runs
// for encode (EncodeOuter into a cleared vector that keeps its capacity) and for decode (DecodeOuter into a
// preallocated vector). Columns:
//   enc, dec MB/s   : fp32 input MB (4 n / 1e6) per second
//   enc+dec MB/s    : input MB / (t_enc + t_dec)
//   x 1G, x 100M    : enc+dec MB/s / (R / 8) for R = 1 Gbit/s (125 MB/s) and 100 Mbit/s (12.5 MB/s): the B14
//                     metric "encode+decode MB/s / (R_inter/8)", target >= 10
//   wire x 1G/100M  : the stricter form, encoded MB / (t_enc + t_dec) / (R / 8) = (time the encoded bytes spend
//                     on the link) / (codec time); the codec never bottlenecks the link while this is >= 1
//   rel rms         : RMS(decoded - input) / RMS(input), a sanity check of the round trip
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "federation/outer_codec.h"

namespace tributary {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Args {
  int64_t elems = int64_t{16} << 20;
  int reps = 5;
  uint64_t seed = 1;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "outer_codec_bench: %s needs a value\n", f.c_str());
      std::exit(2);
    }
    const std::string v = argv[++i];
    if (f == "--elems") {
      a.elems = std::atoll(v.c_str());
    } else if (f == "--reps") {
      a.reps = std::atoi(v.c_str());
    } else if (f == "--seed") {
      a.seed = std::strtoull(v.c_str(), nullptr, 10);
    } else {
      std::fprintf(stderr, "outer_codec_bench: unknown flag %s\n", f.c_str());
      std::exit(2);
    }
  }
  if (a.elems < 1 || a.reps < 1) {
    std::fprintf(stderr, "outer_codec_bench: need --elems >= 1, --reps >= 1\n");
    std::exit(2);
  }
  return a;
}

std::vector<float> MakeDelta(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1e-3f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  for (size_t i = 0; i < v.size(); i += 100'000) v[i] = (i / 100'000) % 2 ? -0.05f : 0.05f;
  return v;
}

void Check(const Status& st) {
  if (!st.ok()) {
    std::fprintf(stderr, "outer_codec_bench: %s\n", st.ToString().c_str());
    std::exit(1);
  }
}

double RelRms(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(y[i]) - x[i];
    err += d * d;
    ref += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}

void Row(OuterCodec codec, const std::vector<float>& input, int reps) {
  std::vector<uint8_t> bytes;
  std::vector<float> out(input.size());
  double t_enc = 1e30, t_dec = 1e30;
  for (int r = 0; r < reps; ++r) {
    bytes.clear();
    const double t0 = Now();
    Check(EncodeOuter(codec, input, &bytes));
    const double t1 = Now();
    Check(DecodeOuter(codec, bytes, out));
    const double t2 = Now();
    t_enc = std::min(t_enc, t1 - t0);
    t_dec = std::min(t_dec, t2 - t1);
  }
  const double in_mb = 4.0 * static_cast<double>(input.size()) / 1e6;
  const double wire_mb = static_cast<double>(bytes.size()) / 1e6;
  const double both = in_mb / (t_enc + t_dec);
  const double wire = wire_mb / (t_enc + t_dec);
  std::printf("%-5s %7.2fx %9.0f %9.0f %12.0f %8.1f %8.1f %10.1f %10.1f %10.2g\n", OuterCodecName(codec),
              in_mb / wire_mb, in_mb / t_enc, in_mb / t_dec, both, both / 125.0, both / 12.5, wire / 125.0, wire / 12.5,
              RelRms(input, out));
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  using namespace tributary;
  const Args args = ParseArgs(argc, argv);
  const std::vector<float> input = MakeDelta(args.elems, args.seed);
  const int all = NumThreads();
  std::printf("n = %lld fp32 values (%.1f MB), best of %d\n", static_cast<long long>(args.elems),
              4.0 * static_cast<double>(args.elems) / 1e6, args.reps);
  for (int threads : {1, all}) {
    SetNumThreads(threads);
    std::printf("\nthreads = %d\n", NumThreads());
    std::printf(
        "codec  vs fp32   enc MB/s  dec MB/s  enc+dec MB/s     x 1G   x 100M  wire x 1G wire x100M    rel rms\n");
    for (OuterCodec c : {OuterCodec::kFp32, OuterCodec::kBf16, OuterCodec::kInt8, OuterCodec::kFp4})
      Row(c, input, args.reps);
    if (all == 1) break;  // one core: the second table would repeat the first
  }
  return 0;
}
