// The members' batches of a cluster-mode round (coordinator/cluster_batches.h): the split keeps the island's
// total and gives every member at least one sequence; a plan is applied only when it is measured and changes
// something.
#include "coordinator/cluster_batches.h"

#include <gtest/gtest.h>

#include <numeric>

namespace tributary {
namespace {

std::vector<int64_t> Split(int64_t batch, const std::vector<double>& shares) {
  auto split = SplitIslandBatch(batch, shares);
  EXPECT_TRUE(split.ok()) << split.status().ToString();
  return split.ok() ? *split : std::vector<int64_t>();
}

TEST(ClusterBatchesTest, SplitIsProportionalKeepsTheTotalAndGivesEveryoneOne) {
  EXPECT_EQ(Split(8, {0.75, 0.25}), (std::vector<int64_t>{6, 2}));
  EXPECT_EQ(Split(8, {3, 1}), (std::vector<int64_t>{6, 2})) << "any positive scale";
  EXPECT_EQ(Split(10, {1, 1, 1}), (std::vector<int64_t>{4, 3, 3})) << "ties go to the earlier member";
  EXPECT_EQ(Split(7, {0.5, 0.3, 0.2}), (std::vector<int64_t>{4, 2, 1})) << "3.5, 2.1, 1.4: largest remainders";
  EXPECT_EQ(Split(10, {0.98, 0.01, 0.01}), (std::vector<int64_t>{8, 1, 1})) << "at least one each, from the largest";
  EXPECT_EQ(Split(1, {1, 1, 1}), (std::vector<int64_t>{1, 1, 1})) << "raised to one per member";
  for (int64_t batch : {4, 17, 64, 1001}) {
    const std::vector<int64_t> out = Split(batch, {0.61, 0.07, 0.3, 0.02});
    EXPECT_EQ(std::accumulate(out.begin(), out.end(), int64_t{0}), batch);
    for (int64_t b : out) EXPECT_GE(b, 1);
  }
  EXPECT_FALSE(SplitIslandBatch(4, {}).ok());
  auto bad = SplitIslandBatch(4, {1, 0});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("member 1"), std::string::npos) << bad.status().message();
}

JobSpec Spec() {
  JobSpec spec;
  spec.mode = "cluster";
  spec.batch_size = 4;
  spec.grad_accum = 2;
  spec.seq_len = 16;
  spec.cluster.balance_batches = true;
  return spec;
}

IslandPlan Planned(const std::string& name, std::map<std::string, double> shares, double tps, int64_t tokens) {
  IslandPlan island;
  island.name = name;
  island.shares = std::move(shares);
  island.tokens_per_s = tps;
  island.batch_tokens = tokens;
  return island;
}

TEST(ClusterBatchesTest, MeasuredUnequalComputeGetsUnequalBatches) {
  ClusterPlan plan;
  plan.islands = {Planned("a", {{"w1", 0.75}, {"w2", 0.25}}, 400, 8 * 32), Planned("b", {{"w3", 1.0}}, 100, 2 * 32)};
  std::vector<RoundIsland> islands = {{"a", 1, {"w2", "w1"}, "", {}, 0, {}}, {"b", 2, {"w3"}, "", {}, 0, {}}};
  EXPECT_EQ(ApplyPlanBatches(plan, Spec(), &islands), "member batches from the plan's shares and island batches");
  EXPECT_EQ(islands[0].batch, 8);
  EXPECT_EQ(*MemberBatches(islands[0]), (std::vector<int64_t>{2, 6})) << "in the members' (ring) order";
  EXPECT_EQ(*MemberBatches(islands[1]), (std::vector<int64_t>{2}));
  EXPECT_EQ(MemberBatchesText(islands), "island a: w2 2, w1 6; island b: w3 2");
  // A re-formed island keeps its batch among the members it has left.
  islands[0].members = {"w1"};
  EXPECT_EQ(*MemberBatches(islands[0]), (std::vector<int64_t>{8}));
}

TEST(ClusterBatchesTest, UnmeasuredOrUnchangedPlansLeaveTheJobsBatch) {
  ClusterPlan plan;
  plan.islands = {Planned("a", {{"w1", 0.5}, {"w2", 0.5}}, 0, 8 * 32)};
  std::vector<RoundIsland> islands = {{"a", 1, {"w1", "w2"}, "", {}, 0, {}}};
  EXPECT_EQ(ApplyPlanBatches(plan, Spec(), &islands),
            "every member trains train.batch_size: compute not measured on every member of island a");
  EXPECT_EQ(islands[0].batch, 0);
  EXPECT_TRUE(MemberBatches(islands[0])->empty());
  EXPECT_EQ(MemberBatchesText(islands), "");

  plan.islands[0].tokens_per_s = 200;  // measured, equal: 4 each, the job's batch
  EXPECT_EQ(ApplyPlanBatches(plan, Spec(), &islands),
            "every member trains train.batch_size: the plan's batches are the same");
  EXPECT_EQ(islands[0].batch, 0);
}

TEST(ClusterBatchesTest, BalancingIsOffUnlessTheJobAsks) {
  ClusterPlan plan;
  plan.islands = {Planned("a", {{"w1", 0.75}, {"w2", 0.25}}, 400, 8 * 32)};
  std::vector<RoundIsland> islands = {{"a", 1, {"w1", "w2"}, "", {}, 0, {}}};
  JobSpec spec = Spec();
  spec.cluster.balance_batches = false;
  EXPECT_EQ(ApplyPlanBatches(plan, spec, &islands),
            "every member trains train.batch_size: cluster.balance_batches is false");
  EXPECT_EQ(islands[0].batch, 0);
  EXPECT_TRUE(islands[0].shares.empty());
}

}  // namespace
}  // namespace tributary
