// The islands of a cluster-mode round (coordinator/cluster_round.h): planning, leaders, and re-forming
// after a member is lost.
#include "coordinator/cluster_round.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

JobSpec Spec(std::vector<std::string> islands) {
  JobSpec spec;
  spec.mode = "cluster";
  spec.cluster.islands = std::move(islands);
  return spec;
}

TEST(ClusterRoundTest, PlansEveryIslandWithAMajorityAndNumbersIncarnations) {
  const JobSpec spec = Spec({"a=w1,w2", "b=w3,w4,w5"});
  auto islands = PlanRoundIslands(spec, {}, {}, {"w1", "w2", "w4", "w5"}, 100);
  ASSERT_TRUE(islands.ok()) << islands.status().ToString();
  ASSERT_EQ(islands->size(), 2u);
  EXPECT_EQ((*islands)[0].incarnation, 100u);
  EXPECT_EQ((*islands)[1].incarnation, 101u);
  EXPECT_EQ((*islands)[1].members, (std::vector<std::string>{"w4", "w5"}));
  EXPECT_EQ(IslandLeaders(*islands), (std::vector<std::string>{"w1", "w4"}));

  auto none = PlanRoundIslands(spec, {}, {}, {"w2", "w5"}, 7);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().message(),
            "no island can train (a: 1 of 2 members eligible: no majority; b: 1 of 3 members eligible: no majority)");
}

TEST(ClusterRoundTest, ALostLeaderIsReplacedByTheNextMemberUnderANewIncarnation) {
  const JobSpec spec = Spec({"a=w1,w2,w3", "b=w4,w5"});
  auto islands = PlanRoundIslands(spec, {}, {}, {"w1", "w2", "w3", "w4", "w5"}, 10);
  ASSERT_TRUE(islands.ok());
  uint64_t next = 12;
  const auto changes = ReformIslands(spec, {}, {}, {"w2", "w3", "w4", "w5"}, {}, &next, &*islands);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(changes[0].dropped);
  EXPECT_EQ(changes[0].line, "island a lost w1: re-formed as incarnation 12 with 2 member(s), led by w2");
  EXPECT_EQ((*islands)[0].members, (std::vector<std::string>{"w2", "w3"}));
  EXPECT_EQ((*islands)[0].incarnation, 12u);
  EXPECT_EQ((*islands)[1].incarnation, 11u);  // island b is not touched
  EXPECT_EQ(next, 13u);
}

TEST(ClusterRoundTest, AnIslandWithoutMajorityIsDroppedAndAReportedIslandIsKept) {
  const JobSpec spec = Spec({"a=w1,w2,w3", "b=w4,w5"});
  auto islands = PlanRoundIslands(spec, {}, {}, {"w1", "w2", "w3", "w4", "w5"}, 10);
  ASSERT_TRUE(islands.ok());
  uint64_t next = 12;
  // Island a loses two of three members; island b loses w5 but its leader w4 already uploaded.
  const auto changes = ReformIslands(spec, {}, {}, {"w3", "w4"}, {"w4"}, &next, &*islands);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(changes[0].dropped);
  EXPECT_EQ(changes[0].line, "island a lost w1, w2 and sits the round out (1 of 3 members eligible: no majority)");
  ASSERT_EQ(islands->size(), 1u);
  EXPECT_EQ((*islands)[0].name, "b");
  EXPECT_EQ((*islands)[0].members, (std::vector<std::string>{"w4", "w5"}));
}

TEST(ClusterRoundTest, ARestartedMemberRejoinsWhenItsIslandReforms) {
  const JobSpec spec = Spec({"a=w1,w2,w3"});
  auto islands = PlanRoundIslands(spec, {}, {}, {"w1", "w2"}, 10);  // w3 was down when the round opened
  ASSERT_TRUE(islands.ok());
  uint64_t next = 11;
  const auto changes = ReformIslands(spec, {}, {}, {"w1", "w3"}, {}, &next, &*islands);  // w2 died, w3 came back
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ((*islands)[0].members, (std::vector<std::string>{"w1", "w3"}));
}

}  // namespace
}  // namespace tributary
