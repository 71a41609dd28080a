// FedKSeed (federation/fedkseed_method.h): the K-scalar payload, the rebuild of a worker's change from
// the seeds, determinism, secure aggregation's vector, a few rounds that lower the loss, the job spec.
#include "federation/fedkseed_method.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "federation/job_spec.h"
#include "federation/replica_state.h"
#include "federation/tasklet.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

std::vector<SequenceRow> Rows(int n, int offset) {
  std::vector<Example> examples;
  for (int i = 0; i < n; ++i) {
    Example ex;
    ex.is_text = true;
    ex.text = std::string("the quick brown fox ").substr((i + offset) % 7) + std::to_string(i + offset);
    examples.push_back(ex);
  }
  ByteTokenizer tok;
  auto tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  return BuildRows(*tokenized, 16, /*pack=*/false, ByteTokenizer::kPadId);
}

JobSpec Spec(int K = 64) {
  JobSpec spec;
  spec.mode = "fedkseed";
  spec.dataset = "d";
  spec.seed = 11;
  spec.local_steps = 8;
  spec.batch_size = 4;
  spec.lr = 1e-3;
  spec.fedkseed.K = K;
  spec.fedkseed.eps = 1e-3;
  return spec;
}

std::unique_ptr<LlamaModel> Model() {
  auto model = LlamaModel::Create(testutil::TinyByteLlama(64));
  EXPECT_TRUE(model.ok());
  (*model)->InitRandom(3);
  return std::move(*model);
}

std::unique_ptr<FederatedMethod> Method(const JobSpec& spec, const LlamaModel& model) {
  auto method = CreateMethod(spec, model.params().table_ptr());
  EXPECT_TRUE(method.ok()) << method.status().ToString();
  return std::move(*method);
}

std::vector<float> HostCopy(const Arena& a) {
  std::vector<float> out(static_cast<size_t>(a.size()));
  a.CopyToHost(out.data());
  return out;
}

TEST(FedKSeedTest, PayloadIsKScalarsAndAHeader) {
  const std::vector<SequenceRow> rows = Rows(12, 0);
  auto model = Model();
  const JobSpec spec = Spec(64);
  auto method = Method(spec, *model);
  EXPECT_TRUE(method->RunsLocalProcedure());
  EXPECT_EQ(method->MaxPayloadBytes(), 8u + 4u * 64u);
  EXPECT_EQ(method->RoundSeedMode(), "fedkseed_fixed_pool");
  auto result = RunTasklet(TaskletInput{spec, 3, "w0", &rows}, *method, *model);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->payload.size(), 8u + 4u * 64u);
  EXPECT_EQ(result->local_steps, 8);
  EXPECT_GT(result->train_loss, 0.0);
  EXPECT_TRUE(method->ValidatePayload(result->payload, 3).ok());
  EXPECT_FALSE(method->ValidatePayload(result->payload, 4).ok());
  auto parsed = ParseFedKSeedPayload(result->payload, 64);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->round, 3u);
  int nonzero = 0;
  for (float c : parsed->scalars) nonzero += c != 0.0f;
  EXPECT_GE(nonzero, 1);
  EXPECT_LE(nonzero, 8);  // at most one seed per local step
  EXPECT_FALSE(ParseFedKSeedPayload(result->payload, 65).ok());
  std::vector<uint8_t> truncated(result->payload.begin(), result->payload.end() - 1);
  EXPECT_FALSE(method->ValidatePayload(truncated, 3).ok());
  // No first-order encoding: the upload only comes from the zeroth-order steps.
  EXPECT_FALSE(method->EncodeUpdate(model->params(), model->params(), 3).ok());
}

TEST(FedKSeedTest, ApplyRebuildsTheWorkersChangeFromTheSeeds) {
  const std::vector<SequenceRow> rows = Rows(12, 0);
  auto model = Model();
  JobSpec spec = Spec(16);
  spec.lr = 5e-3;
  auto method = Method(spec, *model);
  Arena w_old(model->params().table_ptr());
  w_old.CopyFrom(model->params());
  // The procedure leaves the model at its local w_new.
  auto local = method->RunLocalProcedure(LocalProcedureInput{&spec, 1, "w0", &rows}, *model);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  const std::vector<float> w_new = HostCopy(model->params());
  // One client's aggregate (weight 1, the mean), applied at server_lr 1 to w_old.
  auto aggregation = Aggregation::Create(AggregationOptions{});
  ASSERT_TRUE(aggregation.ok());
  const std::vector<ClientPayload> clients = {{"w0", rows.size(), local->payload}};
  auto aggregate = method->Aggregate(clients, AggregationWeights::kSamples, **aggregation, w_old, 1);
  ASSERT_TRUE(aggregate.ok()) << aggregate.status().ToString();
  EXPECT_EQ(aggregate->bytes, local->payload);  // one client: its own scalars
  Arena rebuilt(w_old.table_ptr());
  rebuilt.CopyFrom(w_old);
  ASSERT_TRUE(method->Apply(aggregate->bytes, 1, &rebuilt).ok());
  double max_change = 0, max_error = 0;
  for (int64_t i = 0; i < rebuilt.size(); ++i) {
    max_change = std::max(max_change, std::fabs(static_cast<double>(w_new[i]) - w_old.data()[i]));
    max_error = std::max(max_error, std::fabs(static_cast<double>(w_new[i]) - rebuilt.data()[i]));
  }
  EXPECT_GT(max_change, 1e-6);
  EXPECT_LT(max_error, 1e-6) << "largest change " << max_change;
  std::printf("largest change %g, largest rebuild error %g\n", max_change, max_error);
  // A replica at another round refuses the aggregate.
  EXPECT_FALSE(method->Apply(aggregate->bytes, 2, &rebuilt).ok());
}

TEST(FedKSeedTest, RedoingATaskletGivesTheSameBytesAndRestoresTheReplica) {
  const std::vector<SequenceRow> rows = Rows(12, 0);
  auto model = Model();
  const JobSpec spec = Spec(64);
  auto method = Method(spec, *model);
  const uint64_t before = WeightsHash(model->params());
  auto first = RunTasklet(TaskletInput{spec, 2, "w0", &rows}, *method, *model);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(WeightsHash(model->params()), before);
  auto second = RunTasklet(TaskletInput{spec, 2, "w0", &rows}, *method, *model);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->payload, second->payload);
  auto other = RunTasklet(TaskletInput{spec, 2, "w1", &rows}, *method, *model);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(first->payload, other->payload);
  // The seed draws depend on (job seed, round, worker, step) only.
  EXPECT_EQ(FedKSeedStepSeed(1, 2, "w0", 3, 1024), FedKSeedStepSeed(1, 2, "w0", 3, 1024));
  int differs = 0;
  for (int64_t t = 0; t < 16; ++t)
    differs += FedKSeedStepSeed(1, 2, "w0", t, 1024) != FedKSeedStepSeed(1, 2, "w1", t, 1024);
  EXPECT_GT(differs, 8);
  // A gradient reducer (cluster mode) is refused by name.
  class NoReducer final : public GradientReducer {
    Status Reduce(Arena&, int64_t) override { return Status::OK(); }
  } reducer;
  auto reduced = RunTasklet(TaskletInput{spec, 2, "w0", &rows, &reducer}, *method, *model);
  EXPECT_FALSE(reduced.ok());
}

TEST(FedKSeedTest, LocalPrivacyNoisesEveryScalar) {
  const std::vector<SequenceRow> rows = Rows(12, 0);
  auto model = Model();
  JobSpec spec = Spec(32);
  auto method = Method(spec, *model);
  auto plain = RunTasklet(TaskletInput{spec, 1, "w0", &rows}, *method, *model);
  ASSERT_TRUE(plain.ok());
  spec.aggregation.clip_norm = 1e-3;
  spec.aggregation_weights = AggregationWeights::kEqual;
  spec.privacy.mechanism = DpMechanism::kLocal;
  spec.privacy.noise_multiplier = 1.0;
  spec.privacy.delta = 1e-5;
  auto noised = RunTasklet(TaskletInput{spec, 1, "w0", &rows}, *method, *model);
  ASSERT_TRUE(noised.ok()) << noised.status().ToString();
  ASSERT_EQ(noised->payload.size(), plain->payload.size());
  EXPECT_TRUE(method->ValidatePayload(noised->payload, 1).ok());
  auto scalars = ParseFedKSeedPayload(noised->payload, 32);
  ASSERT_TRUE(scalars.ok());
  int nonzero = 0;
  for (float c : scalars->scalars) nonzero += c != 0.0f;
  EXPECT_EQ(nonzero, 32) << "the noise covers every seed, drawn or not";
}

TEST(FedKSeedTest, PoolDirectionsArePlusMinusOneAndFixedOrPerRound) {
  auto model = Model();
  const TensorTable& table = model->params().table();
  const int64_t n = table.total_elems();
  std::vector<float> zero(static_cast<size_t>(n), 0.0f), z(static_cast<size_t>(n)), z2(static_cast<size_t>(n));
  FedKSeedOptions fixed;
  FedKSeedPool(fixed, 5, 1, table).AddScaled(7, 1.0f, zero.data(), z.data());
  FedKSeedPool(fixed, 5, 9, table).AddScaled(7, 1.0f, zero.data(), z2.data());
  EXPECT_EQ(z, z2);  // fixed_pool: the round is not in the key
  double sum = 0;
  for (const TensorEntry& e : table.entries())
    for (int64_t i = 0; i < e.numel; ++i) {
      const float v = z[static_cast<size_t>(e.offset + i)];
      ASSERT_TRUE(v == 1.0f || v == -1.0f);
      sum += v;
    }
  EXPECT_LT(std::fabs(sum), 6 * std::sqrt(static_cast<double>(table.total_elems())));
  FedKSeedOptions per_round;
  per_round.seed_mode = SeedMode::kPerRound;
  FedKSeedPool(per_round, 5, 9, table).AddScaled(7, 1.0f, zero.data(), z2.data());
  EXPECT_NE(z, z2);
}

TEST(FedKSeedTest, SecureAggregationVectorIsTheScalars) {
  auto model = Model();
  const JobSpec spec = Spec(8);
  auto method = Method(spec, *model);
  EXPECT_EQ(method->SecAggDim(), 8);
  FedKSeedPayload payload;
  payload.round = 4;
  payload.scalars = {0.5f, 0, 0, -1.25f, 0, 0, 0, 2};
  const std::vector<uint8_t> bytes = SerializeFedKSeedPayload(payload);
  std::vector<float> vec(8);
  ASSERT_TRUE(method->SecAggVector(bytes, model->params(), 4, vec).ok());
  EXPECT_EQ(vec, payload.scalars);
  const std::vector<double> mean(payload.scalars.begin(), payload.scalars.end());
  auto aggregate = method->SecAggAggregate(mean, model->params(), 4);
  ASSERT_TRUE(aggregate.ok());
  EXPECT_EQ(*aggregate, bytes);
  EXPECT_FALSE(method->SecAggVector(bytes, model->params(), 5, vec).ok());
}

// A tiny federated job through the method: two workers with their own rows, the coordinator's weighted
// mean, every round applied to the one replica. Zeroth-order steps are slow learners: the assertion is a
// drop of the training loss, not a value.
TEST(FedKSeedTest, AFewRoundsLowerTheTrainingLoss) {
  const std::vector<SequenceRow> rows_a = Rows(8, 0), rows_b = Rows(8, 3);
  std::vector<SequenceRow> all = rows_a;
  all.insert(all.end(), rows_b.begin(), rows_b.end());
  auto model = Model();
  // 3 rounds x 30 steps x 2 workers at lr 1e-3 take the loss from 5.61 to 5.30 (lr 3e-4: 5.50).
  JobSpec spec = Spec(64);
  spec.local_steps = 30;
  spec.lr = 1e-3;
  auto method = Method(spec, *model);
  auto aggregation = Aggregation::Create(AggregationOptions{});
  ASSERT_TRUE(aggregation.ok());
  auto initial = EvaluateLoss(*model, all, 16);
  ASSERT_TRUE(initial.ok());
  double last = initial->mean_loss;
  for (uint32_t round = 1; round <= 3; ++round) {
    auto a = RunTasklet(TaskletInput{spec, round, "a", &rows_a}, *method, *model);
    auto b = RunTasklet(TaskletInput{spec, round, "b", &rows_b}, *method, *model);
    ASSERT_TRUE(a.ok() && b.ok());
    const std::vector<ClientPayload> clients = {{"a", a->num_samples, a->payload}, {"b", b->num_samples, b->payload}};
    auto aggregate = method->Aggregate(clients, AggregationWeights::kSamples, **aggregation, model->params(), round);
    ASSERT_TRUE(aggregate.ok()) << aggregate.status().ToString();
    ASSERT_TRUE(method->Apply(aggregate->bytes, round, &model->params()).ok());
    auto loss = EvaluateLoss(*model, all, 16);
    ASSERT_TRUE(loss.ok());
    last = loss->mean_loss;
  }
  std::printf("fedkseed training loss %.4f -> %.4f\n", initial->mean_loss, last);
  EXPECT_LT(last, initial->mean_loss - 0.05) << "from " << initial->mean_loss;
}

// Parses the two required keys plus `extra`; the error message, "" on success.
std::string SpecError(const std::string& extra) {
  Result<JobSpec> spec = ParseJobSpec("model: {base: /m}\ndata: {dataset: d}\n" + extra, "job.yaml");
  return spec.ok() ? "" : spec.status().message();
}

TEST(FedKSeedTest, JobSpecSectionIsValidatedAndKeptToItsMode) {
  Result<JobSpec> spec = ParseJobSpec(
      "model: {base: /m}\ndata: {dataset: d}\nfederation: {mode: fedkseed}\n"
      "fedkseed: {k: 512, eps: 0.01, seed_mode: per_round}\n",
      "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->fedkseed.K, 512);
  EXPECT_EQ(spec->fedkseed.eps, 0.01);
  EXPECT_EQ(spec->fedkseed.seed_mode, SeedMode::kPerRound);
  EXPECT_NE(EffectiveJobSpecYaml(*spec).find("fedkseed:\n  k: 512\n"), std::string::npos)
      << EffectiveJobSpecYaml(*spec);
  EXPECT_EQ(EffectiveJobSpecYaml(*spec).find("ferret:"), std::string::npos);
  const std::string mode = "federation: {mode: fedkseed}\n";
  EXPECT_NE(SpecError(mode + "fedkseed: {k: 0}\n").find("fedkseed.k"), std::string::npos);
  EXPECT_NE(SpecError(mode + "fedkseed: {eps: 0}\n").find("key 'fedkseed.eps': 0 is outside (0, 1]"),
            std::string::npos);
  EXPECT_NE(SpecError(mode + "fedkseed: {distribution: gaussian}\n").find("fedkseed.distribution"), std::string::npos);
  EXPECT_NE(SpecError(mode + "fedkseed: {kk: 3}\n").find("fedkseed.kk"), std::string::npos);
  EXPECT_NE(SpecError(mode + "train: {optimizer: adamw}\n").find("field 'train.optimizer'"), std::string::npos);
  EXPECT_NE(SpecError(mode + "train: {momentum: 0.9}\n").find("field 'train.momentum'"), std::string::npos);
  EXPECT_NE(SpecError(mode + "train: {max_grad_norm: 1}\n").find("field 'train.max_grad_norm'"), std::string::npos);
  EXPECT_NE(SpecError(mode + "train: {weight_decay: 0.1}\n").find("field 'train.weight_decay'"), std::string::npos);
  EXPECT_NE(SpecError(mode + "ferret: {k: 8}\n").find("field 'ferret.k'"), std::string::npos);
  EXPECT_NE(SpecError("federation: {mode: ferret}\nfedkseed: {k: 8}\n").find("field 'fedkseed.k'"), std::string::npos);
  // Secure aggregation and privacy combine with it (a client's vector is its K scalars).
  EXPECT_EQ(SpecError("federation: {mode: fedkseed, min_clients: 2}\n"
                      "secure_aggregation: {enabled: true, clip: 0.01}\n"),
            "");
  EXPECT_EQ(SpecError("federation: {mode: fedkseed, aggregation_weights: equal}\naggregation: {clip_norm: 0.1}\n"
                      "privacy: {mechanism: central, noise_multiplier: 1, delta: 1e-5}\n"),
            "");
  // The section does not change other jobs' canonical form (their hashes).
  EXPECT_EQ(CanonicalJobSpec(*ParseJobSpec("model: {base: /m}\ndata: {dataset: d}\n", "a")).find("fedkseed"),
            std::string::npos);
}

}  // namespace
}  // namespace tributary
