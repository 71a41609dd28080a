#include "scheduler/planner.h"

#include <gtest/gtest.h>

#include <numeric>

namespace tributary {
namespace {

PlanWorker Worker(const std::string& id, NicFabric fabric, int64_t mbps, const std::string& fabric_id,
                  double tokens_per_s = 0) {
  PlanWorker w;
  w.inventory.worker_id = id;
  NicInfo eth;  // every worker also has a plain Ethernet NIC without a network identity
  eth.name = "eth0";
  eth.fabric = NicFabric::kEthernet;
  eth.speed_mbps = 10000;
  eth.up = true;
  w.inventory.nics.push_back(eth);
  if (!fabric_id.empty()) {
    NicInfo nic;
    nic.name = "fab0";
    nic.fabric = fabric;
    nic.speed_mbps = mbps;
    nic.fabric_id = fabric_id;
    nic.up = true;
    w.inventory.nics.push_back(nic);
  }
  w.tokens_per_s = tokens_per_s;
  return w;
}

PlanJob Job() {
  PlanJob job;
  job.parameters = 1'000'000;
  job.tokens_per_step = 1000;
  job.codecs = {{"fp32", 4'000'000}, {"bf16", 2'000'000}, {"int8", 1'001'024}};
  return job;
}

const IslandPlan* FindIsland(const ClusterPlan& plan, const std::string& name) {
  for (const IslandPlan& island : plan.islands)
    if (island.name == name) return &island;
  return nullptr;
}

// The mixed topology: an IB-class island of 4, a RoCE-class island of 2, 2 Ethernet-only
// workers. Every dense group is on one fabric; the Ethernet-only workers stay alone.
TEST(PlannerTest, DenseGroupsNeverSpanFabrics) {
  std::vector<PlanWorker> workers;
  for (int i = 0; i < 4; ++i)
    workers.push_back(Worker("ib" + std::to_string(i), NicFabric::kInfiniband, 100000, "ib-a"));
  for (int i = 0; i < 2; ++i) workers.push_back(Worker("roce" + std::to_string(i), NicFabric::kRoce, 50000, "r-1"));
  workers.push_back(Worker("eth0", NicFabric::kEthernet, 0, ""));
  workers.push_back(Worker("eth1", NicFabric::kEthernet, 0, ""));
  auto plan = PlanCluster(workers, LinkMatrix(), Job());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->islands.size(), 4u);
  const IslandPlan* ib = FindIsland(*plan, "fabric:ib-a");
  const IslandPlan* roce = FindIsland(*plan, "fabric:r-1");
  ASSERT_NE(ib, nullptr);
  ASSERT_NE(roce, nullptr);
  EXPECT_EQ(ib->fabric, "infiniband:ib-a");
  EXPECT_EQ(ib->members, (std::vector<std::string>{"ib0", "ib1", "ib2", "ib3"}));
  EXPECT_EQ(roce->fabric, "roce:r-1");
  EXPECT_EQ(roce->members.size(), 2u);
  EXPECT_EQ(FindIsland(*plan, "eth0")->members, (std::vector<std::string>{"eth0"}));
  EXPECT_EQ(FindIsland(*plan, "eth1")->fabric, "none");
  EXPECT_DOUBLE_EQ(ib->bottleneck_mbps, 100000);  // not measured: taken from the NICs
  EXPECT_NE(ib->reasons[1].find("6 link(s) not measured, taken from NIC speeds"), std::string::npos) << ib->reasons[1];
}

TEST(PlannerTest, AJobGivenIslandAcrossFabricsIsRefusedSayingWhy) {
  std::vector<PlanWorker> workers = {Worker("a", NicFabric::kInfiniband, 100000, "ib-a"),
                                     Worker("b", NicFabric::kRoce, 50000, "r-1")};
  PlanJob job = Job();
  job.islands = {{"mixed", {"a", "b"}}};
  auto plan = PlanCluster(workers, LinkMatrix(), job);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(plan.status().message(),
            "cluster.islands: island 'mixed': a is on infiniband:ib-a and b on roce:r-1; a dense data-parallel group "
            "never spans fabrics");
  job.islands = {{"x", {"a", "zz"}}};
  EXPECT_EQ(PlanCluster(workers, LinkMatrix(), job).status().code(), StatusCode::kInvalidArgument);
}

TEST(PlannerTest, InfeasibleAndBadJobs) {
  EXPECT_EQ(PlanCluster({}, LinkMatrix(), Job()).status().code(), StatusCode::kFailedPrecondition);
  PlanJob job = Job();
  job.codecs.clear();
  EXPECT_EQ(PlanCluster({Worker("a", NicFabric::kRoce, 1, "r")}, LinkMatrix(), job).status().message(),
            "codecs: at least one outer codec is needed");
  job = Job();
  job.parameters = 0;
  EXPECT_EQ(PlanCluster({Worker("a", NicFabric::kRoce, 1, "r")}, LinkMatrix(), job).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      PlanCluster({Worker("a", NicFabric::kRoce, 1, "r"), Worker("a", NicFabric::kRoce, 1, "r")}, LinkMatrix(), Job())
          .status()
          .message(),
      "worker 'a' is listed twice");
}

// One Ethernet fabric whose measured links fall into two fast pairs joined by a slow link: bandwidth
// clustering splits it; unidentified workers group only over fast measured links.
TEST(PlannerTest, MeasuredBandwidthSplitsAFabricAndGroupsUnidentifiedWorkers) {
  std::vector<PlanWorker> workers;
  for (const char* id : {"a", "b", "c", "d"}) workers.push_back(Worker(id, NicFabric::kEthernet, 10000, "lan"));
  workers.push_back(Worker("x", NicFabric::kEthernet, 0, ""));
  workers.push_back(Worker("y", NicFabric::kEthernet, 0, ""));
  workers.push_back(Worker("z", NicFabric::kEthernet, 0, ""));
  LinkMatrix links;
  links.Set("a", "b", {1000, 0.1});
  links.Set("c", "d", {900, 0.1});
  for (const char* p : {"a", "b"})
    for (const char* q : {"c", "d"}) links.Set(p, q, {100, 1});
  links.Set("x", "y", {2000, 0.1});
  links.Set("y", "z", {50, 1});
  auto plan = PlanCluster(workers, links, Job());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->islands.size(), 4u);
  EXPECT_EQ(FindIsland(*plan, "fabric:lan/1")->members, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(FindIsland(*plan, "fabric:lan/2")->members, (std::vector<std::string>{"c", "d"}));
  EXPECT_NE(FindIsland(*plan, "fabric:lan/1")->reasons[0].find("split by measured bandwidth"), std::string::npos);
  EXPECT_EQ(FindIsland(*plan, "net:x")->members, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(FindIsland(*plan, "z")->members, (std::vector<std::string>{"z"}));
}

// The leader has the best uplink; shares follow compute; island batches are scaled so both islands'
// inner steps take the same compute time.
TEST(PlannerTest, LeaderSharesAndBatchesFollowMeasurements) {
  std::vector<PlanWorker> workers = {Worker("a1", NicFabric::kRoce, 50000, "A", 300),
                                     Worker("a2", NicFabric::kRoce, 50000, "A", 100),
                                     Worker("b1", NicFabric::kRoce, 50000, "B", 200)};
  LinkMatrix links;
  links.SetUplink("a1", {100, 10});
  links.SetUplink("a2", {400, 10});
  links.SetUplink("b1", {100, 10});
  auto plan = PlanCluster(workers, links, Job());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const IslandPlan* a = FindIsland(*plan, "fabric:A");
  const IslandPlan* b = FindIsland(*plan, "fabric:B");
  EXPECT_EQ(a->leader, "a2");
  EXPECT_EQ(a->ring.front(), "a2");
  EXPECT_DOUBLE_EQ(a->uplink_mbps, 400);
  EXPECT_DOUBLE_EQ(a->shares.at("a1"), 0.75);
  EXPECT_DOUBLE_EQ(a->shares.at("a2"), 0.25);
  EXPECT_DOUBLE_EQ(b->shares.at("b1"), 1.0);
  EXPECT_EQ(a->batch_tokens, 1333);  // 1000 x 400 / 300 (the islands' mean compute)
  EXPECT_EQ(b->batch_tokens, 667);
  EXPECT_NEAR(a->step_compute_s, b->step_compute_s, 0.01);
}

// Cost model: 1 s of compute per step, 100 Mbit/s uplinks. fp32 (4 MB up and down: 0.64 s) is above
// 5% of a 10-step phase, bf16 (0.32 s) fits: H 10 with bf16. With fp32 fixed, H grows to 25.
TEST(PlannerTest, ChoosesTheLeastHAndTheLeastLossyCodecThatFit) {
  std::vector<PlanWorker> workers = {Worker("a", NicFabric::kRoce, 50000, "A", 1000),
                                     Worker("b", NicFabric::kRoce, 50000, "B", 1000)};
  LinkMatrix links;
  links.SetUplink("a", {100, 0});
  links.SetUplink("b", {100, 0});
  auto plan = PlanCluster(workers, links, Job());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->local_steps, 10);
  EXPECT_EQ(plan->codec, "bf16");
  EXPECT_NEAR(plan->outer_sync_s, 0.32, 1e-9);
  EXPECT_NEAR(plan->inner_phase_s, 10, 1e-9);
  EXPECT_TRUE(plan->meets_target);

  PlanJob fixed = Job();
  fixed.codecs = {{"fp32", 4'000'000}};
  plan = PlanCluster(workers, links, fixed);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->local_steps, 25);
  EXPECT_EQ(plan->codec, "fp32");

  fixed.max_local_steps = 10;  // cannot fit: the best plan, flagged, with the reason
  plan = PlanCluster(workers, links, fixed);
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->meets_target);
  EXPECT_NE(plan->reasons.back().find("above the 5% target"), std::string::npos) << plan->reasons.back();

  plan = PlanCluster(workers, LinkMatrix(), Job());  // nothing measured: not chosen by cost, and said so
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->codec, "fp32");
  EXPECT_NE(plan->reasons.back().find("not chosen by cost"), std::string::npos);
}

// The ring inside an island follows the measured links (max-min by default).
TEST(PlannerTest, IslandRingAvoidsASlowLink) {
  std::vector<PlanWorker> workers;
  for (const char* id : {"w0", "w1", "w2", "w3"}) workers.push_back(Worker(id, NicFabric::kInfiniband, 100000, "ib"));
  LinkMatrix links;
  links.Set("w0", "w1", {100, 0});
  links.Set("w1", "w2", {100, 0});
  links.Set("w2", "w3", {100, 0});
  links.Set("w3", "w0", {40, 0});
  links.Set("w1", "w3", {50, 0});
  links.Set("w0", "w2", {50, 0});
  PlanJob job = Job();
  job.bandwidth_split = 10;  // keep them one island
  auto plan = PlanCluster(workers, links, job);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->islands.size(), 1u);
  EXPECT_DOUBLE_EQ(plan->islands[0].bottleneck_mbps, 50);
  EXPECT_EQ(plan->islands[0].ring, (std::vector<std::string>{"w0", "w1", "w3", "w2"}));
  job.ring_objective = RingObjective::kMinSumInverse;
  plan = PlanCluster(workers, links, job);
  ASSERT_TRUE(plan.ok());
  EXPECT_DOUBLE_EQ(plan->islands[0].bottleneck_mbps, 40);  // 1/100 x 3 + 1/40 < 2/100 + 2/50
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// A 1 Gbit/s LAN cannot carry a 400 MB gradient every step: its ring all-reduce (4.8 s) would take
// longer than its compute (0.25 s), so its members train alone. The InfiniBand island stays dense, and
// every island's inner step then takes the same time.
TEST(PlannerTest, ACommunicationBoundGroupIsSplitAndStepsAreBalanced) {
  std::vector<PlanWorker> workers;
  for (const char* id : {"e0", "e1", "e2", "e3"})
    workers.push_back(Worker(id, NicFabric::kEthernet, 1000, "lan", 1000));
  for (const char* id : {"i0", "i1"}) workers.push_back(Worker(id, NicFabric::kInfiniband, 100000, "ib", 2000));
  PlanJob job = Job();
  job.parameters = 100'000'000;
  auto plan = PlanCluster(workers, LinkMatrix(), job);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->islands.size(), 5u);
  EXPECT_EQ(FindIsland(*plan, "fabric:ib")->members.size(), 2u);
  const IslandPlan* e0 = FindIsland(*plan, "e0");
  ASSERT_NE(e0, nullptr);
  EXPECT_NE(e0->reasons[0].find("split from fabric:lan: its ring all-reduce (4.8 s per step) exceeds its compute"),
            std::string::npos)
      << e0->reasons[0];
  int64_t total = 0;
  for (const IslandPlan& island : plan->islands) {
    total += island.batch_tokens;
    EXPECT_NEAR(island.step_compute_s + island.step_allreduce_s,
                plan->islands[0].step_compute_s + plan->islands[0].step_allreduce_s, 1e-3)
        << island.name;
  }
  EXPECT_NEAR(static_cast<double>(total), 2000, 3);  // two islands as formed x 1000 tokens

  job.islands = {{"lan", {"e0", "e1", "e2", "e3"}}, {"ib", {"i0", "i1"}}};  // given by the job: kept
  plan = PlanCluster(workers, LinkMatrix(), job);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->islands.size(), 2u);
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// Without measured links the runtime's islands (PlanIslands) are exactly IslandsByFabric's, and they are
// the islands PlanCluster plans.
TEST(PlannerTest, PlanIslandsAgreesWithFabricIdentityAndWithThePlan) {
  std::vector<PlanWorker> workers = {
      Worker("b", NicFabric::kRoce, 50000, "r"), Worker("a", NicFabric::kRoce, 50000, "r"),
      Worker("c", NicFabric::kInfiniband, 100000, "ib"), Worker("d", NicFabric::kEthernet, 0, "")};
  auto planned = PlanIslands(workers, LinkMatrix(), Job());
  ASSERT_TRUE(planned.ok());
  std::vector<WorkerInventory> inventory;
  for (const PlanWorker& w : workers) inventory.push_back(w.inventory);
  const std::vector<IslandDefinition> by_fabric = IslandsByFabric(inventory);
  ASSERT_EQ(planned->size(), by_fabric.size());
  auto plan = PlanCluster(workers, LinkMatrix(), Job());
  ASSERT_TRUE(plan.ok());
  for (size_t i = 0; i < by_fabric.size(); ++i) {
    EXPECT_EQ((*planned)[i].name, by_fabric[i].name);
    EXPECT_EQ((*planned)[i].workers, by_fabric[i].workers);
    EXPECT_EQ(plan->islands[i].name, by_fabric[i].name);
    EXPECT_EQ(plan->islands[i].members, by_fabric[i].workers);
  }
}

}  // namespace
}  // namespace tributary
