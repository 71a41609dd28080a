#include "scheduler/islands.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

WorkerInventory Worker(const std::string& id, const std::string& fabric) {
  WorkerInventory w;
  w.worker_id = id;
  NicInfo unknown;
  unknown.name = "lo";
  w.nics.push_back(unknown);  // a NIC without a fabric id does not decide the island
  if (!fabric.empty()) {
    NicInfo nic;
    nic.name = "ib0";
    nic.fabric = NicFabric::kInfiniband;
    nic.fabric_id = fabric;
    nic.speed_mbps = 100000;
    w.nics.push_back(nic);
  }
  return w;
}

TEST(IslandsTest, ByFabricGroupsSharedIdsAndLeavesTheRestAlone) {
  const auto islands =
      IslandsByFabric({Worker("w3", "fe80::a"), Worker("w1", "fe80::a"), Worker("w2", "fe80::b"), Worker("w0", "")});
  ASSERT_EQ(islands.size(), 3u);
  EXPECT_EQ(islands[0].name, "fabric:fe80::a");
  EXPECT_EQ(islands[0].workers, (std::vector<std::string>{"w1", "w3"}));
  EXPECT_EQ(islands[1].name, "fabric:fe80::b");
  EXPECT_EQ(islands[2].name, "w0");
  EXPECT_EQ(islands[2].workers, (std::vector<std::string>{"w0"}));
}

// A NIC that placement cannot count on (speed unknown, as virtual NICs report) decides nothing; of
// several, the fastest fabric class wins.
TEST(IslandsTest, ByFabricUsesThePrimaryPlaceableNic) {
  WorkerInventory veth = Worker("w1", "");
  NicInfo slow;
  slow.name = "veth0";
  slow.fabric = NicFabric::kEthernet;
  slow.fabric_id = "192.0.2.0/24";  // speed 0: not placeable
  veth.nics.push_back(slow);
  WorkerInventory both = Worker("w2", "ib-a");
  NicInfo eth = slow;
  eth.speed_mbps = 400000;
  both.nics.push_back(eth);
  EXPECT_EQ(PrimaryFabric(veth), "");
  EXPECT_EQ(PrimaryFabric(both), "infiniband:ib-a");
  const auto islands = IslandsByFabric({veth, both});
  ASSERT_EQ(islands.size(), 2u);
  EXPECT_EQ(islands[0].name, "fabric:ib-a");
  EXPECT_EQ(islands[1].name, "w1");
}

TEST(IslandsTest, AnIslandTrainsOnlyWithAStrictMajority) {
  const std::vector<IslandDefinition> islands = {
      {"a", {"w0", "w1"}}, {"b", {"w2", "w3", "w4"}}, {"c", {"w5", "w6"}}, {"d", {"w7"}}, {"e", {"w8", "w9"}}};
  const auto d = DecideIslands(islands, {"w1", "w0", "w3", "w4", "w6", "w8", "w11"});
  ASSERT_EQ(d.size(), 5u);
  EXPECT_TRUE(d[0].trains);
  EXPECT_EQ(d[0].members, (std::vector<std::string>{"w0", "w1"}));  // w0 leads
  EXPECT_TRUE(d[1].trains);                                         // 2 of 3
  EXPECT_EQ(d[1].members, (std::vector<std::string>{"w3", "w4"}));
  EXPECT_EQ(d[1].reason, "2 of 3 members eligible");
  EXPECT_FALSE(d[2].trains);  // 1 of 2 without the first member: the other half may hold the island
  EXPECT_EQ(d[2].reason, "1 of 2 members eligible: no majority");
  EXPECT_FALSE(d[3].trains);
  EXPECT_TRUE(d[3].members.empty());
  EXPECT_TRUE(d[4].trains);  // the half with the first configured member wins a tie
  EXPECT_EQ(d[4].reason, "1 of 2 members eligible, with its first member (a tie)");
}

}  // namespace
}  // namespace tributary
