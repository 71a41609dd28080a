// The robust rules and the aggregation pipeline: median, trimmed mean, Krum and Multi-Krum, per-client
// clipping against a reference, and the anomaly scores a round records.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "federation/aggregator.h"

namespace tributary {
namespace {

class Vectors final : public ClientVectors {
 public:
  explicit Vectors(std::vector<std::vector<float>> values, std::vector<float> reference = {})
      : values_(std::move(values)), reference_(std::move(reference)) {}
  size_t count() const override { return values_.size(); }
  int64_t dim() const override { return static_cast<int64_t>(values_[0].size()); }
  void Read(size_t client, int64_t begin, int64_t n, float* out) const override {
    std::memcpy(out, values_[client].data() + begin, static_cast<size_t>(n) * sizeof(float));
  }
  void ReadReference(int64_t begin, int64_t n, float* out) const override {
    if (reference_.empty()) return ClientVectors::ReadReference(begin, n, out);
    std::memcpy(out, reference_.data() + begin, static_cast<size_t>(n) * sizeof(float));
  }

 private:
  std::vector<std::vector<float>> values_;
  std::vector<float> reference_;
};

struct Outcome {
  std::vector<double> combined;
  AggregationReport report;
};

Outcome Aggregate(const AggregationOptions& options, const ClientVectors& clients, std::vector<double> weights = {}) {
  if (weights.empty()) weights.assign(clients.count(), 1.0 / static_cast<double>(clients.count()));
  auto aggregation = Aggregation::Create(options);
  EXPECT_TRUE(aggregation.ok()) << aggregation.status().ToString();
  Outcome out;
  out.combined.assign(static_cast<size_t>(clients.dim()), std::nan(""));
  auto report = (*aggregation)->Run(clients, weights, [&](int64_t begin, const double* values, int64_t n) {
    std::memcpy(out.combined.data() + begin, values, static_cast<size_t>(n) * sizeof(double));
  });
  EXPECT_TRUE(report.ok()) << report.status().ToString();
  if (report.ok()) out.report = *report;
  return out;
}

AggregationOptions Rule(AggregationRule rule) {
  AggregationOptions o;
  o.rule = rule;
  return o;
}

// Eight honest clients near (1, 2, 3) and two attackers far away.
Vectors HonestAndAttackers() {
  std::vector<std::vector<float>> v;
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  for (int i = 0; i < 8; ++i) v.push_back({1.0f + noise(rng), 2.0f + noise(rng), 3.0f + noise(rng)});
  v.push_back({1e6f, -1e6f, 1e6f});
  v.push_back({-50.0f, 70.0f, -90.0f});
  return Vectors(v);
}

TEST(RobustAggregatorsTest, NamesParseAndOptionsAreChecked) {
  for (AggregationRule rule : {AggregationRule::kMean, AggregationRule::kMedian, AggregationRule::kTrimmedMean,
                               AggregationRule::kKrum, AggregationRule::kMultiKrum}) {
    auto parsed = ParseAggregationRule(AggregationRuleName(rule));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, rule);
  }
  EXPECT_FALSE(ParseAggregationRule("bulyan").ok());
  AggregationOptions bad;
  bad.trim_fraction = 0.5;
  EXPECT_NE(Aggregation::Create(bad).status().message().find("aggregation.trim_fraction"), std::string::npos);
  bad = {};
  bad.clip_norm = -1;
  EXPECT_NE(Aggregation::Create(bad).status().message().find("aggregation.clip_norm"), std::string::npos);
}

TEST(RobustAggregatorsTest, MedianAndTrimmedMeanIgnoreAFewWildClients) {
  const Vectors clients = HonestAndAttackers();
  const Outcome mean = Aggregate(Rule(AggregationRule::kMean), clients);
  EXPECT_GT(std::fabs(mean.combined[0]), 1e4) << "the mean follows the attacker";
  const Outcome median = Aggregate(Rule(AggregationRule::kMedian), clients);
  AggregationOptions trimmed = Rule(AggregationRule::kTrimmedMean);
  trimmed.trim_fraction = 0.2;  // cuts 2 of 10 at each end
  const Outcome trim = Aggregate(trimmed, clients);
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(median.combined[j], j + 1.0, 0.05) << j;
    EXPECT_NEAR(trim.combined[j], j + 1.0, 0.05) << j;
  }
  // The scores single out the attackers.
  for (int c = 0; c < 8; ++c) EXPECT_LT(median.report.anomaly_scores[c], 2.0) << c;
  EXPECT_GT(median.report.anomaly_scores[8], 1e4);
  EXPECT_GT(median.report.anomaly_scores[9], 100.0);
}

TEST(RobustAggregatorsTest, OrderStatisticsAreExact) {
  // Per coordinate: odd count -> the middle value; even count -> the mean of the two middle values.
  const Vectors odd({{5.0f}, {1.0f}, {4.0f}});
  EXPECT_EQ(Aggregate(Rule(AggregationRule::kMedian), odd).combined[0], 4.0);
  const Vectors even({{5.0f}, {1.0f}, {4.0f}, {2.0f}});
  EXPECT_EQ(Aggregate(Rule(AggregationRule::kMedian), even).combined[0], 3.0);
  AggregationOptions trimmed = Rule(AggregationRule::kTrimmedMean);
  trimmed.trim_fraction = 0.25;  // 1 of 4 at each end: mean of {2, 4}
  EXPECT_EQ(Aggregate(trimmed, even).combined[0], 3.0);
  trimmed.trim_fraction = 0.0;  // nothing cut: the plain mean
  EXPECT_EQ(Aggregate(trimmed, even).combined[0], 3.0);
}

TEST(RobustAggregatorsTest, KrumPicksAnHonestClientAndMultiKrumAveragesTheBest) {
  const Vectors clients = HonestAndAttackers();
  AggregationOptions krum = Rule(AggregationRule::kKrum);
  krum.byzantine = 2;
  const Outcome one = Aggregate(krum, clients);
  int kept = 0;
  for (int c = 0; c < 10; ++c) kept += one.report.excluded[c] ? 0 : 1;
  EXPECT_EQ(kept, 1);
  EXPECT_TRUE(one.report.excluded[8] && one.report.excluded[9]);
  EXPECT_NEAR(one.combined[1], 2.0, 0.05);

  AggregationOptions multi = Rule(AggregationRule::kMultiKrum);
  multi.byzantine = 2;
  const Outcome best = Aggregate(multi, clients);  // select 0: n - f = 8
  for (int c = 0; c < 8; ++c) EXPECT_FALSE(best.report.excluded[c]) << c;
  EXPECT_TRUE(best.report.excluded[8] && best.report.excluded[9]);
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(best.combined[j], j + 1.0, 0.01) << j;
  multi.select = 3;
  const Outcome three = Aggregate(multi, clients);
  int selected = 0;
  for (bool excluded : three.report.excluded) selected += excluded ? 0 : 1;
  EXPECT_EQ(selected, 3);

  // Krum needs n > 2f + 2.
  krum.byzantine = 4;
  auto aggregation = Aggregation::Create(krum);
  ASSERT_TRUE(aggregation.ok());
  auto refused = (*aggregation)->Run(clients, std::vector<double>(10, 0.1), [](int64_t, const double*, int64_t) {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("more than 2f + 2 = 10 clients"), std::string::npos)
      << refused.status().message();
}

TEST(RobustAggregatorsTest, ClippingBoundsEachClientsDistanceToTheReference) {
  // Reference (1, 1): client 0 sits 0.5 away (kept as is), client 1 sits 10 away (scaled to 2).
  const Vectors clients({{1.3f, 1.4f}, {7.0f, 9.0f}}, {1.0f, 1.0f});
  AggregationOptions clip;
  clip.clip_norm = 2.0;
  const Outcome out = Aggregate(clip, clients, {0.5, 0.5});
  EXPECT_EQ(out.report.clip_scales[0], 1.0);
  EXPECT_DOUBLE_EQ(out.report.clip_scales[1], 0.2);
  // Client 1 becomes (1, 1) + 0.2 * (6, 8) = (2.2, 2.6) in fp32.
  const double c1x = static_cast<float>(1.0 + 0.2 * 6.0), c1y = static_cast<float>(1.0 + 0.2 * 8.0);
  EXPECT_EQ(out.combined[0], 0.5 * static_cast<double>(1.3f) + 0.5 * c1x);
  EXPECT_EQ(out.combined[1], 0.5 * static_cast<double>(1.4f) + 0.5 * c1y);
  // Without clipping the mean's arithmetic is exactly sum_i w_i x_i.
  const Outcome plain = Aggregate({}, clients, {0.5, 0.5});
  EXPECT_EQ(plain.combined[0], 0.5 * static_cast<double>(1.3f) + 0.5 * 7.0);
}

TEST(RobustAggregatorsTest, ManyClientsAndLongVectorsGoThroughInRanges) {
  // More coordinates than one chunk and more clients than one gathered row holds comfortably: the median
  // of 301 clients whose value at coordinate j is (c - 150) * j is 0 everywhere.
  const int clients = 301;
  const int64_t dim = kAggregateChunkElems + 5000;
  std::vector<std::vector<float>> v(clients, std::vector<float>(static_cast<size_t>(dim)));
  for (int c = 0; c < clients; ++c)
    for (int64_t j = 0; j < dim; ++j) v[c][static_cast<size_t>(j)] = static_cast<float>((c - 150) * (j % 7));
  const Outcome out = Aggregate(Rule(AggregationRule::kMedian), Vectors(v));
  for (int64_t j = 0; j < dim; ++j) ASSERT_EQ(out.combined[static_cast<size_t>(j)], 0.0) << j;
}

}  // namespace
}  // namespace tributary
