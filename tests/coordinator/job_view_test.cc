// The JSON and text rendering of jobs (coordinator/job_view.h) that /api/jobs, `status --format json`
// and `tributary status` share: here the cluster-mode island fields.
#include "coordinator/job_view.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/common/temp_dir.h"

namespace tributary {
namespace {

v1::GetJobReply ClusterJob() {
  v1::GetJobReply reply;
  v1::JobStatus* job = reply.mutable_job();
  job->set_job_id("j1");
  job->set_mode("cluster");
  job->set_state("RUNNING");
  job->set_loss(std::nan(""));
  job->set_heldout_loss(std::nan(""));
  job->set_islands(2);
  job->set_island_reforms(3);
  v1::IslandStatus* a = reply.add_islands();
  a->set_island_id("a");
  a->set_incarnation(1796611270871);
  a->add_members("worker-1");
  a->add_members("worker-2");
  a->set_leader("worker-1");
  a->set_reported(false);
  a->set_reforms(1);
  a->set_reason("2 of 2 configured members eligible");
  v1::IslandStatus* b = reply.add_islands();
  b->set_island_id("b");
  b->set_incarnation(1796611270872);
  b->add_members("worker-3");
  b->set_leader("worker-3");
  b->set_reported(true);
  return reply;
}

TEST(JobViewTest, JobStatusJsonCountsIslandsAndReforms) {
  const nlohmann::json job = JobStatusJson(ClusterJob().job());
  EXPECT_EQ(job["islands"], 2);
  EXPECT_EQ(job["island_reforms"], 3);
  const nlohmann::json plain = JobStatusJson(v1::JobStatus());
  EXPECT_EQ(plain["islands"], 0) << "0 when not cluster mode";
  EXPECT_EQ(plain["island_reforms"], 0);
}

TEST(JobViewTest, JobDetailJsonListsTheOpenRoundsIslands) {
  const nlohmann::json detail = JobDetailJson(ClusterJob());
  ASSERT_TRUE(detail["islands"].is_array());
  ASSERT_EQ(detail["islands"].size(), 2u);
  const nlohmann::json& a = detail["islands"][0];
  EXPECT_EQ(a["island_id"], "a");
  EXPECT_EQ(a["incarnation"].get<uint64_t>(), 1796611270871u) << "a number, exact";
  EXPECT_EQ(a["members"], nlohmann::json::array({"worker-1", "worker-2"}));
  EXPECT_EQ(a["leader"], "worker-1");
  EXPECT_EQ(a["reported"], false);
  EXPECT_EQ(a["reforms"], 1);
  EXPECT_EQ(a["reason"], "2 of 2 configured members eligible");
  EXPECT_EQ(detail["islands"][1]["reported"], true);
  EXPECT_EQ(detail["job"]["islands"], 2);

  const nlohmann::json federated = JobDetailJson(v1::GetJobReply());
  ASSERT_TRUE(federated["islands"].is_array());
  EXPECT_TRUE(federated["islands"].empty());
}

TEST(JobViewTest, IslandStatusTextIsOneLine) {
  const v1::GetJobReply reply = ClusterJob();
  EXPECT_EQ(IslandStatusText(reply.islands(0)),
            "island a  incarnation 1796611270871  leader worker-1  members worker-1,worker-2  reported no  reforms 1");
  EXPECT_EQ(IslandStatusText(reply.islands(1)),
            "island b  incarnation 1796611270872  leader worker-3  members worker-3  reported yes  reforms 0");
}

// /api/workers: a real registry's workers with their capabilities, liveness and current tasklet.
TEST(JobViewTest, WorkersViewJsonShowsCapabilitiesLivenessAndTasklet) {
  testutil::TempDir dir;
  auto store = checkpoint::CheckpointStore::Open(dir.path() + "/store");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  WorkerRegistry registry(store->get(), WorkerRegistryOptions{/*insecure=*/true, 1000, 3});
  const transport::PeerInfo peer{"route", "", "", "127.0.0.1"};
  for (const char* id : {"w2", "w1"}) {
    v1::Register reg;
    reg.set_worker_id(id);
    reg.set_hostname(std::string("host-") + id);
    v1::Capabilities* caps = reg.mutable_capabilities();
    caps->set_cpu_cores(16);
    caps->set_memory_bytes(64ull << 30);
    caps->set_software_version("0.4.0");
    caps->add_modes("ferret");
    v1::Gpu* gpu = caps->add_gpus();
    gpu->set_name("NVIDIA H100");
    gpu->set_memory_bytes(80ull << 30);
    gpu->set_compute_capability("9.0");
    v1::Nic* nic = caps->add_nics();
    nic->set_name("ib0");
    nic->set_kind("infiniband");
    nic->set_speed_mbps(200000);
    nic->set_fabric_id("island-a");
    v1::DatasetInfo* data = caps->add_datasets();
    data->set_name("dolly");
    data->set_samples(120);
    ASSERT_TRUE(registry.Register(reg, peer, 10000).ok());
  }
  v1::Heartbeat hb;
  hb.set_worker_id("w1");
  hb.set_state("training");
  hb.set_job_id("job-1");
  hb.set_round(7);
  v1::JobCalibration* calibration = hb.add_calibrations();
  calibration->set_job_id("job-1");
  calibration->set_tokens_per_s(5210.5);
  calibration->set_measured_unix_ms(11500);
  const uint64_t before = registry.liveness_version();
  ASSERT_TRUE(registry.Heartbeat(hb, peer, 12000).ok());
  EXPECT_GT(registry.liveness_version(), before) << "a heartbeat moves the view";

  // At 13.5 s: w1 heard 1.5 s ago (one heartbeat missed), w2 3.5 s ago and declared dead.
  EXPECT_EQ(registry.MarkDead(13500), 1);
  const nlohmann::json view = WorkersViewJson(registry, 13500);
  EXPECT_EQ(view["now_unix_ms"], 13500);
  EXPECT_EQ(view["heartbeat_interval_ms"], 1000);
  EXPECT_EQ(view["heartbeat_misses"], 3);
  ASSERT_EQ(view["workers"].size(), 2u);
  const nlohmann::json& w1 = view["workers"][0];
  EXPECT_EQ(w1["worker_id"], "w1") << "ascending worker id";
  EXPECT_EQ(w1["hostname"], "host-w1");
  EXPECT_EQ(w1["state"], "training");
  EXPECT_EQ(w1["job_id"], "job-1");
  EXPECT_EQ(w1["round"], 7);
  EXPECT_EQ(w1["liveness"], "late");
  EXPECT_EQ(w1["missed_heartbeats"], 1);
  EXPECT_EQ(w1["last_seen_unix_ms"], 12000);
  const nlohmann::json& caps = w1["capabilities"];
  EXPECT_EQ(caps["cpu_cores"], 16);
  EXPECT_EQ(caps["memory_bytes"].get<uint64_t>(), 64ull << 30);
  EXPECT_EQ(caps["software_version"], "0.4.0");
  EXPECT_EQ(caps["modes"], nlohmann::json::array({"ferret"}));
  EXPECT_EQ(
      caps["gpus"],
      nlohmann::json::array({{{"name", "NVIDIA H100"}, {"memory_bytes", 80ull << 30}, {"compute_capability", "9.0"}}}));
  EXPECT_EQ(caps["nics"],
            nlohmann::json::array(
                {{{"name", "ib0"}, {"kind", "infiniband"}, {"speed_mbps", 200000}, {"fabric_id", "island-a"}}}));
  EXPECT_EQ(caps["datasets"], nlohmann::json::array({{{"name", "dolly"}, {"samples", 120}}}));
  EXPECT_EQ(w1["calibrations"],
            nlohmann::json::array({{{"job_id", "job-1"}, {"tokens_per_s", 5210.5}, {"measured_unix_ms", 11500}}}));

  const nlohmann::json& w2 = view["workers"][1];
  EXPECT_EQ(w2["worker_id"], "w2");
  EXPECT_EQ(w2["liveness"], "dead");
  EXPECT_EQ(w2["missed_heartbeats"], 3);
  EXPECT_TRUE(w2["job_id"].is_null()) << "no tasklet reported";
  EXPECT_EQ(w2["calibrations"], nlohmann::json::array()) << "none reported";

  // A fresh heartbeat makes w1 alive with no missed beat.
  ASSERT_TRUE(registry.Heartbeat(hb, peer, 14000).ok());
  const nlohmann::json later = WorkersViewJson(registry, 14200);
  EXPECT_EQ(later["workers"][0]["liveness"], "alive");
  EXPECT_EQ(later["workers"][0]["missed_heartbeats"], 0);
}

TEST(JobViewTest, BoundJobDetailLeavesOutTheOldestRoundsThenReplicasAndCountsThem) {
  v1::GetJobReply reply;
  reply.mutable_job()->set_job_id("job-1");
  for (int r = 1; r <= 1000; ++r) {
    v1::RoundSummary* round = reply.add_rounds();
    round->set_round(r);
    round->set_weights_hash(std::string(64, 'a'));
  }
  for (int w = 0; w < 500; ++w) {
    v1::ReplicaState* replica = reply.add_replicas();
    replica->set_worker_id("worker-" + std::to_string(w));
    replica->set_weights_hash(std::string(64, 'b'));
  }
  const size_t full = reply.ByteSizeLong();

  v1::GetJobReply untouched = reply;
  BoundJobDetail(full, &untouched);
  EXPECT_EQ(untouched.rounds_size(), 1000);
  EXPECT_EQ(untouched.rounds_omitted(), 0u);

  v1::GetJobReply fewer_rounds = reply;
  BoundJobDetail(full / 2, &fewer_rounds);
  EXPECT_LE(fewer_rounds.ByteSizeLong(), full / 2);
  EXPECT_GT(fewer_rounds.rounds_omitted(), 0u);
  EXPECT_EQ(fewer_rounds.rounds_size() + fewer_rounds.rounds_omitted(), 1000u);
  EXPECT_EQ(fewer_rounds.rounds(fewer_rounds.rounds_size() - 1).round(), 1000u);  // the newest stay
  EXPECT_EQ(fewer_rounds.replicas_size(), 500);

  v1::GetJobReply tiny = reply;
  BoundJobDetail(2000, &tiny);
  EXPECT_LE(tiny.ByteSizeLong(), 2000u);
  EXPECT_EQ(tiny.rounds_size(), 0);
  EXPECT_EQ(tiny.rounds_omitted(), 1000u);
  EXPECT_EQ(tiny.replicas_size() + tiny.replicas_omitted(), 500u);
  ASSERT_GT(tiny.replicas_size(), 0);
  EXPECT_EQ(tiny.replicas(0).worker_id(), "worker-0");  // the first stay
  const nlohmann::json json = JobDetailJson(tiny);
  EXPECT_EQ(json["rounds_omitted"], 1000);
  EXPECT_EQ(json["replicas_omitted"], tiny.replicas_omitted());
}

}  // namespace
}  // namespace tributary
