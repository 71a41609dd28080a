// Compute calibration through real daemons (docs/placement.md, "Compute calibration"): a coordinator
// and two worker processes on loopback run a cluster job; each worker times its replica once and
// reports the rate in heartbeats; `tributary workers` shows it per job, the job's runner plans with it
// (its log says so), and `tributary plan --job-id` uses it.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_util.h"
#include "tests/system/system_util.h"
#include "transport/message.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

// worker -> tokens/s of `job_id` in `tributary workers --format json`, polled until `count` workers show
// one (at most 2 minutes: a failure, not a timing assertion).
std::map<std::string, double> WaitForCalibrations(const std::string& dir, const std::string& profile,
                                                  const std::string& job_id, size_t count, CliRun* last) {
  std::map<std::string, double> rates;
  for (int attempt = 0; attempt < 240 && rates.size() < count; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    *last = Cli(dir, profile, {"workers", "--format", "json"});
    if (last->exit_code != 0) continue;
    rates.clear();
    const nlohmann::json listed = nlohmann::json::parse(last->out);  // kept: the loop reads into it
    for (const auto& w : listed["data"]["workers"])
      for (const auto& c : w["calibrations"])
        if (c["job_id"] == job_id) rates[w["worker_id"].get<std::string>()] = c["tokens_per_s"].get<double>();
  }
  return rates;
}

bool WaitForLogLine(transport::Client& client, const std::string& job_id, const std::vector<std::string>& parts) {
  for (int attempt = 0; attempt < 240; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (const std::string& line : JobLog(client, job_id)) {
      bool all = true;
      for (const std::string& part : parts) all = all && line.find(part) != std::string::npos;
      if (all) return true;
    }
  }
  return false;
}

TEST(CalibrationSystemTest, WorkersReportCalibratedComputeThatWorkersPlanAndTheRunnerUse) {
  TestDir dir;
  ClusterOptions options;
  options.num_workers = 2;
  TestCluster cluster(dir.path(), options);
  const std::string profile = cluster.cluster().client_config();
  const std::string w1 = cli::LocalCluster::WorkerName(0), w2 = cli::LocalCluster::WorkerName(1);
  // Many rounds: the job runs until the runner was seen planning with both rates, then it is stopped.
  const std::string yaml = JobYaml(cluster.base_model(), "cluster", 200, 7,
                                   {"federation.min_clients=2", "train.local_steps=2", "cluster.codec=int8",
                                    "cluster.islands=['a=" + w1 + "," + w2 + "']"});
  const std::string job_id = Submit(cluster.client(), yaml);
  ASSERT_FALSE(job_id.empty());

  CliRun listed;
  const std::map<std::string, double> rates = WaitForCalibrations(dir.path(), profile, job_id, 2, &listed);
  ASSERT_EQ(rates.size(), 2u) << listed.out << listed.err;
  for (const auto& [worker, rate] : rates) {
    EXPECT_TRUE(std::isfinite(rate)) << worker;
    EXPECT_GT(rate, 0) << worker;
  }
  CliRun table = Cli(dir.path(), profile, {"workers"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("TOKENS/S"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(job_id), std::string::npos) << table.out;

  // The running job's planner gets both rates before a later round (its log names them).
  EXPECT_TRUE(WaitForLogLine(cluster.client(), job_id, {"planning with calibrated compute:", w1, w2}));

  // `tributary plan --job-id` plans with the job's rates: the island's compute is their sum; without
  // the flag the same plan has none.
  const std::string job_file = (fs::path(dir.path()) / "job.yaml").string();
  ASSERT_TRUE(WriteFileAtomic(job_file, yaml).ok());
  CliRun plan = Cli(dir.path(), profile, {"plan", "--job", job_file, "--job-id", job_id, "--format", "json"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const nlohmann::json planned = nlohmann::json::parse(plan.out)["data"];
  ASSERT_EQ(planned["islands"].size(), 1u) << plan.out;
  EXPECT_NEAR(planned["islands"][0]["tokens_per_s"].get<double>(), rates.at(w1) + rates.at(w2),
              1e-6 * (rates.at(w1) + rates.at(w2)))
      << plan.out;
  CliRun unmeasured = Cli(dir.path(), profile, {"plan", "--job", job_file, "--format", "json"});
  ASSERT_EQ(unmeasured.exit_code, 0) << unmeasured.err;
  EXPECT_EQ(nlohmann::json::parse(unmeasured.out)["data"]["islands"][0]["tokens_per_s"].get<double>(), 0)
      << unmeasured.out;
  CliRun offline = Cli(dir.path(), profile, {"plan", "--job", job_file, "--job-id", job_id, "--inventory", job_file});
  EXPECT_NE(offline.exit_code, 0) << "--job-id needs the live inventory";
  EXPECT_NE(offline.err.find("--job-id"), std::string::npos) << offline.err;

  CliRun stopped = Cli(dir.path(), profile, {"stop", job_id});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
}

}  // namespace
}  // namespace tributary::system_test
