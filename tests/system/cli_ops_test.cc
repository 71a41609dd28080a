// The operator commands through the real `tributary` CLI against real daemons: `status --watch` (the
// refreshing view with the loss chart; exit codes as `wait`), `logs JOB --worker W` (lines the worker
// really logged for the job, shipped to the coordinator; refusals and errors), and `--format json` of
// every command that prints results.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "base/file_util.h"
#include "tests/system/system_util.h"
#include "transport/message.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The worker's lines for the job, polled until one contains `what` (the worker ships every second).
CliRun WorkerLogsContaining(const std::string& dir, const std::string& profile, const std::string& job,
                            const std::string& worker, const std::string& what) {
  CliRun run;
  for (int attempt = 0; attempt < 120; ++attempt) {
    run = Cli(dir, profile, {"logs", job, "--worker", worker});
    if (run.exit_code == 0 && run.out.find(what) != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return run;
}

v1::WorkerLogLinesReply SendLogLines(transport::Client& client, const std::string& worker, const std::string& job) {
  transport::Envelope request = transport::NewEnvelope(worker);
  v1::WorkerLogLines* lines = request.mutable_worker_log_lines();
  lines->set_worker_id(worker);
  lines->set_job_id(job);
  lines->add_lines("a line for a job this worker is not in");
  auto reply = client.Request(request, 10000);
  EXPECT_TRUE(reply.ok()) << reply.status().ToString();
  return reply.ok() ? reply->envelope.worker_log_lines_reply() : v1::WorkerLogLinesReply();
}

TEST(CliOpsSystemTest, WatchWorkerLogsAndJsonEverywhere) {
  TestDir dir;
  TestCluster cluster(dir.path());
  const std::string profile = cluster.cluster().client_config();
  const std::string job_file = (fs::path(dir.path()) / "job.yaml").string();
  ASSERT_TRUE(WriteFileAtomic(job_file, JobYaml(cluster.base_model(), "lora", 3, 8)).ok());
  CliRun submit = Cli(dir.path(), profile, {"submit", job_file});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string job = Lines(submit.out).at(0);

  // The watch follows the job to its end (not a TTY: a block per change) and exits as `wait` does.
  CliRun watch = Cli(dir.path(), profile, {"status", job, "--watch", "--interval", "0.2"});
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  const size_t last_block = watch.out.rfind("job           " + job);
  ASSERT_NE(last_block, std::string::npos) << watch.out;
  const std::string final_view = watch.out.substr(last_block);
  EXPECT_NE(final_view.find("FINISHED:COMPLETED"), std::string::npos) << final_view;
  EXPECT_NE(final_view.find("round         3/3"), std::string::npos) << final_view;
  EXPECT_NE(final_view.find("* train  o held-out"), std::string::npos) << final_view;
  EXPECT_NE(final_view.find("round 1"), std::string::npos) << final_view;
  int marks = 0;
  for (const std::string& line : Lines(final_view)) {
    const size_t bar = line.find(" |");
    if (bar == std::string::npos) continue;
    for (char c : line.substr(bar + 2)) marks += (c == '*' || c == '#') ? 1 : 0;
  }
  EXPECT_EQ(marks, 3) << "one train mark per committed round\n" << final_view;

  // The worker's own lines for the job, fetched through the coordinator.
  const std::string worker = cli::LocalCluster::WorkerName(0);
  CliRun logs = WorkerLogsContaining(dir.path(), profile, job, worker, "job " + job + " round 3: trained");
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("worker '" + worker + "': job " + job + " round 1: trained"), std::string::npos) << logs.out;
  EXPECT_EQ(logs.out.find("worker '" + cli::LocalCluster::WorkerName(1) + "'"), std::string::npos)
      << "only " << worker << "'s lines\n"
      << logs.out;

  // Errors name what is wrong, in one line.
  CliRun unknown_worker = Cli(dir.path(), profile, {"logs", job, "--worker", "nobody"});
  EXPECT_EQ(unknown_worker.exit_code, 4);
  EXPECT_NE(unknown_worker.err.find("worker 'nobody' is not known"), std::string::npos) << unknown_worker.err;
  CliRun unknown_job = Cli(dir.path(), profile, {"logs", "job-none", "--worker", worker});
  EXPECT_EQ(unknown_job.exit_code, 4);
  EXPECT_NE(unknown_job.err.find("job 'job-none' not found"), std::string::npos) << unknown_job.err;

  // A registered worker that was never in the job: its lines for it are refused, and it has none to show.
  transport::Envelope reg = transport::NewEnvelope("outsider");
  reg.mutable_register_worker()->set_worker_id("outsider");
  reg.mutable_register_worker()->mutable_capabilities()->set_cpu_cores(1);
  reg.mutable_register_worker()->mutable_capabilities()->set_memory_bytes(1ull << 30);
  auto registered = cluster.client().Request(reg, 10000);
  ASSERT_TRUE(registered.ok()) << registered.status().ToString();
  ASSERT_TRUE(registered->envelope.register_ack().accepted()) << registered->envelope.register_ack().reason();
  v1::WorkerLogLinesReply refused = SendLogLines(cluster.client(), "outsider", job);
  EXPECT_FALSE(refused.accepted());
  EXPECT_NE(refused.reason().find("not in job"), std::string::npos) << refused.reason();
  EXPECT_FALSE(SendLogLines(cluster.client(), "outsider", "job-none").accepted());
  CliRun never = Cli(dir.path(), profile, {"logs", job, "--worker", "outsider"});
  EXPECT_EQ(never.exit_code, 4);
  EXPECT_NE(never.err.find("worker 'outsider' never worked on job '" + job + "'"), std::string::npos) << never.err;

  // A stopped job: the watch exits 1, as `wait` does.
  const std::string long_file = (fs::path(dir.path()) / "long.yaml").string();
  ASSERT_TRUE(WriteFileAtomic(long_file, JobYaml(cluster.base_model(), "ferret", 500, 8)).ok());
  CliRun long_submit = Cli(dir.path(), profile, {"submit", long_file});
  ASSERT_EQ(long_submit.exit_code, 0) << long_submit.err;
  const std::string long_job = Lines(long_submit.out).at(0);
  {
    // Ctrl-C ends a watch with exit 0 (the job goes on).
    const std::string out_path = (fs::path(dir.path()) / "watch.out").string();
    auto watching =
        cli::ChildProcess::Spawn(TRIBUTARY_BINARY, {"--config", profile, "status", long_job, "--watch"}, out_path);
    ASSERT_TRUE(watching.ok());
    for (int i = 0; i < 600; ++i) {
      auto shown = ReadFileToString(out_path);
      if (shown.ok() && shown->find("job           " + long_job) != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    (*watching)->Signal(SIGINT);
    EXPECT_EQ((*watching)->Wait(60000), 0);
    auto still = GetJob(cluster.client(), long_job);
    ASSERT_TRUE(still.ok());
    EXPECT_EQ(still->job().state(), "RUNNING");
  }
  ASSERT_EQ(Cli(dir.path(), profile, {"stop", long_job}).exit_code, 0);
  CliRun stopped = Cli(dir.path(), profile, {"status", long_job, "--watch", "--format", "json"});
  EXPECT_EQ(stopped.exit_code, 1) << stopped.out;
  const std::vector<std::string> stopped_lines = Lines(stopped.out);
  ASSERT_FALSE(stopped_lines.empty());
  const nlohmann::json last = nlohmann::json::parse(stopped_lines.back(), nullptr, false);
  EXPECT_EQ(last["ok"], false) << stopped_lines.back();
  EXPECT_EQ(last["error"]["code"], "JOB_STOPPED") << stopped_lines.back();

  // Every command that prints results prints one JSON envelope with --format json (watch: one per line).
  const std::string data = cluster.cluster().options().worker_data.at(0).at(0).substr(std::string("words=").size());
  const std::vector<std::vector<std::string>> commands = {
      {"version", "--format", "json"},
      {"config", "--format", "json"},
      {"jobs", "--format", "json"},
      {"status", job, "--format", "json"},
      {"status", job, "--watch", "--format", "json"},
      {"wait", job, "--format", "json"},
      {"logs", job, "--format", "json"},
      {"logs", job, "--worker", worker, "--format", "json"},
      {"stop", long_job, "--format", "json"},
      {"submit", job_file, "--dry-run", "--format", "json"},
      {"download", job, "--format", "peft", "-o", dir.path() + "/adapter", "--summary-format", "json"},
      {"keygen", "-o", dir.path() + "/keys/extra", "--format", "json"},
      {"eval", "--model", cluster.base_model(), "--data", data, "--generations", "0", "--seq-len", "32", "--format",
       "json"},
  };
  for (const std::vector<std::string>& args : commands) {
    std::string name;
    for (const std::string& a : args) name += a + " ";
    CliRun run = Cli(dir.path(), profile, args);
    EXPECT_EQ(run.exit_code, 0) << name << "\n" << run.out << run.err;
    const std::vector<std::string> lines = Lines(run.out);
    ASSERT_FALSE(lines.empty()) << name;
    const bool ndjson = args[0] == "status" && args.size() > 2 && args[2] == "--watch";
    if (!ndjson) {
      EXPECT_EQ(lines.size(), 1u) << name << "\n" << run.out;
    }
    for (const std::string& line : lines) {
      const nlohmann::json parsed = nlohmann::json::parse(line, nullptr, false);
      ASSERT_FALSE(parsed.is_discarded()) << name << ": " << line;
      EXPECT_EQ(parsed["schema_version"], "1") << name;
      EXPECT_EQ(parsed["ok"], true) << name;
      EXPECT_EQ(parsed["command"], args[0]) << name;
      EXPECT_TRUE(parsed["data"].is_object()) << name;
    }
  }
  // A few keys per command (docs/cli.md lists them all).
  const nlohmann::json worker_logs =
      nlohmann::json::parse(Cli(dir.path(), profile, {"logs", job, "--worker", worker, "--format", "json"}).out);
  EXPECT_EQ(worker_logs["data"]["worker_id"], worker);
  EXPECT_FALSE(worker_logs["data"]["lines"].empty());
  const nlohmann::json config = nlohmann::json::parse(Cli(dir.path(), profile, {"config", "--format", "json"}).out);
  EXPECT_FALSE(config["data"]["keys"].empty());
  EXPECT_TRUE(config["data"]["keys"][0].contains("origin"));
}

}  // namespace
}  // namespace tributary::system_test

namespace tributary::system_test {
namespace {

// Registers a worker with one NIC of `kind` on network `fabric_id` (no training process behind it).
void RegisterFabricWorker(transport::Client& client, const std::string& id, const std::string& kind,
                          const std::string& fabric_id) {
  transport::Envelope reg = transport::NewEnvelope(id);
  v1::Register* body = reg.mutable_register_worker();
  body->set_worker_id(id);
  body->mutable_capabilities()->set_cpu_cores(1);
  body->mutable_capabilities()->set_memory_bytes(1ull << 30);
  v1::Nic* nic = body->mutable_capabilities()->add_nics();
  nic->set_name("fab0");
  nic->set_kind(kind);
  nic->set_speed_mbps(kind == "infiniband" ? 100000 : 50000);
  nic->set_fabric_id(fabric_id);
  auto registered = client.Request(reg, 10000);
  ASSERT_TRUE(registered.ok()) << registered.status().ToString();
  ASSERT_TRUE(registered->envelope.register_ack().accepted()) << registered->envelope.register_ack().reason();
}

// `tributary workers` lists what the workers reported, and `tributary plan` without --inventory plans
// the coordinator's alive workers: every dense group on one fabric.
TEST(CliOpsSystemTest, WorkersAndPlanAgainstTheLiveInventory) {
  TestDir dir;
  // The fabric workers never heartbeat: a long interval keeps them alive however slowly this host runs.
  ClusterOptions options;
  options.coordinator_args = {"--set", "coordinator.heartbeat_interval_s=60"};
  TestCluster cluster(dir.path(), options);
  const std::string profile = cluster.cluster().client_config();
  RegisterFabricWorker(cluster.client(), "ib-1", "infiniband", "ib-a");
  RegisterFabricWorker(cluster.client(), "ib-2", "infiniband", "ib-a");
  RegisterFabricWorker(cluster.client(), "roce-1", "roce", "r-1");
  RegisterFabricWorker(cluster.client(), "roce-2", "roce", "r-1");

  // The four fabric workers and the cluster's four real ones (they register in the background).
  CliRun workers;
  std::map<std::string, nlohmann::json> by_id;
  for (int attempt = 0; attempt < 120 && by_id.size() < 8; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(250));
    workers = Cli(dir.path(), profile, {"workers", "--format", "json"});
    ASSERT_EQ(workers.exit_code, 0) << workers.err;
    const nlohmann::json listed = nlohmann::json::parse(workers.out);
    by_id.clear();
    for (const auto& w : listed["data"]["workers"]) by_id[w["worker_id"].get<std::string>()] = w;
  }
  ASSERT_EQ(by_id.size(), 8u) << workers.out;
  ASSERT_EQ(by_id.count("ib-1"), 1u) << workers.out;
  EXPECT_EQ(by_id["ib-1"]["liveness"], "alive");
  EXPECT_EQ(by_id["ib-1"]["capabilities"]["nics"][0]["fabric_id"], "ib-a");
  EXPECT_EQ(by_id.count(cli::LocalCluster::WorkerName(0)), 1u) << workers.out;
  CliRun table = Cli(dir.path(), profile, {"workers"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("fab0:infiniband:100000:ib-a"), std::string::npos) << table.out;

  const std::string job_file = (fs::path(dir.path()) / "cluster.yaml").string();
  ASSERT_TRUE(WriteFileAtomic(job_file, "model: {base: " + cluster.base_model() +
                                            "}\ndata: {dataset: demo, seq_len: 64}\nfederation: {mode: cluster, "
                                            "rounds: 1}\ncluster: {codec: int8}\n")
                  .ok());
  CliRun plan = Cli(dir.path(), profile, {"plan", "--job", job_file, "--format", "json"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  std::map<std::string, std::vector<std::string>> islands;
  const nlohmann::json planned = nlohmann::json::parse(plan.out);  // kept: the loop reads into it
  for (const auto& island : planned["data"]["islands"])
    islands[island["name"].get<std::string>()] = island["members"].get<std::vector<std::string>>();
  EXPECT_EQ(islands["fabric:ib-a"], (std::vector<std::string>{"ib-1", "ib-2"})) << plan.out;
  EXPECT_EQ(islands["fabric:r-1"], (std::vector<std::string>{"roce-1", "roce-2"})) << plan.out;
  // The cluster's own workers share no fabric with them (their islands depend on this host's NICs).
  for (const auto& [name, members] : islands) {
    if (name == "fabric:ib-a" || name == "fabric:r-1") continue;
    for (const std::string& m : members) EXPECT_EQ(m.rfind("worker-", 0), 0u) << name << ": " << plan.out;
  }
}

}  // namespace
}  // namespace tributary::system_test
