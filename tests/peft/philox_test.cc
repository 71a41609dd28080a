// Philox4x32-10 known-answer vectors, SplitMix64 values and the basis element definition (docs/ferret.md,
// "Seeds"): the batched generator must equal the scalar definition everywhere, i >= 2^32 included.
#include "peft/philox.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <vector>

#include "peft/random_basis.h"

namespace tributary {
namespace {

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t out[4];
};

TEST(PhiloxTest, KnownAnswerVectors) {
  // Random123 examples/kat_vectors, philox4x32 with 10 rounds.
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& kat : kats) {
    uint32_t out[4];
    Philox4x32_10(kat.ctr, PhiloxKey{kat.key[0], kat.key[1]}, out);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(out[w], kat.out[w]) << "word " << w;
  }
}

TEST(PhiloxTest, SplitMix64Values) {
  EXPECT_EQ(SplitMix64(0), 0xe220a8397b1dcdafull);
  EXPECT_EQ(SplitMix64(0x9E3779B97F4A7C15ull), 0x6e789e6aa1b965f4ull);
}

TEST(PhiloxTest, BasisKeyPacksRoundAndSeedIndex) {
  const uint64_t job = 0x0123456789abcdefull;
  const PhiloxKey key = BasisKey(job, 7, 42);
  const uint64_t expected = SplitMix64(job ^ ((uint64_t{7} << 32) | 42));
  EXPECT_EQ(key.k0, static_cast<uint32_t>(expected));
  EXPECT_EQ(key.k1, static_cast<uint32_t>(expected >> 32));
  // Different rounds and seed indices give different keys.
  EXPECT_NE(BasisKey(job, 8, 42).k0, key.k0);
  EXPECT_NE(BasisKey(job, 7, 43).k0, key.k0);
}

// The element rules of docs/ferret.md, "Seeds", written out independently of the library's code paths.
float RademacherByDefinition(const BasisStream& st, uint64_t i) {
  const uint64_t j = i / 128;
  const uint32_t ctr[4] = {st.block_id, static_cast<uint32_t>(j), static_cast<uint32_t>(j >> 32), 0};
  uint32_t out[4];
  Philox4x32_10(ctr, st.key, out);
  const uint32_t word = out[(i % 128) / 32];
  const bool negative = ((word >> (i % 32)) & 1u) != 0;
  return negative ? -st.scales.inv_sqrt_d : st.scales.inv_sqrt_d;
}

uint32_t UniformWordByDefinition(const BasisStream& st, uint64_t i) {
  const uint64_t j = i / 4;
  const uint32_t ctr[4] = {st.block_id, static_cast<uint32_t>(j), static_cast<uint32_t>(j >> 32), 0};
  uint32_t out[4];
  Philox4x32_10(ctr, st.key, out);
  return out[i % 4];
}

// u = ((x >> 8) + 0.5) 2^-24 and v = a (2u - 1), evaluated in fp64 (exact) with a = fp32(1/sqrt(d)),
// rounded once to fp32.
float UniformByDefinition(const BasisStream& st, uint64_t i) {
  const uint32_t x = UniformWordByDefinition(st, i);
  const double u = (static_cast<double>(x >> 8) + 0.5) * std::ldexp(1.0, -24);
  return static_cast<float>(static_cast<double>(st.scales.inv_sqrt_d) * (2.0 * u - 1.0));
}

// erfinv in fp64 by Newton steps on std::erf (a test oracle only).
double ErfInvOracle(double x) {
  double y = 0;
  for (int it = 0; it < 60; ++it) y -= (std::erf(y) - x) / (2.0 / std::sqrt(std::numbers::pi) * std::exp(-y * y));
  return y;
}

TEST(PhiloxTest, ScaleConstantsFollowTheBlockSize) {
  const BasisScales s = MakeBasisScales(1 << 20);
  EXPECT_EQ(s.inv_sqrt_d, 1.0f / 1024.0f);
  EXPECT_EQ(s.a_ulp, std::ldexp(1.0f / 1024.0f, -24));
  EXPECT_EQ(s.erf_a, static_cast<float>(std::erf(1.0 / 1024.0 / std::sqrt(2.0))));  // fp64, rounded once
}

TEST(PhiloxTest, ElementsFollowTheDefinitionIncludingHugeIndices) {
  std::mt19937_64 rng(123);
  const int64_t d = 3'000'000'001;  // > 2^31: a shard of a huge block
  for (int trial = 0; trial < 200; ++trial) {
    const uint32_t k = static_cast<uint32_t>(rng() % 200);
    const uint32_t l = static_cast<uint32_t>(rng() % 300);
    // Half of the indices at or above 2^32.
    const uint64_t i =
        (trial % 2 == 0) ? rng() % (uint64_t{1} << 32) : (uint64_t{1} << 32) + rng() % (uint64_t{1} << 40);
    const BasisStream rad = MakeBasisStream(Distribution::kRademacher, 99, 5, k, l, d);
    EXPECT_EQ(BasisElement(rad, i), RademacherByDefinition(rad, i));
    const BasisStream uni = MakeBasisStream(Distribution::kUniform, 99, 5, k, l, d);
    EXPECT_EQ(BasisElement(uni, i), UniformByDefinition(uni, i));
    const BasisStream tn = MakeBasisStream(Distribution::kTruncNormal, 99, 5, k, l, 37);
    const double u = (static_cast<double>(UniformWordByDefinition(tn, i) >> 8) + 0.5) * std::ldexp(1.0, -24);
    const double a = 1.0 / std::sqrt(37.0);
    const double expect = std::clamp(std::sqrt(2.0) * ErfInvOracle(std::erf(a / std::sqrt(2.0)) * (2 * u - 1)), -a, a);
    EXPECT_NEAR(BasisElement(tn, i), expect, 1e-6 * a) << "i = " << i;
  }
}

TEST(PhiloxTest, IndexAbove2To32UsesTheHighCounterWord) {
  const BasisStream st = MakeBasisStream(Distribution::kUniform, 1, 0, 0, 0, 1000);
  const uint64_t low = 12345, high = low + (uint64_t{1} << 34);  // same low 32 bits of j
  EXPECT_NE(BasisElement(st, low), BasisElement(st, high));
}

TEST(PhiloxTest, BatchedGeneratorMatchesScalarDefinition) {
  std::mt19937_64 rng(7);
  for (Distribution dist :
       {Distribution::kRademacher, Distribution::kUniform, Distribution::kTruncNormal, Distribution::kStandardBasis}) {
    for (int trial = 0; trial < 12; ++trial) {
      const uint32_t k = static_cast<uint32_t>(rng() % 3000);
      const BasisStream st = MakeBasisStream(dist, 0xfeed, 3, k, static_cast<uint32_t>(rng() % 50), 5000);
      // Unaligned starts and odd lengths, some beyond 2^32 and one spanning the 2^32 boundary.
      uint64_t begin = rng() % 5000;
      if (trial % 3 == 1) begin += uint64_t{1} << 32;
      if (trial == 2) begin = (uint64_t{1} << 32) - 700;
      if (dist == Distribution::kStandardBasis) begin = 0;
      const int64_t n = 1 + static_cast<int64_t>(rng() % 3000);
      std::vector<float> batch(static_cast<size_t>(n));
      GenerateBasis(st, begin, n, batch.data());
      for (int64_t t = 0; t < n; ++t) {
        ASSERT_EQ(batch[static_cast<size_t>(t)], BasisElement(st, begin + static_cast<uint64_t>(t)))
            << DistributionName(dist) << " begin " << begin << " t " << t;
      }
    }
  }
}

TEST(PhiloxTest, DifferentSeedsAndBlocksGiveDifferentVectors) {
  const int n = 256;
  std::vector<float> a(n), b(n), c(n);
  GenerateBasis(MakeBasisStream(Distribution::kRademacher, 1, 0, 0, 0, n), 0, n, a.data());
  GenerateBasis(MakeBasisStream(Distribution::kRademacher, 1, 0, 1, 0, n), 0, n, b.data());
  GenerateBasis(MakeBasisStream(Distribution::kRademacher, 1, 0, 0, 1, n), 0, n, c.data());
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < n; ++i) {
    same_ab += a[i] == b[i];
    same_ac += a[i] == c[i];
  }
  // Independent signs agree about half the time.
  EXPECT_GT(same_ab, 80);
  EXPECT_LT(same_ab, 176);
  EXPECT_GT(same_ac, 80);
  EXPECT_LT(same_ac, 176);
}

}  // namespace
}  // namespace tributary
