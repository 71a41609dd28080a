// The federated methods through their one interface: what each encodes, validates, aggregates and
// applies, and the registry that names them.
#include "federation/method.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "federation/job_spec.h"
#include "federation/replica_state.h"
#include "tests/common/ferret_util.h"

namespace tributary {
namespace {

using ferret_test::MakeTable;

JobSpec SpecFor(const std::string& mode) {
  JobSpec spec;
  spec.mode = mode;
  spec.seed = 3;
  spec.server_lr = 0.5;
  spec.ferret.K = 8;
  return spec;
}

std::unique_ptr<FederatedMethod> Create(const JobSpec& spec, const std::shared_ptr<TensorTable>& table) {
  auto method = CreateMethod(spec, table);
  EXPECT_TRUE(method.ok()) << method.status().ToString();
  return std::move(*method);
}

// w_new = w_old minus a small random step (tensor elements only, padding stays zero).
void Step(const Arena& w_old, Arena* w_new, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  w_new->CopyFrom(w_old);
  for (size_t t = 0; t < w_new->table().size(); ++t)
    for (float& x : w_new->span(t)) x -= normal(rng);
}

std::vector<float> Floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

TEST(MethodTest, RegistryNamesEveryMethodAndRefusesUnknownOnes) {
  ASSERT_EQ(RegisteredMethods().size(), 5u);
  EXPECT_FALSE(FindMethod("fedkseed")->dense_payload);  // K scalars, whatever the model's size
  EXPECT_STREQ(FindMethod("fedkseed")->options_section, "fedkseed");
  EXPECT_FALSE(FindMethod("ferret")->dense_payload);
  EXPECT_FALSE(FindMethod("cluster")->dense_payload);  // its size is the codec's, not 4 bytes per parameter
  EXPECT_STREQ(FindMethod("cluster")->options_section, "cluster");
  EXPECT_TRUE(FindMethod("fedavg")->dense_payload);
  EXPECT_TRUE(FindMethod("lora")->dense_payload);
  EXPECT_FALSE(FindMethod("fedavg")->trains_adapters);
  EXPECT_STREQ(FindMethod("ferret")->payload_kind, "ferret_coefficients");
  EXPECT_STREQ(FindMethod("lora")->options_section, "lora");
  auto unknown = CreateMethod(SpecFor("fedprox"), MakeTable({10}));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("federation.mode"), std::string::npos) << unknown.status().message();
}

TEST(MethodTest, FedAvgUploadsTheDeltaAndAppliesTheWeightedMeanTimesServerLr) {
  auto table = MakeTable({5, 20});
  auto method = Create(SpecFor("fedavg"), table);
  EXPECT_EQ(method->MaxPayloadBytes(), static_cast<uint64_t>(table->total_elems()) * 4);
  EXPECT_EQ(method->RoundSeedMode(), "fedavg");
  EXPECT_EQ(method->CoefficientsPerBlock(), 0u);
  Arena w(table), a(table), b(table);
  std::mt19937_64 rng(1);
  ferret_test::FillNormal(w, rng, 0.0, 1.0);
  Step(w, &a, 2);
  Step(w, &b, 3);
  auto up_a = method->EncodeUpdate(w, a, 1);
  auto up_b = method->EncodeUpdate(w, b, 1);
  ASSERT_TRUE(up_a.ok() && up_b.ok());
  const std::vector<float> delta_a = Floats(*up_a), delta_b = Floats(*up_b);
  for (int64_t i = 0; i < w.size(); ++i) ASSERT_EQ(delta_a[i], w.data()[i] - a.data()[i]);
  EXPECT_TRUE(method->ValidatePayload(*up_a, 1).ok());

  auto mean = Aggregation::Create({}).value();
  auto aggregate = method->Aggregate({{"wa", 1, *up_a}, {"wb", 3, *up_b}}, AggregationWeights::kSamples, *mean, w, 1);
  ASSERT_TRUE(aggregate.ok()) << aggregate.status().ToString();
  const std::vector<float> agg = Floats(aggregate->bytes);
  Arena applied(table);
  applied.CopyFrom(w);
  ASSERT_TRUE(method->Apply(aggregate->bytes, 1, &applied).ok());
  for (int64_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(agg[i], static_cast<float>(0.25 * delta_a[i] + 0.75 * static_cast<double>(delta_b[i])));
    ASSERT_EQ(applied.data()[i], static_cast<float>(static_cast<double>(w.data()[i]) - 0.5 * agg[i]));
  }
}

TEST(MethodTest, DensePayloadsAreCheckedForSizeAndFiniteness) {
  auto table = MakeTable({7});
  for (const char* mode : {"fedavg", "lora"}) {
    SCOPED_TRACE(mode);
    auto method = Create(SpecFor(mode), table);
    std::vector<uint8_t> payload(static_cast<size_t>(table->total_elems()) * 4, 0);
    EXPECT_TRUE(method->ValidatePayload(payload, 2).ok());
    std::vector<uint8_t> short_payload(payload.begin(), payload.end() - 4);
    Status size = method->ValidatePayload(short_payload, 2);
    EXPECT_NE(size.message().find("bytes, expected"), std::string::npos) << size.message();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(payload.data() + 3 * 4, &nan, 4);
    Status finite = method->ValidatePayload(payload, 2);
    EXPECT_NE(finite.message().find("element 3 is not finite"), std::string::npos) << finite.message();
    Arena state(table);
    EXPECT_FALSE(method->Apply(short_payload, 2, &state).ok());
  }
}

TEST(MethodTest, LoraUploadsItsAdaptersAndTheAggregateReplacesThem) {
  auto table = MakeTable({12});
  auto method = Create(SpecFor("lora"), table);
  EXPECT_EQ(method->RoundSeedMode(), "lora");
  Arena before(table), after(table);
  Step(before, &after, 4);
  auto up = method->EncodeUpdate(before, after, 1);
  ASSERT_TRUE(up.ok());
  auto mean = Aggregation::Create({}).value();
  auto aggregate = method->Aggregate({{"only", 2, *up}}, AggregationWeights::kEqual, *mean, before, 1);
  ASSERT_TRUE(aggregate.ok());
  Arena replica(table);
  ASSERT_TRUE(method->Apply(aggregate->bytes, 1, &replica).ok());
  EXPECT_EQ(WeightsHash(replica), WeightsHash(after)) << "one client, weight 1: its adapters";
}

TEST(MethodTest, FerretUploadsCoefficientsOfItsRoundAndOneClientIsItsOwnAggregate) {
  auto table = MakeTable({300, 40, 500});
  const JobSpec spec = SpecFor("ferret");
  auto method = Create(spec, table);
  EXPECT_EQ(method->RoundSeedMode(), "per_round");
  EXPECT_EQ(method->CoefficientsPerBlock(), 8u);
  Arena w(table), trained(table);
  Step(w, &trained, 5);
  auto up = method->EncodeUpdate(w, trained, 4);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_LE(up->size(), method->MaxPayloadBytes());
  EXPECT_TRUE(method->ValidatePayload(*up, 4).ok());
  Status other_round = method->ValidatePayload(*up, 5);
  EXPECT_NE(other_round.message().find("payload carries round 4"), std::string::npos) << other_round.message();
  std::vector<uint8_t> truncated(up->begin(), up->end() - 1);
  EXPECT_TRUE(method->ValidatePayload(truncated, 4).IsInvalidArgument());

  auto mean = Aggregation::Create({}).value();
  auto aggregate = method->Aggregate({{"w0", 9, *up}}, AggregationWeights::kSamples, *mean, w, 4);
  ASSERT_TRUE(aggregate.ok()) << aggregate.status().ToString();
  EXPECT_EQ(aggregate->bytes, *up) << "weight 1: the fp64 mean rounds back to the client's fp32 coefficients";
  Arena replica(table);
  replica.CopyFrom(w);
  EXPECT_FALSE(method->Apply(aggregate->bytes, 5, &replica).ok()) << "an aggregate carries its round";
  EXPECT_EQ(WeightsHash(replica), WeightsHash(w));
  ASSERT_TRUE(method->Apply(aggregate->bytes, 4, &replica).ok());
  EXPECT_NE(WeightsHash(replica), WeightsHash(w));
  // The server learning rate and seed come from the job, not from the ferret section's own fields.
  JobSpec ignored = spec;
  ignored.ferret.server_lr = 7.0;
  ignored.ferret.job_seed = 99;
  auto same = Create(ignored, table);
  Arena replica2(table);
  replica2.CopyFrom(w);
  ASSERT_TRUE(same->Apply(aggregate->bytes, 4, &replica2).ok());
  EXPECT_EQ(WeightsHash(replica2), WeightsHash(replica));
}

}  // namespace
}  // namespace tributary
