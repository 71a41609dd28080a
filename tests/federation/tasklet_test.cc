// The worker's side of a round: deterministic local training, payloads per method, the replica left
// untouched, the methods' Apply checks, and the gradient-reducer seam.
#include "federation/tasklet.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "federation/replica_state.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

LlamaConfig TinyConfig() {
  return testutil::TinyByteLlama(64);
}

std::vector<SequenceRow> Rows() {
  std::vector<Example> examples;
  for (int i = 0; i < 12; ++i) {
    Example ex;
    ex.is_text = true;
    ex.text = std::string("hello world ").substr(i % 5) + std::to_string(i);
    examples.push_back(ex);
  }
  ByteTokenizer tok;
  auto tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  return BuildRows(*tokenized, 16, /*pack=*/false, ByteTokenizer::kPadId);
}

JobSpec Spec(const std::string& mode) {
  JobSpec spec;
  spec.mode = mode;
  spec.dataset = "d";
  spec.seed = 5;
  spec.local_steps = 3;
  spec.batch_size = 4;
  spec.lr = 0.1;
  spec.optimizer = "sgd";
  spec.ferret.K = 64;
  spec.lora.rank = 2;
  return spec;
}

// The job's method for a trainable state laid out like `state`.
std::unique_ptr<FederatedMethod> Method(const JobSpec& spec, const Arena& state) {
  auto method = CreateMethod(spec, state.table_ptr());
  EXPECT_TRUE(method.ok()) << method.status().ToString();
  return std::move(*method);
}

std::unique_ptr<LlamaModel> Model() {
  auto model = LlamaModel::Create(TinyConfig());
  EXPECT_TRUE(model.ok());
  (*model)->InitRandom(3);
  return std::move(*model);
}

TEST(TaskletTest, DataSeedDependsOnJobRoundAndWorker) {
  const uint64_t base = TaskletDataSeed(1, 2, "w0");
  EXPECT_EQ(base, TaskletDataSeed(1, 2, "w0"));
  EXPECT_NE(base, TaskletDataSeed(2, 2, "w0"));
  EXPECT_NE(base, TaskletDataSeed(1, 3, "w0"));
  EXPECT_NE(base, TaskletDataSeed(1, 2, "w1"));
}

TEST(TaskletTest, SameInputsGiveSameBytesAndTheReplicaIsRestored) {
  const std::vector<SequenceRow> rows = Rows();
  for (const std::string mode : {"ferret", "fedavg"}) {
    SCOPED_TRACE(mode);
    auto model = Model();
    const uint64_t before = WeightsHash(model->params());
    TaskletInput input{Spec(mode), 1, "w0", &rows};
    auto method = Method(input.spec, model->params());
    auto first = RunTasklet(input, *method, *model);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    EXPECT_EQ(WeightsHash(model->params()), before) << "the replica must be back at the global model";
    auto again = RunTasklet(input, *method, *model);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(first->payload, again->payload);
    EXPECT_EQ(first->num_samples, rows.size());
    EXPECT_GT(first->train_loss, 0);
    input.round = 2;
    auto other_round = RunTasklet(input, *method, *model);
    ASSERT_TRUE(other_round.ok());
    EXPECT_NE(first->payload, other_round->payload) << "the data order must depend on the round";
  }
}

TEST(TaskletTest, FedAvgPayloadIsTheDeltaAndApplyingItReproducesLocalTraining) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  const JobSpec spec = Spec("fedavg");
  auto method = Method(spec, model->params());
  auto result = RunTasklet({spec, 1, "w0", &rows}, *method, *model);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->payload.size(), static_cast<size_t>(model->params().size()) * sizeof(float));
  // One client, weight 1, slr 1: the global model becomes (about) the client's trained model, which
  // must have a lower training loss.
  auto before = EvaluateLoss(*model, rows, 4);
  ASSERT_TRUE(method->Apply(result->payload, 1, &model->params()).ok());
  auto after = EvaluateLoss(*model, rows, 4);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_LT(after->mean_loss, before->mean_loss);
  std::vector<uint8_t> short_bytes(result->payload.begin(), result->payload.end() - 4);
  EXPECT_FALSE(method->Apply(short_bytes, 1, &model->params()).ok());
}

TEST(TaskletTest, FerretAggregateMustCarryItsRound) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  const JobSpec spec = Spec("ferret");
  auto method = Method(spec, model->params());
  auto result = RunTasklet({spec, 3, "w0", &rows}, *method, *model);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const uint64_t before = WeightsHash(model->params());
  EXPECT_FALSE(method->Apply(result->payload, 4, &model->params()).ok());
  EXPECT_EQ(WeightsHash(model->params()), before);
  ASSERT_TRUE(method->Apply(result->payload, 3, &model->params()).ok());
  EXPECT_NE(WeightsHash(model->params()), before);
}

TEST(TaskletTest, LoraTrainsAdaptersOnly) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  const JobSpec spec = Spec("lora");
  auto adapters = CreateJobAdapters(spec, TinyConfig());
  ASSERT_TRUE(adapters.ok());
  auto method = Method(spec, (*adapters)->params());
  const uint64_t base = WeightsHash(model->params());
  const uint64_t adapters_before = WeightsHash((*adapters)->params());
  auto result = RunTasklet({spec, 1, "w0", &rows}, *method, *model, adapters->get());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(WeightsHash(model->params()), base);
  EXPECT_EQ(WeightsHash((*adapters)->params()), adapters_before);
  EXPECT_EQ(model->linear_adapter(), nullptr) << "the adapters are detached again";
  ASSERT_TRUE(method->Apply(result->payload, 1, &(*adapters)->params()).ok());
  EXPECT_NE(WeightsHash((*adapters)->params()), adapters_before) << "the uploaded adapters were trained";
  EXPECT_FALSE(RunTasklet({spec, 1, "w0", &rows}, *method, *model, nullptr).ok());
}

TEST(TaskletTest, LoraWithDropoutAndAccumulationIsDeterministic) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  JobSpec spec = Spec("lora");
  spec.lora.dropout = 0.25;
  spec.grad_accum = 2;
  auto run = [&](const JobSpec& s) {
    auto adapters = CreateJobAdapters(s, TinyConfig());
    EXPECT_TRUE(adapters.ok());
    auto method = Method(s, (*adapters)->params());
    auto result = RunTasklet({s, 1, "w0", &rows}, *method, *model, adapters->get());
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return result.ok() ? result->payload : std::vector<uint8_t>{};
  };
  const std::vector<uint8_t> first = run(spec);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, run(spec));
  JobSpec no_dropout = spec;
  no_dropout.lora.dropout = 0;
  EXPECT_NE(first, run(no_dropout)) << "dropout must change the local update";

  // The dropout step advances with every local step and carries over to the next round: the same
  // round run on adapters that already trained one round draws other masks than on fresh ones.
  auto used = CreateJobAdapters(spec, TinyConfig());
  auto fresh = CreateJobAdapters(spec, TinyConfig());
  ASSERT_TRUE(used.ok() && fresh.ok());
  auto method = Method(spec, (*used)->params());
  ASSERT_TRUE(RunTasklet({spec, 1, "w0", &rows}, *method, *model, used->get()).ok());
  auto on_used = RunTasklet({spec, 2, "w0", &rows}, *method, *model, used->get());
  auto on_fresh = RunTasklet({spec, 2, "w0", &rows}, *method, *model, fresh->get());
  ASSERT_TRUE(on_used.ok() && on_fresh.ok());
  EXPECT_EQ(WeightsHash((*used)->params()), WeightsHash((*fresh)->params())) << "both start round 2 alike";
  EXPECT_NE(on_used->payload, on_fresh->payload);
}

TEST(TaskletTest, ErrorsNameTheWorker) {
  auto model = Model();
  const std::vector<SequenceRow> none;
  auto method = Method(Spec("ferret"), model->params());
  auto result = RunTasklet({Spec("ferret"), 1, "w7", &none}, *method, *model);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("worker 'w7'"), std::string::npos) << result.status().message();
  JobSpec bad = Spec("ferret");
  bad.optimizer = "adagrad";
  const std::vector<SequenceRow> rows = Rows();
  result = RunTasklet({bad, 1, "w7", &rows}, *method, *model);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("worker 'w7'"), std::string::npos) << result.status().message();
}

// The gradient-reducer seam: called once per optimizer step with the step's gradients, before the
// step. A reducer that zeroes them leaves SGD (no momentum, no weight decay) with nothing to do.
class ZeroingReducer final : public GradientReducer {
 public:
  Status Reduce(Arena& grads, int64_t step) override {
    steps.push_back(step);
    grads.Zero();
    return Status::OK();
  }
  std::vector<int64_t> steps;
};

class FailingReducer final : public GradientReducer {
 public:
  Status Reduce(Arena& /*grads*/, int64_t /*step*/) override { return Status::Unavailable("island peer 'w3' left"); }
};

TEST(TaskletTest, GradientReducerRunsBetweenBackwardAndEveryStep) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  JobSpec spec = Spec("fedavg");
  spec.grad_accum = 2;
  auto method = Method(spec, model->params());
  ZeroingReducer zeroing;
  TaskletInput input{spec, 1, "w0", &rows, &zeroing};
  auto reduced = RunTasklet(input, *method, *model);
  ASSERT_TRUE(reduced.ok()) << reduced.status().ToString();
  EXPECT_EQ(zeroing.steps, (std::vector<int64_t>{1, 2, 3})) << "once per optimizer step, not per micro-batch";
  for (uint8_t byte : reduced->payload) ASSERT_EQ(byte, 0) << "zeroed gradients: the delta must be zero";
  // Without a reducer the same tasklet moves the weights.
  input.reducer = nullptr;
  auto alone = RunTasklet(input, *method, *model);
  ASSERT_TRUE(alone.ok());
  EXPECT_NE(alone->payload, reduced->payload);
  // A reducer's error ends the tasklet, naming the worker and the step; the replica is restored.
  const uint64_t before = WeightsHash(model->params());
  FailingReducer failing;
  input.reducer = &failing;
  auto failed = RunTasklet(input, *method, *model);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("worker 'w0'"), std::string::npos) << failed.status().message();
  EXPECT_NE(failed.status().message().find("island peer 'w3' left"), std::string::npos) << failed.status().message();
  EXPECT_EQ(WeightsHash(model->params()), before);
}

std::vector<float> Floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

double Norm(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double{x} * x;
  return std::sqrt(sum);
}

// Local DP: the upload is the plain update clipped to C plus N(0, (z C)^2) per coordinate, in the
// payload's own format, with fresh noise every time.
TEST(TaskletTest, LocalPrivacyClipsAndNoisesTheUpload) {
  const std::vector<SequenceRow> rows = Rows();
  auto model = Model();
  JobSpec spec = Spec("fedavg");
  auto method = Method(spec, model->params());
  TaskletInput input{spec, 1, "w0", &rows};
  auto plain = RunTasklet(input, *method, *model);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  const std::vector<float> update = Floats(plain->payload);
  const double norm = Norm(update);
  ASSERT_GT(norm, 0);

  spec.privacy.mechanism = DpMechanism::kLocal;
  spec.privacy.delta = 1e-5;
  spec.privacy.noise_multiplier = 1e-9;  // clipping alone
  spec.aggregation.clip_norm = 0.5 * norm;
  input.spec = spec;
  auto clipped = RunTasklet(input, *method, *model);
  ASSERT_TRUE(clipped.ok()) << clipped.status().ToString();
  ASSERT_TRUE(method->ValidatePayload(clipped->payload, 1).ok());
  const std::vector<float> c = Floats(clipped->payload);
  EXPECT_NEAR(Norm(c), 0.5 * norm, 1e-4 * norm);
  for (size_t i = 0; i < c.size(); ++i) ASSERT_NEAR(c[i], 0.5f * update[i], 1e-6 * norm) << i;

  spec.privacy.noise_multiplier = 2.0;
  spec.aggregation.clip_norm = 10 * norm;  // no clipping: the difference is the noise
  input.spec = spec;
  auto noised = RunTasklet(input, *method, *model);
  auto again = RunTasklet(input, *method, *model);
  ASSERT_TRUE(noised.ok() && again.ok());
  EXPECT_NE(noised->payload, again->payload) << "every upload draws fresh noise";
  const std::vector<float> n = Floats(noised->payload);
  double sum_sq = 0;
  size_t count = 0;
  for (size_t i = 0; i < n.size(); ++i) {
    if (update[i] == 0 && n[i] == 0) continue;  // padding the method keeps at zero
    sum_sq += (double{n[i]} - update[i]) * (double{n[i]} - update[i]);
    ++count;
  }
  ASSERT_GT(count, 10000u);
  EXPECT_NEAR(std::sqrt(sum_sq / count), 2.0 * 10 * norm, 0.03 * 20 * norm);
}

}  // namespace
}  // namespace tributary
