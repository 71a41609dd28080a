// B5 "quality at equal tokens" (docs/benchmarks.md, /work/shared/reference/low-comm-anchors.md §12): a coordinator
// and 4 worker processes (`tributary`, CURVE on) on loopback run, on the same data, base model and seed, one
// cluster-mode job per configuration, one after another:
//
//   DP            1 island of 4 workers, outer sgd lr 1, fp32: synchronous data parallel over all 4 at every step
//                 (the outer step only sets θ to the island's θ)
//   DiLoCo fp32   2 islands x 2, Nesterov (lr 0.7, momentum 0.9), fp32 pseudo-gradients
//   DiLoCo int8   the same with PRIME's int8 codec
//   ferret lr L   2 islands x 2, Ferret-projected pseudo-gradients (ferret.k), outer sgd at lr L (--ferret-lrs)
//
// Every configuration trains rounds x H inner steps x batch x 4 workers sequences, so they see the same tokens;
// the coordinator evaluates the held-out loss after every round. Reported per configuration: the final held-out
// loss per seed, its mean, spread and ratio to DP, the wall time, and the bytes up/down per round from the job's
// RoundSummary (uploads and broadcasts through the coordinator: the cross-island traffic; DP's all-reduce stays
// inside its one island). Repeated over --seeds seeds (each seed: another random base model and job seed; the
// data split is fixed). Any job that does not complete fails the bench (exit 1).
//
//   cluster_quality_bench [--seeds 3] [--rounds 8] [--inner-steps 10] [--batch-size 8] [--lr 0.3]
//                         [--optimizer sgd] [--k 256] [--ferret-lrs 1,2] [--iid] [--dir DIR] [--keep]
//                         [--timeout 600] [--binary PATH]
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "cli/demo_data.h"
#include "cli/local_cluster.h"
#include "coordinator/job_model.h"
#include "engine/model/model_init.h"
#include "engine/text/dataset.h"
#include "engine/text/tokenizer.h"
#include "federation/job_spec.h"
#include "transport/message.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;

constexpr int kWorkers = 4;
// 128 (the demo model's context): at the demo's 96 the longest word-task prompts are cut before their response.
constexpr int kSeqLen = 128;

struct Args {
  std::string binary = TRIBUTARY_BINARY;
  int seeds = 3;
  int rounds = 8;
  int inner_steps = 10;
  int batch_size = 8;
  double lr = 0.3;
  std::string optimizer = "sgd";
  int k = 256;
  std::vector<double> ferret_lrs = {1.0, 2.0};
  bool iid = false;
  std::string dir;
  bool keep = false;
  double timeout_s = 600;  // per job
};

[[noreturn]] void Usage(const std::string& problem) {
  std::fprintf(stderr,
               "cluster_quality_bench: %s\nflags: --seeds N --rounds R --inner-steps H --batch-size B --lr LR "
               "--optimizer sgd|adamw --k K --ferret-lrs L1,L2 --iid --dir DIR --keep --timeout SECONDS "
               "--binary PATH\n",
               problem.c_str());
  std::exit(2);
}

std::vector<double> ParseList(const std::string& text) {
  std::vector<double> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(std::atof(item.c_str()));
  }
  return out;
}

void SetFlag(Args& a, const std::string& f, const std::string& v) {
  if (f == "--binary") {
    a.binary = v;
  } else if (f == "--seeds") {
    a.seeds = std::atoi(v.c_str());
  } else if (f == "--rounds") {
    a.rounds = std::atoi(v.c_str());
  } else if (f == "--inner-steps") {
    a.inner_steps = std::atoi(v.c_str());
  } else if (f == "--batch-size") {
    a.batch_size = std::atoi(v.c_str());
  } else if (f == "--lr") {
    a.lr = std::atof(v.c_str());
  } else if (f == "--optimizer") {
    a.optimizer = v;
  } else if (f == "--k") {
    a.k = std::atoi(v.c_str());
  } else if (f == "--ferret-lrs") {
    a.ferret_lrs = ParseList(v);
  } else if (f == "--dir") {
    a.dir = v;
  } else if (f == "--timeout") {
    a.timeout_s = std::atof(v.c_str());
  } else {
    Usage("unknown flag " + f);
  }
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--iid" || f == "--keep") {
      (f == "--iid" ? a.iid : a.keep) = true;
      continue;
    }
    if (i + 1 >= argc) Usage(f + " needs a value");
    SetFlag(a, f, argv[++i]);
  }
  if (a.seeds < 1 || a.seeds > 100) Usage("--seeds must be in [1, 100]");
  if (a.rounds < 1 || a.inner_steps < 1 || a.batch_size < 1)
    Usage("--rounds, --inner-steps, --batch-size must be >= 1");
  if (a.lr <= 0) Usage("--lr must be > 0");
  if (a.optimizer != "sgd" && a.optimizer != "adamw") Usage("--optimizer must be sgd or adamw");
  if (a.k < 2 || a.k > 65535) Usage("--k must be in [2, 65535]");
  for (double lr : a.ferret_lrs)
    if (lr <= 0 || lr > 10) Usage("--ferret-lrs values must be in (0, 10]");
  if (a.timeout_s <= 0) Usage("--timeout must be > 0");
  return a;
}

struct Config {
  std::string name;
  std::vector<std::string> overrides;  // --set style, on top of the shared job
};

std::vector<Config> Configs(const Args& a) {
  const std::string two = "cluster.islands=['a=worker-1,worker-2', 'b=worker-3,worker-4']";
  std::vector<Config> configs = {
      {"DP 1x4 fp32",
       {"cluster.islands=['all=worker-1,worker-2,worker-3,worker-4']", "cluster.outer_optimizer=sgd",
        "cluster.outer_lr=1", "cluster.codec=fp32"}},
      {"DiLoCo 2x2 fp32", {two, "cluster.outer_optimizer=nesterov", "cluster.codec=fp32"}},
      {"DiLoCo 2x2 int8", {two, "cluster.outer_optimizer=nesterov", "cluster.codec=int8"}},
  };
  for (double lr : a.ferret_lrs) {
    char name[64];
    std::snprintf(name, sizeof(name), "ferret 2x2 k%d lr%g", a.k, lr);
    char lr_text[32];
    std::snprintf(lr_text, sizeof(lr_text), "%g", lr);
    configs.push_back({name,
                       {two, "cluster.outer_optimizer=sgd", std::string("cluster.outer_lr=") + lr_text,
                        "cluster.codec=ferret", "ferret.k=" + std::to_string(a.k)}});
  }
  return configs;
}

// The shared part of every job; the configuration's overrides go on top.
Result<std::string> JobYaml(const Args& a, const std::string& model_dir, uint64_t seed,
                            const std::vector<std::string>& overrides) {
  char lr[32];
  std::snprintf(lr, sizeof(lr), "%g", a.lr);
  std::string yaml = "name: cluster quality bench\nmodel:\n  base: " + model_dir +
                     "\ndata:\n  dataset: words\n  seq_len: " + std::to_string(kSeqLen) +
                     "\nfederation:\n  mode: cluster\n  rounds: " + std::to_string(a.rounds) +
                     "\n  seed: " + std::to_string(seed) + "\n  min_clients: " + std::to_string(kWorkers) +
                     "\n  quorum: 1.0\n  deadline_floor_s: 120\n  deadline_ceiling_s: 900\n"
                     "train:\n  local_steps: " +
                     std::to_string(a.inner_steps) + "\n  batch_size: " + std::to_string(a.batch_size) +
                     "\n  lr: " + lr + "\n  optimizer: " + a.optimizer + "\n  max_grad_norm: 1.0\n" +
                     "eval:\n  dataset: words-heldout\n  every: 1\ncheckpoint:\n  snapshot_every: 1000\n";
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(yaml, "cluster quality bench spec", overrides));
  return EffectiveJobSpecYaml(spec);
}

struct Data {
  std::vector<std::vector<Example>> shards;
  std::vector<Example> held_out;
  std::string held_out_path;
};

// The demo's word tasks: 10% held out, the rest split across the workers like the system tests (Dirichlet
// alpha 0.5 over the task categories) or, with --iid, dealt round-robin. Fixed for every seed and configuration.
Result<Data> PrepareData(const Args& a, cli::LocalClusterOptions* cluster) {
  const fs::path dir(a.dir);
  std::error_code ec;
  fs::create_directories(dir / "data", ec);
  if (ec) return Status::IOError((dir / "data").string() + ": cannot create: " + ec.message());
  TRIB_ASSIGN_OR_RETURN(TrainHeldOut split, SplitTrainHeldOut(cli::DemoExamples(), 0.1, /*seed=*/1));
  Data data;
  if (a.iid) {
    data.shards.resize(kWorkers);
    for (size_t i = 0; i < split.train.size(); ++i) data.shards[i % kWorkers].push_back(split.train[i]);
  } else {
    NonIIDOptions non_iid;
    non_iid.alpha = 0.5;
    non_iid.seed = 3;
    non_iid.min_per_client = 20;
    TRIB_ASSIGN_OR_RETURN(data.shards, SplitNonIID(split.train, kWorkers, non_iid));
  }
  for (int w = 0; w < kWorkers; ++w) {
    const std::string path = (dir / "data" / (cli::LocalCluster::WorkerName(w) + ".jsonl")).string();
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(path, cli::ExamplesToDollyJsonl(data.shards[static_cast<size_t>(w)])));
    cluster->worker_data[w] = {"words=" + path};
  }
  data.held_out = std::move(split.held_out);
  data.held_out_path = (dir / "data" / "heldout.jsonl").string();
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(data.held_out_path, cli::ExamplesToDollyJsonl(data.held_out)));
  cluster->eval_data = {"words-heldout=" + data.held_out_path};
  return data;
}

// Mean tokens (prompt + response + BOS/EOS, at most seq_len) of a training row: turns sequences into tokens
// for the bytes-per-token figure. Rows are drawn from the shards; this is the mean over all of them.
Result<double> MeanTokensPerRow(const Data& data, const std::string& model_dir) {
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(model_dir));
  std::vector<Example> train;
  for (const auto& shard : data.shards) train.insert(train.end(), shard.begin(), shard.end());
  TRIB_ASSIGN_OR_RETURN(std::vector<TokenizedExample> tokenized, TokenizeExamples(train, *tokenizer, {}));
  double total = 0;
  for (const TokenizedExample& t : tokenized)
    total += static_cast<double>(std::min<size_t>(t.tokens.size(), kSeqLen + 1) - 1);
  return tokenized.empty() ? 0.0 : total / static_cast<double>(tokenized.size());
}

// The held-out loss of the untrained base model (the coordinator's evaluation, run here).
Result<double> InitialLoss(const std::string& yaml, const std::string& held_out_path) {
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(yaml, "spec"));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<JobModel> model, JobModel::Load(spec));
  TRIB_RETURN_IF_ERROR(model->LoadEvalRows(held_out_path));
  return model->Evaluate(model->initial_state());
}

struct JobResult {
  std::vector<double> heldout;  // per round
  double wall_s = 0;            // submit -> FINISHED on the bench's clock
  double bytes_up = 0;          // mean per round, all uploads
  double bytes_down = 0;        // mean per round: the broadcast aggregate x every island member (all 4 workers)
};

Result<v1::GetJobReply> GetJob(transport::Client& client, const std::string& job_id) {
  transport::Envelope get = transport::NewEnvelope("bench");
  get.mutable_get_job()->set_job_id(job_id);
  TRIB_ASSIGN_OR_RETURN(transport::Message reply, client.Request(get, 10000));
  return reply.envelope.get_job_reply();
}

// Polls until the job finishes; anything but a completed job with a held-out loss every round is an error.
Result<JobResult> WaitJob(const Args& a, transport::Client& client, const std::string& job_id,
                          const std::string& label) {
  const auto started = std::chrono::steady_clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  v1::GetJobReply job;
  while (true) {
    TRIB_ASSIGN_OR_RETURN(job, GetJob(client, job_id));
    if (job.job().state().rfind("FINISHED", 0) == 0) break;
    if (elapsed_s() > a.timeout_s)
      return Status::Timeout(label + ": job " + job_id + " did not finish within " +
                             std::to_string(static_cast<int>(a.timeout_s)) + " s (state " + job.job().state() +
                             ", round " + std::to_string(job.job().round()) + "); logs in " + a.dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  JobResult out;
  out.wall_s = elapsed_s();
  if (job.job().state() != "FINISHED:COMPLETED")
    return Status::Internal(label + ": job " + job_id + " ended " + job.job().state() + ": " + job.job().error() +
                            "; logs in " + a.dir);
  if (job.rounds_size() != a.rounds)
    return Status::Internal(label + ": job " + job_id + " committed " + std::to_string(job.rounds_size()) +
                            " rounds, expected " + std::to_string(a.rounds));
  for (const v1::RoundSummary& r : job.rounds()) {
    if (!std::isfinite(r.heldout_loss()))
      return Status::Internal(label + ": round " + std::to_string(r.round()) + " has no finite held-out loss");
    out.heldout.push_back(r.heldout_loss());
    out.bytes_up += static_cast<double>(r.bytes_up()) / a.rounds;
    out.bytes_down += static_cast<double>(r.bytes_down()) / a.rounds;
  }
  return out;
}

Result<JobResult> RunJob(const Args& a, transport::Client& client, const std::string& yaml, const std::string& label) {
  transport::Envelope submit = transport::NewEnvelope("bench");
  submit.mutable_submit_job()->set_spec_yaml(yaml);
  std::string token = "cluster-quality-bench-" + label;  // submit tokens allow letters, digits and . _ : -
  for (char& ch : token)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != ':' && ch != '-') ch = '_';
  submit.mutable_submit_job()->set_submit_token(token);
  TRIB_ASSIGN_OR_RETURN(transport::Message submitted, client.Request(submit, 30000));
  const v1::SubmitJobReply& accepted = submitted.envelope.submit_job_reply();
  if (!accepted.accepted())
    return Status::InvalidArgument(label + ": the coordinator refused the job: " + accepted.error());
  return WaitJob(a, client, accepted.job_id(), label);
}

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
};

Stats Summarize(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x / static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

struct Results {
  std::vector<Config> configs;
  std::vector<double> initial;                    // per seed
  std::vector<std::vector<JobResult>> by_config;  // [config][seed]
  double tokens_per_round = 0;
};

void PrintCurves(const Args& a, const Results& r) {
  std::printf("\nheld-out loss after each round, mean over %d seed(s) (round 0: the base model)\n%5s", a.seeds,
              "round");
  for (const Config& c : r.configs) std::printf(" %18s", c.name.c_str());
  std::printf("\n%5d", 0);
  for (size_t c = 0; c < r.configs.size(); ++c) std::printf(" %18.4f", Summarize(r.initial).mean);
  for (int round = 0; round < a.rounds; ++round) {
    std::printf("\n%5d", round + 1);
    for (const auto& jobs : r.by_config) {
      std::vector<double> v;
      for (const JobResult& j : jobs) v.push_back(j.heldout[static_cast<size_t>(round)]);
      std::printf(" %18.4f", Summarize(v).mean);
    }
  }
  std::printf("\n");
}

void PrintSummary(const Args& a, const Results& r) {
  std::printf(
      "\nfinal held-out loss (after round %d) per seed; mean +- std (sample) [min, max]; ratio = mean / DP mean "
      "[min, max of the per-seed ratios]; wall = submit -> finished, mean; bytes per round and per token: "
      "up = the islands' uploads, down = the aggregate broadcast to all 4 workers (RoundSummary); B/token = (up + "
      "down) / "
      "tokens (tokens/round %.0f)\n",
      a.rounds, r.tokens_per_round);
  std::printf("%-20s %-22s %-34s %-26s %7s %10s %10s %8s\n", "configuration", "per seed", "mean +- std [min, max]",
              "ratio to DP [min, max]", "wall s", "up B/rnd", "down B/rnd", "B/token");
  const Stats dp = Summarize([&] {
    std::vector<double> v;
    for (const JobResult& j : r.by_config[0]) v.push_back(j.heldout.back());
    return v;
  }());
  for (size_t c = 0; c < r.configs.size(); ++c) {
    std::vector<double> finals, ratios, walls;
    std::string per_seed;
    double up = 0, down = 0;
    for (size_t s = 0; s < r.by_config[c].size(); ++s) {
      const JobResult& j = r.by_config[c][s];
      finals.push_back(j.heldout.back());
      ratios.push_back(j.heldout.back() / r.by_config[0][s].heldout.back());
      walls.push_back(j.wall_s);
      up += j.bytes_up / static_cast<double>(r.by_config[c].size());
      down += j.bytes_down / static_cast<double>(r.by_config[c].size());
      char one[16];
      std::snprintf(one, sizeof(one), "%s%.4f", s == 0 ? "" : " ", j.heldout.back());
      per_seed += one;
    }
    const Stats f = Summarize(finals), q = Summarize(ratios);
    char mean[64], ratio[64];
    std::snprintf(mean, sizeof(mean), "%.4f +- %.4f [%.4f, %.4f]", f.mean, f.std, f.min, f.max);
    std::snprintf(ratio, sizeof(ratio), "%.4f [%.4f, %.4f]", f.mean / dp.mean, q.min, q.max);
    std::printf("%-20s %-22s %-34s %-26s %7.1f %10.0f %10.0f %8.2f\n", r.configs[c].name.c_str(), per_seed.c_str(),
                mean, ratio, Summarize(walls).mean, up, down, (up + down) / r.tokens_per_round);
  }
  std::printf("target (B5): DiLoCo / DP <= 1.01\n");
}

// Runs every configuration for every seed, seeds outermost so that a drift in the machine's load spreads over
// the configurations.
Status RunAll(const Args& a, const Data& data, cli::LocalCluster& cluster, Results* results) {
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<transport::Client> client, cluster.Connect());
  results->by_config.resize(results->configs.size());
  for (int s = 0; s < a.seeds; ++s) {
    const uint64_t seed = static_cast<uint64_t>(s) + 1;
    const std::string model_dir = (fs::path(a.dir) / ("base-model-" + std::to_string(seed))).string();
    if (!fs::exists(model_dir)) TRIB_RETURN_IF_ERROR(WriteRandomModelDir(model_dir, cli::DemoModelConfig(), seed));
    for (size_t c = 0; c < results->configs.size(); ++c) {
      const Config& config = results->configs[c];
      TRIB_ASSIGN_OR_RETURN(std::string yaml, JobYaml(a, model_dir, seed, config.overrides));
      if (c == 0) {
        TRIB_ASSIGN_OR_RETURN(double initial, InitialLoss(yaml, data.held_out_path));
        results->initial.push_back(initial);
      }
      const std::string label = config.name + " seed " + std::to_string(seed);
      TRIB_ASSIGN_OR_RETURN(JobResult job, RunJob(a, *client, yaml, label));
      std::printf("%-32s held-out %.4f -> %.4f  wall %6.1f s  up %.0f B/round  down %.0f B/round\n", label.c_str(),
                  results->initial.back(), job.heldout.back(), job.wall_s, job.bytes_up, job.bytes_down);
      std::fflush(stdout);
      results->by_config[c].push_back(std::move(job));
    }
  }
  return Status::OK();
}

Status Run(Args a) {
  if (!fs::exists(a.binary)) return Status::NotFound("--binary " + a.binary + ": no such file");
  const bool made_dir = a.dir.empty();
  if (made_dir) {
    std::string tmpl = (fs::temp_directory_path() / "tributary-quality-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return Status::IOError("cannot create a temporary directory");
    a.dir = tmpl;
  } else if (fs::exists(fs::path(a.dir) / "store")) {
    return Status::AlreadyExists("--dir " + a.dir + ": holds a previous run's store; pass a new directory");
  }
  const auto started = std::chrono::steady_clock::now();
  cli::LocalClusterOptions options;
  options.binary = a.binary;
  options.dir = a.dir;
  options.num_workers = kWorkers;
  options.heartbeat_interval_s = 1.0;
  options.worker_threads = 1;
  TRIB_ASSIGN_OR_RETURN(Data data, PrepareData(a, &options));
  Results results;
  results.configs = Configs(a);
  const std::string first_model = (fs::path(a.dir) / "base-model-1").string();
  TRIB_RETURN_IF_ERROR(WriteRandomModelDir(first_model, cli::DemoModelConfig(), 1));
  TRIB_ASSIGN_OR_RETURN(double tokens_per_row, MeanTokensPerRow(data, first_model));
  results.tokens_per_round = tokens_per_row * a.inner_steps * a.batch_size * kWorkers;
  std::printf(
      "cluster quality at equal tokens (B5): %d workers (worker_threads 1, CURVE on), %d seed(s), %d rounds x H %d "
      "inner steps x batch %d x seq %d per worker, inner %s lr %g max_grad_norm 1, %s shards, %zu held-out rows, "
      "~%.1f tokens per row; %ld CPUs; dir %s\n",
      kWorkers, a.seeds, a.rounds, a.inner_steps, a.batch_size, kSeqLen, a.optimizer.c_str(), a.lr,
      a.iid ? "round-robin" : "non-IID (Dirichlet 0.5)", data.held_out.size(), tokens_per_row,
      sysconf(_SC_NPROCESSORS_ONLN), a.dir.c_str());
  std::fflush(stdout);
  cli::LocalCluster cluster(options);
  TRIB_RETURN_IF_ERROR(cluster.StartAll());
  TRIB_RETURN_IF_ERROR(RunAll(a, data, cluster, &results));
  cluster.StopAll();
  PrintCurves(a, results);
  PrintSummary(a, results);
  std::printf("total %.0f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (made_dir && !a.keep) {
    std::error_code ec;
    fs::remove_all(a.dir, ec);
  }
  return Status::OK();
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  const tributary::Args args = tributary::ParseArgs(argc, argv);
  tributary::Status status = tributary::Run(args);
  if (!status.ok()) {
    std::fprintf(stderr, "cluster_quality_bench: FAILED: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
