// Client projection and reconstruct-apply (docs/ferret.md, "Projection", "Reconstruct-apply", "Determinism").
#include "peft/projection.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/parallel.h"
#include "peft/ferret.h"
#include "peft/reconstruct.h"
#include "tests/common/ferret_util.h"

namespace tributary {
namespace {

using ferret_test::FillNormal;
using ferret_test::Gather;
using ferret_test::MakeTable;
using ferret_test::Reconstruct;

double Norm(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

// Block element i -> arena offset, by walking segments (the naive reference).
int64_t ArenaOffset(const Block& b, int64_t i) {
  for (const auto& s : b.segments) {
    if (i < s.numel) return s.offset + i;
    i -= s.numel;
  }
  return -1;
}

class ThreadCountGuard {
 public:
  ~ThreadCountGuard() { SetNumThreads(0); }
};

TEST(ProjectionTest, FusedMatchesNaiveFp64) {
  // Two blocks of ~1.5e6 and ~0.5e6 elements; the first spans three padded tensors.
  auto table = MakeTable({1'000'003, 999, 1'000'001});
  auto blocks = SplitFixedChunks(*table, 1'500'000);
  ASSERT_TRUE(blocks.ok());
  Arena w_old(table), w_new(table);
  std::mt19937_64 rng(5);
  FillNormal(w_old, rng, 0.0, 0.02);
  w_new.CopyFrom(w_old);
  for (size_t t = 0; t < table->size(); ++t) {
    std::normal_distribution<double> step(0.0, 1e-3);
    for (float& x : w_new.span(t)) x -= static_cast<float>(step(rng));
  }
  const DeltaSource delta{w_old.data(), w_new.data()};
  for (Distribution dist : {Distribution::kUniform, Distribution::kRademacher}) {
    const BasisConfig basis{dist, 77, 3};
    const std::vector<int> k_per_block = {3, 2};
    const auto proj = ProjectBlocks(delta, *blocks, basis, k_per_block);
    const auto norms = BlockDeltaNorms(delta, *blocks);
    for (size_t l = 0; l < blocks->size(); ++l) {
      const Block& b = (*blocks)[l];
      double norm_sq = 0;
      std::vector<double> dots(static_cast<size_t>(k_per_block[l]), 0.0);
      std::vector<BasisStream> streams;
      for (int k = 0; k < k_per_block[l]; ++k) streams.push_back(MakeStream(basis, b, static_cast<uint32_t>(k)));
      for (int64_t i = 0; i < b.numel; ++i) {
        const int64_t off = ArenaOffset(b, i);
        const double d = static_cast<double>(w_old.data()[off] - w_new.data()[off]);  // Delta formed in fp32
        norm_sq += d * d;
        for (size_t k = 0; k < dots.size(); ++k) dots[k] += d * BasisElement(streams[k], static_cast<uint64_t>(i));
      }
      EXPECT_NEAR(norms[l], std::sqrt(norm_sq), 1e-12 * std::sqrt(norm_sq));
      EXPECT_NEAR(proj[l].delta_norm, std::sqrt(norm_sq), 1e-12 * std::sqrt(norm_sq));
      // Relative to the dot's natural scale ||Delta|| sqrt(rho) (a random dot may be near 0).
      const double scale = std::sqrt(norm_sq * BasisRho(dist, b.numel));
      for (size_t k = 0; k < dots.size(); ++k) {
        EXPECT_NEAR(proj[l].dots[k], dots[k], 1e-5 * std::max(std::fabs(dots[k]), scale))
            << DistributionName(dist) << " block " << l << " k " << k;
      }
    }
  }
}

TEST(ProjectionTest, BitwiseStableAcrossRunsAndThreadCounts) {
  ThreadCountGuard guard;
  auto table = MakeTable({1'500'007, 300'001, 17});
  auto blocks = SplitFixedChunks(*table, 1'000'000);
  ASSERT_TRUE(blocks.ok());
  Arena delta_arena(table);
  std::mt19937_64 rng(9);
  FillNormal(delta_arena, rng, 0.0, 1.0);
  const DeltaSource delta{delta_arena.data(), nullptr};
  const BasisConfig basis{Distribution::kUniform, 1234, 1};
  const std::vector<int> k_per_block = {16, 5};
  auto flatten = [](const std::vector<BlockProjection>& p) {
    std::vector<double> out;
    for (const auto& b : p) {
      out.push_back(b.delta_norm);
      out.insert(out.end(), b.dots.begin(), b.dots.end());
    }
    return out;
  };
  SetNumThreads(1);
  const std::vector<double> reference = flatten(ProjectBlocks(delta, *blocks, basis, k_per_block));
  for (int threads : {2, 3}) {
    SetNumThreads(threads);
    const std::vector<double> again = flatten(ProjectBlocks(delta, *blocks, basis, k_per_block));
    ASSERT_EQ(std::memcmp(again.data(), reference.data(), reference.size() * sizeof(double)), 0) << threads;
  }
  SetNumThreads(0);
  for (int run = 0; run < 10; ++run) {
    const std::vector<double> again = flatten(ProjectBlocks(delta, *blocks, basis, k_per_block));
    ASSERT_EQ(std::memcmp(again.data(), reference.data(), reference.size() * sizeof(double)), 0) << run;
  }
}

TEST(ReconstructTest, MatchesElementwiseDefinitionBitwiseForAnyThreadCount) {
  ThreadCountGuard guard;
  auto table = MakeTable({200'003, 5, 100'000});
  auto blocks = SplitFixedChunks(*table, 150'000);
  ASSERT_TRUE(blocks.ok());
  Arena start(table);
  std::mt19937_64 rng(3);
  FillNormal(start, rng, 0.0, 0.05);
  for (Distribution dist : {Distribution::kUniform, Distribution::kRademacher, Distribution::kTruncNormal}) {
    const BasisConfig basis{dist, 42, 8};
    std::vector<std::vector<float>> coeffs(blocks->size());
    std::normal_distribution<float> normal(0.0f, 0.3f);
    for (auto& c : coeffs) {
      for (int k = 0; k < 6; ++k) c.push_back(k == 2 ? 0.0f : normal(rng));  // a zero coefficient is skipped
    }
    // The definition: per element, acc = sum over nonzero c_k in ascending k of fp32(c_k * v_k[i]) in fp32, then w -=
    // acc.
    Arena expect(table);
    expect.CopyFrom(start);
    for (size_t l = 0; l < blocks->size(); ++l) {
      const Block& b = (*blocks)[l];
      for (int64_t i = 0; i < b.numel; ++i) {
        float acc = 0.0f;
        for (size_t k = 0; k < coeffs[l].size(); ++k) {
          if (coeffs[l][k] == 0.0f) continue;
          const float v = BasisElement(MakeStream(basis, b, static_cast<uint32_t>(k)), static_cast<uint64_t>(i));
          const float prod = coeffs[l][k] * v;
          acc = acc + prod;
        }
        expect.data()[ArenaOffset(b, i)] -= acc;
      }
    }
    for (int threads : {1, 2, 3}) {
      SetNumThreads(threads);
      Arena w(table);
      w.CopyFrom(start);
      ApplyBlocks(w.data(), *blocks, basis, coeffs);
      ASSERT_EQ(std::memcmp(w.data(), expect.data(), static_cast<size_t>(w.size()) * sizeof(float)), 0)
          << DistributionName(dist) << " threads " << threads;
    }
  }
}

// Options for one block of d elements with every K_l = K (uniform allocation).
FerretOptions OneBlockOptions(Distribution dist, Scaling scaling, int K) {
  FerretOptions o;
  o.K = K;
  o.distribution = dist;
  o.scaling = scaling;
  o.allocation = Allocation::kUniform;
  o.seed_mode = SeedMode::kPerRound;
  o.job_seed = 2718;
  o.clip = 0;
  return o;
}

struct MonteCarlo {
  std::vector<double> delta;
  std::vector<double> mean;
  double mean_sq_error = 0;  // E ||Delta~ - Delta||^2 / ||Delta||^2
  double mean_cos = 0;
};

// M independent reconstructions of one fixed Delta (fresh per-round bases each time).
MonteCarlo RunMonteCarlo(const FerretOptions& options, int64_t d, int M, uint64_t seed) {
  auto table = MakeTable({d});
  const std::vector<Block> blocks = GroupByReferenceRule(*table);
  Arena delta_arena(table);
  std::mt19937_64 rng(seed);
  FillNormal(delta_arena, rng, 0.0, 1.0);
  MonteCarlo mc;
  mc.delta = Gather(delta_arena.data(), blocks);
  mc.mean.assign(static_cast<size_t>(d), 0.0);
  const double norm_sq = Norm(mc.delta) * Norm(mc.delta);
  for (int m = 0; m < M; ++m) {
    auto up = ProjectUpdate(options, blocks, DeltaSource{delta_arena.data(), nullptr}, delta_arena.size(),
                            static_cast<uint32_t>(m));
    EXPECT_TRUE(up.ok());
    const std::vector<double> rec = Reconstruct(options, blocks, table, up->payload);
    double err = 0, dot = 0;
    for (int64_t i = 0; i < d; ++i) {
      mc.mean[static_cast<size_t>(i)] += rec[static_cast<size_t>(i)] / M;
      const double e = rec[static_cast<size_t>(i)] - mc.delta[static_cast<size_t>(i)];
      err += e * e;
      dot += rec[static_cast<size_t>(i)] * mc.delta[static_cast<size_t>(i)];
    }
    mc.mean_sq_error += err / norm_sq / M;
    mc.mean_cos += dot / (Norm(rec) * std::sqrt(norm_sq)) / M;
  }
  return mc;
}

TEST(ProjectionTest, UnbiasedScalingAveragesToDelta) {
  const int64_t d = 500;
  const int K = 50, M = 400;
  for (Distribution dist : {Distribution::kRademacher, Distribution::kUniform, Distribution::kTruncNormal}) {
    const MonteCarlo mc = RunMonteCarlo(OneBlockOptions(dist, Scaling::kUnbiased, K), d, M, 1);
    std::vector<double> diff(mc.mean.size());
    for (size_t i = 0; i < diff.size(); ++i) diff[i] = mc.mean[i] - mc.delta[i];
    EXPECT_LE(Norm(diff) / Norm(mc.delta), 3.0 * std::sqrt(static_cast<double>(d) / (K * M))) << DistributionName(dist);
  }
}

TEST(ProjectionTest, ReferenceScalingShrinksByOneThird) {
  const int64_t d = 500;
  const int K = 50, M = 400;
  for (Distribution dist : {Distribution::kUniform, Distribution::kTruncNormal}) {
    const MonteCarlo mc = RunMonteCarlo(OneBlockOptions(dist, Scaling::kReference, K), d, M, 2);
    double dot = 0, norm_sq = 0;
    for (size_t i = 0; i < mc.delta.size(); ++i) {
      dot += mc.mean[i] * mc.delta[i];
      norm_sq += mc.delta[i] * mc.delta[i];
    }
    EXPECT_NEAR(dot / norm_sq, 0.333, 0.02) << DistributionName(dist);
  }
  // Under Rademacher d rho = 1: reference scaling is unbiased.
  const MonteCarlo rad = RunMonteCarlo(OneBlockOptions(Distribution::kRademacher, Scaling::kReference, K), d, M, 2);
  double dot = 0, norm_sq = 0;
  for (size_t i = 0; i < rad.delta.size(); ++i) {
    dot += rad.mean[i] * rad.delta[i];
    norm_sq += rad.delta[i] * rad.delta[i];
  }
  EXPECT_NEAR(dot / norm_sq, 1.0, 0.06);
}

TEST(ProjectionTest, ErrorFollowsDOverK) {
  const int64_t d = 1000;
  const int K = 50, M = 600;
  const MonteCarlo rad = RunMonteCarlo(OneBlockOptions(Distribution::kRademacher, Scaling::kUnbiased, K), d, M, 3);
  EXPECT_NEAR(rad.mean_sq_error / ((d - 1.0) / K), 1.0, 0.05);
  const MonteCarlo uni = RunMonteCarlo(OneBlockOptions(Distribution::kUniform, Scaling::kUnbiased, K), d, M, 4);
  EXPECT_NEAR(uni.mean_sq_error / ((d - 0.2) / K), 1.0, 0.05);
}

TEST(ProjectionTest, CosineMatchesPaperAnchor) {
  // Fig. 7 of the paper: d = 1e5, K = 350 -> cos(Delta~, Delta) ~ sqrt(K / (K + d)) = 0.059.
  const MonteCarlo mc =
      RunMonteCarlo(OneBlockOptions(Distribution::kRademacher, Scaling::kUnbiased, 350), 100000, 3, 5);
  EXPECT_NEAR(mc.mean_cos, std::sqrt(350.0 / (350.0 + 100000.0)), 0.006);
}

TEST(ReconstructTest, ReferenceClipBoundsEachVectorUpdate) {
  // A large update under reference scaling: every gamma_k v_k is clipped to norm 10 (times slr).
  auto table = MakeTable({4096});
  const std::vector<Block> blocks = GroupByReferenceRule(*table);
  FerretOptions o = OneBlockOptions(Distribution::kUniform, Scaling::kReference, 4);
  o.clip = 10.0;
  Arena delta(table);
  for (float& x : delta.span(0)) x = 50.0f;
  auto up = ProjectUpdate(o, blocks, DeltaSource{delta.data(), nullptr}, delta.size(), 1);
  ASSERT_TRUE(up.ok());
  const BasisConfig basis = RoundBasis(o, 1);
  const std::vector<double> norms = BasisNormsSquared(blocks[0], basis, 4);
  for (int k = 0; k < 4; ++k) {
    // Each vector alone, applied with slr 2: the applied step has norm 2 * 10.
    Payload single = up->payload;
    for (int j = 0; j < 4; ++j) {
      if (j != k) single.gamma[0][static_cast<size_t>(j)] = 0.0f;
    }
    ASSERT_GT(std::fabs(single.gamma[0][static_cast<size_t>(k)]) * std::sqrt(norms[static_cast<size_t>(k)]), 10.0);
    Arena w(table);
    ASSERT_TRUE(ApplyAggregate(o, blocks, single, 2.0, w).ok());
    double n = 0;
    for (float x : w.span(0)) n += static_cast<double>(x) * x;
    EXPECT_NEAR(std::sqrt(n), 20.0, 1e-4) << k;
  }
  // The norms the clip uses match the generated vectors.
  std::vector<float> v(4096);
  GenerateBasis(MakeStream(basis, blocks[0], 1), 0, 4096, v.data());
  double sq = 0;
  for (float x : v) sq += static_cast<double>(x) * x;
  EXPECT_DOUBLE_EQ(norms[1], sq);
}

TEST(ProjectionTest, SeedModesSelectTheKeyRound) {
  EXPECT_EQ(KeyRound(SeedMode::kPerRound, 17), 17u);
  EXPECT_EQ(KeyRound(SeedMode::kFixedPool, 17), 0u);
  FerretOptions o;
  o.seed_mode = SeedMode::kFixedPool;
  EXPECT_EQ(RoundBasis(o, 5).key_round, 0u);
  o.seed_mode = SeedMode::kPerRound;
  EXPECT_EQ(RoundBasis(o, 5).key_round, 5u);
}

}  // namespace
}  // namespace tributary
