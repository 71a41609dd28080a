// Ferret projection and reconstruct-apply throughput (docs/ferret.md), side by side with the
// reference method in PyTorch (bench/ferret_torch.py) and with the raw Philox generation rate.
//
//   ferret_bench [--d 100000000] [--blocks 1] [--k 8] [--k-trunc 2] [--torch-k 2] [--no-torch]
//
// Rates are elements x seeds per second over all cores; K = 200 times are extrapolated from --k
// seeds per block (time is linear in K). Run from the repository root (it starts the Python peer
// as /usr/bin/python3 bench/ferret_torch.py).
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "engine/arena.h"
#include "peft/ferret.h"

namespace tributary {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds of all threads of this process (the machine is shared: wall time includes waiting).
double CpuNow() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Args {
  int64_t d = 100'000'000;
  int64_t blocks = 1;
  int k = 8;
  int k_trunc = 2;
  int torch_k = 2;
  bool torch = true;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ferret_bench: %s needs a value\n", f.c_str());
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (f == "--d") {
      a.d = next();
    } else if (f == "--blocks") {
      a.blocks = next();
    } else if (f == "--k") {
      a.k = static_cast<int>(next());
    } else if (f == "--k-trunc") {
      a.k_trunc = static_cast<int>(next());
    } else if (f == "--torch-k") {
      a.torch_k = static_cast<int>(next());
    } else if (f == "--no-torch") {
      a.torch = false;
    } else {
      std::fprintf(stderr, "ferret_bench: unknown flag %s\n", f.c_str());
      std::exit(2);
    }
  }
  return a;
}

// Raw generation rate (elements/s) of one distribution into an L1-resident buffer on every thread.
struct Rate {
  double wall = 0;  // elements (x seeds) per wall second
  double cpu = 0;   // per CPU second of all threads
};

Rate RawGenerationRate(Distribution dist, int64_t elems_per_task) {
  const int64_t tasks = 4 * NumThreads();
  std::vector<double> sink(static_cast<size_t>(tasks), 0.0);
  const double t0 = Now(), c0 = CpuNow();
  ParallelTasks(tasks, [&](int64_t t) {
    const BasisStream st = MakeBasisStream(dist, 1, 0, static_cast<uint32_t>(t), 0, 100'000'000);
    alignas(64) float buf[kBlockTileElems];
    float acc = 0;
    for (int64_t i = 0; i < elems_per_task; i += kBlockTileElems) {
      GenerateBasis(st, static_cast<uint64_t>(i), kBlockTileElems, buf);
      acc += buf[i % kBlockTileElems];
    }
    sink[static_cast<size_t>(t)] = acc;
  });
  const double dt = Now() - t0, dc = CpuNow() - c0;
  if (sink[0] == 12345.0) std::printf(" ");
  const double work = static_cast<double>(tasks * elems_per_task);
  return {work / dt, work / dc};
}

struct TorchRates {
  double project_ns = 0, apply_ns = 0;
  double project_cpu_ns = 0, apply_cpu_ns = 0;
  int threads = 0;
  bool ok = false;
};

TorchRates RunTorch(int64_t d, int k) {
  TorchRates r;
  const std::string cmd =
      "/usr/bin/python3 bench/ferret_torch.py --d " + std::to_string(d) + " --k " + std::to_string(k) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char line[512];
  while (std::fgets(line, sizeof(line), p)) {
    double v;
    if (std::sscanf(line, "torch_project_ns_per_elem_seed %lf", &v) == 1) r.project_ns = v;
    if (std::sscanf(line, "torch_apply_ns_per_elem_seed %lf", &v) == 1) r.apply_ns = v;
    if (std::sscanf(line, "torch_project_cpu_ns_per_elem_seed %lf", &v) == 1) r.project_cpu_ns = v;
    if (std::sscanf(line, "torch_apply_cpu_ns_per_elem_seed %lf", &v) == 1) r.apply_cpu_ns = v;
    int t;
    if (std::sscanf(line, "torch_threads %d", &t) == 1) r.threads = t;
    if (std::strncmp(line, "torch_", 6) != 0) std::fprintf(stderr, "ferret_torch.py: %s", line);
  }
  r.ok = pclose(p) == 0 && r.project_ns > 0 && r.apply_ns > 0;
  return r;
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  constexpr int kFullK = 200;
  std::printf(
      "ferret_bench: d = %lld in %lld block(s), %d threads, measured k = %d (trunc_normal %d), "
      "extrapolated to K = %d\n",
      static_cast<long long>(args.d), static_cast<long long>(args.blocks), NumThreads(), args.k, args.k_trunc, kFullK);

  const Rate raw_uniform = RawGenerationRate(Distribution::kUniform, 1 << 22);
  const Rate raw_signs = RawGenerationRate(Distribution::kRademacher, 1 << 24);
  std::printf(
      "raw generation (Philox4x32-10 into L1, all threads): uniform %.3g elem/s (%.3g Philox blocks/s; "
      "%.3g elem per CPU-s), rademacher %.3g elem/s (%.3g per CPU-s)\n",
      raw_uniform.wall, raw_uniform.wall / 4, raw_uniform.cpu, raw_signs.wall, raw_signs.cpu);

  auto table = std::make_shared<TensorTable>();
  table->Add("w", {args.d});
  auto blocks_or = SplitFixedChunks(*table, (args.d + args.blocks - 1) / args.blocks);
  if (!blocks_or.ok()) {
    std::fprintf(stderr, "%s\n", blocks_or.status().ToString().c_str());
    return 1;
  }
  const std::vector<Block>& blocks = *blocks_or;
  Arena delta(table), weights(table);
  {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    float* p = delta.data();
    for (int64_t i = 0; i < args.d; ++i) p[i] = normal(rng);
  }

  TorchRates torch;
  if (args.torch) torch = RunTorch(args.d, args.torch_k);

  std::printf("\n%-13s %-8s %12s %12s %11s %9s | %12s %9s %8s\n", "dist", "kernel", "elem*k/s", "ns/(elem*k)",
              "K=200 time", "vs torch", "per CPU-s", "vs torch", "vs raw");
  for (Distribution dist : {Distribution::kRademacher, Distribution::kUniform, Distribution::kTruncNormal}) {
    const int k = dist == Distribution::kTruncNormal ? args.k_trunc : args.k;
    const BasisConfig basis{dist, 7, 1};
    const std::vector<int> k_per_block(blocks.size(), k);
    double t0 = Now(), c0 = CpuNow();
    const auto proj = ProjectBlocks(DeltaSource{delta.data(), nullptr}, blocks, basis, k_per_block);
    const double t_project = Now() - t0, c_project = CpuNow() - c0;
    std::vector<std::vector<float>> coeffs(blocks.size());
    for (size_t l = 0; l < blocks.size(); ++l) {
      for (double dot : proj[l].dots) coeffs[l].push_back(static_cast<float>(dot));
    }
    t0 = Now();
    c0 = CpuNow();
    ApplyBlocks(weights.data(), blocks, basis, coeffs);
    const double t_apply = Now() - t0, c_apply = CpuNow() - c0;
    const double work = static_cast<double>(args.d) * k;
    const Rate raw = dist == Distribution::kRademacher ? raw_signs : raw_uniform;
    for (int kernel = 0; kernel < 2; ++kernel) {
      const double rate = work / (kernel == 0 ? t_project : t_apply);
      const double cpu_rate = work / (kernel == 0 ? c_project : c_apply);
      const double torch_ns = kernel == 0 ? torch.project_ns : torch.apply_ns;
      const double torch_cpu_ns = kernel == 0 ? torch.project_cpu_ns : torch.apply_cpu_ns;
      char vs[32] = "n/a", vs_cpu[32] = "n/a", vs_raw[32] = "n/a";
      if (torch.ok) {
        std::snprintf(vs, sizeof(vs), "%.1fx", torch_ns * 1e-9 * rate);
        if (torch_cpu_ns > 0) std::snprintf(vs_cpu, sizeof(vs_cpu), "%.1fx", torch_cpu_ns * 1e-9 * cpu_rate);
      }
      // Uniform and trunc_normal both draw one Philox word per element: the uniform rate is their ceiling.
      std::snprintf(vs_raw, sizeof(vs_raw), "%.0f%%", 100.0 * cpu_rate / raw.cpu);
      std::printf("%-13s %-8s %12.3g %12.4f %10.2fs %9s | %12.3g %9s %8s\n", DistributionName(dist),
                  kernel == 0 ? "project" : "apply", rate, 1e9 / rate, static_cast<double>(args.d) * kFullK / rate, vs,
                  cpu_rate, vs_cpu, vs_raw);
    }
  }
  if (torch.ok) {
    for (int kernel = 0; kernel < 2; ++kernel) {
      const double ns = kernel == 0 ? torch.project_ns : torch.apply_ns;
      const double cpu_ns = kernel == 0 ? torch.project_cpu_ns : torch.apply_cpu_ns;
      std::printf("%-13s %-8s %12.3g %12.4f %10.2fs %9s | %12.3g %9s %8s\n", "torch TN ref",
                  kernel == 0 ? "project" : "apply", 1e9 / ns, ns, static_cast<double>(args.d) * kFullK * ns * 1e-9,
                  "1.0x", cpu_ns > 0 ? 1e9 / cpu_ns : 0.0, "1.0x", "");
    }
    std::printf("(torch 1.13 CPU fp32, %d threads, %d seeds timed, extrapolated per element*seed)\n", torch.threads,
                args.torch_k);
  } else if (args.torch) {
    std::printf("torch peer failed; see stderr\n");
  }
  return 0;
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  return tributary::Main(argc, argv);
}
