#include "scheduler/ring_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>

namespace tributary {
namespace {

BandwidthMatrix Uniform(int n, double mbps) {
  return BandwidthMatrix(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(n), mbps));
}

void SetLink(BandwidthMatrix* m, int a, int b, double mbps) {
  (*m)[static_cast<size_t>(a)][static_cast<size_t>(b)] = mbps;
  (*m)[static_cast<size_t>(b)][static_cast<size_t>(a)] = mbps;
}

// Every ring through member 0, by brute force: the best bottleneck and the best sum of inverses.
std::pair<double, double> BruteForce(const BandwidthMatrix& m) {
  std::vector<int> rest(m.size() - 1);
  std::iota(rest.begin(), rest.end(), 1);
  double bottleneck = 0, sum = std::numeric_limits<double>::infinity();
  do {
    std::vector<int> ring{0};
    ring.insert(ring.end(), rest.begin(), rest.end());
    const RingOrder r = EvaluateRing(m, ring);
    bottleneck = std::max(bottleneck, r.bottleneck_mbps);
    sum = std::min(sum, r.sum_inverse);
  } while (std::next_permutation(rest.begin(), rest.end()));
  return {bottleneck, sum};
}

// The objectives disagree: ring 0-1-2-3 has the least sum of inverses (one very slow link), ring
// 0-1-3-2 the largest bottleneck. A ring all-reduce runs at the bottleneck: max-min is 1.5x faster.
TEST(RingOrderTest, MaxMinAndSumOfInversesChooseDifferentRings) {
  BandwidthMatrix m = Uniform(4, 0);
  SetLink(&m, 0, 1, 100);
  SetLink(&m, 1, 2, 100);
  SetLink(&m, 2, 3, 100);
  SetLink(&m, 3, 0, 2);
  SetLink(&m, 1, 3, 3);
  SetLink(&m, 0, 2, 3);
  const RingOrder max_min = SolveRingOrder(m, RingObjective::kMaxMin);
  const RingOrder sum_inv = SolveRingOrder(m, RingObjective::kMinSumInverse);
  EXPECT_EQ(max_min.order, (std::vector<int>{0, 1, 3, 2}));
  EXPECT_DOUBLE_EQ(max_min.bottleneck_mbps, 3);
  EXPECT_EQ(sum_inv.order, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_DOUBLE_EQ(sum_inv.bottleneck_mbps, 2);
  EXPECT_LT(sum_inv.sum_inverse, max_min.sum_inverse);
  EXPECT_TRUE(max_min.exact);
  EXPECT_NE(max_min.reason.find("bottleneck 3 Mbit/s"), std::string::npos) << max_min.reason;
}

// B12's topology: islands A, B, C of two members each, fast inside; A-B 5x, B-C 1x, A-C 3x the base
// rate. Index order crosses B-C; the planned ring goes B -> A -> C and back through A, never B-C.
TEST(RingOrderTest, AsymmetricIslandsAvoidTheSlowestPair) {
  const int island[6] = {0, 0, 1, 1, 2, 2};
  const double cross[3][3] = {{1000, 5, 3}, {5, 1000, 1}, {3, 1, 1000}};
  BandwidthMatrix m = Uniform(6, 0);
  for (int a = 0; a < 6; ++a)
    for (int b = 0; b < 6; ++b) m[a][b] = cross[island[a]][island[b]];
  const RingOrder planned = SolveRingOrder(m, RingObjective::kMaxMin);
  const RingOrder index = EvaluateRing(m, {0, 1, 2, 3, 4, 5});
  EXPECT_DOUBLE_EQ(index.bottleneck_mbps, 1);
  EXPECT_DOUBLE_EQ(planned.bottleneck_mbps, 3);
  EXPECT_GE(planned.bottleneck_mbps / index.bottleneck_mbps, 1.5);
}

TEST(RingOrderTest, ExactSolutionsMatchBruteForce) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> speed(1, 1000);
  for (int n = 3; n <= 8; ++n) {
    for (int trial = 0; trial < 5; ++trial) {
      BandwidthMatrix m = Uniform(n, 0);
      for (int a = 0; a < n; ++a)
        for (int b = a + 1; b < n; ++b) SetLink(&m, a, b, std::round(speed(rng)));
      const auto [bottleneck, sum] = BruteForce(m);
      const RingOrder max_min = SolveRingOrder(m, RingObjective::kMaxMin);
      const RingOrder sum_inv = SolveRingOrder(m, RingObjective::kMinSumInverse);
      EXPECT_DOUBLE_EQ(max_min.bottleneck_mbps, bottleneck) << "n " << n;
      EXPECT_NEAR(sum_inv.sum_inverse, sum, 1e-12) << "n " << n;
      std::vector<int> sorted = max_min.order;
      std::sort(sorted.begin(), sorted.end());
      std::vector<int> all(static_cast<size_t>(n));
      std::iota(all.begin(), all.end(), 0);
      EXPECT_EQ(sorted, all);  // a permutation: every member once
    }
  }
}

// Above the exact limit: a planted ring of fast links among slow random ones is found.
TEST(RingOrderTest, HeuristicFindsAPlantedFastRing) {
  const int n = 24;
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> slow(1, 10);
  BandwidthMatrix m = Uniform(n, 0);
  for (int a = 0; a < n; ++a)
    for (int b = a + 1; b < n; ++b) SetLink(&m, a, b, slow(rng));
  std::vector<int> planted(n);
  std::iota(planted.begin(), planted.end(), 0);
  std::shuffle(planted.begin(), planted.end(), rng);
  for (int k = 0; k < n; ++k) SetLink(&m, planted[k], planted[(k + 1) % n], 100);
  const RingOrder ring = SolveRingOrder(m, RingObjective::kMaxMin);
  EXPECT_FALSE(ring.exact);
  EXPECT_DOUBLE_EQ(ring.bottleneck_mbps, 100);
  EXPECT_EQ(ring.order.size(), static_cast<size_t>(n));
}

TEST(RingOrderTest, SmallRings) {
  EXPECT_TRUE(SolveRingOrder({}, RingObjective::kMaxMin).order.empty());
  EXPECT_EQ(SolveRingOrder(Uniform(1, 0), RingObjective::kMaxMin).order, (std::vector<int>{0}));
  const RingOrder two = SolveRingOrder(Uniform(2, 40), RingObjective::kMaxMin);
  EXPECT_EQ(two.order, (std::vector<int>{0, 1}));
  EXPECT_DOUBLE_EQ(two.bottleneck_mbps, 40);
}

}  // namespace
}  // namespace tributary
