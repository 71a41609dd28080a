#include "engine/train/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/parallel.h"

namespace tributary {
namespace {

std::shared_ptr<TensorTable> SmallTable() {
  auto table = std::make_shared<TensorTable>();
  table->Add("w", {3, 4});  // 12 elements, 4 padding
  table->Add("b", {5});     // 5 elements, 11 padding
  table->Add("empty", {0});
  table->Add("u", {7, 3});  // 21 elements, 11 padding
  return table;
}

// Fills every tensor element with values from `rng` in [lo, hi] with a random sign when `signed_values`.
void FillRandom(Arena& arena, std::mt19937_64& rng, double lo, double hi, bool signed_values) {
  std::uniform_real_distribution<double> mag(lo, hi);
  std::bernoulli_distribution neg(0.5);
  for (size_t t = 0; t < arena.table().size(); ++t) {
    for (float& x : arena.span(t)) {
      double v = mag(rng);
      x = static_cast<float>(signed_values && neg(rng) ? -v : v);
    }
  }
}

std::vector<double> TensorValues(const Arena& arena) {
  std::vector<double> out;
  for (const auto& e : arena.table().entries()) {
    for (int64_t i = 0; i < e.numel; ++i) out.push_back(arena.data()[e.offset + i]);
  }
  return out;
}

// Independent scalar double-precision reference of torch.optim.SGD / torch.optim.AdamW.
struct ReferenceOptimizer {
  OptimizerOptions o;
  std::vector<double> state1, state2;  // SGD: momentum buffer; AdamW: m, v
  int64_t t = 0;

  void Step(std::vector<double>& p, const std::vector<double>& g, double lr) {
    if (state1.empty()) {
      state1.assign(p.size(), 0.0);
      state2.assign(p.size(), 0.0);
    }
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      if (o.type == "sgd") {
        double d_p = g[i] + o.weight_decay * p[i];
        if (o.momentum != 0) {
          state1[i] = t == 1 ? d_p : o.momentum * state1[i] + (1 - o.dampening) * d_p;
          d_p = o.nesterov ? d_p + o.momentum * state1[i] : state1[i];
        }
        p[i] -= lr * d_p;
      } else {
        p[i] *= 1 - lr * o.weight_decay;
        state1[i] = o.beta1 * state1[i] + (1 - o.beta1) * g[i];
        state2[i] = o.beta2 * state2[i] + (1 - o.beta2) * g[i] * g[i];
        const double bias_c1 = 1 - std::pow(o.beta1, static_cast<double>(t));
        const double bias_c2 = 1 - std::pow(o.beta2, static_cast<double>(t));
        const double denom = std::sqrt(state2[i]) / std::sqrt(bias_c2) + o.eps;
        p[i] -= lr / bias_c1 * state1[i] / denom;
      }
    }
  }
};

void ExpectRelativelyNear(const std::vector<double>& got, const std::vector<double>& want, double rel,
                          const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], rel * std::max(1.0, std::abs(want[i]))) << what << " element " << i;
  }
}

void RunAgainstReference(const OptimizerOptions& options, int steps) {
  auto table = SmallTable();
  Arena params(table), grads(table);
  std::mt19937_64 rng(7);
  FillRandom(params, rng, 0.5, 2.0, true);
  auto opt = CreateOptimizer(options, table);
  ASSERT_TRUE(opt.ok()) << opt.status().ToString();
  ReferenceOptimizer ref{options, {}, {}, 0};
  std::vector<double> ref_params = TensorValues(params);
  for (int s = 0; s < steps; ++s) {
    FillRandom(grads, rng, 0.0, 1.0, true);
    const double lr = 0.01 * (1 + s % 3);
    (*opt)->Step(params, grads, lr);
    ref.Step(ref_params, TensorValues(grads), lr);
    ExpectRelativelyNear(TensorValues(params), ref_params, 2e-6, options.type + " step " + std::to_string(s));
  }
  EXPECT_EQ((*opt)->steps(), steps);
}

TEST(OptimizerTest, SgdPlainMatchesReference) {
  OptimizerOptions o;
  o.type = "sgd";
  RunAgainstReference(o, 4);
}

TEST(OptimizerTest, SgdMomentumDampeningWeightDecayMatchesReference) {
  OptimizerOptions o;
  o.type = "sgd";
  o.momentum = 0.8;
  o.dampening = 0.3;
  o.weight_decay = 0.05;
  RunAgainstReference(o, 6);
}

TEST(OptimizerTest, SgdNesterovMatchesReference) {
  OptimizerOptions o;
  o.type = "sgd";
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 0.01;
  RunAgainstReference(o, 6);
}

TEST(OptimizerTest, AdamWMatchesReference) {
  OptimizerOptions o;
  o.weight_decay = 0.1;
  o.beta1 = 0.85;
  o.beta2 = 0.99;
  o.eps = 1e-6;
  RunAgainstReference(o, 6);
}

// Fixture written by tests/oracle/make_optimizer_oracle.py from torch.optim in float32.
void RunAgainstTorchOracle(const std::string& type) {
  std::ifstream in("tests/oracle/fixtures/optimizer_oracle.json");
  ASSERT_TRUE(in.good()) << "run from the repository root";
  const nlohmann::json fixture = nlohmann::json::parse(in);
  auto table = std::make_shared<TensorTable>();
  std::vector<std::string> names;
  for (const auto& t : fixture["tensors"]) {
    names.push_back(t["name"].get<std::string>());
    table->Add(names.back(), t["shape"].get<std::vector<int64_t>>());
  }
  auto load = [&](Arena& arena, const nlohmann::json& values) {
    for (const auto& name : names) {
      const auto v = values[name].get<std::vector<double>>();
      float* dst = arena.tensor(name);
      ASSERT_EQ(static_cast<int64_t>(v.size()), table->Find(name)->numel);
      for (size_t i = 0; i < v.size(); ++i) dst[i] = static_cast<float>(v[i]);
    }
  };
  const nlohmann::json& spec = fixture[type];
  OptimizerOptions o;
  o.type = type;
  o.weight_decay = spec["options"]["weight_decay"].get<double>();
  if (type == "adamw") {
    o.beta1 = spec["options"]["beta1"].get<double>();
    o.beta2 = spec["options"]["beta2"].get<double>();
    o.eps = spec["options"]["eps"].get<double>();
  } else {
    o.momentum = spec["options"]["momentum"].get<double>();
    o.dampening = spec["options"]["dampening"].get<double>();
    o.nesterov = spec["options"]["nesterov"].get<bool>();
  }
  auto opt = CreateOptimizer(o, table);
  ASSERT_TRUE(opt.ok()) << opt.status().ToString();
  Arena params(table), grads(table), expected(table);
  load(params, fixture["initial"]);
  const auto lrs = fixture["lrs"].get<std::vector<double>>();
  ASSERT_EQ(lrs.size(), 5u);
  for (size_t s = 0; s < lrs.size(); ++s) {
    load(grads, fixture["grads"][s]);
    (*opt)->Step(params, grads, lrs[s]);
    load(expected, spec["params_after_step"][s]);
    const auto got = TensorValues(params), want = TensorValues(expected);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-6 * std::abs(want[i])) << type << " step " << s << " element " << i;
    }
  }
}

TEST(OptimizerTest, AdamWMatchesTorchOracle) {
  RunAgainstTorchOracle("adamw");
}
TEST(OptimizerTest, SgdNesterovMatchesTorchOracle) {
  RunAgainstTorchOracle("sgd");
}

TEST(OptimizerTest, PaddingIsNeverTouched) {
  auto table = SmallTable();
  Arena params(table), grads(table);
  std::mt19937_64 rng(3);
  FillRandom(params, rng, 0.5, 2.0, true);
  FillRandom(grads, rng, 0.0, 1.0, true);
  // Poison the gradient padding: a kernel that read it would move the parameter padding.
  std::vector<bool> is_tensor(static_cast<size_t>(table->total_elems()), false);
  for (const auto& e : table->entries()) {
    for (int64_t i = 0; i < e.numel; ++i) is_tensor[static_cast<size_t>(e.offset + i)] = true;
  }
  for (int64_t i = 0; i < table->total_elems(); ++i) {
    if (!is_tensor[static_cast<size_t>(i)]) grads.data()[i] = 1000.0f;
  }
  for (std::string type : {"adamw", "sgd"}) {
    OptimizerOptions o;
    o.type = type;
    o.momentum = 0.9;
    o.weight_decay = 0.1;
    auto opt = CreateOptimizer(o, table);
    ASSERT_TRUE(opt.ok());
    for (int s = 0; s < 3; ++s) (*opt)->Step(params, grads, 0.1);
    for (int64_t i = 0; i < table->total_elems(); ++i) {
      if (!is_tensor[static_cast<size_t>(i)]) {
        ASSERT_EQ(params.data()[i], 0.0f) << type << " padding element " << i;
        for (int k = 0; k < (*opt)->num_states(); ++k) ASSERT_EQ((*opt)->state(k)->data()[i], 0.0f);
      }
    }
  }
  // The norm ignores padding too.
  double sum_sq = 0;
  for (double g : TensorValues(grads)) sum_sq += g * g;
  EXPECT_DOUBLE_EQ(ClipGradNorm(grads, 0.0), std::sqrt(sum_sq));
}

TEST(OptimizerTest, ResultsDoNotDependOnThreadCount) {
  auto table = std::make_shared<TensorTable>();
  table->Add("a", {301, 517});
  table->Add("b", {3});
  table->Add("c", {1000, 77});
  std::vector<std::vector<float>> results;
  std::vector<double> norms;
  for (int threads : {1, 3, 8}) {
    SetNumThreads(threads);
    Arena params(table), grads(table);
    std::mt19937_64 rng(11);
    FillRandom(params, rng, 0.5, 2.0, true);
    FillRandom(grads, rng, 0.0, 1.0, true);
    OptimizerOptions o;
    o.weight_decay = 0.01;
    auto opt = CreateOptimizer(o, table);
    ASSERT_TRUE(opt.ok());
    norms.push_back(ClipGradNorm(grads, 1.0));
    (*opt)->Step(params, grads, 1e-3);
    (*opt)->Step(params, grads, 1e-3);
    results.emplace_back(params.data(), params.data() + params.size());
  }
  SetNumThreads(0);
  for (size_t k = 1; k < results.size(); ++k) {
    EXPECT_EQ(norms[k], norms[0]);  // bitwise
    EXPECT_TRUE(results[k] == results[0]) << "thread count changed the parameters";
  }
}

TEST(OptimizerTest, ResetDropsStateAndRestoreStepsResumes) {
  auto table = SmallTable();
  OptimizerOptions o;
  o.weight_decay = 0.05;
  Arena start(table), grads(table);
  std::mt19937_64 rng(5);
  FillRandom(start, rng, 0.5, 2.0, true);
  FillRandom(grads, rng, 0.0, 1.0, true);

  auto fresh = CreateOptimizer(o, table);
  ASSERT_TRUE(fresh.ok());
  Arena p_fresh(table);
  p_fresh.CopyFrom(start);
  (*fresh)->Step(p_fresh, grads, 0.01);

  auto used = CreateOptimizer(o, table);
  ASSERT_TRUE(used.ok());
  Arena p_used(table);
  p_used.CopyFrom(start);
  (*used)->Step(p_used, grads, 0.01);
  (*used)->Step(p_used, grads, 0.01);
  (*used)->Reset();
  EXPECT_EQ((*used)->steps(), 0);
  p_used.CopyFrom(start);
  (*used)->Step(p_used, grads, 0.01);
  EXPECT_EQ(TensorValues(p_used), TensorValues(p_fresh));

  // Checkpoint/resume: copying m, v and the step count into a new optimizer continues identically.
  auto resumed = CreateOptimizer(o, table);
  ASSERT_TRUE(resumed.ok());
  ASSERT_EQ((*resumed)->num_states(), 2);
  for (int k = 0; k < 2; ++k) (*resumed)->state(k)->CopyFrom(*(*used)->state(k));
  (*resumed)->RestoreSteps((*used)->steps());
  Arena p_resumed(table);
  p_resumed.CopyFrom(p_used);
  (*used)->Step(p_used, grads, 0.02);
  (*resumed)->Step(p_resumed, grads, 0.02);
  EXPECT_EQ(TensorValues(p_resumed), TensorValues(p_used));
  EXPECT_EQ((*resumed)->state(2), nullptr);
}

TEST(OptimizerTest, SgdStateCountFollowsMomentum) {
  auto table = SmallTable();
  OptimizerOptions o;
  o.type = "sgd";
  auto plain = CreateOptimizer(o, table);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->num_states(), 0);
  EXPECT_EQ((*plain)->state(0), nullptr);
  o.momentum = 0.5;
  auto with_momentum = CreateOptimizer(o, table);
  ASSERT_TRUE(with_momentum.ok());
  EXPECT_EQ((*with_momentum)->num_states(), 1);
  EXPECT_NE((*with_momentum)->state(0), nullptr);
}

TEST(OptimizerTest, InvalidOptionsNameTheField) {
  auto table = SmallTable();
  struct Case {
    std::string field;
    std::function<void(OptimizerOptions&)> mutate;
  };
  const std::vector<Case> cases = {
      {"optimizer.type", [](OptimizerOptions& o) { o.type = "lion"; }},
      {"optimizer.weight_decay", [](OptimizerOptions& o) { o.weight_decay = -0.1; }},
      {"optimizer.beta1", [](OptimizerOptions& o) { o.beta1 = 1.0; }},
      {"optimizer.beta2", [](OptimizerOptions& o) { o.beta2 = -0.5; }},
      {"optimizer.eps", [](OptimizerOptions& o) { o.eps = NAN; }},
      {"optimizer.momentum",
       [](OptimizerOptions& o) {
         o.type = "sgd";
         o.momentum = -1;
       }},
      {"optimizer.dampening",
       [](OptimizerOptions& o) {
         o.type = "sgd";
         o.dampening = 2;
       }},
      {"optimizer.nesterov",
       [](OptimizerOptions& o) {
         o.type = "sgd";
         o.nesterov = true;
       }},
      {"optimizer.nesterov",
       [](OptimizerOptions& o) {
         o.type = "sgd";
         o.nesterov = true;
         o.momentum = 0.9;
         o.dampening = 0.1;
       }},
  };
  for (const auto& c : cases) {
    OptimizerOptions o;
    c.mutate(o);
    auto opt = CreateOptimizer(o, table);
    ASSERT_FALSE(opt.ok()) << c.field;
    EXPECT_TRUE(opt.status().IsInvalidArgument());
    EXPECT_EQ(opt.status().message().rfind(c.field + ":", 0), 0u) << opt.status().message();
    EXPECT_EQ(opt.status().message().find('\n'), std::string::npos);
  }
}

TEST(ClipGradNormTest, ScalesOnlyAboveMaxNorm) {
  auto table = SmallTable();
  Arena grads(table);
  // 3-4-12-84 triangle: norm of {3, 4, 12, 84} is sqrt(9 + 16 + 144 + 7056) = sqrt(7225) = 85.
  grads.tensor("w")[0] = 3;
  grads.tensor("b")[4] = 4;
  grads.tensor("u")[20] = 12;
  grads.tensor("u")[0] = -84;
  Arena copy(table);
  copy.CopyFrom(grads);

  EXPECT_DOUBLE_EQ(ClipGradNorm(grads, 0.0), 85.0);    // measure only
  EXPECT_DOUBLE_EQ(ClipGradNorm(grads, 100.0), 85.0);  // below max: untouched
  EXPECT_EQ(TensorValues(grads), TensorValues(copy));

  EXPECT_DOUBLE_EQ(ClipGradNorm(grads, 17.0), 85.0);
  const double coef = 17.0 / (85.0 + 1e-6);  // torch: max_norm / (norm + 1e-6)
  EXPECT_FLOAT_EQ(grads.tensor("w")[0], static_cast<float>(3 * coef));
  EXPECT_FLOAT_EQ(grads.tensor("u")[0], static_cast<float>(-84 * coef));
  EXPECT_NEAR(ClipGradNorm(grads, 0.0), 17.0, 1e-5);
}

TEST(ClipGradNormTest, NonFiniteNormLeavesGradsUnchanged) {
  auto table = SmallTable();
  Arena grads(table);
  grads.tensor("w")[1] = 2.0f;
  grads.tensor("b")[0] = INFINITY;
  EXPECT_TRUE(std::isinf(ClipGradNorm(grads, 1.0)));
  EXPECT_EQ(grads.tensor("w")[1], 2.0f);
}

TEST(GradAccumulatorTest, MeanOfMicroBatches) {
  auto table = SmallTable();
  GradAccumulator acc(table);
  Arena micro(table), mean(table);
  for (int k = 1; k <= 4; ++k) {
    for (size_t t = 0; t < table->size(); ++t) {
      for (float& x : micro.span(t)) x = static_cast<float>(k);
    }
    acc.Add(micro);
  }
  EXPECT_EQ(acc.count(), 4);
  acc.TakeMean(mean);
  EXPECT_EQ(acc.count(), 0);
  for (double v : TensorValues(mean)) EXPECT_EQ(v, 2.5);  // (1 + 2 + 3 + 4) / 4
  // The window restarts from zero.
  acc.Add(micro);
  acc.TakeMean(mean);
  for (double v : TensorValues(mean)) EXPECT_EQ(v, 4.0);
  ScaleArena(mean, 0.5);
  for (double v : TensorValues(mean)) EXPECT_EQ(v, 2.0);
}

TEST(LrScheduleTest, ConstantWithAndWithoutWarmup) {
  LrScheduleOptions o;
  o.lr = 3e-4;
  ASSERT_TRUE(ValidateLrSchedule(o).ok());
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 0), 3e-4);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 12345), 3e-4);
  o.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 0), 0.0);  // HF: step / warmup, so step 0 has rate 0
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 1), 0.75e-4);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 3), 2.25e-4);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 4), 3e-4);
}

TEST(LrScheduleTest, CosineEndpointsAndMidpoint) {
  LrScheduleOptions o;
  o.type = "cosine";
  o.lr = 1e-3;
  o.warmup_steps = 10;
  o.total_steps = 110;
  ASSERT_TRUE(ValidateLrSchedule(o).ok());
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 5), 0.5e-3);  // warmup 5/10
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 10), 1e-3);   // peak
  // progress 50/100 = 0.5: 0.5 * (1 + cos(pi/2)) = 0.5
  EXPECT_NEAR(LearningRateAt(o, 60), 0.5e-3, 1e-15);
  // progress 25/100: 0.5 * (1 + cos(pi/4)) = 0.5 + sqrt(2)/4
  EXPECT_NEAR(LearningRateAt(o, 35), 1e-3 * (0.5 + std::sqrt(2.0) / 4), 1e-15);
  EXPECT_NEAR(LearningRateAt(o, 110), 0.0, 1e-18);
  o.min_lr_ratio = 0.1;
  EXPECT_NEAR(LearningRateAt(o, 110), 1e-4, 1e-15);
  EXPECT_NEAR(LearningRateAt(o, 500), 1e-4, 1e-15);  // stays at the floor
  // progress 0.5 with floor 0.1: 0.1 + 0.9 * 0.5 = 0.55
  EXPECT_NEAR(LearningRateAt(o, 60), 0.55e-3, 1e-15);
}

TEST(LrScheduleTest, LinearDecay) {
  LrScheduleOptions o;
  o.type = "linear";
  o.lr = 2.0;
  o.warmup_steps = 2;
  o.total_steps = 10;
  ASSERT_TRUE(ValidateLrSchedule(o).ok());
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 1), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 2), 2.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 6), 1.0);  // HF: (10 - 6) / (10 - 2) = 0.5
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 8), 0.5);  // 2 / 8
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 10), 0.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 11), 0.0);
  o.min_lr_ratio = 0.5;
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 6), 1.5);  // 2 * (0.5 + 0.5 * 0.5)
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 10), 1.0);
}

TEST(LrScheduleTest, InvalidOptionsNameTheField) {
  struct Case {
    std::string field;
    std::function<void(LrScheduleOptions&)> mutate;
  };
  const std::vector<Case> cases = {
      {"lr_schedule.type", [](LrScheduleOptions& o) { o.type = "step"; }},
      {"lr_schedule.lr", [](LrScheduleOptions& o) { o.lr = 0; }},
      {"lr_schedule.lr", [](LrScheduleOptions& o) { o.lr = INFINITY; }},
      {"lr_schedule.warmup_steps", [](LrScheduleOptions& o) { o.warmup_steps = -1; }},
      {"lr_schedule.total_steps", [](LrScheduleOptions& o) { o.type = "cosine"; }},
      {"lr_schedule.total_steps", [](LrScheduleOptions& o) { o.total_steps = -5; }},
      {"lr_schedule.warmup_steps",
       [](LrScheduleOptions& o) {
         o.type = "linear";
         o.total_steps = 10;
         o.warmup_steps = 11;
       }},
      {"lr_schedule.min_lr_ratio", [](LrScheduleOptions& o) { o.min_lr_ratio = 1.5; }},
  };
  for (const auto& c : cases) {
    LrScheduleOptions o;
    c.mutate(o);
    Status s = ValidateLrSchedule(o);
    ASSERT_FALSE(s.ok()) << c.field;
    EXPECT_TRUE(s.IsInvalidArgument());
    EXPECT_EQ(s.message().rfind(c.field + ":", 0), 0u) << s.message();
  }
}

}  // namespace
}  // namespace tributary
