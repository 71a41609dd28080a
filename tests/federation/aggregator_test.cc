// The aggregator seam: client weights, the weighted mean in fixed order and fp64, chunking that never
// changes a bit, and a Prepare step that runs once before any combination.
#include "federation/aggregator.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace tributary {
namespace {

// Client vectors held in memory (the methods read theirs from payloads).
class InMemoryVectors final : public ClientVectors {
 public:
  explicit InMemoryVectors(std::vector<std::vector<float>> values) : values_(std::move(values)) {}
  size_t count() const override { return values_.size(); }
  int64_t dim() const override { return values_.empty() ? 0 : static_cast<int64_t>(values_[0].size()); }
  void Read(size_t client, int64_t begin, int64_t n, float* out) const override {
    std::memcpy(out, values_[client].data() + begin, static_cast<size_t>(n) * sizeof(float));
    ++reads;
  }
  mutable int reads = 0;

 private:
  std::vector<std::vector<float>> values_;
};

std::vector<double> RunMean(const ClientVectors& clients, const std::vector<double>& weights) {
  std::vector<double> out(static_cast<size_t>(clients.dim()), -1.0);
  auto mean = CreateWeightedMean();
  EXPECT_STREQ(mean->name(), "mean");
  Status run = RunAggregator(*mean, clients, weights, [&](int64_t begin, const double* values, int64_t n) {
    std::memcpy(out.data() + begin, values, static_cast<size_t>(n) * sizeof(double));
  });
  EXPECT_TRUE(run.ok()) << run.ToString();
  return out;
}

TEST(AggregatorTest, ClientWeightsAreEqualOrBySamples) {
  auto equal = ClientWeights({5, 0, 7}, AggregationWeights::kEqual);
  ASSERT_TRUE(equal.ok());
  EXPECT_EQ(*equal, (std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3}));
  auto samples = ClientWeights({1, 2, 5}, AggregationWeights::kSamples);
  ASSERT_TRUE(samples.ok());
  EXPECT_EQ(*samples, (std::vector<double>{1.0 / 8, 2.0 / 8, 5.0 / 8}));
  EXPECT_NE(ClientWeights({}, AggregationWeights::kEqual).status().message().find("no clients"), std::string::npos);
  auto zero = ClientWeights({3, 0}, AggregationWeights::kSamples);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("client 1: num_samples is 0"), std::string::npos) << zero.status().message();
  for (AggregationWeights w : {AggregationWeights::kEqual, AggregationWeights::kSamples}) {
    auto parsed = ParseAggregationWeights(AggregationWeightsName(w));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, w);
  }
  EXPECT_FALSE(ParseAggregationWeights("median").ok());
}

TEST(AggregatorTest, WeightedMeanSumsInFp64InClientOrder) {
  // 1 + 2^-30 is not an fp32 number: the fp64 accumulator keeps it until the single final rounding.
  const InMemoryVectors clients({{1.0f, 4.0f}, {std::ldexp(1.0f, -29), 2.0f}});
  const std::vector<double> out = RunMean(clients, {0.5, 0.5});
  EXPECT_EQ(out[0], 0.5 + std::ldexp(1.0, -30));
  EXPECT_EQ(out[1], 3.0);
}

TEST(AggregatorTest, ChunkingNeverChangesABit) {
  // More coordinates than one CombineRange call takes: the chunked result equals a plain loop.
  const int64_t dim = kAggregateChunkElems * 2 + 123;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> values(5, std::vector<float>(static_cast<size_t>(dim)));
  for (auto& v : values)
    for (float& x : v) x = normal(rng);
  const std::vector<double> weights = {0.1, 0.2, 0.3, 0.15, 0.25};
  const InMemoryVectors clients(values);
  const std::vector<double> out = RunMean(clients, weights);
  for (int64_t j = 0; j < dim; ++j) {
    double expected = 0.0;
    for (size_t c = 0; c < values.size(); ++c) expected += weights[c] * static_cast<double>(values[c][j]);
    ASSERT_EQ(out[static_cast<size_t>(j)], expected) << "coordinate " << j;
  }
  EXPECT_EQ(clients.reads, 3 * 5) << "three chunks, each read once per client";
}

// An aggregator whose Prepare sees whole vectors first (as norm clipping or Krum will).
class CountingAggregator final : public Aggregator {
 public:
  const char* name() const override { return "counting"; }
  Status Prepare(const ClientVectors& clients, const std::vector<double>& /*weights*/) override {
    EXPECT_EQ(combines, 0) << "Prepare runs before any CombineRange";
    ++prepares;
    return clients.count() > 3 ? Status::InvalidArgument("too many clients for this rule") : Status::OK();
  }
  void CombineRange(const ClientVectors& /*clients*/, const std::vector<double>& /*weights*/, int64_t /*begin*/,
                    int64_t n, double* out) override {
    ++combines;
    std::fill(out, out + n, 7.0);
  }
  int prepares = 0;
  int combines = 0;
};

TEST(AggregatorTest, PrepareRunsOnceBeforeCombiningAndItsErrorStopsTheRound) {
  CountingAggregator counting;
  const InMemoryVectors three({{1.0f}, {2.0f}, {3.0f}});
  int sunk = 0;
  ASSERT_TRUE(RunAggregator(counting, three, {1, 1, 1}, [&](int64_t, const double*, int64_t) { ++sunk; }).ok());
  EXPECT_EQ(counting.prepares, 1);
  EXPECT_EQ(counting.combines, 1);
  EXPECT_EQ(sunk, 1);
  CountingAggregator refusing;
  const InMemoryVectors four({{1.0f}, {2.0f}, {3.0f}, {4.0f}});
  Status refused = RunAggregator(refusing, four, {1, 1, 1, 1}, [&](int64_t, const double*, int64_t) { ++sunk; });
  EXPECT_TRUE(refused.IsInvalidArgument());
  EXPECT_EQ(refusing.combines, 0);
  EXPECT_EQ(sunk, 1);
  EXPECT_FALSE(RunAggregator(refusing, three, {1, 1}, [](int64_t, const double*, int64_t) {}).ok())
      << "one weight per client";
}

}  // namespace
}  // namespace tributary
