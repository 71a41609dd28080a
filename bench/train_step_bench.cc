// Training-step benchmark: tributary's CPU LLaMA (forward + backward + AdamW) against the same
// architecture in PyTorch (bench/train_step_torch.py), measured side by side in one invocation.
//
//   ./build/bench/train_step_bench [--configs small,base] [--no-torch]
//
// Each side runs in its own child process (this binary re-executed with --child, and
// /usr/bin/python3), so wait4() gives each side's own peak RSS. Reported per config: median step
// time after warm-up, tokens/s, achieved GFLOP/s with
//   flops/step = 6 * P_matmul * tokens + 12 * L * B * T^2 * H
// (P_matmul: parameters used in matmuls, i.e. every linear weight incl. lm_head; the second term is
// QK^T and PV over the full T x T score matrix, forward and backward), and the ratio to this
// machine's cblas_sgemm rate (N = 1024, OpenBLAS's own threads).
#include <cblas.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/llama_model.h"
#include "engine/train/optimizer.h"

namespace tributary {
namespace {

struct BenchConfig {
  std::string name;
  int64_t hidden, layers, heads, kv_heads, inter, vocab, seq, batch, warmup, steps;
};

const std::vector<BenchConfig> kConfigs = {
    {"small", 256, 4, 4, 4, 704, 8192, 128, 4, 2, 5},
    {"base", 768, 12, 12, 12, 2048, 32000, 256, 4, 1, 3},
};

LlamaConfig ToLlama(const BenchConfig& b) {
  LlamaConfig c;
  c.hidden_size = b.hidden;
  c.num_hidden_layers = b.layers;
  c.num_attention_heads = b.heads;
  c.num_key_value_heads = b.kv_heads;
  c.intermediate_size = b.inter;
  c.vocab_size = b.vocab;
  c.max_position_embeddings = std::max<int64_t>(2048, b.seq);
  return c;
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// User + system CPU seconds of this process (all threads).
double CpuSeconds() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double StepFlops(const BenchConfig& b) {
  const double H = b.hidden, I = b.inter, V = b.vocab, L = b.layers;
  const double D = static_cast<double>(b.hidden / b.heads);  // head_dim is an integer by construction
  const double matmul_params = L * (2 * H * H + 2 * H * b.kv_heads * D + 3 * H * I) + V * H;
  const double tokens = static_cast<double>(b.batch * b.seq);
  return 6.0 * matmul_params * tokens + 12.0 * L * b.batch * static_cast<double>(b.seq) * b.seq * H;
}

// The C++ side, in a child process: prints "RESULT tokens_per_s=... step_ms=... loss=...".
int RunCpp(const BenchConfig& b) {
  auto created = LlamaModel::Create(ToLlama(b));
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  auto model = std::move(created).value();
  model->InitRandom(0, 0.02f);
  OptimizerOptions opt_options;
  opt_options.weight_decay = 0.01;
  auto optimizer = CreateOptimizer(opt_options, model->params().table_ptr());
  if (!optimizer.ok()) {
    std::fprintf(stderr, "%s\n", optimizer.status().ToString().c_str());
    return 1;
  }
  const int64_t N = b.batch * b.seq;
  std::mt19937 rng(0);
  std::vector<int32_t> tokens(N), targets(N);
  for (int64_t i = 0; i < N; ++i) {
    tokens[i] = static_cast<int32_t>(rng() % b.vocab);
    targets[i] = static_cast<int32_t>(rng() % b.vocab);
  }
  std::vector<double> times, cpu_times;
  float loss = 0.0f;
  for (int64_t step = 0; step < b.warmup + b.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = CpuSeconds();
    model->ZeroGrad();
    Status s = model->Forward(tokens.data(), nullptr, targets.data(), b.batch, b.seq, &loss);
    if (s.ok()) s = model->Backward();
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    (*optimizer)->Step(model->params(), model->grads(), 1e-4);
    if (step >= b.warmup) {
      times.push_back(Seconds(start, std::chrono::steady_clock::now()));
      cpu_times.push_back(CpuSeconds() - cpu_start);
    }
  }
  const double med = Median(times);
  std::printf("RESULT tokens_per_s=%.1f step_ms=%.1f tokens_per_cpu_s=%.1f loss=%.4f threads=%d activation_mb=%.1f\n",
              N / med, med * 1e3, N / Median(cpu_times), loss, NumThreads(), model->ActivationBytes() / 1048576.0);
  return 0;
}

struct ChildResult {
  bool ok = false;
  std::map<std::string, std::string> fields;
  double peak_rss_mb = 0.0;
};

// Runs argv in a child, parses its RESULT line, and reads its own peak RSS from wait4().
ChildResult RunChild(const std::vector<std::string>& args) {
  ChildResult result;
  int fds[2];
  if (pipe(fds) != 0) return result;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    std::perror("execv");
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  result.peak_rss_mb = usage.ru_maxrss / 1024.0;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("RESULT ", 0) != 0) continue;
    std::istringstream words(line.substr(7));
    std::string kv;
    while (words >> kv) {
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) result.fields[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    result.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  if (!result.ok) std::fprintf(stderr, "child %s failed (status %d): %s\n", args[0].c_str(), status, out.c_str());
  return result;
}

double SgemmGflops() {
  const int n = 1024;
  std::vector<float> a(n * n), b(n * n), c(n * n);
  std::mt19937 rng(1);
  for (auto* v : {&a, &b})
    for (float& x : *v) x = static_cast<float>(rng() % 1000) / 1000.0f;
  std::vector<double> times;
  for (int rep = 0; rep < 12; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    if (rep >= 2) times.push_back(Seconds(start, std::chrono::steady_clock::now()));
  }
  return 2.0 * n * n * n / Median(times) / 1e9;
}

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

int Main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--child") == 0) {
    for (const auto& b : kConfigs)
      if (b.name == argv[2]) return RunCpp(b);
    return 2;
  }
  std::string configs = "small,base";
  bool torch = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--configs") == 0 && i + 1 < argc) {
      configs = argv[++i];
    } else if (std::strcmp(argv[i], "--no-torch") == 0) {
      torch = false;
    } else {
      std::fprintf(stderr, "usage: %s [--configs small,base] [--no-torch]\n", argv[0]);
      return 2;
    }
  }
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) return 1;
  self[len] = '\0';
  const std::string script = std::string(self).substr(0, std::string(self).rfind('/')) + "/train_step_torch.py";
  const std::string torch_script = access(script.c_str(), R_OK) == 0 ? script : "bench/train_step_torch.py";

  std::printf("cpu: %s, %d cores; OpenBLAS core: %s (%d threads); load average: %s\n", CpuModel().c_str(), NumThreads(),
              CpuBackend::BlasCoreName().c_str(), CpuBackend::BlasThreads(), LoadAverage().c_str());
  std::vector<double> sgemm_runs = {SgemmGflops()};
  std::printf("%-6s %10s %9s %8s %7s %8s %10s | %10s %9s %10s %9s | %6s %8s\n", "config", "cpp tok/s", "cpp ms",
              "GFLOP/s", "%sgemm", "tok/CPUs", "cpp RSS MB", "torch tok/s", "torch ms", "tok/CPUs", "RSS MB", "ratio",
              "CPU-s ratio");
  for (const auto& b : kConfigs) {
    if (("," + configs + ",").find("," + b.name + ",") == std::string::npos) continue;
    const ChildResult cpp = RunChild({self, "--child", b.name});
    if (!cpp.ok) return 1;
    sgemm_runs.push_back(SgemmGflops());  // the machine is shared: sample its rate next to every run
    const double sgemm = Median(sgemm_runs);
    const double cpp_tps = std::stod(cpp.fields.at("tokens_per_s"));
    const double gflops = StepFlops(b) / (std::stod(cpp.fields.at("step_ms")) / 1e3) / 1e9;
    ChildResult py;
    if (torch) {
      std::vector<std::string> args = {"/usr/bin/python3", torch_script};
      const std::pair<const char*, int64_t> dims[] = {
          {"--hidden", b.hidden}, {"--layers", b.layers}, {"--heads", b.heads}, {"--kv-heads", b.kv_heads},
          {"--inter", b.inter},   {"--vocab", b.vocab},   {"--seq", b.seq},     {"--batch", b.batch},
          {"--warmup", b.warmup}, {"--steps", b.steps}};
      for (const auto& [flag, value] : dims) {
        args.push_back(flag);
        args.push_back(std::to_string(value));
      }
      py = RunChild(args);
    }
    const double py_tps = py.ok ? std::stod(py.fields.at("tokens_per_s")) : 0.0;
    const double cpp_cpu = std::stod(cpp.fields.at("tokens_per_cpu_s"));
    const double py_cpu = py.ok ? std::stod(py.fields.at("tokens_per_cpu_s")) : 0.0;
    std::printf("%-6s %10.1f %9s %8.1f %6.0f%% %8.1f %10.0f | %10.1f %9s %10.1f %9.0f | %5.2fx %7.2fx\n",
                b.name.c_str(), cpp_tps, cpp.fields.at("step_ms").c_str(), gflops, 100.0 * gflops / sgemm, cpp_cpu,
                cpp.peak_rss_mb, py_tps, py.ok ? py.fields.at("step_ms").c_str() : "-", py_cpu, py.peak_rss_mb,
                py.ok ? cpp_tps / py_tps : 0.0, py.ok ? cpp_cpu / py_cpu : 0.0);
    std::printf(
        "       (%s: %.2f GFLOP/step; cblas_sgemm N=1024 median %.1f GFLOP/s; cpp loss %s, torch loss %s; "
        "activations %s MB)\n",
        b.name.c_str(), StepFlops(b) / 1e9, sgemm, cpp.fields.at("loss").c_str(),
        py.ok ? py.fields.at("loss").c_str() : "-", cpp.fields.at("activation_mb").c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  return tributary::Main(argc, argv);
}
