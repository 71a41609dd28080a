// Cluster mode's plan as the running job uses it (coordinator/cluster_plan.h): the planner's job from a
// spec, the view status and /api show, and the job log's line for what changed between two rounds' plans.
#include "coordinator/cluster_plan.h"

#include <gtest/gtest.h>

#include "coordinator/cluster_round.h"

namespace tributary {
namespace {

IslandPlan Island(const std::string& name, std::vector<std::string> ring) {
  IslandPlan island;
  island.name = name;
  island.fabric = "ethernet:lan";
  island.ring = ring;
  island.leader = ring.front();
  island.members = ring;
  std::sort(island.members.begin(), island.members.end());
  for (const std::string& m : ring) island.shares[m] = 1.0 / static_cast<double>(ring.size());
  island.reasons = {"leader " + ring.front() + ": first member"};
  return island;
}

ClusterPlan Plan(std::vector<IslandPlan> islands, int64_t h = 50, const std::string& codec = "int8") {
  ClusterPlan plan;
  plan.islands = std::move(islands);
  plan.local_steps = h;
  plan.codec = codec;
  plan.outer_payload_bytes = 4096;
  plan.reasons = {"H 50 and codec int8 are the job's"};
  return plan;
}

TEST(ClusterPlanTest, DescribesWhatAWorkerWouldNoticeChanged) {
  const ClusterPlan before = Plan({Island("a", {"w1", "w2", "w3"}), Island("b", {"w4", "w5"})});
  EXPECT_EQ(DescribePlanChange(before, before), "");
  ClusterPlan reasons_only = before;
  reasons_only.reasons = {"another reason"};
  reasons_only.inner_phase_s = 9;
  EXPECT_EQ(DescribePlanChange(before, reasons_only), "") << "predictions and reasons alone are no change";

  EXPECT_EQ(DescribePlanChange(before, Plan({Island("a", {"w1", "w3", "w2"}), Island("b", {"w4", "w5"})})),
            "island a: ring w1 > w3 > w2 (was w1 > w2 > w3)");
  EXPECT_EQ(DescribePlanChange(before, Plan({Island("a", {"w2", "w3", "w1"}), Island("b", {"w4", "w5"})})),
            "island a: ring w2 > w3 > w1 (was w1 > w2 > w3); island a: leader w2 (was w1)");
  EXPECT_EQ(DescribePlanChange(before, Plan({Island("a", {"w1", "w2"}), Island("c", {"w4", "w5"})}, 100, "fp4")),
            "island a: members w1,w2 (was w1,w2,w3); island c formed (w4 > w5); island b gone; H 100 (was 50); "
            "codec fp4 (was int8)");
}

TEST(ClusterPlanTest, ViewCarriesEveryDecisionToJsonAndText) {
  ClusterPlan plan = Plan({Island("a", {"w2", "w1"})});
  plan.islands[0].bottleneck_mbps = 940;
  plan.islands[0].batch_tokens = 2048;
  plan.inner_phase_s = 12.5;
  plan.outer_sync_s = 0.25;
  plan.outer_fraction = 0.02;
  plan.meets_target = true;
  const v1::ClusterPlanView view = ClusterPlanToView(plan, 7);
  const nlohmann::json json = ClusterPlanJson(view);
  EXPECT_EQ(json["round"], 7);
  EXPECT_EQ(json["codec"], "int8");
  EXPECT_EQ(json["local_steps"], 50);
  EXPECT_EQ(json["islands"][0]["ring"], nlohmann::json({"w2", "w1"}));
  EXPECT_EQ(json["islands"][0]["members"], nlohmann::json({"w1", "w2"}));
  EXPECT_EQ(json["islands"][0]["leader"], "w2");
  EXPECT_EQ(json["islands"][0]["shares"]["w1"], 0.5);
  EXPECT_EQ(json["islands"][0]["bottleneck_mbps"], 940);
  EXPECT_TRUE(json["meets_target"].get<bool>());

  const std::string text = ClusterPlanText(view);
  EXPECT_NE(text.find("w2(0.50) > w1(0.50)"), std::string::npos) << text;
  EXPECT_NE(text.find("940 Mb/s"), std::string::npos) << text;
  EXPECT_NE(text.find("H 50, codec int8 (4096 bytes per island), inner phase 12.5 s, outer sync 0.25 s (2% of"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  a: leader w2: first member\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  H 50 and codec int8 are the job's\n"), std::string::npos) << text;
}

TEST(ClusterPlanTest, MembersFollowTheRingAndUnplannedOnesGoLast) {
  std::vector<std::string> members = {"w1", "w2", "w3", "w4"};
  OrderByRing({"w3", "w1", "w4", "w2"}, &members);
  EXPECT_EQ(members, (std::vector<std::string>{"w3", "w1", "w4", "w2"}));
  members = {"w1", "w2", "w5", "w4"};  // a survivor set with a newcomer
  OrderByRing({"w4", "w2", "w3", "w1"}, &members);
  EXPECT_EQ(members, (std::vector<std::string>{"w4", "w2", "w1", "w5"}));
  members = {"w2", "w1"};
  OrderByRing({}, &members);  // not planned: unchanged
  EXPECT_EQ(members, (std::vector<std::string>{"w2", "w1"}));
}

TEST(ClusterPlanTest, OnlyClusterJobsArePlanned) {
  TensorTable table;
  JobSpec spec;
  spec.mode = "ferret";
  const Status refused = PlanJobForSpec(spec, table, PlanChoices()).status();
  EXPECT_TRUE(refused.IsInvalidArgument());
  EXPECT_NE(refused.message().find("federation.mode is 'ferret'"), std::string::npos) << refused.message();
  spec.mode = "cluster";
  spec.cluster.codec = "int3";
  EXPECT_FALSE(PlanJobForSpec(spec, table, PlanChoices()).ok()) << "an unknown codec is an error";
}

TEST(ClusterPlanTest, SpecAutoLeavesHAndCodecToThePlanAsThePlanCommandDoes) {
  TensorTable table;
  table.Add("w", {8, 8});
  JobSpec spec;
  spec.mode = "cluster";
  spec.local_steps = 0;  // train.local_steps: auto
  spec.cluster.codec = "auto";
  auto job = PlanJobForSpec(spec, table, PlanChoices());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->local_steps, 0) << "chosen by the cost model";
  std::vector<std::string> codecs;
  for (const OuterCodecChoice& c : job->codecs) codecs.push_back(c.name);
  EXPECT_EQ(codecs, (std::vector<std::string>{"fp32", "bf16", "int8", "fp4"}));

  const ClusterPlan plan = Plan({Island("a", {"w1"})}, 25, "bf16");
  RoundOuter outer = ChooseRoundOuter(spec, &plan);
  EXPECT_EQ(outer.local_steps, 25);
  EXPECT_EQ(outer.codec, "bf16");
  EXPECT_EQ(outer.reason, "H 25, codec bf16 (auto: the plan's)");
  outer = ChooseRoundOuter(spec, nullptr);
  EXPECT_EQ(outer.local_steps, kFallbackLocalSteps);
  EXPECT_EQ(outer.codec, "fp32");
  EXPECT_EQ(outer.reason, "H 100, codec fp32 (auto, but no plan: the planner's choice without measurements)");
  spec.local_steps = 7;  // fixed H, codec auto
  outer = ChooseRoundOuter(spec, &plan);
  EXPECT_EQ(outer.local_steps, 7);
  EXPECT_EQ(outer.reason, "codec bf16 (auto: the plan's)");
  spec.cluster.codec = "int8";  // nothing auto: the spec's, no reason
  outer = ChooseRoundOuter(spec, &plan);
  EXPECT_EQ(outer.codec, "");
  EXPECT_EQ(outer.reason, "");
}

}  // namespace
}  // namespace tributary
