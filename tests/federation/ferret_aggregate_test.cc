// Coefficient-space aggregation through the aggregator seam: the weighted mean, its fixed order,
// one rounding to the wire dtype, linearity, and replicas that apply one aggregate byte-identically.
#include "federation/ferret_method.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/parallel.h"
#include "peft/ferret.h"
#include "tests/common/ferret_util.h"

namespace tributary {
namespace {

using ferret_test::FillNormal;
using ferret_test::HashArena;
using ferret_test::MakeTable;
using ferret_test::Reconstruct;

// The default aggregation: the weighted mean, no clipping.
Aggregation& Mean() {
  static std::unique_ptr<Aggregation> mean = Aggregation::Create({}).value();
  return *mean;
}

Payload RandomPayload(std::mt19937_64& rng, uint32_t round, int L, int K) {
  Payload p;
  p.round = round;
  p.gamma.resize(static_cast<size_t>(L));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& g : p.gamma) {
    g.resize(2 + rng() % static_cast<uint64_t>(K - 1));
    for (float& x : g) x = normal(rng);
  }
  return p;
}

TEST(FerretAggregateTest, WeightedMeanInAscendingClientOrder) {
  Payload a, b, c;
  a.round = b.round = c.round = 4;
  a.gamma = {{1.0f, 2.0f}, {4.0f, 4.0f, 4.0f}};
  b.gamma = {{3.0f, 6.0f, 9.0f}, {0.0f, 0.0f}};
  c.gamma = {{2.0f, 2.0f}, {2.0f, 2.0f}};
  // Given out of order; shorter supports count as zeros.
  auto equal = AggregateCoefficients({{30, 1, &c}, {10, 1, &a}, {20, 1, &b}}, AggregationWeights::kEqual, Mean(), 4, 2,
                                     WireDtype::kFp32);
  ASSERT_TRUE(equal.ok());
  EXPECT_EQ(equal->round, 4u);
  ASSERT_EQ(equal->gamma[0].size(), 3u);
  ASSERT_EQ(equal->gamma[1].size(), 3u);
  EXPECT_FLOAT_EQ(equal->gamma[0][0], 2.0f);
  EXPECT_FLOAT_EQ(equal->gamma[0][1], 10.0f / 3.0f);
  EXPECT_FLOAT_EQ(equal->gamma[0][2], 3.0f);
  EXPECT_FLOAT_EQ(equal->gamma[1][2], 4.0f / 3.0f);
  // By samples: weights 1/6, 2/6, 3/6.
  auto by_samples = AggregateCoefficients({{10, 1, &a}, {20, 2, &b}, {30, 3, &c}}, AggregationWeights::kSamples, Mean(),
                                          4, 2, WireDtype::kFp32);
  ASSERT_TRUE(by_samples.ok());
  EXPECT_FLOAT_EQ(by_samples->gamma[0][0], (1.0f + 6.0f + 6.0f) / 6.0f);
  EXPECT_FLOAT_EQ(by_samples->gamma[0][2], 18.0f / 6.0f);
  // The fp64 sum is rounded once: the order of the input list does not matter bitwise.
  std::mt19937_64 rng(1);
  std::vector<Payload> many;
  for (int i = 0; i < 12; ++i) many.push_back(RandomPayload(rng, 9, 5, 40));
  std::vector<ClientCoefficients> fwd, rev;
  for (size_t i = 0; i < many.size(); ++i) fwd.push_back({i * 7 + 1, i + 1, &many[i]});
  rev.assign(fwd.rbegin(), fwd.rend());
  auto x = AggregateCoefficients(fwd, AggregationWeights::kSamples, Mean(), 9, 5, WireDtype::kFp32);
  auto y = AggregateCoefficients(rev, AggregationWeights::kSamples, Mean(), 9, 5, WireDtype::kFp32);
  ASSERT_TRUE(x.ok() && y.ok());
  for (size_t l = 0; l < 5; ++l) {
    ASSERT_EQ(x->gamma[l].size(), y->gamma[l].size());
    EXPECT_EQ(std::memcmp(x->gamma[l].data(), y->gamma[l].data(), x->gamma[l].size() * sizeof(float)), 0);
  }
}

TEST(FerretAggregateTest, Bf16OutputIsRoundedOnceFromFp64) {
  // mean(2 + 2^-7, 2^-29) = 1 + 2^-8 + 2^-30: just above a bf16 tie. Rounding through fp32 first would
  // land exactly on the tie (1 + 2^-8) and round to even (1.0); one rounding from fp64 gives 1 + 2^-7.
  Payload a, b;
  a.round = b.round = 0;
  a.gamma = {{2.0f + std::ldexp(1.0f, -7)}};
  b.gamma = {{std::ldexp(1.0f, -29)}};
  auto agg =
      AggregateCoefficients({{1, 1, &a}, {2, 1, &b}}, AggregationWeights::kEqual, Mean(), 0, 1, WireDtype::kBf16);
  ASSERT_TRUE(agg.ok());
  EXPECT_EQ(agg->dtype, WireDtype::kBf16);
  EXPECT_EQ(agg->gamma[0][0], 1.0f + std::ldexp(1.0f, -7));
  const double mean = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  EXPECT_EQ(Bf16FromDouble(mean), 0x3F81);
  EXPECT_EQ(Bf16FromFloat(static_cast<float>(mean)), 0x3F80);  // the double rounding avoided
}

TEST(FerretAggregateTest, RejectsInconsistentInputs) {
  Payload a, wrong_round, wrong_blocks;
  a.round = 3;
  a.gamma = {{1.0f, 2.0f}};
  wrong_round.round = 2;
  wrong_round.gamma = {{1.0f, 2.0f}};
  wrong_blocks.round = 3;
  wrong_blocks.gamma = {{1.0f}, {2.0f}};
  auto message = [](const Result<Payload>& r) { return r.ok() ? std::string("ok") : r.status().message(); };
  EXPECT_NE(
      message(AggregateCoefficients({}, AggregationWeights::kEqual, Mean(), 3, 1, WireDtype::kFp32)).find("no clients"),
      std::string::npos);
  EXPECT_NE(message(AggregateCoefficients({{1, 1, &a}, {1, 1, &a}}, AggregationWeights::kEqual, Mean(), 3, 1,
                                          WireDtype::kFp32))
                .find("client 1: duplicate"),
            std::string::npos);
  EXPECT_NE(message(AggregateCoefficients({{1, 1, &a}, {5, 1, &wrong_round}}, AggregationWeights::kEqual, Mean(), 3, 1,
                                          WireDtype::kFp32))
                .find("client 5: payload of round 2"),
            std::string::npos);
  EXPECT_NE(message(AggregateCoefficients({{6, 1, &wrong_blocks}}, AggregationWeights::kEqual, Mean(), 3, 1,
                                          WireDtype::kFp32))
                .find("client 6: 2 blocks"),
            std::string::npos);
  EXPECT_NE(message(AggregateCoefficients({{7, 0, &a}}, AggregationWeights::kSamples, Mean(), 3, 1, WireDtype::kFp32))
                .find("num_samples"),
            std::string::npos);
}

TEST(FerretAggregateTest, ReconstructionIsLinearInCoefficients) {
  auto table = MakeTable({3000, 77, 5000});
  FerretOptions o;
  o.K = 40;
  o.distribution = Distribution::kUniform;
  o.blocking = BlockingRule::kFixedChunks;
  o.chunk_elems = 2500;
  auto blocks = MakeFerretBlocks(o, *table);
  ASSERT_TRUE(blocks.ok());
  const int L = static_cast<int>(blocks->size());
  std::mt19937_64 rng(2);
  std::vector<Payload> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(RandomPayload(rng, 6, L, o.K));
  std::vector<ClientCoefficients> in;
  for (int i = 0; i < 4; ++i)
    in.push_back({static_cast<uint64_t>(i), static_cast<uint64_t>(10 * (i + 1)), &clients[static_cast<size_t>(i)]});
  auto agg = AggregateCoefficients(in, AggregationWeights::kSamples, Mean(), 6, L, WireDtype::kFp32);
  ASSERT_TRUE(agg.ok());
  const std::vector<double> whole = Reconstruct(o, *blocks, table, *agg);
  ASSERT_FALSE(whole.empty());
  std::vector<double> parts(whole.size(), 0.0);
  for (int i = 0; i < 4; ++i) {
    const std::vector<double> r = Reconstruct(o, *blocks, table, clients[static_cast<size_t>(i)]);
    for (size_t j = 0; j < r.size(); ++j) parts[j] += (10.0 * (i + 1) / 100.0) * r[j];
  }
  double diff = 0, norm = 0;
  for (size_t j = 0; j < whole.size(); ++j) {
    diff += (whole[j] - parts[j]) * (whole[j] - parts[j]);
    norm += whole[j] * whole[j];
  }
  EXPECT_LE(std::sqrt(diff / norm), 1e-6);
}

TEST(FerretAggregateTest, ReplicasApplyingTheSameAggregateAreByteIdentical) {
  auto table = MakeTable({70'000, 33, 50'000});
  FerretOptions o;
  o.K = 24;
  o.distribution = Distribution::kUniform;
  o.scaling = Scaling::kReference;  // exercises the clip path too
  auto blocks = MakeFerretBlocks(o, *table);
  ASSERT_TRUE(blocks.ok());
  Arena w_old(table);
  std::mt19937_64 rng(8);
  FillNormal(w_old, rng, 0.0, 0.02);
  std::vector<Payload> ups;
  for (int i = 0; i < 3; ++i) {
    Arena w_new(table);
    w_new.CopyFrom(w_old);
    FillNormal(w_new, rng, 0.0, 0.02);
    auto up = ProjectUpdate(o, *blocks, w_old, w_new, 11);
    ASSERT_TRUE(up.ok());
    ups.push_back(up->payload);
  }
  std::vector<ClientCoefficients> in;
  for (int i = 0; i < 3; ++i) in.push_back({static_cast<uint64_t>(i), 1, &ups[static_cast<size_t>(i)]});
  auto agg = AggregateCoefficients(in, AggregationWeights::kEqual, Mean(), 11, static_cast<int>(blocks->size()),
                                   WireDtype::kBf16);
  ASSERT_TRUE(agg.ok());
  // The second replica receives the aggregate over the wire and runs with another thread count.
  auto bytes = SerializePayload(*agg);
  ASSERT_TRUE(bytes.ok());
  auto received = ParsePayload(*bytes, {static_cast<int>(blocks->size()), o.K});
  ASSERT_TRUE(received.ok());
  Arena replica_a(table), replica_b(table);
  replica_a.CopyFrom(w_old);
  replica_b.CopyFrom(w_old);
  SetNumThreads(1);
  ASSERT_TRUE(ApplyAggregate(o, *blocks, *agg, 3.0, replica_a).ok());
  SetNumThreads(3);
  ASSERT_TRUE(ApplyAggregate(o, *blocks, *received, 3.0, replica_b).ok());
  SetNumThreads(0);
  EXPECT_EQ(HashArena(replica_a), HashArena(replica_b));
  EXPECT_NE(HashArena(replica_a), HashArena(w_old));
}

TEST(FerretAggregateTest, StandardBasisRoundEqualsFedAvgExactly) {
  // Degenerate Ferret: v_k = e_k, K_l = d_l, unbiased gamma = Delta; one round with slr 1 must equal
  // FedAvg (w - fp32(fp64 mean of the clients' Delta)) bit for bit.
  auto table = MakeTable({30, 50, 20});
  FerretOptions o;
  o.K = 25;
  o.distribution = Distribution::kStandardBasis;
  o.allocation = Allocation::kUniform;
  o.blocking = BlockingRule::kFixedChunks;
  o.chunk_elems = 25;  // four blocks of 25 spanning the padded tensors
  o.clip = 0;
  auto blocks = MakeFerretBlocks(o, *table);
  ASSERT_TRUE(blocks.ok());
  ASSERT_EQ(blocks->size(), 4u);
  Arena w_old(table);
  std::mt19937_64 rng(4);
  FillNormal(w_old, rng, 0.0, 1.0);
  std::vector<Arena> w_new;
  std::vector<Payload> ups;
  const std::vector<int64_t> samples = {5, 1, 3};
  for (int i = 0; i < 3; ++i) {
    w_new.emplace_back(table);
    w_new.back().CopyFrom(w_old);
    for (size_t t = 0; t < table->size(); ++t) {
      std::normal_distribution<double> step(0.0, 0.1);
      for (float& x : w_new.back().span(t)) x -= static_cast<float>(step(rng));
    }
    auto up = ProjectUpdate(o, *blocks, w_old, w_new.back(), 1);
    ASSERT_TRUE(up.ok());
    ups.push_back(up->payload);
  }
  std::vector<ClientCoefficients> in;
  for (int i = 0; i < 3; ++i)
    in.push_back({static_cast<uint64_t>(i), static_cast<uint64_t>(samples[static_cast<size_t>(i)]),
                  &ups[static_cast<size_t>(i)]});
  auto agg = AggregateCoefficients(in, AggregationWeights::kSamples, Mean(), 1, 4, WireDtype::kFp32);
  ASSERT_TRUE(agg.ok());
  Arena ferret(table);
  ferret.CopyFrom(w_old);
  ASSERT_TRUE(ApplyAggregate(o, *blocks, *agg, 1.0, ferret).ok());

  Arena fedavg(table);
  fedavg.CopyFrom(w_old);
  for (size_t t = 0; t < table->size(); ++t) {
    const auto& e = (*table)[t];
    for (int64_t j = 0; j < e.numel; ++j) {
      double mean = 0;
      for (int i = 0; i < 3; ++i) {
        const float delta = w_old.data()[e.offset + j] - w_new[static_cast<size_t>(i)].data()[e.offset + j];
        mean += static_cast<double>(samples[static_cast<size_t>(i)]) / 9.0 * static_cast<double>(delta);
      }
      fedavg.data()[e.offset + j] -= static_cast<float>(mean);
    }
  }
  EXPECT_EQ(std::memcmp(ferret.data(), fedavg.data(), static_cast<size_t>(ferret.size()) * sizeof(float)), 0);
  EXPECT_EQ(HashArena(ferret), HashArena(fedavg));
}

TEST(FerretAggregateTest, ApplyRejectsAggregatesThatDoNotFit) {
  auto table = MakeTable({100});
  FerretOptions o;
  o.K = 4;
  auto blocks = MakeFerretBlocks(o, *table);
  ASSERT_TRUE(blocks.ok());
  Arena w(table);
  Payload p;
  p.gamma = {{1.0f, 2.0f, 3.0f, 4.0f, 5.0f}};
  Status s = ApplyAggregate(o, *blocks, p, 1.0, w);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("more than K = 4"), std::string::npos) << s.message();
  p.gamma = {{1.0f}, {2.0f}};
  s = ApplyAggregate(o, *blocks, p, 1.0, w);
  EXPECT_NE(s.message().find("2 blocks, expected 1"), std::string::npos) << s.message();
  p.gamma = {{std::nanf("")}};
  EXPECT_FALSE(ApplyAggregate(o, *blocks, p, 1.0, w).ok());
}

}  // namespace
}  // namespace tributary
