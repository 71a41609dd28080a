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

// B12's three sites joined pairwise (A-B 5x, B-C 1x, A-C 3x of 100 Mbit/s), two workers each, and
// uplinks to the core too slow to matter if a flow took them: worker traffic between sites takes the
// site link. The planned ring crosses A-B and A-C once each way; index order puts two flows on each
// direction of every site link, so B-C carries them at 50 Mbit/s each.
SimCluster ThreeSitesPairwise() {
  SimCluster c;
  c.sites = {{"A", 1, 0}, {"B", 1, 0}, {"C", 1, 0}};
  c.site_links = {{"A", "B", 500, 0}, {"B", "C", 100, 0}, {"A", "C", 300, 0}};
  c.coordinator_mbps = 1000;
  c.eth_latency_ms = 0;
  for (const char* site : {"A", "B", "C"})
    for (int k = 1; k <= 2; ++k) c.workers.push_back({site + std::to_string(k), site, "", 0, 10000, 1000});
  return c;
}

double RingAllReduce(const SimCluster& c, const std::vector<std::string>& ring, double gradient_bytes) {
  SimRound round;
  SimIsland island{ring, {}, 0};
  for (const std::string& id : ring) island.shares[id] = 1.0 / static_cast<double>(ring.size());
  round.islands = {island};
  round.local_steps = 1;
  round.gradient_bytes = gradient_bytes;
  auto r = SimulateRound(c, round);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->allreduce_s : -1;
}

TEST(FlowSimTest, SiteLinksCarryTrafficBetweenTheirSites) {
  const SimCluster c = ThreeSitesPairwise();
  const double g = 600 * kMbit;  // 100 Mbit per ring step
  // Planned: A1 > B1 > B2 > A2 > C1 > C2: slowest flow 100 Mbit at 300 Mbit/s (A-C), 10 steps.
  EXPECT_NEAR(RingAllReduce(c, {"A1", "B1", "B2", "A2", "C1", "C2"}, g), 10 * 100.0 / 300, 1e-6);
  // Index order: B1 > C1 and B2 > C2 share B->C: 100 Mbit at 50 Mbit/s per step.
  EXPECT_NEAR(RingAllReduce(c, {"A1", "B1", "C1", "A2", "B2", "C2"}, g), 10 * 100.0 / 50, 1e-6);
}

// Acknowledgements of the flows going the other way share a link with the data: a 2-member ring
// across sites sends data both ways, so each direction of the WAN carries G/2 plus the other flow's ACKs.
TEST(FlowSimTest, AcknowledgementsOfTheReverseFlowTakeTheirShare) {
  SimCluster c = TwoSites();
  c.ack_bytes_per_payload_byte = 0.02;
  SimRound round;
  round.islands = {{{"a", "c"}, {{"a", 0.5}, {"c", 0.5}}, 1000}};
  round.local_steps = 1;
  round.gradient_bytes = 1000 * kMbit;
  round.payload_bytes = 1;
  auto r = SimulateRound(c, round);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->allreduce_s, 10.0 * 1.02, 1e-6);  // (500 + 10) Mbit each way at 100 Mbit/s
  // B12's index order: B-C carries two data flows one way and nothing back, so ACKs change nothing there.
  SimCluster t = ThreeSitesPairwise();
  t.ack_bytes_per_payload_byte = 0.02;
  EXPECT_NEAR(RingAllReduce(t, {"A1", "B1", "C1", "A2", "B2", "C2"}, 600 * kMbit), 10 * 100.0 / 50, 1e-6);
}

TEST(FlowSimTest, BadSiteLinksAreNamed) {
  SimCluster c = ThreeSitesPairwise();
  SimRound round;
  round.islands = {{{"A1"}, {{"A1", 1}}, 10}};
  c.site_links.push_back({"B", "A", 10, 0});
  EXPECT_EQ(SimulateRound(c, round).status().message(), "site link 'B-A': listed twice");
  c.site_links.back() = {"A", "A", 10, 0};
  EXPECT_EQ(SimulateRound(c, round).status().message(), "site link 'A-A': joins a site to itself");
  c.site_links.back() = {"A", "D", 10, 0};
  EXPECT_EQ(SimulateRound(c, round).status().message(), "site link 'A-D': unknown site");
  c.site_links.back() = {"B", "D", 10, 0};
  c.sites.push_back({"D", 1, 0});
  c.site_links.back().mbps = 0;
  EXPECT_EQ(SimulateRound(c, round).status().message(), "site link 'B-D': mbps must be > 0");
}

}  // namespace
}  // namespace tributary
