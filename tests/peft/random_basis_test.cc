// Distributions of the basis vectors: moments, rho_l and the fp32 erfinv (docs/ferret.md, "Bases").
#include "peft/random_basis.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

namespace tributary {
namespace {

// The fp64 closed form 1 - 2 a phi(a) / erf(a / sqrt 2), a = 1/sqrt(d), with erf called directly.
double TruncNormalRhoClosedForm(double d) {
  const double a = 1.0 / std::sqrt(d);
  const double phi = std::exp(-0.5 * a * a) / std::sqrt(2.0 * std::numbers::pi);
  return 1.0 - 2.0 * a * phi / std::erf(a / std::sqrt(2.0));
}

double ErfInvOracle(double x) {
  double y = 0;
  for (int it = 0; it < 60; ++it) y -= (std::erf(y) - x) / (2.0 / std::sqrt(std::numbers::pi) * std::exp(-y * y));
  return y;
}

TEST(RandomBasisTest, RhoMatchesClosedFormFrom10To1e6) {
  for (double d = 10; d <= 1e6 * 1.0001; d *= 1.07) {
    const int64_t n = static_cast<int64_t>(std::llround(d));
    const double ref = TruncNormalRhoClosedForm(static_cast<double>(n));
    EXPECT_NEAR(TruncNormalRho(n) / ref, 1.0, 1e-9) << "d = " << n;
  }
  // Both sides of the switch between the erf form and the series.
  for (int64_t n : {999, 1000, 1001, 1000000}) {
    EXPECT_NEAR(TruncNormalRho(n) / TruncNormalRhoClosedForm(static_cast<double>(n)), 1.0, 1e-9) << n;
  }
}

TEST(RandomBasisTest, RhoIsOneThirdOverDAbove1334) {
  for (int64_t d : {1335, 2000, 10000, 4200000, 130000000, 2000000000}) {
    EXPECT_NEAR(3.0 * static_cast<double>(d) * TruncNormalRho(d), 1.0, 1e-4) << d;
  }
  // Below the bound the gap 2/(15 d) exceeds 1e-4: the check is meaningful.
  EXPECT_GT(std::fabs(3.0 * 1000 * TruncNormalRho(1000) - 1.0), 1e-4);
  // Large d: the series keeps its accuracy where the closed form cancels.
  const double d = 1.3e8;
  EXPECT_NEAR(3.0 * d * TruncNormalRho(static_cast<int64_t>(d)), 1.0 - 2.0 / (15.0 * d), 1e-15);
}

TEST(RandomBasisTest, RhoOfSimpleDistributions) {
  EXPECT_DOUBLE_EQ(BasisRho(Distribution::kRademacher, 400), 1.0 / 400);
  EXPECT_DOUBLE_EQ(BasisRho(Distribution::kUniform, 400), 1.0 / 1200);
  EXPECT_DOUBLE_EQ(BasisRho(Distribution::kTruncNormal, 400), TruncNormalRho(400));
}

TEST(RandomBasisTest, ErfInvCentralIsAccurateOnItsDomain) {
  double worst = 0;
  for (int i = -7000; i <= 7000; ++i) {
    const float x = static_cast<float>(i) * 1e-4f;
    if (x == 0.0f) {
      EXPECT_EQ(ErfInvCentral(x), 0.0f);
      continue;
    }
    const double ref = ErfInvOracle(static_cast<double>(x));
    worst = std::max(worst, std::fabs(ErfInvCentral(x) / ref - 1.0));
  }
  EXPECT_LT(worst, 3e-7);
  // Odd symmetry.
  EXPECT_EQ(ErfInvCentral(-0.3f), -ErfInvCentral(0.3f));
}

TEST(RandomBasisTest, TruncNormalUsesFewerTermsForLargeBlocksWithoutLosingAccuracy) {
  int previous = 100;
  for (int64_t d : {1, 2, 37, 1000, 10000, 1000000, 100000000}) {
    const BasisScales s = MakeBasisScales(d);
    EXPECT_GE(s.erfinv_terms, 1);
    EXPECT_LE(s.erfinv_terms, previous) << d;
    previous = s.erfinv_terms;
    // Elements against sqrt(2) erfinv(e (2u - 1)) in fp64; 2u - 1 recovered from the uniform element of the
    // same key (same Philox words).
    const BasisStream tn = MakeBasisStream(Distribution::kTruncNormal, 5, 2, 9, 1, d);
    const BasisStream uni = MakeBasisStream(Distribution::kUniform, 5, 2, 9, 1, d);
    const double a = 1.0 / std::sqrt(static_cast<double>(d));
    const double e = std::erf(a / std::sqrt(2.0));
    for (uint64_t i = 0; i < 2000; ++i) {
      const double centered = static_cast<double>(BasisElement(uni, i)) / static_cast<double>(s.inv_sqrt_d);
      const double expect = std::clamp(std::sqrt(2.0) * ErfInvOracle(e * centered), -a, a);
      ASSERT_NEAR(BasisElement(tn, i), expect, 1e-6 * a) << "d " << d << " i " << i;
    }
  }
  EXPECT_EQ(MakeBasisScales(1).erfinv_terms, 9);
  EXPECT_LE(MakeBasisScales(100000000).erfinv_terms, 2);
}

struct MomentCase {
  Distribution dist;
  int64_t d;
};

TEST(RandomBasisTest, MomentsWithinFourSigma) {
  for (const MomentCase c : {MomentCase{Distribution::kRademacher, 4096}, MomentCase{Distribution::kUniform, 4096},
                             MomentCase{Distribution::kTruncNormal, 4096}, MomentCase{Distribution::kUniform, 50},
                             MomentCase{Distribution::kTruncNormal, 5}}) {
    const int vectors = 64;
    const int64_t per_vector = 8192;  // elements drawn per vector (may exceed d: a pure function of i)
    double sum = 0, sum_sq = 0;
    std::vector<float> v(static_cast<size_t>(per_vector));
    for (int k = 0; k < vectors; ++k) {
      GenerateBasis(MakeBasisStream(c.dist, 2024, 1, static_cast<uint32_t>(k), 3, c.d), 0, per_vector, v.data());
      for (float x : v) {
        EXPECT_LE(std::fabs(x), MakeBasisScales(c.d).inv_sqrt_d);
        sum += x;
        sum_sq += static_cast<double>(x) * x;
      }
    }
    const double n = static_cast<double>(vectors) * static_cast<double>(per_vector);
    const double rho = BasisRho(c.dist, c.d);
    const double dd = static_cast<double>(c.d);
    // mean ~ N(0, rho / n).
    EXPECT_LT(std::fabs(sum / n), 4.0 * std::sqrt(rho / n)) << DistributionName(c.dist) << " d " << c.d;
    // d * mean(v^2): exactly 1 for Rademacher, else d rho (1/3 up to O(1/d)) with sd d sqrt(Var(v^2) / n).
    const double scaled = dd * sum_sq / n;
    if (c.dist == Distribution::kRademacher) {
      EXPECT_NEAR(scaled, 1.0, 1e-6);
    } else {
      const double a2 = 1.0 / dd;
      const double var_v2 = 4.0 * a2 * a2 / 45.0;  // uniform on [-a, a]; TN with a <= 0.45 is within 10%
      EXPECT_NEAR(scaled, dd * rho, 4.0 * 1.1 * dd * std::sqrt(var_v2 / n)) << DistributionName(c.dist) << " d " << c.d;
      if (c.d >= 1000) {
        EXPECT_NEAR(dd * rho, 1.0 / 3.0, 1e-4);
      }
    }
  }
}

TEST(RandomBasisTest, ParseDistributionNames) {
  EXPECT_EQ(*ParseDistribution("rademacher"), Distribution::kRademacher);
  EXPECT_EQ(*ParseDistribution("uniform"), Distribution::kUniform);
  EXPECT_EQ(*ParseDistribution("trunc_normal"), Distribution::kTruncNormal);
  const auto bad = ParseDistribution("gaussian");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("gaussian"), std::string::npos);
}

}  // namespace
}  // namespace tributary
