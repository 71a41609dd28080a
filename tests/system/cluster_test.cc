// Cluster mode through real daemons on loopback (docs/cluster.md): 4 workers in 2 islands of 2, each
// island one data-parallel group over gloo (rendezvous through the coordinator), an outer round every
// train.local_steps inner steps with the int8 codec and Nesterov outer optimizer.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "checkpoint/store.h"
#include "coordinator/job_model.h"
#include "federation/job_spec.h"
#include "federation/outer_codec.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kIslands = {"cluster.islands=['a=worker-1,worker-2', 'b=worker-3,worker-4']",
                                           "cluster.codec=int8"};

std::string ClusterYaml(const TestCluster& cluster, int rounds, std::vector<std::string> overrides) {
  overrides.insert(overrides.end(), kIslands.begin(), kIslands.end());
  return JobYaml(cluster.base_model(), "cluster", rounds, 7, overrides);
}

bool LogHas(const std::vector<std::string>& log, const std::string& text) {
  for (const std::string& line : log)
    if (line.find(text) != std::string::npos) return true;
  return false;
}

// The value of the first /metrics sample starting with `series` ("name{labels}"); -1 when absent.
double MetricValue(const std::string& text, const std::string& series) {
  const size_t at = text.find(series + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + series.size() + 1, nullptr);
}

std::string IslandSeries(const std::string& name, const std::string& island, const std::string& job_id) {
  return name + "{island=\"" + island + "\",job=\"" + job_id + "\"}";
}

// Polls /metrics until `series` has `value` (30 s); the last value seen.
double WaitForMetric(int http_port, const std::string& series, double value) {
  httplib::Client http("127.0.0.1", http_port);
  double seen = -1;
  for (int i = 0; i < 300 && seen != value; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto metrics = http.Get("/metrics");
    if (metrics) seen = MetricValue(metrics->body, series);
  }
  return seen;
}

// What one island of 2 sends inside itself per round: every inner step each member sends half of the fp32
// gradient in the ring's reduce-scatter and half in its allgather (cluster/island.h bytes_sent).
uint64_t IslandOfTwoGradientBytes(const std::string& yaml, int local_steps) {
  auto spec = ParseJobSpec(yaml, "spec");
  EXPECT_TRUE(spec.ok());
  auto model = JobModel::Load(*spec);
  EXPECT_TRUE(model.ok());
  const uint64_t gradient = static_cast<uint64_t>((*model)->initial_state().table().total_elems()) * sizeof(float);
  return 2 * gradient * static_cast<uint64_t>(local_steps);
}

TEST(ClusterSystemTest, TwoIslandsTrainWithLeaderUploadsOfTheCodecsSizeAndEqualReplicas) {
  TestDir dir;
  std::string yaml, job_id;
  {
    TestCluster cluster(dir.path());
    yaml = ClusterYaml(cluster, 3, {});
    const double initial = InitialHeldOutLoss(cluster, yaml);
    job_id = Submit(cluster.client(), yaml);
    ASSERT_FALSE(job_id.empty());
    // While a round is open, status and /metrics show its islands.
    v1::GetJobReply open;
    ASSERT_TRUE(WaitFor(cluster.client(), job_id, [&open](const v1::GetJobReply& j) {
      open = j;
      return j.islands_size() == 2;
    }));
    EXPECT_EQ(open.job().islands(), 2u);
    EXPECT_EQ(open.job().island_reforms(), 0u);
    // The job's islands; the leader of each is the member with the better measured uplink (the link probes
    // ran before round 1), members[0] of the island and its gloo rank 0.
    const v1::IslandStatus& a = open.islands(0);
    EXPECT_EQ(a.island_id(), "a");
    ASSERT_EQ(a.members_size(), 2);
    EXPECT_EQ(std::set<std::string>(a.members().begin(), a.members().end()),
              (std::set<std::string>{"worker-1", "worker-2"}));
    EXPECT_EQ(a.leader(), a.members(0));
    EXPECT_GT(a.incarnation(), 0u);
    EXPECT_EQ(a.reforms(), 0u);
    EXPECT_EQ(open.islands(1).island_id(), "b");
    ASSERT_EQ(open.islands(1).members_size(), 2);
    EXPECT_EQ(std::set<std::string>(open.islands(1).members().begin(), open.islands(1).members().end()),
              (std::set<std::string>{"worker-3", "worker-4"}));
    // The round's plan: the job's islands, each ring starting at the island's leader (its gloo rank 0).
    ASSERT_EQ(open.plan().islands_size(), 2) << open.plan_error();
    EXPECT_EQ(open.plan().codec(), "int8");
    EXPECT_EQ(open.plan().local_steps(), 5);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(open.plan().islands(i).name(), open.islands(i).island_id());
      ASSERT_EQ(open.plan().islands(i).ring_size(), 2);
      EXPECT_EQ(open.plan().islands(i).ring(0), open.islands(i).leader());
      EXPECT_EQ(open.plan().islands(i).ring(1), open.islands(i).members(1));
    }
    const int http_port = cluster.cluster().http_port();
    EXPECT_EQ(WaitForMetric(http_port, IslandSeries("tributary_island_members", "b", job_id), 2), 2);
    const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
    ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
    ASSERT_EQ(job.rounds_size(), 3);
    for (const v1::RoundSummary& r : job.rounds()) EXPECT_EQ(r.participants(), 2u) << "one upload per island";
    EXPECT_LT(job.rounds(2).heldout_loss(), initial - 0.5)
        << "held-out loss " << initial << " -> " << job.rounds(2).heldout_loss();
    // Every member of both islands applies each outer step to the same bits.
    ExpectReplicasAtFinalHash(cluster.client(), job_id, 3, job.rounds(2).weights_hash(), 4);
    const std::vector<std::string> log = JobLog(cluster.client(), job_id);
    EXPECT_FALSE(LogHas(log, "re-formed")) << "no member was lost";
    EXPECT_TRUE(LogHas(log, "round 1: planned (why: ")) << "the first plan is logged with its reasons";
    EXPECT_FALSE(LogHas(log, "re-planned")) << "nothing changed between rounds";

    // Finished: no round is open, the islands' gauges show 0 members, the bytes crossed are counted.
    httplib::Client http("127.0.0.1", http_port);
    auto metrics = http.Get("/metrics");
    ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
    EXPECT_EQ(MetricValue(metrics->body, IslandSeries("tributary_island_members", "a", job_id)), 0) << metrics->body;
    EXPECT_GT(MetricValue(metrics->body, IslandSeries("tributary_island_incarnation", "a", job_id)), 0);
    EXPECT_EQ(MetricValue(metrics->body, IslandSeries("tributary_island_reforms_total", "a", job_id)), 0);
    // Two leaders' uploads per round, inline or pulled as bulk chunks.
    const std::string in_bytes = "tributary_transport_bytes_total{direction=\"in\",type=";
    const double uploads = std::max(0.0, MetricValue(metrics->body, in_bytes + "\"upload_update\"}")) +
                           std::max(0.0, MetricValue(metrics->body, in_bytes + "\"bulk_chunk\"}"));
    EXPECT_GE(uploads, 2.0 * 3 * static_cast<double>(OuterPayloadBytes(yaml, OuterCodec::kInt8))) << metrics->body;
    EXPECT_GT(MetricValue(metrics->body, "tributary_transport_bytes_total{direction=\"out\",type=\"round_start\"}"), 0);
    auto api = http.Get("/api/jobs/" + job_id);
    ASSERT_TRUE(api);
    const nlohmann::json detail = nlohmann::json::parse(api->body);
    EXPECT_TRUE(detail["islands"].empty()) << api->body;
    EXPECT_EQ(detail["plan"]["codec"], "int8") << api->body;
    EXPECT_EQ(detail["plan"]["round"], 3) << "the last opened round's plan";
    EXPECT_EQ(detail["plan"]["islands"].size(), 2u);
    EXPECT_EQ(detail["job"]["island_reforms"], 0);
    // Inside the islands: the all-reduced gradients, as the leaders reported them, far above what crossed.
    uint64_t inside = 0;
    for (int r = 0; r < 3; ++r) {
      const uint64_t round_inside = job.rounds(r).island_bytes();
      EXPECT_EQ(detail["rounds"][r]["island_bytes"], round_inside) << api->body;
      const uint64_t gradients = 2 * IslandOfTwoGradientBytes(yaml, 5);  // two islands, 5 inner steps
      EXPECT_GE(round_inside, gradients) << "round " << r + 1;
      EXPECT_LE(round_inside, gradients + 256) << "round " << r + 1 << ": the small collectives are a few bytes";
      EXPECT_GT(round_inside, 4 * job.rounds(r).bytes_up());
      inside += round_inside;
    }
    EXPECT_EQ(job.job().island_bytes(), inside);
    EXPECT_EQ(detail["job"]["island_bytes"], inside);
    EXPECT_EQ(MetricValue(metrics->body, "tributary_island_bytes_total{job=\"" + job_id + "\"}"),
              static_cast<double>(inside));
  }
  // The store: per round exactly the two leaders' uploads, each the codec's size for this model.
  const uint64_t expected = OuterPayloadBytes(yaml, OuterCodec::kInt8);
  auto store = checkpoint::CheckpointStore::Open((fs::path(dir.path()) / "store" / "store").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (uint32_t round = 1; round <= 3; ++round) {
    auto updates = (*store)->ListUpdates(job_id, round);
    ASSERT_TRUE(updates.ok());
    ASSERT_EQ(updates->size(), 2u);  // ascending worker id: one leader of island a, then one of island b
    EXPECT_TRUE((*updates)[0].worker_id == "worker-1" || (*updates)[0].worker_id == "worker-2");
    EXPECT_TRUE((*updates)[1].worker_id == "worker-3" || (*updates)[1].worker_id == "worker-4");
    for (const checkpoint::UpdateRecord& u : *updates) EXPECT_EQ(u.payload.size(), expected) << u.worker_id;
    auto record = (*store)->GetRound(job_id, round);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->metrics.bytes_up, 2 * expected);
    EXPECT_EQ(record->metrics.island_bytes, (*updates)[0].island_bytes + (*updates)[1].island_bytes);
    EXPECT_GE((*updates)[0].island_bytes, IslandOfTwoGradientBytes(yaml, 5)) << "leader of island a";
    EXPECT_EQ(record->aggregate.size(), expected) << "the broadcast is in the codec too";
  }
}

TEST(ClusterSystemTest, KilledOrFrozenMemberIsEvictedItsIslandReformsAndTheOtherIslandLosesNoStep) {
  TestDir dir;
  TestCluster cluster(dir.path());
  // Long enough inner phases that the faults land inside rounds 2 and 3; min_clients 3 so a round may start
  // while one worker is down. The collective timeout (how long survivors wait for a killed member) is 5 s: at
  // 2 s a healthy member's all-reduce timed out on the loaded 2-core CI machine (4 workers, other tests).
  const std::string job_id = Submit(
      cluster.client(),
      ClusterYaml(cluster, 5, {"train.local_steps=40", "federation.min_clients=3", "cluster.collective_timeout_s=5"}));
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) {
    return job.rounds_size() == 1 && job.workers_size() > 0;  // round 2 is open
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cluster.cluster().KillWorker(1, SIGKILL);  // worker-2, a member of island a
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) { return job.rounds_size() >= 2; }));
  std::vector<std::string> log = JobLog(cluster.client(), job_id);
  EXPECT_TRUE(LogHas(log, "round 2: island a lost worker-2: re-formed as incarnation")) << "island a re-forms";
  EXPECT_FALSE(LogHas(log, "re-planning the round")) << "island b's round 2 is never restarted";
  auto after = GetJob(cluster.client(), job_id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->rounds(1).participants(), 2u) << "both islands contribute to round 2";
  EXPECT_GE(after->job().island_reforms(), 1u);
  EXPECT_GE(
      WaitForMetric(cluster.cluster().http_port(), IslandSeries("tributary_island_reforms_total", "a", job_id), 1), 1);
  // The killed member comes back and rejoins its island at a later round.
  ASSERT_TRUE(cluster.cluster().StartWorker(1).ok());

  // Round 3: island b's second member freezes (SIGSTOP); it misses its heartbeats and is evicted like a dead
  // one, then wakes up (SIGCONT) with a stale incarnation and rejoins at a later round.
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) {
    return job.rounds_size() == 2 && job.workers_size() > 0;  // round 3 is open
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cluster.cluster().worker(3)->Signal(SIGSTOP);
  ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& job) { return job.rounds_size() >= 3; }));
  cluster.cluster().worker(3)->Signal(SIGCONT);
  log = JobLog(cluster.client(), job_id);
  EXPECT_TRUE(LogHas(log, "round 3: island b lost worker-4: re-formed as incarnation")) << "island b re-forms";

  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  for (const char* worker : {"worker-1", "worker-2", "worker-3", "worker-4"})
    ExpectReplicaReaches(cluster.client(), job_id, worker, 5, job.rounds(4).weights_hash());
}

}  // namespace
}  // namespace tributary::system_test
