// `tributary demo`: the README's main job. A coordinator and 4 workers as separate processes on
// loopback (CURVE keys generated for each), a small LLaMA created from scratch, an embedded
// instruction dataset split non-IID across the workers, one Ferret job; prints per-round held-out loss
// and the bytes each client sent against what FedAvg would send, then fetches the model. With --base
// and --data it fine-tunes a given base on a task directory instead (cli/demo_task.h) and ends with
// the base's and the tuned model's answers to held-out questions.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "base/file_util.h"
#include "cli/commands.h"
#include "cli/demo_data.h"
#include "cli/demo_task.h"
#include "cli/local_cluster.h"
#include "coordinator/job_model.h"
#include "engine/model/model_init.h"
#include "federation/job_spec.h"
#include "transport/bulk.h"

namespace tributary::cli {
namespace {

namespace fs = std::filesystem;

struct DemoFlags {
  std::string dir;
  std::string base;  // with data: fine-tune this HF model directory on the task directory `data`
  std::string data;
  int rounds = 20;
  int workers = 4;
  double timeout_s = 900;
  bool keep_running = false;
};

std::string HumanBytes(double bytes) {
  char buf[32];
  if (bytes >= 1 << 20) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", bytes / (1 << 20));
  } else if (bytes >= 1 << 10) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", bytes / (1 << 10));
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f B", bytes);
  }
  return buf;
}

Result<transport::Message> Ask(transport::Client& client, transport::Envelope request, int timeout_ms = 10000) {
  auto reply = client.Request(request, timeout_ms);
  if (!reply.ok() && reply.status().code() == StatusCode::kTimeout)
    return Status::Unavailable("the demo coordinator did not answer within " + std::to_string(timeout_ms / 1000) +
                               " s");
  return reply;
}

// --base/--data: the workers' datasets from the task's client files; returns the job YAML path.
Result<std::string> PrepareTaskFiles(DemoFlags* f, LocalClusterOptions* cluster) {
  TRIB_ASSIGN_OR_RETURN(DemoTask task, PrepareDemoTask(f->base, f->data, f->dir, f->workers));
  f->workers = static_cast<int>(task.worker_data.size());
  std::printf("data: %s, %d workers, rows of %lld tokens:\n", f->data.c_str(), f->workers,
              static_cast<long long>(task.seq_len));
  for (const auto& [i, path] : task.worker_data) {
    cluster->worker_data[i] = {"demo=" + path};
    std::printf("  %s: %4lld questions (%s)\n", LocalCluster::WorkerName(i).c_str(),
                static_cast<long long>(task.worker_examples[i]), task.worker_origin[i].c_str());
  }
  cluster->eval_data = {"demo-heldout=" + task.heldout};
  const std::string job = (fs::path(f->dir) / "job.yaml").string();
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(job, DemoTaskJobYaml(task, f->rounds, f->workers)));
  return job;
}

// Writes the base model, the worker shards and the held-out set; returns the job YAML path.
Result<std::string> PrepareFiles(DemoFlags* f_in, LocalClusterOptions* cluster) {
  if (!f_in->base.empty()) return PrepareTaskFiles(f_in, cluster);
  const DemoFlags& f = *f_in;
  const fs::path dir(f.dir);
  const std::string model_dir = (dir / "base-model").string();
  if (!fs::exists(fs::path(model_dir) / "config.json"))
    TRIB_RETURN_IF_ERROR(WriteRandomModelDir(model_dir, DemoModelConfig(), /*seed=*/0));
  std::error_code ec;
  fs::create_directories(dir / "data", ec);
  TRIB_ASSIGN_OR_RETURN(TrainHeldOut split, SplitTrainHeldOut(DemoExamples(), 0.1, /*seed=*/1));
  NonIIDOptions non_iid;
  non_iid.mode = NonIIDMode::kDirichletCategory;
  non_iid.alpha = 0.5;
  non_iid.seed = 3;
  non_iid.min_per_client = 20;
  TRIB_ASSIGN_OR_RETURN(auto shards, SplitNonIID(split.train, f.workers, non_iid));
  std::printf("data: %zu training examples in 4 tasks, split non-IID (Dirichlet alpha 0.5 by task):\n",
              split.train.size());
  for (int i = 0; i < f.workers; ++i) {
    const std::string path = (dir / "data" / (LocalCluster::WorkerName(i) + ".jsonl")).string();
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(path, ExamplesToDollyJsonl(shards[static_cast<size_t>(i)])));
    cluster->worker_data[i] = {"demo=" + path};
    std::map<std::string, int> per_task;
    for (const Example& ex : shards[static_cast<size_t>(i)]) ++per_task[ex.category];
    std::string mix;
    for (const auto& [task, n] : per_task) mix += (mix.empty() ? "" : ", ") + task + " " + std::to_string(n);
    std::printf("  %s: %3zu examples (%s)\n", LocalCluster::WorkerName(i).c_str(),
                shards[static_cast<size_t>(i)].size(), mix.c_str());
  }
  const std::string heldout = (dir / "data" / "heldout.jsonl").string();
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(heldout, ExamplesToDollyJsonl(split.held_out)));
  cluster->eval_data = {"demo-heldout=" + heldout};
  const std::string job = (dir / "job.yaml").string();
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(job, DemoJobYaml(model_dir, f.rounds)));
  return job;
}

Status FetchModel(transport::Client& client, const std::string& job_id, const std::string& out_dir) {
  transport::Envelope request = transport::NewEnvelope("demo");
  request.mutable_export_model()->set_job_id(job_id);
  request.mutable_export_model()->set_format("safetensors");
  TRIB_ASSIGN_OR_RETURN(transport::Message reply, Ask(client, request, 120000));
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  for (const v1::ExportedFile& file : reply.envelope.export_model_reply().files()) {
    transport::FileSink sink((fs::path(out_dir) / file.name()).string());
    transport::FetchOptions options;
    options.expected_checksum = file.checksum();
    options.sender = "demo";
    TRIB_RETURN_IF_ERROR(transport::FetchObject(client, file.object_id(), &sink, options));
  }
  return Status::OK();
}

Status RunDemo(const DemoFlags& f_in, const std::string& binary) {
  DemoFlags f = f_in;
  const auto start = std::chrono::steady_clock::now();
  if (f.base.empty() != f.data.empty()) return Status::InvalidArgument("give both --base and --data, or neither");
  // Bad paths fail before a work directory is made.
  if (!f.base.empty()) TRIB_RETURN_IF_ERROR(CheckDemoTaskDirs(f.base, f.data));
  if (f.dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "tributary-demo-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return Status::IOError("cannot create a temporary directory");
    f.dir = tmpl;
  } else if (fs::exists(fs::path(f.dir) / "store")) {
    return Status::AlreadyExists("--dir " + f.dir + ": holds a previous demo's store; pass a new directory");
  }
  LocalClusterOptions options;
  options.binary = binary;
  options.dir = f.dir;
  options.heartbeat_interval_s = 1.0;
  options.worker_threads = 1;
  // With --data the workers are known once the client files are (a worker without one is left out).
  const auto header = [&f] {
    std::printf("tributary demo: a coordinator and %d workers on loopback, CURVE on, in %s\n", f.workers,
                f.dir.c_str());
  };
  if (f.base.empty()) header();
  TRIB_ASSIGN_OR_RETURN(std::string job_path, PrepareFiles(&f, &options));
  if (!f.base.empty()) header();
  options.num_workers = f.workers;
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, LoadJobSpec(job_path));

  // The held-out loss of the untrained model, for the "before" line.
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<JobModel> model, JobModel::Load(spec));
  TRIB_RETURN_IF_ERROR(model->LoadEvalRows(options.eval_data[0].substr(std::string("demo-heldout=").size())));
  TRIB_ASSIGN_OR_RETURN(double initial_loss, model->Evaluate(model->initial_state()));
  const double dense_bytes = static_cast<double>(model->initial_state().size()) * sizeof(float);
  std::printf("model: LLaMA%s%s, %lld parameters (%s of fp32: what FedAvg sends per client per round)\n",
              f.base.empty() ? "" : " from ", f.base.c_str(), static_cast<long long>(model->initial_state().size()),
              HumanBytes(dense_bytes).c_str());
  model.reset();

  LocalCluster cluster(options);
  TRIB_RETURN_IF_ERROR(cluster.StartAll());
  std::printf("coordinator %s (log %s/coordinator.log), %d workers started\n", cluster.endpoint().c_str(),
              f.dir.c_str(), f.workers);
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<transport::Client> client, cluster.Connect());

  transport::Envelope submit = transport::NewEnvelope("demo");
  submit.mutable_submit_job()->set_spec_yaml(EffectiveJobSpecYaml(spec));
  submit.mutable_submit_job()->set_submit_token("demo");
  TRIB_ASSIGN_OR_RETURN(transport::Message submitted, Ask(*client, submit));
  const std::string job_id = submitted.envelope.submit_job_reply().job_id();
  std::printf("submitted Ferret job %s: %d rounds, K = %lld per block, %lld local SGD steps per round\n\n",
              job_id.c_str(), f.rounds, static_cast<long long>(spec.ferret.K),
              static_cast<long long>(spec.local_steps));
  std::printf("%5s  %7s  %10s  %13s  %12s  %14s  %8s\n", "round", "clients", "train loss", "held-out loss", "up/client",
              "FedAvg/client", "saving");
  std::printf("%5d  %7s  %10s  %13.4f  %12s  %14s  %8s\n", 0, "-", "-", initial_loss, "-", "-", "-");
  std::fflush(stdout);

  size_t printed = 0;
  std::string state;
  double final_loss = initial_loss;
  double up_per_client = 0;
  while (true) {
    transport::Envelope get = transport::NewEnvelope("demo");
    get.mutable_get_job()->set_job_id(job_id);
    TRIB_ASSIGN_OR_RETURN(transport::Message reply, Ask(*client, get));
    const v1::GetJobReply& job = reply.envelope.get_job_reply();
    for (; printed < static_cast<size_t>(job.rounds_size()); ++printed) {
      const v1::RoundSummary& r = job.rounds(static_cast<int>(printed));
      up_per_client = r.participants() > 0 ? static_cast<double>(r.bytes_up()) / r.participants() : 0;
      if (!std::isnan(r.heldout_loss())) final_loss = r.heldout_loss();
      std::printf("%5llu  %3u/%-3d  %10.4f  %13.4f  %12s  %14s  %7.0fx\n", static_cast<unsigned long long>(r.round()),
                  r.participants(), f.workers, r.train_loss(), r.heldout_loss(), HumanBytes(up_per_client).c_str(),
                  HumanBytes(dense_bytes).c_str(), up_per_client > 0 ? dense_bytes / up_per_client : 0.0);
      std::fflush(stdout);
    }
    state = job.job().state();
    if (state.rfind("FINISHED", 0) == 0) break;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed > f.timeout_s)
      return Status::Timeout("the demo job did not finish within " + std::to_string(f.timeout_s) + " s; logs are in " +
                             f.dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  if (state != "FINISHED:COMPLETED") return Status::Internal("the demo job ended " + state + "; see " + f.dir);

  const std::string model_out = (fs::path(f.dir) / "model").string();
  TRIB_RETURN_IF_ERROR(FetchModel(*client, job_id, model_out));
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "\njob %s %s in %.0f s: held-out loss %.4f -> %.4f; each client sent %s per round instead of %s "
      "(%.0fx less)\n",
      job_id.c_str(), state.c_str(), elapsed, initial_loss, final_loss, HumanBytes(up_per_client).c_str(),
      HumanBytes(dense_bytes).c_str(), up_per_client > 0 ? dense_bytes / up_per_client : 0.0);
  std::printf("model (HF safetensors directory): %s\n", model_out.c_str());
  if (!f.base.empty()) {
    const std::string heldout = options.eval_data[0].substr(std::string("demo-heldout=").size());
    TRIB_RETURN_IF_ERROR(PrintBeforeAfter(f.base, model_out, heldout));
  }
  std::printf("logs: %s/{coordinator,worker-1..%d}.log; client profile: tributary --config %s status %s\n",
              f.dir.c_str(), f.workers, cluster.client_config().c_str(), job_id.c_str());
  if (f.keep_running) {
    std::printf("--keep-running: the daemons stay up; press Ctrl-C to stop them\n");
    std::fflush(stdout);
    pause();
  }
  cluster.StopAll();
  return Status::OK();
}

}  // namespace

void RegisterDemoCommand(CLI::App& app, CommandRegistry& registry) {
  auto f = std::make_shared<DemoFlags>();
  CLI::App* demo = app.add_subcommand(
      "demo", "Run a local federated fine-tune: a coordinator and 4 workers as processes on loopback, one Ferret job");
  demo->add_option("--dir", f->dir, "Work directory (default: a new one under $TMPDIR)");
  demo->add_option("--base", f->base, "Fine-tune this HF model directory (with --data) instead of a random model");
  demo->add_option("--data", f->data,
                   "Task directory: client-NN.jsonl (worker I holds the files numbered I mod 4) and heldout.jsonl");
  demo->add_option("--rounds", f->rounds, "Federated rounds")->check(CLI::Range(1, 1000));
  demo->add_option("--timeout", f->timeout_s, "Give up after S seconds")->check(CLI::PositiveNumber);
  demo->add_flag("--keep-running", f->keep_running, "Leave the daemons running after the job (Ctrl-C stops them)");
  registry.handlers["demo"] = [f](CommandContext&) -> Status {
    std::error_code ec;
    const std::string binary = fs::read_symlink("/proc/self/exe", ec).string();
    if (ec) return Status::Internal("cannot locate the tributary binary: " + ec.message());
    return RunDemo(*f, binary);
  };
}

}  // namespace tributary::cli
