#include "scheduler/flow_sim.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

constexpr double kMbit = 1e6 / 8;  // bytes

TEST(FlowSimTest, FlowsOnOneLinkShareItEqually) {
  SimNetwork net;
  const int link = net.AddLink(100, 0);
  const std::vector<double> done = net.RunFlows({{{link}, 100 * kMbit}, {{link}, 100 * kMbit}});
  EXPECT_NEAR(done[0], 2.0, 1e-9);
  EXPECT_NEAR(done[1], 2.0, 1e-9);
}

// Max-min fairness: B is held to 10 Mbit/s by its second link, A takes the other 90, then all 100
// once B is done; latency is added per link of the path.
TEST(FlowSimTest, ProgressiveFillingGivesSpareCapacityToUnconstrainedFlows) {
  SimNetwork net;
  const int shared = net.AddLink(100, 0);
  const int narrow = net.AddLink(10, 5);
  const std::vector<double> done = net.RunFlows({{{shared}, 100 * kMbit}, {{shared, narrow}, 10 * kMbit}});
  EXPECT_NEAR(done[1], 1.0 + 0.005, 1e-9);
  EXPECT_NEAR(done[0], 1.1, 1e-9);  // 90 Mbit in the first second, the last 10 at 100 Mbit/s
}

SimCluster TwoSites() {
  SimCluster c;
  c.sites = {{"east", 100, 0}, {"west", 100, 0}};
  c.coordinator_mbps = 1000;
  c.fabric_latency_ms = 0;
  c.eth_latency_ms = 0;
  c.workers = {
      {"a", "east", "ib", 1000, 1000, 500}, {"b", "east", "ib", 1000, 1000, 500}, {"c", "west", "", 0, 1000, 500}};
  return c;
}

// A 2-member island on one fabric: the ring all-reduce takes 2 (n-1)/n G / B, the α-β model's figure;
// the outer sync is the upload, then both downloads sharing the site's 100 Mbit/s uplink.
TEST(FlowSimTest, ARoundMatchesTheClosedFormOnAnUncontendedFabric) {
  SimRound round;
  round.islands = {{{"a", "b"}, {{"a", 0.5}, {"b", 0.5}}, 1000}};
  round.local_steps = 10;
  round.gradient_bytes = 1000 * kMbit;
  round.payload_bytes = 100 * kMbit;
  auto r = SimulateRound(TwoSites(), round);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->allreduce_s, 1.0, 1e-9);   // 2 x 1/2 x 1000 Mbit / 1000 Mbit/s
  EXPECT_NEAR(r->inner_step_s, 2.0, 1e-9);  // + 500 tokens at 500 tokens/s
  EXPECT_NEAR(r->inner_phase_s, 20.0, 1e-9);
  EXPECT_NEAR(r->outer_sync_s, 1.0 + 2.0, 1e-9);
  EXPECT_NEAR(r->tokens_per_s, 10000 / 23.0, 1e-9);
}

// The same island spanning sites (as a NIC-oblivious placement makes it) all-reduces over the WAN.
TEST(FlowSimTest, AnIslandAcrossSitesIsBoundByTheWan) {
  SimRound round;
  round.islands = {{{"a", "c"}, {{"a", 0.5}, {"c", 0.5}}, 1000}};
  round.local_steps = 1;
  round.gradient_bytes = 1000 * kMbit;
  round.payload_bytes = 1;
  auto r = SimulateRound(TwoSites(), round);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->allreduce_s, 10.0, 1e-6);  // 500 Mbit each way at the 100 Mbit/s site uplinks
}

TEST(FlowSimTest, BadRoundsAreNamed) {
  SimRound round;
  EXPECT_EQ(SimulateRound(TwoSites(), round).status().message(), "a round needs at least one island");
  round.islands = {{{"a", "zz"}, {{"a", 1}}, 10}};
  EXPECT_EQ(SimulateRound(TwoSites(), round).status().message(), "worker 'zz' is not in the cluster");
  round.islands = {{{"a"}, {{"a", 1}}, 10}, {{"a"}, {{"a", 1}}, 10}};
  EXPECT_EQ(SimulateRound(TwoSites(), round).status().message(), "worker 'a' is in two islands");
}

}  // namespace
}  // namespace tributary
