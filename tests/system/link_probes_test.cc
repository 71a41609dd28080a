// Coordinator-scheduled link probes through real daemons on loopback (docs/placement.md, "Measured
// links"): a cluster job's coordinator asks its 3 workers (one fabric) to probe each other and their
// uplinks before the first round, stores the matrix with the job, shows it in /api/jobs/<id>, says in
// the job log why it probed, reloads it after a kill -9 restart, and measures a worker that joins.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "checkpoint/store.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

ClusterOptions ThreeWorkersOnOneFabric() {
  ClusterOptions options;
  options.num_workers = 3;
  options.worker_args = {"--set", "worker.nics=[lo:ethernet:10000:lan-a]"};
  options.coordinator_args = {"--set", "coordinator.probe_bytes=4194304"};
  return options;
}

// Index of the first line containing `text`; -1 when none.
int LineOf(const std::vector<std::string>& log, const std::string& text) {
  for (size_t i = 0; i < log.size(); ++i)
    if (log[i].find(text) != std::string::npos) return static_cast<int>(i);
  return -1;
}

nlohmann::json ApiLinks(int http_port, const std::string& job_id) {
  httplib::Client http("127.0.0.1", http_port);
  auto api = http.Get("/api/jobs/" + job_id);
  if (!api || api->status != 200) return nullptr;
  const nlohmann::json detail = nlohmann::json::parse(api->body);
  return detail.contains("links") ? detail["links"] : nlohmann::json();
}

// Every link plausible for loopback: more than 10 Mbit/s, at most 10 Tbit/s, an RTT under a second,
// measured after `since_ms`.
void ExpectPlausible(const nlohmann::json& link, int64_t since_ms) {
  EXPECT_GT(link["mbps"].get<double>(), 10) << link;
  EXPECT_LE(link["mbps"].get<double>(), 1e7) << link;
  EXPECT_GE(link["rtt_ms"].get<double>(), 0) << link;
  EXPECT_LT(link["rtt_ms"].get<double>(), 1000) << link;
  EXPECT_GE(link["measured_unix_ms"].get<int64_t>(), since_ms) << link;
}

TEST(LinkProbesSystemTest, ClusterJobMeasuresEveryCandidatePairAndUplinkBeforeItsFirstRound) {
  TestDir dir;
  TestCluster cluster(dir.path(), ThreeWorkersOnOneFabric());
  const int64_t submitted_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const std::string job_id =
      Submit(cluster.client(), JobYaml(cluster.base_model(), "cluster", 10, 7,
                                       {"federation.min_clients=2", "train.local_steps=10", "cluster.codec=int8"}));
  ASSERT_FALSE(job_id.empty());
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& j) { return j.rounds_size() >= 1; }));

  std::vector<std::string> log = JobLog(cluster.client(), job_id);
  const int start = LineOf(log,
                           "links: campaign 1 probes (job start: 3 pair(s) and 3 uplink(s) among 3 eligible "
                           "worker(s))");
  const int done = LineOf(log, "links: campaign 1 done");
  const int round1 = LineOf(log, "round 1 opened");
  ASSERT_GE(start, 0) << "the job log says why it probed";
  ASSERT_GT(done, start);
  EXPECT_GT(round1, done) << "the first round plans with the measured matrix";
  EXPECT_NE(log[done].find("3 of 3 pair(s), 3 of 3 uplink(s) measured"), std::string::npos) << log[done];
  EXPECT_NE(log[done].find("stored with the job"), std::string::npos) << log[done];

  const nlohmann::json links = ApiLinks(cluster.cluster().http_port(), job_id);
  ASSERT_TRUE(links.is_object()) << "/api/jobs/<id> shows the stored matrix";
  EXPECT_EQ(links["campaign"], 1);
  EXPECT_EQ(links["members"], nlohmann::json({"worker-1", "worker-2", "worker-3"}));
  ASSERT_EQ(links["pairs"].size(), 3u) << links;
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"worker-1", "worker-2"}, {"worker-1", "worker-3"}, {"worker-2", "worker-3"}};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(links["pairs"][i]["a"], expected[i].first);
    EXPECT_EQ(links["pairs"][i]["b"], expected[i].second);
    ExpectPlausible(links["pairs"][i], submitted_ms);
  }
  ASSERT_EQ(links["uplinks"].size(), 3u) << links;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(links["uplinks"][i]["worker"], "worker-" + std::to_string(i + 1));
    ExpectPlausible(links["uplinks"][i], submitted_ms);
  }

  // kill -9 and restart: the job reloads the stored matrix instead of measuring it again from scratch.
  cluster.cluster().KillCoordinator(SIGKILL);
  ASSERT_TRUE(cluster.cluster().StartCoordinator().ok());
  cluster.Reconnect();
  log = JobLog(cluster.client(), job_id);
  EXPECT_GE(LineOf(log, "links: loaded the stored matrix of campaign 1 (3 pair(s), 3 uplink(s))"), 0);

  // worker-3 leaves and comes back: a membership change, each logged with its reason; on return only
  // its two pairs and its uplink are measured.
  cluster.cluster().KillWorker(2, SIGKILL);
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [&](const v1::GetJobReply&) {
    return LineOf(JobLog(cluster.client(), job_id), "membership change: left [worker-3]") >= 0;
  })) << "a departure is a membership change";
  ASSERT_TRUE(cluster.cluster().StartWorker(2).ok());
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [&](const v1::GetJobReply&) {
    return LineOf(JobLog(cluster.client(), job_id),
                  "(membership change: joined [worker-3]; 2 pair(s) and 1 uplink(s) to measure)") >= 0;
  })) << "the returning worker is measured";
  const v1::GetJobReply finished = WaitFinished(cluster.client(), job_id);
  EXPECT_EQ(finished.job().state(), "FINISHED:COMPLETED") << finished.job().error();
  const nlohmann::json after = ApiLinks(cluster.cluster().http_port(), job_id);
  ASSERT_TRUE(after.is_object());
  EXPECT_GE(after["campaign"].get<int>(), 3);
  EXPECT_EQ(after["pairs"].size(), 3u) << after;
  EXPECT_EQ(after["uplinks"].size(), 3u) << after;

  // The store holds what /api showed.
  const std::string api_pairs = after["pairs"].dump();
  cluster.cluster().StopAll();
  auto store = checkpoint::CheckpointStore::Open((fs::path(dir.path()) / "store" / "store").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto stored = (*store)->GetJobLinks(job_id);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->campaign, after["campaign"].get<uint64_t>());
  ASSERT_EQ(stored->pairs.size(), 3u);
  EXPECT_EQ(stored->pairs[2].a, "worker-2");
  EXPECT_EQ(stored->pairs[2].b, "worker-3");
  EXPECT_EQ(stored->pairs[2].mbps, after["pairs"][2]["mbps"].get<double>()) << api_pairs;
}

}  // namespace
}  // namespace tributary::system_test
