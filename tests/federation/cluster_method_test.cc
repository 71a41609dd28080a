// Cluster mode's outer sync (federation/cluster_method.cc) and its job spec section: the pseudo-gradient
// in each codec, the islands' weighted mean, the outer optimizer against a hand computation, and the
// momentum's round discipline.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/outer_codec.h"
#include "federation/replica_state.h"
#include "tests/common/ferret_util.h"

namespace tributary {
namespace {

using ferret_test::MakeTable;

const std::string kRequired = "model: {base: /m}\ndata: {dataset: d}\n";

std::string ErrorOf(const std::string& extra) {
  Result<JobSpec> spec = ParseJobSpec(kRequired + extra, "job.yaml");
  return spec.ok() ? "" : spec.status().message();
}

TEST(ClusterSpecTest, DefaultsAreDiLoCos) {
  Result<JobSpec> spec = ParseJobSpec(kRequired + "federation: {mode: cluster}\n", "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->cluster.outer_optimizer, "nesterov");
  EXPECT_DOUBLE_EQ(spec->cluster.outer_lr, 0.7);
  EXPECT_DOUBLE_EQ(spec->cluster.outer_momentum, 0.9);
  EXPECT_EQ(spec->cluster.codec, "fp32");
  EXPECT_TRUE(ApplyKeepsState(*spec));
  // The effective spec reproduces the job, cluster keys included.
  Result<JobSpec> again = ParseJobSpec(EffectiveJobSpecYaml(*spec), "effective.yaml");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(JobSpecHash(*again), JobSpecHash(*spec));
}

TEST(ClusterSpecTest, RefusesWhatItCannotHonourNamingTheField) {
  EXPECT_EQ(ErrorOf("federation: {mode: ferret}\ncluster: {codec: int8}\n"),
            "job.yaml: field 'cluster.codec': set at job.yaml:4, but cluster.* keys apply only when federation.mode "
            "is cluster, got federation.mode=ferret (job.yaml:3)");
  EXPECT_NE(ErrorOf("federation: {mode: cluster}\ncluster: {codec: ferret}\n").find("field 'cluster.outer_optimizer'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("federation: {mode: cluster, client_fraction: 0.5}\n").find("field 'federation.client_fraction'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("federation: {mode: cluster}\ncluster: {outer_optimizer: sgd, outer_momentum: 0.5}\n")
                .find("field 'cluster.outer_momentum'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("federation: {mode: cluster}\ncluster: {codec: zstd}\n").find("cluster.codec"), std::string::npos);
  EXPECT_EQ(ErrorOf("federation: {mode: cluster}\ncluster: {islands: ['a=w0,w1', 'b=w1']}\n"),
            "job.yaml:4: key 'cluster.islands': worker 'w1' is in islands 'a' and 'b'");
  EXPECT_NE(ErrorOf("federation: {mode: cluster}\ncluster: {islands: ['a']}\n").find("expected NAME=WORKER"),
            std::string::npos);
  // ferret.* keys count under the ferret codec (they change the projection) and nowhere else in cluster mode.
  EXPECT_EQ(ErrorOf("federation: {mode: cluster}\ncluster: {codec: ferret, outer_optimizer: sgd}\nferret: {k: 16}\n"),
            "");
  EXPECT_NE(ErrorOf("federation: {mode: cluster}\nferret: {k: 16}\n").find("field 'ferret.k'"), std::string::npos);
}

TEST(ClusterSpecTest, ParseIslandsKeepsTheOrderGiven) {
  auto islands = ParseIslands({"east=w2,w1", "west=w3"});
  ASSERT_TRUE(islands.ok());
  ASSERT_EQ(islands->size(), 2u);
  EXPECT_EQ((*islands)[0].name, "east");
  EXPECT_EQ((*islands)[0].workers, (std::vector<std::string>{"w2", "w1"}));
  EXPECT_FALSE(ParseIslands({"a=w1", "a=w2"}).ok());
  EXPECT_FALSE(ParseIslands({"a=w1,,w2"}).ok());
}

JobSpec ClusterSpec(const std::string& codec, const std::string& optimizer) {
  JobSpec spec;
  spec.mode = "cluster";
  spec.cluster.codec = codec;
  spec.cluster.outer_optimizer = optimizer;
  spec.cluster.outer_lr = 0.7;
  spec.cluster.outer_momentum = optimizer == "nesterov" ? 0.9 : 0.0;
  return spec;
}

std::unique_ptr<FederatedMethod> Create(const JobSpec& spec, const std::shared_ptr<TensorTable>& table) {
  auto method = CreateMethod(spec, table);
  EXPECT_TRUE(method.ok()) << method.status().ToString();
  return std::move(*method);
}

void Fill(Arena* arena, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  for (size_t t = 0; t < arena->table().size(); ++t)
    for (float& x : arena->span(t)) x = normal(rng);
}

// One outer round of two islands: island i moved from `global` to global - d_i.
std::vector<uint8_t> RoundAggregate(const FederatedMethod& method, const Arena& global, const Arena& d0,
                                    const Arena& d1, uint32_t round) {
  std::vector<std::vector<uint8_t>> payloads;
  for (const Arena* d : {&d0, &d1}) {
    Arena moved(global.table_ptr());
    moved.CopyFrom(global);
    for (int64_t i = 0; i < moved.size(); ++i) moved.data()[i] -= d->data()[i];
    auto payload = method.EncodeUpdate(global, moved, round);
    EXPECT_TRUE(payload.ok());
    EXPECT_TRUE(method.ValidatePayload(*payload, round).ok());
    EXPECT_EQ(payload->size(), method.MaxPayloadBytes());
    payloads.push_back(*payload);
  }
  // Island 0 trained 1 row, island 1 three: the mean is weighted 1:3.
  std::vector<ClientPayload> clients = {{"a", 1, payloads[0]}, {"b", 3, payloads[1]}};
  auto aggregation = Aggregation::Create(AggregationOptions{});
  EXPECT_TRUE(aggregation.ok());
  auto aggregate = method.Aggregate(clients, AggregationWeights::kSamples, **aggregation, global, round);
  EXPECT_TRUE(aggregate.ok()) << aggregate.status().ToString();
  return aggregate->bytes;
}

TEST(ClusterMethodTest, NesterovOuterStepMatchesTorchSgdNesterovByHand) {
  auto table = MakeTable({37, 64});
  const JobSpec spec = ClusterSpec("fp32", "nesterov");
  auto method = Create(spec, table);
  auto replica = Create(spec, table);  // a second replica applying the same rounds
  Arena global(table), other(table), d0(table), d1(table);
  Fill(&global, 1, 1.0f);
  other.CopyFrom(global);
  std::vector<double> w(global.data(), global.data() + global.size()), m(w.size(), 0.0);
  for (uint32_t round = 1; round <= 3; ++round) {
    Fill(&d0, 10 + round, 0.01f);
    Fill(&d1, 20 + round, 0.01f);
    const std::vector<uint8_t> aggregate = RoundAggregate(*method, global, d0, d1, round);
    ASSERT_TRUE(method->Apply(aggregate, round, &global).ok());
    ASSERT_TRUE(replica->Apply(aggregate, round, &other).ok());
    for (size_t i = 0; i < w.size(); ++i) {  // g = (1 d0 + 3 d1) / 4; buf = 0.9 buf + g; w -= 0.7 (g + 0.9 buf)
      const double g = (1.0 * d0.data()[i] + 3.0 * d1.data()[i]) / 4.0;
      m[i] = 0.9 * m[i] + g;
      w[i] -= 0.7 * (g + 0.9 * m[i]);
    }
  }
  for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(global.data()[i], w[i], 1e-5) << i;
  EXPECT_EQ(WeightsHash(global), WeightsHash(other));  // replicas stay bit-identical
}

TEST(ClusterMethodTest, MomentumRoundsApplyInOrderAndARedoRestartsFromTheRoundBefore) {
  auto table = MakeTable({100});
  auto method = Create(ClusterSpec("fp32", "nesterov"), table);
  Arena global(table), d0(table), d1(table), redo(table);
  Fill(&global, 1, 1.0f);
  Fill(&d0, 2, 0.1f);
  Fill(&d1, 3, 0.1f);
  const std::vector<uint8_t> aggregate = RoundAggregate(*method, global, d0, d1, 1);
  redo.CopyFrom(global);
  ASSERT_TRUE(method->Apply(aggregate, 1, &global).ok());
  ASSERT_TRUE(method->Apply(aggregate, 1, &redo).ok());  // a commit that failed after Apply: same result
  EXPECT_EQ(WeightsHash(global), WeightsHash(redo));
  Status skipped = method->Apply(aggregate, 3, &global);
  EXPECT_EQ(skipped.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(skipped.message().find("the outer momentum is at round 1"), std::string::npos);
}

TEST(ClusterMethodTest, EveryCodecRoundTripsAndSgdAtLrOneAverages) {
  auto table = MakeTable({33, 300});
  for (const char* codec : {"fp32", "bf16", "int8", "fp4"}) {
    SCOPED_TRACE(codec);
    JobSpec spec = ClusterSpec(codec, "sgd");
    spec.cluster.outer_lr = 1.0;
    auto method = Create(spec, table);
    const OuterCodec parsed = *ParseOuterCodec(codec);
    EXPECT_EQ(method->MaxPayloadBytes(), OuterCodecBytes(parsed, 33) + OuterCodecBytes(parsed, 300));
    EXPECT_FALSE(ApplyKeepsState(spec));
    Arena global(table), d0(table), d1(table), start(table);
    Fill(&global, 1, 1.0f);
    Fill(&d0, 2, 0.01f);
    Fill(&d1, 3, 0.01f);
    start.CopyFrom(global);
    const std::vector<uint8_t> aggregate = RoundAggregate(*method, global, d0, d1, 1);
    EXPECT_EQ(aggregate.size(), method->MaxPayloadBytes());  // the broadcast is as small as an upload
    ASSERT_TRUE(method->Apply(aggregate, 1, &global).ok());
    double err = 0, norm = 0;
    for (int64_t i = 0; i < global.size(); ++i) {
      const double expected = (1.0 * d0.data()[i] + 3.0 * d1.data()[i]) / 4.0;
      const double moved = static_cast<double>(start.data()[i]) - global.data()[i];
      err += (moved - expected) * (moved - expected);
      norm += expected * expected;
    }
    const double relative = std::sqrt(err / norm);
    // Two roundings of the codec (uploads, then the mean): fp32 only the weights' own rounding, 4-bit the coarsest.
    const double bound = std::string(codec) == "fp32" ? 2e-5 : std::string(codec) == "bf16" ? 1e-2 : 0.3;
    EXPECT_LT(relative, bound);
  }
}

TEST(ClusterMethodTest, RefusesPayloadsOfTheWrongSizeOrWithNonFiniteValues) {
  auto table = MakeTable({64});
  auto method = Create(ClusterSpec("fp32", "nesterov"), table);
  std::vector<uint8_t> short_payload(10);
  Status s = method->ValidatePayload(short_payload, 1);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bytes, expected"), std::string::npos);
  Arena old_state(table), new_state(table);
  new_state.data()[3] = std::nanf("");
  EXPECT_EQ(method->EncodeUpdate(old_state, new_state, 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(ClusterMethodTest, FerretCodecIsFerretsProjectionAtTheOuterLr) {
  auto table = MakeTable({256});
  JobSpec spec = ClusterSpec("ferret", "sgd");
  spec.ferret.K = 8;
  auto method = Create(spec, table);
  EXPECT_EQ(method->CoefficientsPerBlock(), 8u);
  EXPECT_LT(method->MaxPayloadBytes(), 256u * 4u);
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// cluster.codec auto: each round is encoded in the codec set for it, an upload in another codec is refused
// naming both, and any replica applies an aggregate of any candidate codec (known by its size), so a rebuild
// needs no record of the round's codec.
TEST(ClusterMethodTest, CodecAutoUsesEachRoundsCodecAndRefusesAnother) {
  auto table = MakeTable({33, 300});
  JobSpec spec = ClusterSpec("auto", "nesterov");
  auto method = Create(spec, table);
  EXPECT_EQ(method->RoundSeedMode(), "cluster_auto");
  uint64_t largest = 0;  // int8's codebooks make it the largest on tensors this small
  for (OuterCodec codec : AutoOuterCodecs())
    largest = std::max(largest, OuterCodecBytes(codec, 33) + OuterCodecBytes(codec, 300));
  EXPECT_EQ(method->MaxPayloadBytes(), largest);
  Arena global(table), d0(table), d1(table);
  Fill(&global, 1, 1.0f);
  Fill(&d0, 2, 0.01f);
  Fill(&d1, 3, 0.01f);
  Arena moved(table);
  moved.CopyFrom(global);
  EXPECT_EQ(method->EncodeUpdate(global, moved, 1).status().code(), StatusCode::kFailedPrecondition)
      << "no codec set for the round";
  ASSERT_TRUE(method->SetRoundCodec(1, "int8").ok());
  ASSERT_TRUE(method->SetRoundCodec(2, "bf16").ok());
  EXPECT_FALSE(method->SetRoundCodec(3, "ferret").ok());
  auto int8 = method->EncodeUpdate(global, moved, 1);
  ASSERT_TRUE(int8.ok());
  EXPECT_EQ(int8->size(), OuterCodecBytes(OuterCodec::kInt8, 33) + OuterCodecBytes(OuterCodec::kInt8, 300));
  EXPECT_TRUE(method->ValidatePayload(*int8, 1).ok());
  Status other = method->ValidatePayload(*int8, 2);
  EXPECT_EQ(other.message(), "payload is in codec int8, but round 2's codec is bf16");
  auto aggregation = Aggregation::Create(AggregationOptions{});
  ASSERT_TRUE(aggregation.ok());
  auto refused = method->Aggregate({{"w1", 1, *int8}}, AggregationWeights::kSamples, **aggregation, global, 2);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("island 'w1' is in codec int8"), std::string::npos)
      << refused.status().message();

  // Round 1 in int8, round 2 in bf16: a replica built afresh (no codec set) applies both the same way.
  std::vector<std::vector<uint8_t>> aggregates;
  for (uint32_t round : {1u, 2u}) {
    std::vector<ClientPayload> clients;
    std::vector<std::vector<uint8_t>> payloads;
    for (const Arena* d : {&d0, &d1}) {
      Arena next(table);
      next.CopyFrom(global);
      for (int64_t i = 0; i < next.size(); ++i) next.data()[i] -= d->data()[i];
      payloads.push_back(*method->EncodeUpdate(global, next, round));
    }
    clients = {{"a", 1, payloads[0]}, {"b", 3, payloads[1]}};
    auto aggregate = method->Aggregate(clients, AggregationWeights::kSamples, **aggregation, global, round);
    ASSERT_TRUE(aggregate.ok()) << aggregate.status().ToString();
    EXPECT_EQ(aggregate->bytes.size(), payloads[0].size()) << "the mean in the round's codec";
    ASSERT_TRUE(method->Apply(aggregate->bytes, round, &global).ok());
    aggregates.push_back(aggregate->bytes);
  }
  auto fresh = Create(spec, table);
  Arena replica(table);
  Fill(&replica, 1, 1.0f);
  for (uint32_t round : {1u, 2u}) ASSERT_TRUE(fresh->Apply(aggregates[round - 1], round, &replica).ok());
  EXPECT_EQ(WeightsHash(replica), WeightsHash(global));
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

TEST(ClusterSpecTest, LocalStepsAndCodecAutoAreForClusterMode) {
  Result<JobSpec> spec = ParseJobSpec(
      kRequired + "federation: {mode: cluster}\ntrain: {local_steps: auto}\ncluster: {codec: auto}\n", "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->local_steps, 0);
  EXPECT_EQ(spec->cluster.codec, "auto");
  EXPECT_NE(EffectiveJobSpecYaml(*spec).find("local_steps: auto"), std::string::npos);
  Result<JobSpec> again = ParseJobSpec(EffectiveJobSpecYaml(*spec), "effective.yaml");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(JobSpecHash(*again), JobSpecHash(*spec));
  EXPECT_EQ(ErrorOf("federation: {mode: fedavg}\ntrain: {local_steps: auto}\n"),
            "job.yaml: field 'train.local_steps': auto (H chosen by cost every outer round) is for cluster mode, got "
            "federation.mode=fedavg (job.yaml:3)");
  EXPECT_NE(ErrorOf("federation: {mode: cluster}\ntrain: {local_steps: 0}\n").find("0 is outside [1, "),
            std::string::npos)
      << "0 is not a way to write auto: " << ErrorOf("federation: {mode: cluster}\ntrain: {local_steps: 0}\n");
}

}  // namespace
}  // namespace tributary
