// The learning-quality study (docs/quality.md): one pretrained base, one non-IID instruction task, every
// method of the system fine-tuning it at equal tokens, side by side. Inputs come from scripts/quality/
// (build_data.py writes the task, `pretrain` the base); this program runs the experiments and writes one JSON
// object per (method, seed, round) for scripts/quality/plot.py.
//
// A `cli::LocalCluster` starts a coordinator and one worker process per client on loopback (CURVE on,
// worker_threads 1); worker I holds client I's questions as dataset `task`, the coordinator holds the held-out
// questions as `heldout` and evaluates the held-out loss after every round. Methods (--methods, in this order):
//
//   central       the baseline without federation: `tributary train` on all training questions, in segments of
//                 clients x local_steps steps (one federated round's tokens), the optimizer fresh per segment as a
//                 client's is per round
//   fedavg        federation.mode fedavg: dense deltas
//   ferret-kK     federation.mode ferret with ferret.k K (one per --ferret-k value)
//   fedkseed      federation.mode fedkseed (zeroth order over a pool of shared seeds; --fedkseed-* options)
//   lora          federation.mode lora (FedIT): LoRA adapters averaged
//   dp            mode cluster, one island of every worker, outer sgd lr 1: data parallel at every step
//   diloco-int8   mode cluster, two islands, Nesterov outer step, PRIME's int8 codec
//   diloco-ferret mode cluster, two islands, Ferret-projected pseudo-gradients, outer sgd
//
// Every job trains rounds x local_steps x batch sequences per client. After the jobs the cluster stops and each
// job's rounds (every --eval-every-th and the last) are scored by `tributary eval --model job:ID@R --store`:
// held-out loss, greedy Rouge-L and exact match. Bytes are the job's own RoundSummary counts (uploads, divided by
// the round's clients); wall time is the driver's clock at the round's commit.
//
//   quality_study --data DIR --base DIR [--out results.jsonl] [--dir WORK] [--methods LIST] [--seeds 1]
//                 [--rounds 12] [--local-steps 5] [--batch 4] [--seq-len 64] [--lr 1e-3] [--optimizer adamw]
//                 [--ferret-k 64,512,4096] [--ferret-server-lr 1] [--lora-lr 3e-3] [--fedkseed-k 1024] [--fedkseed-lr
//                 1e-3]
//                 [--fedkseed-steps 50] [--generations 64] [--eval-every 4] [--timeout 1800] [--binary PATH]
//                 [--check]
//
// --check (the CI smoke test, tests/system/quality_smoke_test.sh): exit 1 unless every method's final held-out
// loss is below the base model's.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "cli/local_cluster.h"
#include "federation/job_spec.h"
#include "transport/message.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Args {
  std::string binary = TRIBUTARY_BINARY;
  std::string data;  // build_data.py output
  std::string base;  // the pretrained base model
  std::string out = "quality-results.jsonl";
  std::string dir;
  std::vector<std::string> methods = {"central", "fedavg", "ferret",      "fedkseed",
                                      "lora",    "dp",     "diloco-int8", "diloco-ferret"};
  int seeds = 1;
  int rounds = 12;
  int local_steps = 5;
  int batch = 4;
  int seq_len = 64;
  std::string lr = "1e-3";
  std::string optimizer = "adamw";
  std::vector<std::string> ferret_k = {"64", "512", "4096"};
  std::string ferret_server_lr = "1";
  std::string lora_lr = "3e-3";
  std::string fedkseed_k = "1024";
  std::string fedkseed_lr = "1e-3";
  std::string fedkseed_steps = "50";
  int generations = 64;
  int eval_every = 4;
  double timeout_s = 1800;
  bool check = false;
};

[[noreturn]] void Usage(const std::string& problem) {
  std::fprintf(stderr, "quality_study: %s\n(see the comment at the top of bench/quality_study.cc for the flags)\n",
               problem.c_str());
  std::exit(2);
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--check") {
      a.check = true;
      continue;
    }
    if (i + 1 >= argc) Usage(f + " needs a value");
    const std::string v = argv[++i];
    auto integer = [&](int lo) {
      const int n = std::atoi(v.c_str());
      if (n < lo) Usage(f + " must be >= " + std::to_string(lo));
      return n;
    };
    if (f == "--binary")
      a.binary = v;
    else if (f == "--data")
      a.data = v;
    else if (f == "--base")
      a.base = v;
    else if (f == "--out")
      a.out = v;
    else if (f == "--dir")
      a.dir = v;
    else if (f == "--methods")
      a.methods = SplitList(v);
    else if (f == "--seeds")
      a.seeds = integer(1);
    else if (f == "--rounds")
      a.rounds = integer(1);
    else if (f == "--local-steps")
      a.local_steps = integer(1);
    else if (f == "--batch")
      a.batch = integer(1);
    else if (f == "--seq-len")
      a.seq_len = integer(8);
    else if (f == "--lr")
      a.lr = v;
    else if (f == "--optimizer")
      a.optimizer = v;
    else if (f == "--ferret-k")
      a.ferret_k = SplitList(v);
    else if (f == "--ferret-server-lr")
      a.ferret_server_lr = v;
    else if (f == "--lora-lr")
      a.lora_lr = v;
    else if (f == "--fedkseed-k")
      a.fedkseed_k = v;
    else if (f == "--fedkseed-lr")
      a.fedkseed_lr = v;
    else if (f == "--fedkseed-steps")
      a.fedkseed_steps = v;
    else if (f == "--generations")
      a.generations = integer(0);
    else if (f == "--eval-every")
      a.eval_every = integer(1);
    else if (f == "--timeout")
      a.timeout_s = integer(1);
    else
      Usage("unknown flag " + f);
  }
  if (a.data.empty() || a.base.empty()) Usage("--data and --base are required");
  return a;
}

int CountClients(const std::string& data_dir) {
  int n = 0;
  while (fs::exists(fs::path(data_dir) / (std::string("client-") + (n < 10 ? "0" : "") + std::to_string(n) + ".jsonl")))
    ++n;
  return n;
}

std::string ClientFile(const std::string& data_dir, int i) {
  char name[32];
  std::snprintf(name, sizeof(name), "client-%02d.jsonl", i);
  return (fs::path(data_dir) / name).string();
}

struct Method {
  std::string name;
  std::vector<std::string> overrides;  // --set style on top of the shared spec; empty name: not a job
};

std::string Islands(int clients, int islands) {
  std::string list = "cluster.islands=[";
  for (int g = 0; g < islands; ++g) {
    list += std::string(g ? ", " : "") + "'i" + std::to_string(g) + "=";
    for (int w = g; w < clients; w += islands) list += (w == g ? "" : ",") + cli::LocalCluster::WorkerName(w);
    list += "'";
  }
  return list + "]";
}

Result<std::vector<Method>> Methods(const Args& a, int clients) {
  std::vector<Method> out;
  for (const std::string& m : a.methods) {
    if (m == "central") {
      out.push_back({m, {}});
    } else if (m == "fedavg") {
      out.push_back({m, {"federation.mode=fedavg"}});
    } else if (m == "ferret") {
      for (const std::string& k : a.ferret_k)
        out.push_back(
            {"ferret-k" + k, {"federation.mode=ferret", "ferret.k=" + k, "train.server_lr=" + a.ferret_server_lr}});
    } else if (m == "fedkseed") {
      out.push_back({m,
                     {"federation.mode=fedkseed", "fedkseed.k=" + a.fedkseed_k, "train.lr=" + a.fedkseed_lr,
                      "train.local_steps=" + a.fedkseed_steps, "train.optimizer=sgd", "train.max_grad_norm=0"}});
    } else if (m == "lora") {
      out.push_back({m,
                     {"federation.mode=lora", "train.lr=" + a.lora_lr, "lora.rank=16",
                      "lora.targets=[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]"}});
    } else if (m == "dp") {
      out.push_back({m,
                     {"federation.mode=cluster", Islands(clients, 1), "cluster.outer_optimizer=sgd",
                      "cluster.outer_lr=1", "cluster.codec=fp32"}});
    } else if (m == "diloco-int8") {
      out.push_back({m, {"federation.mode=cluster", Islands(clients, 2), "cluster.codec=int8"}});
    } else if (m == "diloco-ferret") {
      out.push_back(
          {m,
           {"federation.mode=cluster", Islands(clients, 2), "cluster.outer_optimizer=sgd",
            "cluster.outer_lr=" + a.ferret_server_lr, "cluster.codec=ferret", "ferret.k=" + a.ferret_k.back()}});
    } else {
      return Status::InvalidArgument("--methods: unknown method '" + m + "'");
    }
  }
  return out;
}

Result<std::string> JobYaml(const Args& a, int clients, uint64_t seed, const Method& m) {
  const std::string yaml = "name: quality study " + m.name + "\nmodel:\n  base: " + a.base +
                           "\ndata:\n  dataset: task\n  seq_len: " + std::to_string(a.seq_len) +
                           "\nfederation:\n  rounds: " + std::to_string(a.rounds) +
                           "\n  seed: " + std::to_string(seed) + "\n  min_clients: " + std::to_string(clients) +
                           "\n  quorum: 1.0\n  deadline_floor_s: 600\n  deadline_ceiling_s: 3600\n"
                           "train:\n  local_steps: " +
                           std::to_string(a.local_steps) + "\n  batch_size: " + std::to_string(a.batch) +
                           "\n  lr: " + a.lr + "\n  optimizer: " + a.optimizer + "\n  max_grad_norm: 1.0\n" +
                           "eval:\n  dataset: heldout\n  every: 1\ncheckpoint:\n  snapshot_every: 1000\n";
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(yaml, "quality study spec (" + m.name + ")", m.overrides));
  return EffectiveJobSpecYaml(spec);
}

struct RoundPoint {
  int round = 0;                   // 1-based; 0 = the base
  double heldout_loss = 0;         // the coordinator's
  double up_bytes_per_client = 0;  // this round's uploads / its clients
  double wall_s = 0;               // since submit
};

// Runs a command, returning its stdout (stderr goes to `log`); a non-zero exit is an error.
Result<std::string> RunCommand(const std::string& command, const std::string& log) {
  FILE* pipe = popen((command + " 2>>'" + log + "'").c_str(), "r");
  if (pipe == nullptr) return Status::Internal("cannot run: " + command);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0)
    return Status::Internal("exit " + std::to_string(WEXITSTATUS(rc)) + ": " + command + " (see " + log + ")");
  return out;
}

// The "data" object of a `--format json` envelope.
Result<json> JsonData(const std::string& text, const std::string& what) {
  try {
    const json j = json::parse(text);
    return j.contains("data") ? j["data"] : j;
  } catch (const json::exception& e) {
    return Status::Internal(what + ": not JSON: " + e.what());
  }
}

Result<v1::GetJobReply> GetJob(transport::Client& client, const std::string& job_id) {
  transport::Envelope get = transport::NewEnvelope("quality-study");
  get.mutable_get_job()->set_job_id(job_id);
  TRIB_ASSIGN_OR_RETURN(transport::Message reply, client.Request(get, 30000));
  return reply.envelope.get_job_reply();
}

// Submits and follows one job; the points of its committed rounds.
Result<std::vector<RoundPoint>> RunJob(const Args& a, transport::Client& client, const std::string& yaml,
                                       const std::string& token, std::string* job_id) {
  transport::Envelope submit = transport::NewEnvelope("quality-study");
  submit.mutable_submit_job()->set_spec_yaml(yaml);
  submit.mutable_submit_job()->set_submit_token(token);
  TRIB_ASSIGN_OR_RETURN(transport::Message submitted, client.Request(submit, 60000));
  const v1::SubmitJobReply& accepted = submitted.envelope.submit_job_reply();
  if (!accepted.accepted()) return Status::InvalidArgument(token + ": refused: " + accepted.error());
  *job_id = accepted.job_id();
  const auto started = std::chrono::steady_clock::now();
  std::vector<RoundPoint> points;
  while (true) {
    TRIB_ASSIGN_OR_RETURN(v1::GetJobReply job, GetJob(client, *job_id));
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    for (const v1::RoundSummary& r : job.rounds()) {  // committed rounds are numbered from 1
      if (!points.empty() && static_cast<int>(r.round()) <= points.back().round) continue;
      RoundPoint p;
      p.round = static_cast<int>(r.round());
      p.heldout_loss = r.heldout_loss();
      p.up_bytes_per_client = r.participants() > 0 ? static_cast<double>(r.bytes_up()) / r.participants() : 0;
      p.wall_s = now;
      points.push_back(p);
    }
    if (job.job().state().rfind("FINISHED", 0) == 0) {
      if (job.job().state() != "FINISHED:COMPLETED")
        return Status::Internal(token + ": job " + *job_id + " ended " + job.job().state() + ": " + job.job().error());
      return points;
    }
    if (now > a.timeout_s) return Status::Timeout(token + ": job " + *job_id + " did not finish in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

struct Row {
  std::string method;
  int seed = 0;
  RoundPoint point;
  double tokens = 0;  // training tokens (rows x seq_len upper bound) seen by all clients so far
  json eval;          // `tributary eval` data, when scored
};

bool Scored(const Args& a, int round) {
  return round == 0 || round % a.eval_every == 0 || round == a.rounds;
}

Result<json> Evaluate(const Args& a, const std::string& model, const std::string& store, const std::string& log,
                      int generations) {
  std::string command = "'" + a.binary + "' eval --model '" + model + "' --data '" + a.data +
                        "/heldout.jsonl' --seq-len " + std::to_string(a.seq_len) + " --generations " +
                        std::to_string(generations) + " --max-new-tokens 24 --format json";
  if (!store.empty()) command += " --store '" + store + "'";
  TRIB_ASSIGN_OR_RETURN(std::string out, RunCommand(command, log));
  return JsonData(out, "eval of " + model);
}

// The centralized baseline: chained `train` segments of one federated round's tokens each.
Status RunCentral(const Args& a, int clients, int seed, std::vector<Row>* rows) {
  const std::string work = (fs::path(a.dir) / ("central-" + std::to_string(seed))).string();
  const std::string log = work + ".log";
  std::string model = a.base;
  const auto started = std::chrono::steady_clock::now();
  for (int r = 1; r <= a.rounds; ++r) {
    const std::string out = work + "/round-" + std::to_string(r);
    const std::string command = "'" + a.binary + "' train --model '" + model + "' --data '" + a.data +
                                "/train.jsonl' --held-out 0 --steps " + std::to_string(clients * a.local_steps) +
                                " --batch " + std::to_string(a.batch) + " --seq-len " + std::to_string(a.seq_len) +
                                " --lr " + a.lr + " --optimizer " + a.optimizer +
                                " --max-grad-norm 1 --eval-generations 0 --seed " + std::to_string(seed * 1000 + r) +
                                " -o '" + out + "' --format json";
    TRIB_RETURN_IF_ERROR(RunCommand(command, log).status());
    model = out;
    Row row{"central", seed, {}, 0, json()};
    row.point.round = r;
    row.point.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    // The loss every round (the coordinator's evaluation of the federated jobs); generations when scored.
    const bool scored = Scored(a, r);
    TRIB_ASSIGN_OR_RETURN(json eval, Evaluate(a, model, "", log, scored ? a.generations : 0));
    row.point.heldout_loss = eval["loss"].get<double>();
    if (scored) row.eval = std::move(eval);
    rows->push_back(std::move(row));
    std::printf("  central seed %d round %d/%d  %.0f s\n", seed, r, a.rounds, rows->back().point.wall_s);
    std::fflush(stdout);
  }
  return Status::OK();
}

void WriteRow(std::ofstream& out, const Args& a, int clients, const Row& r) {
  json j = {{"method", r.method},
            {"seed", r.seed},
            {"round", r.point.round},
            {"heldout_loss", r.point.heldout_loss},
            {"up_bytes_per_client", r.point.up_bytes_per_client},
            {"wall_s", r.point.wall_s},
            {"sequences", static_cast<double>(r.point.round) * clients * a.local_steps * a.batch}};
  if (!r.eval.is_null()) {
    j["eval_loss"] = r.eval["loss"];
    j["rouge_l"] = r.eval["rouge_l"];
    j["exact_match"] = r.eval["exact_match"];
  }
  out << j.dump() << "\n";
  out.flush();
}

Status Run(Args a) {
  if (!fs::exists(a.binary)) return Status::NotFound("--binary " + a.binary + ": no such file");
  const int clients = CountClients(a.data);
  if (clients == 0) return Status::NotFound(a.data + ": no client-00.jsonl (run scripts/quality/build_data.py)");
  if (!fs::exists(fs::path(a.base) / "config.json")) return Status::NotFound(a.base + ": no config.json");
  if (a.dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "tributary-quality-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return Status::IOError("cannot create a temporary directory");
    a.dir = tmpl;
  }
  std::error_code ec;
  fs::create_directories(a.dir, ec);
  if (ec) return Status::IOError(a.dir + ": cannot create: " + ec.message());
  TRIB_ASSIGN_OR_RETURN(std::vector<Method> methods, Methods(a, clients));
  std::ofstream out(a.out, std::ios::app);
  if (!out) return Status::IOError(a.out + ": cannot open for appending");
  std::printf("quality study: %d clients, %d rounds x %d local steps x batch %d x seq %d, %d seed(s), work dir %s\n",
              clients, a.rounds, a.local_steps, a.batch, a.seq_len, a.seeds, a.dir.c_str());

  // The base model's scores: round 0 of every method.
  const std::string log = (fs::path(a.dir) / "eval.log").string();
  TRIB_ASSIGN_OR_RETURN(json base_eval, Evaluate(a, a.base, "", log, a.generations));
  std::printf("base: held-out loss %.4f, Rouge-L %.4f, exact match %.4f\n", base_eval["loss"].get<double>(),
              base_eval["rouge_l"].get<double>(), base_eval["exact_match"].get<double>());

  cli::LocalClusterOptions options;
  options.binary = a.binary;
  options.dir = a.dir;
  options.num_workers = clients;
  options.heartbeat_interval_s = 2.0;
  options.worker_threads = 1;
  for (int w = 0; w < clients; ++w) options.worker_data[w] = {"task=" + ClientFile(a.data, w)};
  options.eval_data = {"heldout=" + a.data + "/heldout.jsonl"};
  cli::LocalCluster cluster(options);
  TRIB_RETURN_IF_ERROR(cluster.StartAll());
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<transport::Client> client, cluster.Connect());

  struct Done {
    std::string method, job_id;
    int seed;
    std::vector<RoundPoint> points;
  };
  std::vector<Done> jobs;
  std::vector<Row> central;
  for (int seed = 1; seed <= a.seeds; ++seed) {
    for (const Method& m : methods) {
      Row base{m.name, seed, {}, 0, base_eval};
      base.point.heldout_loss = base_eval["loss"].get<double>();
      WriteRow(out, a, clients, base);
      if (m.name == "central") {
        TRIB_RETURN_IF_ERROR(RunCentral(a, clients, seed, &central));
        continue;
      }
      TRIB_ASSIGN_OR_RETURN(std::string yaml, JobYaml(a, clients, static_cast<uint64_t>(seed), m));
      Done d{m.name, "", seed, {}};
      const std::string token = "quality-" + m.name + "-seed" + std::to_string(seed) + "-" + std::to_string(getpid());
      TRIB_ASSIGN_OR_RETURN(d.points, RunJob(a, *client, yaml, token, &d.job_id));
      std::printf("  %-14s seed %d: job %s, held-out %.4f -> %.4f in %.0f s, %.0f B up per client per round\n",
                  m.name.c_str(), seed, d.job_id.c_str(), base_eval["loss"].get<double>(), d.points.back().heldout_loss,
                  d.points.back().wall_s, d.points.back().up_bytes_per_client);
      std::fflush(stdout);
      jobs.push_back(std::move(d));
    }
  }
  client.reset();
  cluster.StopAll();
  for (const Row& r : central) WriteRow(out, a, clients, r);

  // Generation scores of the committed rounds, read from the stopped coordinator's store.
  const std::string store = (fs::path(a.dir) / "store").string();
  for (const Done& d : jobs) {
    for (const RoundPoint& p : d.points) {
      Row row{d.method, d.seed, p, 0, json()};
      if (Scored(a, p.round)) {
        TRIB_ASSIGN_OR_RETURN(
            row.eval, Evaluate(a, "job:" + d.job_id + "@" + std::to_string(p.round), store, log, a.generations));
      }
      WriteRow(out, a, clients, row);
    }
    std::printf("  scored %s seed %d\n", d.method.c_str(), d.seed);
    std::fflush(stdout);
  }
  std::printf("results appended to %s (work dir %s)\n", a.out.c_str(), a.dir.c_str());
  if (!a.check) return Status::OK();
  const double base_loss = base_eval["loss"].get<double>();
  std::string worse;
  auto verdict = [&](const std::string& method, int seed, double final_loss) {
    const bool lower = std::isfinite(final_loss) && final_loss < base_loss;
    std::printf("check: %-14s seed %d: held-out loss %.4f -> %.4f %s\n", method.c_str(), seed, base_loss, final_loss,
                lower ? "lower" : "NOT LOWER");
    if (!lower) worse += (worse.empty() ? "" : ", ") + method;
  };
  for (const Done& d : jobs) verdict(d.method, d.seed, d.points.back().heldout_loss);
  for (const Row& r : central)
    if (r.point.round == a.rounds) verdict("central", r.seed, r.point.heldout_loss);
  if (!worse.empty()) return Status::Internal("held-out loss did not fall for: " + worse);
  return Status::OK();
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  const tributary::Args args = tributary::ParseArgs(argc, argv);
  const tributary::Status status = tributary::Run(args);
  if (!status.ok()) {
    std::fprintf(stderr, "quality_study: FAILED: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
