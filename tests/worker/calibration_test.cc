// Compute calibration (worker/calibration.h) on the tests' tiny LLaMA: a real forward+backward of the
// job's batch shape yields a positive, finite rate and leaves the weights, the adapters and the next
// round's upload exactly as they were.
#include "worker/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "base/hash.h"
#include "federation/replica_state.h"
#include "tests/common/daemon_world.h"
#include "worker/replica.h"

namespace tributary {
namespace {

constexpr int64_t kSeqLen = 64;

JobSpec Spec(const testutil::DaemonWorld& world, const std::string& mode) {
  JobSpec spec;
  spec.name = "calibration-test";
  spec.base_model = world.model_dir;
  spec.dataset = "letters";
  spec.seq_len = kSeqLen;
  spec.mode = mode;
  spec.rounds = 3;
  spec.seed = 5;
  spec.local_steps = 2;
  spec.batch_size = 3;
  spec.lr = 0.1;
  spec.optimizer = "sgd";
  spec.ferret.K = 32;
  auto parsed = ParseJobSpec(EffectiveJobSpecYaml(spec), "test spec");
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return *parsed;
}

bool AllZero(const Arena& arena) {
  for (int64_t i = 0; i < arena.size(); ++i)
    if (arena.data()[i] != 0.0f) return false;
  return true;
}

void ExpectPlausibleRate(const ComputeRate& rate, int64_t batch_size) {
  EXPECT_TRUE(std::isfinite(rate.tokens_per_s));
  EXPECT_GT(rate.tokens_per_s, 0);
  EXPECT_GE(rate.steps, 1);
  EXPECT_EQ(rate.tokens, rate.steps * batch_size * kSeqLen) << "every pass is one batch of the job's shape";
  EXPECT_GT(rate.seconds, 0);
}

TEST(CalibrationTest, MeasuresARateWithoutTouchingTheWeights) {
  testutil::DaemonWorld world(kSeqLen);
  std::unique_ptr<LlamaModel> model = world.Replica();
  const uint64_t before = WeightsHash(model->params());
  CalibrationOptions options;
  auto rate = MeasureComputeRate(*model, nullptr, world.rows, 4, options);
  ASSERT_TRUE(rate.ok()) << rate.status().ToString();
  ExpectPlausibleRate(*rate, 4);
  EXPECT_LE(rate->steps, options.max_steps);
  EXPECT_EQ(WeightsHash(model->params()), before) << "calibration must not change the weights";
  EXPECT_TRUE(AllZero(model->grads())) << "no gradient is left behind";
}

TEST(CalibrationTest, StepBoundsAreHonoured) {
  testutil::DaemonWorld world(kSeqLen);
  std::unique_ptr<LlamaModel> model = world.Replica();
  CalibrationOptions options;
  options.max_seconds = 3600;  // the step bound decides
  options.max_steps = 3;
  auto rate = MeasureComputeRate(*model, nullptr, world.rows, 2, options);
  ASSERT_TRUE(rate.ok()) << rate.status().ToString();
  EXPECT_EQ(rate->steps, 3);
  options.max_seconds = 1e-12;  // the warm-up alone exhausts the budget: it is the one measured pass
  options.max_steps = 100;
  rate = MeasureComputeRate(*model, nullptr, world.rows, 2, options);
  ASSERT_TRUE(rate.ok()) << rate.status().ToString();
  EXPECT_EQ(rate->steps, 1);
  ExpectPlausibleRate(*rate, 2);
}

TEST(CalibrationTest, RefusesWhatCannotBeMeasured) {
  testutil::DaemonWorld world(kSeqLen);
  std::unique_ptr<LlamaModel> model = world.Replica();
  CalibrationOptions options;
  EXPECT_EQ(MeasureComputeRate(*model, nullptr, {}, 4, options).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureComputeRate(*model, nullptr, world.rows, 0, options).status().code(), StatusCode::kInvalidArgument);
  options.max_steps = 0;
  EXPECT_EQ(MeasureComputeRate(*model, nullptr, world.rows, 4, options).status().code(), StatusCode::kInvalidArgument);
}

TEST(CalibrationTest, LoraAdaptersAndTheFrozenBaseAreUnchanged) {
  testutil::DaemonWorld world(kSeqLen);
  std::unique_ptr<LlamaModel> model = world.Replica();
  LoraOptions lora;
  lora.rank = 4;
  auto adapters = LoraAdapters::Create(world.config, lora);
  ASSERT_TRUE(adapters.ok()) << adapters.status().ToString();
  const uint64_t base_before = WeightsHash(model->params());
  const uint64_t adapters_before = WeightsHash((*adapters)->params());
  auto rate = MeasureComputeRate(*model, adapters->get(), world.rows, 3, CalibrationOptions{});
  ASSERT_TRUE(rate.ok()) << rate.status().ToString();
  ExpectPlausibleRate(*rate, 3);
  EXPECT_EQ(WeightsHash(model->params()), base_before);
  EXPECT_EQ(WeightsHash((*adapters)->params()), adapters_before);
  EXPECT_TRUE(AllZero((*adapters)->grads()));
  EXPECT_EQ(model->linear_adapter(), nullptr) << "the adapters are detached again";
  EXPECT_TRUE(model->base_trainable());
}

// On a job's replica: the hash is unchanged and the next round uploads the same bytes as a replica
// that was never calibrated.
TEST(CalibrationTest, ReplicaCalibrationChangesNeitherHashNorTheNextRound) {
  testutil::DaemonWorld world(kSeqLen);
  for (const std::string mode : {"ferret", "lora"}) {
    SCOPED_TRACE(mode);
    const JobSpec spec = Spec(world, mode);
    auto calibrated = JobReplica::Create("job-1", spec, world.data_path);
    auto untouched = JobReplica::Create("job-1", spec, world.data_path);
    ASSERT_TRUE(calibrated.ok()) << calibrated.status().ToString();
    ASSERT_TRUE(untouched.ok()) << untouched.status().ToString();
    const std::string before = (*calibrated)->weights_hash_hex();
    const uint64_t state_before = WeightsHash((*calibrated)->trainable_state());
    auto rate = (*calibrated)->MeasureCompute(CalibrationOptions{});
    ASSERT_TRUE(rate.ok()) << rate.status().ToString();
    ExpectPlausibleRate(*rate, spec.batch_size);
    EXPECT_EQ((*calibrated)->weights_hash_hex(), before);
    EXPECT_EQ(WeightsHash((*calibrated)->trainable_state()), state_before);
    auto after_calibration = (*calibrated)->RunRound(1, "w1");
    auto without = (*untouched)->RunRound(1, "w1");
    ASSERT_TRUE(after_calibration.ok()) << after_calibration.status().ToString();
    ASSERT_TRUE(without.ok()) << without.status().ToString();
    EXPECT_EQ(after_calibration->payload, without->payload);
    EXPECT_DOUBLE_EQ(after_calibration->train_loss, without->train_loss);
  }
}

}  // namespace
}  // namespace tributary
