#include "tests/system/system_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "base/file_util.h"
#include "cli/demo_data.h"
#include "coordinator/job_model.h"
#include "engine/model/model_init.h"
#include "engine/text/dataset.h"
#include "federation/job_spec.h"
#include "transport/message.h"

namespace tributary::system_test {

namespace fs = std::filesystem;

CliRun Cli(const std::string& dir, const std::string& profile, const std::vector<std::string>& args) {
  const std::string out_path = (fs::path(dir) / "cli.out").string();
  const std::string err_path = (fs::path(dir) / "cli.err").string();
  std::vector<std::string> full = {"-c", "exec \"$0\" \"$@\" 2>\"" + err_path + "\"", TRIBUTARY_BINARY};
  if (!profile.empty()) full.insert(full.end(), {"--config", profile});
  full.insert(full.end(), args.begin(), args.end());
  std::error_code ec;
  fs::remove(out_path, ec);
  auto child = cli::ChildProcess::Spawn("/bin/sh", full, out_path);
  EXPECT_TRUE(child.ok());
  CliRun run;
  if (!child.ok()) return run;
  run.exit_code = (*child)->Wait(300000);
  auto out = ReadFileToString(out_path);
  run.out = out.ok() ? *out : "";
  auto err = ReadFileToString(err_path);
  run.err = err.ok() ? *err : "";
  return run;
}

TestCluster::TestCluster(const std::string& dir, ClusterOptions options) : dir_(dir) {
  base_model_ = (fs::path(dir) / "base-model").string();
  Status written = WriteRandomModelDir(base_model_, cli::DemoModelConfig(), 0);
  EXPECT_TRUE(written.ok()) << written.ToString();
  cli::LocalClusterOptions cluster;
  cluster.binary = TRIBUTARY_BINARY;
  cluster.dir = dir;
  cluster.num_workers = options.num_workers;
  cluster.insecure = options.insecure;
  cluster.coordinator_args = options.coordinator_args;
  cluster.worker_args = options.worker_args;
  cluster.worker_own_args = options.worker_own_args;
  cluster.heartbeat_interval_s = 0.5;
  cluster.worker_threads = 1;
  auto split = SplitTrainHeldOut(cli::DemoExamples(), 0.1, 1);
  EXPECT_TRUE(split.ok());
  NonIIDOptions non_iid;
  non_iid.alpha = 0.5;
  non_iid.seed = 3;
  non_iid.min_per_client = 20;
  auto shards = SplitNonIID(split->train, options.num_workers, non_iid);
  EXPECT_TRUE(shards.ok()) << shards.status().ToString();
  fs::create_directories(fs::path(dir) / "data");
  for (int i = 0; i < options.num_workers; ++i) {
    const std::string path = (fs::path(dir) / "data" / ("shard-" + std::to_string(i) + ".jsonl")).string();
    EXPECT_TRUE(WriteFileAtomic(path, cli::ExamplesToDollyJsonl((*shards)[static_cast<size_t>(i)])).ok());
    cluster.worker_data[i] = {"words=" + path};
  }
  const std::string heldout = (fs::path(dir) / "data" / "heldout.jsonl").string();
  EXPECT_TRUE(WriteFileAtomic(heldout, cli::ExamplesToDollyJsonl(split->held_out)).ok());
  cluster.eval_data = {"words-heldout=" + heldout};
  cluster_ = std::make_unique<cli::LocalCluster>(cluster);
  Status started = cluster_->StartAll();
  EXPECT_TRUE(started.ok()) << started.ToString();
  if (started.ok()) Reconnect();
}

TestCluster::~TestCluster() {
  client_.reset();
  cluster_->StopAll();
}

void TestCluster::Reconnect() {
  auto client = cluster_->Connect();
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  if (client.ok()) client_ = std::move(*client);
}

std::string JobYaml(const std::string& base_model, const std::string& mode, int rounds, uint64_t seed,
                    const std::vector<std::string>& overrides) {
  std::string yaml = "name: system test " + mode +
                     "\n"
                     "model:\n  base: " +
                     base_model +
                     "\n"
                     "data:\n  dataset: words\n  seq_len: 128\n"
                     "federation:\n  mode: " +
                     mode + "\n  rounds: " + std::to_string(rounds) + "\n  seed: " + std::to_string(seed) +
                     "\n"
                     "  min_clients: 4\n  quorum: 1.0\n  deadline_floor_s: 10\n  deadline_ceiling_s: 120\n"
                     "train:\n  local_steps: 5\n  batch_size: 8\n";
  yaml += mode == "lora" ? "  lr: 0.01\n  optimizer: adamw\n" : "  lr: 0.3\n  optimizer: sgd\n  max_grad_norm: 1.0\n";
  if (mode == "ferret") yaml += "ferret:\n  k: 128\n";
  if (mode == "lora") yaml += "lora:\n  rank: 4\n  alpha: 8\n";
  yaml += "eval:\n  dataset: words-heldout\n  every: 1\ncheckpoint:\n  snapshot_every: 2\n";
  auto spec = ParseJobSpec(yaml, "system test spec", overrides);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return spec.ok() ? EffectiveJobSpecYaml(*spec) : "";
}

uint64_t OuterPayloadBytes(const std::string& yaml, OuterCodec codec) {
  auto spec = ParseJobSpec(yaml, "spec");
  EXPECT_TRUE(spec.ok());
  auto model = JobModel::Load(*spec);
  EXPECT_TRUE(model.ok());
  if (!model.ok()) return 0;
  uint64_t bytes = 0;
  for (const TensorEntry& entry : (*model)->initial_state().table().entries())
    bytes += OuterCodecBytes(codec, entry.numel);
  return bytes;
}

double InitialHeldOutLoss(const TestCluster& cluster, const std::string& yaml) {
  auto spec = ParseJobSpec(yaml, "spec");
  EXPECT_TRUE(spec.ok());
  auto model = JobModel::Load(*spec);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_TRUE((*model)->LoadEvalRows((fs::path(cluster.dir()) / "data" / "heldout.jsonl").string()).ok());
  auto loss = (*model)->Evaluate((*model)->initial_state());
  EXPECT_TRUE(loss.ok());
  return loss.ok() ? *loss : 0.0;
}

std::string Submit(transport::Client& client, const std::string& yaml, const std::string& token) {
  transport::Envelope request = transport::NewEnvelope("test");
  request.mutable_submit_job()->set_spec_yaml(yaml);
  request.mutable_submit_job()->set_submit_token(token);
  auto reply = client.Request(request, 30000);
  EXPECT_TRUE(reply.ok()) << reply.status().ToString();
  return reply.ok() ? reply->envelope.submit_job_reply().job_id() : "";
}

Result<v1::GetJobReply> GetJob(transport::Client& client, const std::string& job_id) {
  transport::Envelope request = transport::NewEnvelope("test");
  request.mutable_get_job()->set_job_id(job_id);
  TRIB_ASSIGN_OR_RETURN(transport::Message reply, client.Request(request, 10000));
  return reply.envelope.get_job_reply();
}

bool WaitFor(transport::Client& client, const std::string& job_id,
             const std::function<bool(const v1::GetJobReply&)>& predicate, int timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    auto job = GetJob(client, job_id);
    if (job.ok() && predicate(*job)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

v1::GetJobReply WaitFinished(transport::Client& client, const std::string& job_id, int timeout_s) {
  v1::GetJobReply last;
  const bool done = WaitFor(
      client, job_id,
      [&last](const v1::GetJobReply& job) {
        last = job;
        return job.job().state().rfind("FINISHED", 0) == 0;
      },
      timeout_s);
  EXPECT_TRUE(done) << "job " << job_id << " did not finish within " << timeout_s << " s; state " << last.job().state()
                    << ", round " << last.job().round();
  return last;
}

void ExpectReplicasAtFinalHash(transport::Client& client, const std::string& job_id, uint64_t round,
                               const std::string& hash, int workers) {
  ASSERT_TRUE(WaitFor(client, job_id,
                      [&](const v1::GetJobReply& j) {
                        int at_last = 0;
                        for (const auto& r : j.replicas()) at_last += r.round() == round ? 1 : 0;
                        return at_last == workers;
                      }))
      << "not every worker reported round " << round;
  auto synced = GetJob(client, job_id);
  ASSERT_TRUE(synced.ok());
  for (const auto& r : synced->replicas()) {
    if (r.round() == round) {
      EXPECT_EQ(r.weights_hash(), hash) << r.worker_id();
    }
  }
}

void ExpectReplicaReaches(transport::Client& client, const std::string& job_id, const std::string& worker_id,
                          uint64_t round, const std::string& hash) {
  std::string reported;
  const bool reached = WaitFor(client, job_id, [&](const v1::GetJobReply& job) {
    for (const auto& r : job.replicas()) {
      if (r.worker_id() == worker_id && r.round() == round) {
        reported = r.weights_hash();
        return true;
      }
    }
    return false;
  });
  ASSERT_TRUE(reached) << worker_id << " did not report round " << round;
  EXPECT_EQ(reported, hash) << worker_id << " diverged from the coordinator";
}

std::vector<std::string> JobLog(transport::Client& client, const std::string& job_id) {
  transport::Envelope request = transport::NewEnvelope("test");
  request.mutable_fetch_logs()->set_job_id(job_id);
  auto reply = client.Request(request, 10000);
  if (!reply.ok()) return {};
  const auto& lines = reply->envelope.fetch_logs_reply().lines();
  return {lines.begin(), lines.end()};
}

}  // namespace tributary::system_test
