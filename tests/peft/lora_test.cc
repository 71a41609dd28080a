// LoRA adapters on a tiny LLaMA through LlamaModel's LinearAdapter hook: finite-difference gradient
// checks (adapter parameters and the input gradient, with and without dropout), B = 0 equals the base,
// adapter-only training, merge / unmerge equivalence and the HF PEFT directory round trip and errors.
#include "peft/lora.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/io/model_dir.h"
#include "engine/io/safetensors.h"
#include "engine/model/llama_model.h"
#include "engine/train/optimizer.h"
#include "tests/common/tiny_llama.h"
#include "tests/engine/fake_device.h"

namespace tributary {
namespace {

const std::vector<std::string> kAllModules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};

LlamaConfig TinyConfig() {
  return testutil::MicroLlama();
}

std::unique_ptr<LlamaModel> MakeModel(const LlamaConfig& c, uint64_t seed, float stddev) {
  auto model = LlamaModel::Create(c);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  (*model)->InitRandom(seed, stddev);
  return std::move(model).value();
}

std::unique_ptr<LoraAdapters> MakeAdapters(const LlamaConfig& c, LoraOptions o) {
  auto adapters = LoraAdapters::Create(c, o);
  EXPECT_TRUE(adapters.ok()) << adapters.status().ToString();
  return std::move(adapters).value();
}

// Gives B non-zero values so every adapter gradient and term is generic.
void RandomizeB(LoraAdapters& adapters, uint64_t seed, float scale) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> dist(-scale, scale);
  for (const LoraAdapters::Module& m : adapters.modules())
    for (float& v : adapters.params().span(m.b_index)) v = dist(rng);
}

std::vector<int32_t> RandomIds(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = dist(rng);
  return ids;
}

std::vector<float> LogitsOf(LlamaModel& model, const std::vector<int32_t>& tokens, int64_t B, int64_t T) {
  EXPECT_TRUE(model.ForwardLogits(tokens.data(), B, T).ok());
  const float* l = model.Logits();
  return std::vector<float>(l, l + B * T * model.config().vocab_size);
}

std::string TempDir(const std::string& name) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("tributary_lora_" + name + "_" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(LoraOptionsTest, ValidateNamesTheField) {
  LoraOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.rank = 0;
  EXPECT_NE(o.Validate().message().find("lora.rank"), std::string::npos);
  o = LoraOptions();
  o.dropout = 1.0;
  EXPECT_NE(o.Validate().message().find("lora.dropout"), std::string::npos);
  o = LoraOptions();
  o.alpha = 0.0;
  EXPECT_NE(o.Validate().message().find("lora.alpha"), std::string::npos);
  o = LoraOptions();
  o.target_modules = {"q_proj", "lm_head"};
  EXPECT_NE(o.Validate().message().find("unknown module 'lm_head'"), std::string::npos);
  o.target_modules = {"q_proj", "q_proj"};
  EXPECT_NE(o.Validate().message().find("listed twice"), std::string::npos);
  o = LoraOptions();
  o.init = "orthogonal";
  EXPECT_NE(o.Validate().message().find("lora.init"), std::string::npos);
}

TEST(LoraAdaptersTest, TableUsesPeftNamesAndShapes) {
  const LlamaConfig c = TinyConfig();
  LoraOptions o;
  o.rank = 3;
  o.target_modules = {"down_proj", "k_proj"};
  auto adapters = MakeAdapters(c, o);
  const TensorTable& t = adapters->params().table();
  ASSERT_EQ(t.size(), 8u);  // 2 layers x 2 modules x (A, B)
  EXPECT_EQ(t[0].name, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{3, 16}));
  EXPECT_EQ(t[1].name, "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight");
  EXPECT_EQ(t[1].shape, (std::vector<int64_t>{8, 3}));  // 2 kv heads x head_dim 4
  EXPECT_EQ(t[2].name, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
  EXPECT_EQ(t[2].shape, (std::vector<int64_t>{3, 24}));
  EXPECT_EQ(t[3].shape, (std::vector<int64_t>{16, 3}));
  EXPECT_EQ(t[7].name, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
  EXPECT_FLOAT_EQ(adapters->scaling(), 16.0f / 3.0f);
  EXPECT_EQ(adapters->FindModule(ProjKind::kQ, 0), -1);
  EXPECT_EQ(adapters->FindModule(ProjKind::kLmHead, -1), -1);
  EXPECT_EQ(adapters->FindModule(ProjKind::kDown, 1), 3);
  // PEFT init: A ~ U(-1/sqrt(in), 1/sqrt(in)) and not all zero, B = 0.
  const float* a = adapters->params().tensor(size_t{2});
  float max_abs = 0.0f;
  for (int64_t i = 0; i < 3 * 24; ++i) max_abs = std::max(max_abs, std::abs(a[i]));
  EXPECT_GT(max_abs, 0.05f);
  EXPECT_LE(max_abs, 1.0f / std::sqrt(24.0f));
  for (float v : adapters->params().span(3)) EXPECT_EQ(v, 0.0f);
}

TEST(LoraAdaptersTest, ZeroBLeavesTheModelExactlyEqualToTheBase) {
  const LlamaConfig c = TinyConfig();
  auto model = MakeModel(c, 3, 0.2f);
  LoraOptions o;
  o.target_modules = kAllModules;
  auto adapters = MakeAdapters(c, o);
  const std::vector<int32_t> tokens = RandomIds(2 * 5, c.vocab_size, 4);
  const std::vector<float> base = LogitsOf(*model, tokens, 2, 5);
  adapters->Attach(*model);
  const std::vector<float> adapted = LogitsOf(*model, tokens, 2, 5);
  ASSERT_EQ(base.size(), adapted.size());
  for (size_t i = 0; i < base.size(); ++i) ASSERT_EQ(base[i], adapted[i]) << i;
  // And a non-zero B changes the output (the hook is live).
  RandomizeB(*adapters, 5, 0.3f);
  const std::vector<float> changed = LogitsOf(*model, tokens, 2, 5);
  double diff = 0.0;
  for (size_t i = 0; i < base.size(); ++i) diff += std::abs(changed[i] - base[i]);
  EXPECT_GT(diff, 1e-2);
}

struct FdCase {
  double dropout;
  std::vector<std::string> targets;
  const char* label;
};

void PrintTo(const FdCase& c, std::ostream* os) {
  *os << c.label;
}

class LoraGradientTest : public ::testing::TestWithParam<FdCase> {};

// Central differences of the loss against the analytic gradients of sampled A and B entries and, for
// the input-gradient path, of the embedding and norm weights (upstream of every adapted projection).
TEST_P(LoraGradientTest, GradientsMatchFiniteDifferences) {
  const LlamaConfig c = TinyConfig();
  auto model = MakeModel(c, 11, 0.25f);
  LoraOptions o;
  o.rank = 3;
  o.alpha = 6.0;
  o.dropout = GetParam().dropout;
  o.target_modules = GetParam().targets;
  o.seed = 9;
  auto adapters = MakeAdapters(c, o);
  RandomizeB(*adapters, 12, 0.4f);
  adapters->Attach(*model);
  adapters->SetTraining(true);
  adapters->SetDropoutStep(7);

  const int64_t B = 2, T = 6;
  const std::vector<int32_t> tokens = RandomIds(B * T, c.vocab_size, 1), targets = RandomIds(B * T, c.vocab_size, 2);
  auto loss_of = [&]() {
    float loss = 0.0f;
    EXPECT_TRUE(model->Forward(tokens.data(), nullptr, targets.data(), B, T, &loss).ok());
    return static_cast<double>(loss);
  };
  loss_of();
  model->ZeroGrad();
  adapters->ZeroGrad();
  ASSERT_TRUE(model->Backward().ok());

  // Frozen base: no projection weight received a gradient.
  for (size_t i = 0; i < model->grads().table().size(); ++i) {
    const std::string& name = model->grads().table()[i].name;
    if (name.find("_proj.weight") == std::string::npos && name != "lm_head.weight") continue;
    for (float g : model->grads().span(i)) ASSERT_EQ(g, 0.0f) << name;
  }

  std::mt19937 rng(5);
  double diff2 = 0.0, ref2 = 0.0;
  int checked = 0;
  auto check = [&](float* w, double analytic, const std::string& what) {
    const float saved = *w, eps = 1e-2f;
    *w = saved + eps;
    const double up = loss_of();
    *w = saved - eps;
    const double down = loss_of();
    *w = saved;
    const double numeric = (up - down) / (2.0 * eps);
    diff2 += (numeric - analytic) * (numeric - analytic);
    ref2 += numeric * numeric;
    EXPECT_NEAR(analytic, numeric, 3e-3 + 0.05 * std::abs(numeric)) << what;
    ++checked;
  };
  Arena& ap = adapters->params();
  for (size_t i = 0; i < ap.table().size(); ++i) {
    const TensorEntry& e = ap.table()[i];
    std::uniform_int_distribution<int64_t> pick(0, e.numel - 1);
    for (int s = 0; s < 2; ++s) {
      const int64_t j = pick(rng);
      check(ap.tensor(i) + j, adapters->grads().tensor(i)[j], e.name + "[" + std::to_string(j) + "]");
    }
  }
  // Input-gradient path: embedding rows of the used tokens and norm weights sit upstream of the adapters.
  Arena& mp = model->params();
  for (size_t i = 0; i < mp.table().size(); ++i) {
    const TensorEntry& e = mp.table()[i];
    const bool embed = e.name == "model.embed_tokens.weight";
    if (!embed && e.name.find("norm.weight") == std::string::npos) continue;
    for (int s = 0; s < 3; ++s) {
      int64_t j = std::uniform_int_distribution<int64_t>(0, e.numel - 1)(rng);
      if (embed) j = tokens[static_cast<size_t>(s * 3)] * c.hidden_size + j % c.hidden_size;
      check(mp.tensor(i) + j, model->grads().tensor(i)[j], e.name + "[" + std::to_string(j) + "]");
    }
  }
  EXPECT_GT(checked, 20);
  ASSERT_GT(ref2, 0.0);
  EXPECT_LT(std::sqrt(diff2 / ref2), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Variants, LoraGradientTest,
                         ::testing::Values(FdCase{0.0, kAllModules, "AllModules"},
                                           FdCase{0.3, kAllModules, "AllModulesDropout"},
                                           FdCase{0.0, {"v_proj", "down_proj"}, "ValueAndDown"}),
                         [](const ::testing::TestParamInfo<FdCase>& info) { return std::string(info.param.label); });

// The hook alone on one linear: dx (including the aliased dx == x case the MLP down projection uses)
// against finite differences of sum(y * g).
TEST(LoraAdaptersTest, InputGradientOfOneLinearMatchesFiniteDifferences) {
  const LlamaConfig c = TinyConfig();
  LoraOptions o;
  o.rank = 2;
  o.target_modules = {"down_proj"};
  auto adapters = MakeAdapters(c, o);
  RandomizeB(*adapters, 3, 0.5f);
  Linear lin;
  lin.kind = ProjKind::kDown;
  lin.layer = 1;
  lin.in = c.intermediate_size;
  lin.out = c.hidden_size;
  const int64_t rows = 3;
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * lin.in)), g(static_cast<size_t>(rows * lin.out));
  for (float& v : x) v = normal(rng);
  for (float& v : g) v = normal(rng);
  auto objective = [&](const std::vector<float>& xs) {
    std::vector<float> y(g.size(), 0.0f);
    adapters->Forward(lin, xs.data(), rows, y.data());
    double s = 0.0;
    for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * g[i];
    return s;
  };
  std::vector<float> dx = x;  // aliasing: the input buffer receives the gradient (base part 0 here)
  adapters->BackwardParams(lin, dx.data(), g.data(), rows);
  std::fill(dx.begin(), dx.end(), 0.0f);
  adapters->BackwardInput(lin, rows, dx.data());
  for (size_t i = 0; i < x.size(); i += 7) {
    std::vector<float> xp = x, xm = x;
    xp[i] += 1e-2f;
    xm[i] -= 1e-2f;
    const double numeric = (objective(xp) - objective(xm)) / 2e-2;
    EXPECT_NEAR(dx[i], numeric, 1e-3 + 1e-3 * std::abs(numeric)) << i;
  }
}

TEST(LoraAdaptersTest, TrainingOnlyAdaptersLowersLossAndKeepsTheBaseBitIdentical) {
  const LlamaConfig c = TinyConfig();
  auto model = MakeModel(c, 21, 0.1f);
  LoraOptions o;
  o.rank = 4;
  o.target_modules = {"q_proj", "v_proj", "up_proj", "down_proj"};
  auto adapters = MakeAdapters(c, o);
  adapters->Attach(*model);
  adapters->SetTraining(true);
  Arena base_before(model->params().table_ptr());
  base_before.CopyFrom(model->params());

  // Tiny task: predict the next token of a fixed repeating sequence.
  const int64_t B = 2, T = 8;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    tokens[i] = static_cast<int32_t>((3 * i) % c.vocab_size);
    targets[i] = static_cast<int32_t>((3 * i + 3) % c.vocab_size);
  }
  OptimizerOptions oo;
  oo.type = "adamw";
  auto opt = CreateOptimizer(oo, adapters->table_ptr());
  ASSERT_TRUE(opt.ok()) << opt.status().ToString();
  float first = 0.0f, last = 0.0f;
  for (int step = 0; step < 30; ++step) {
    float loss = 0.0f;
    ASSERT_TRUE(model->Forward(tokens.data(), nullptr, targets.data(), B, T, &loss).ok());
    if (step == 0) first = loss;
    last = loss;
    model->ZeroGrad();
    adapters->ZeroGrad();
    ASSERT_TRUE(model->Backward().ok());
    (*opt)->Step(adapters->params(), adapters->grads(), 1e-2);
    adapters->NextDropoutStep();
  }
  EXPECT_LT(last, 0.8f * first) << "first " << first << " last " << last;
  EXPECT_EQ(std::memcmp(base_before.data(), model->params().data(), sizeof(float) * base_before.size()), 0);
}

TEST(LoraAdaptersTest, MergedModelMatchesAdaptersAndUnmergeRestoresTheBase) {
  const LlamaConfig c = TinyConfig();
  auto model = MakeModel(c, 31, 0.2f);
  LoraOptions o;
  o.rank = 4;
  o.alpha = 8.0;
  o.target_modules = kAllModules;
  auto adapters = MakeAdapters(c, o);
  RandomizeB(*adapters, 32, 0.3f);
  const std::vector<int32_t> tokens = RandomIds(2 * 7, c.vocab_size, 33);
  Arena base(model->params().table_ptr());
  base.CopyFrom(model->params());

  adapters->Attach(*model);
  const std::vector<float> with_adapters = LogitsOf(*model, tokens, 2, 7);
  LoraAdapters::Detach(*model);
  const std::vector<float> plain = LogitsOf(*model, tokens, 2, 7);
  adapters->MergeInto(model->params());
  const std::vector<float> merged = LogitsOf(*model, tokens, 2, 7);
  double moved = 0.0;
  for (size_t i = 0; i < merged.size(); ++i) {
    ASSERT_NEAR(merged[i], with_adapters[i], 1e-5) << i;
    moved += std::abs(merged[i] - plain[i]);
  }
  EXPECT_GT(moved, 1e-2);  // the adapters matter, so the comparison is meaningful

  adapters->UnmergeFrom(model->params());
  for (int64_t i = 0; i < base.size(); ++i) ASSERT_NEAR(model->params().data()[i], base.data()[i], 1e-6) << i;
}

// The mask is the counter hash documented in peft/lora.h (stream of seed, dropout step and module;
// Backend::Dropout per element) and the products are the backend's GEMMs: rebuilt here step by step.
TEST(LoraAdaptersTest, DropoutForwardIsTheDocumentedMaskThroughTheBackend) {
  const LlamaConfig c = TinyConfig();
  LoraOptions o;
  o.rank = 3;
  o.dropout = 0.3;
  o.seed = 77;
  o.target_modules = {"v_proj"};
  auto adapters = MakeAdapters(c, o);
  RandomizeB(*adapters, 5, 0.5f);
  adapters->SetTraining(true);
  adapters->SetDropoutStep(5);
  const int64_t mi = adapters->FindModule(ProjKind::kV, 1);
  ASSERT_GE(mi, 0);
  const LoraAdapters::Module& m = adapters->modules()[mi];
  Linear lin;
  lin.kind = ProjKind::kV;
  lin.layer = 1;
  lin.in = m.in;
  lin.out = m.out;
  const int64_t rows = 6, r = o.rank;
  std::vector<float> x(static_cast<size_t>(rows * m.in));
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  std::vector<float> y(static_cast<size_t>(rows * m.out), 0.0f), want = y;
  adapters->Forward(lin, x.data(), rows, y.data());

  const uint64_t stream = SplitMix64(SplitMix64(SplitMix64(77 ^ 0x4C6F5241ull) + 5) + static_cast<uint64_t>(mi));
  const float keep = static_cast<float>(1.0 / (1.0 - 0.3));
  std::vector<float> dropped = x, xa(static_cast<size_t>(rows * r));
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = static_cast<double>(SplitMix64(stream + i) >> 11) * 0x1.0p-53;
    dropped[i] = u >= 0.3 ? x[i] * keep : 0.0f;
  }
  CpuBackend be;
  be.Gemm(false, true, rows, r, m.in, 1.0f, dropped.data(), m.in, adapters->params().tensor(m.a_index), m.in, 0.0f,
          xa.data(), r);
  be.Gemm(false, true, rows, m.out, r, adapters->scaling(), xa.data(), r, adapters->params().tensor(m.b_index), r, 1.0f,
          want.data(), m.out);
  EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)), 0);
}

// Adapters and model on non-host memory (tests/engine/fake_device.h): dropout training through the
// adapters' backend, merge and the PEFT save / load staging give exactly the CPU backend's bits.
TEST(LoraAdaptersTest, TrainingMergeAndIoOnNonHostMemoryMatchTheCpuBackend) {
  const LlamaConfig c = TinyConfig();
  LoraOptions o;
  o.rank = 4;
  o.dropout = 0.2;
  o.target_modules = kAllModules;
  const int64_t B = 2, T = 8;
  const std::vector<int32_t> tokens = RandomIds(B * T, c.vocab_size, 41), targets = RandomIds(B * T, c.vocab_size, 42);
  std::vector<std::vector<float>> adapter_params, merged_logits;
  const std::string dir = TempDir("fake_device");
  for (std::shared_ptr<Backend> backend : {CpuBackend::Shared(), std::shared_ptr<Backend>(new FakeDeviceBackend)}) {
    auto model = LlamaModel::Create(c, backend);
    ASSERT_TRUE(model.ok());
    (*model)->InitRandom(40, 0.2f);
    auto created = LoraAdapters::Create(c, o, backend);
    ASSERT_TRUE(created.ok());
    LoraAdapters& adapters = **created;
    EXPECT_EQ(adapters.backend(), backend);
    EXPECT_EQ(&adapters.params().buffer_type(), &backend->buffer_type());
    adapters.Attach(**model);
    adapters.SetTraining(true);
    auto opt = CreateOptimizer(OptimizerOptions{}, adapters.table_ptr(), adapters.backend());
    ASSERT_TRUE(opt.ok());
    for (int step = 0; step < 3; ++step) {
      float loss = 0.0f;
      ASSERT_TRUE((*model)->Forward(tokens.data(), nullptr, targets.data(), B, T, &loss).ok());
      (*model)->ZeroGrad();
      adapters.ZeroGrad();
      ASSERT_TRUE((*model)->Backward().ok());
      (*opt)->Step(adapters.params(), adapters.grads(), 1e-2);
      adapters.NextDropoutStep();
    }
    ASSERT_TRUE(adapters.Save(dir).ok());
    auto loaded = LoraAdapters::Load(dir, c, backend);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    std::vector<float> saved(static_cast<size_t>(adapters.params().size())), reread(saved.size());
    adapters.params().CopyToHost(saved.data());
    (*loaded)->params().CopyToHost(reread.data());
    EXPECT_EQ(std::memcmp(saved.data(), reread.data(), saved.size() * sizeof(float)), 0);
    adapter_params.push_back(saved);
    LoraAdapters::Detach(**model);
    adapters.MergeInto((*model)->params());
    ASSERT_TRUE((*model)->ForwardLogits(tokens.data(), B, T).ok());
    merged_logits.emplace_back(static_cast<size_t>(B * T * c.vocab_size));
    (*model)->ReadLogits(0, B * T, merged_logits.back().data());
  }
  std::filesystem::remove_all(dir);
  for (auto* pair : {&adapter_params, &merged_logits}) {
    ASSERT_EQ((*pair)[0].size(), (*pair)[1].size());
    EXPECT_EQ(std::memcmp((*pair)[0].data(), (*pair)[1].data(), (*pair)[0].size() * sizeof(float)), 0);
  }
}

TEST(LoraIoTest, SaveLoadRoundTripIsExact) {
  const LlamaConfig c = TinyConfig();
  LoraOptions o;
  o.rank = 3;
  o.alpha = 12.0;
  o.dropout = 0.05;
  o.target_modules = {"up_proj", "q_proj", "o_proj"};
  auto adapters = MakeAdapters(c, o);
  RandomizeB(*adapters, 41, 0.5f);
  const std::string dir = TempDir("roundtrip");
  ASSERT_TRUE(adapters->Save(dir, "tiny-llama").ok());

  auto text = ReadFileToString(JoinPath(dir, "adapter_config.json"));
  ASSERT_TRUE(text.ok());
  const nlohmann::json j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 3);
  EXPECT_EQ(j["lora_alpha"], 12.0);
  EXPECT_EQ(j["lora_dropout"], 0.05);
  EXPECT_EQ(j["target_modules"], nlohmann::json({"q_proj", "o_proj", "up_proj"}));
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["fan_in_fan_out"], false);
  EXPECT_EQ(j["inference_mode"], true);
  EXPECT_EQ(j["base_model_name_or_path"], "tiny-llama");

  auto file = SafetensorsFile::Open(JoinPath(dir, "adapter_model.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->tensors().size(), 12u);
  const SafetensorsTensorInfo* info = file->Find("base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, SafetensorsDType::kF32);
  EXPECT_EQ(info->shape, (std::vector<int64_t>{16, 3}));

  auto loaded = LoraAdapters::Load(dir, c);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->options().rank, 3);
  EXPECT_EQ((*loaded)->options().alpha, 12.0);
  EXPECT_EQ((*loaded)->options().dropout, 0.05);
  EXPECT_EQ((*loaded)->options().target_modules, (std::vector<std::string>{"q_proj", "o_proj", "up_proj"}));
  ASSERT_EQ((*loaded)->params().size(), adapters->params().size());
  EXPECT_EQ(
      std::memcmp((*loaded)->params().data(), adapters->params().data(), sizeof(float) * adapters->params().size()), 0);
  std::filesystem::remove_all(dir);
}

// Writes a valid adapter directory, lets `mutate` damage it, and returns Load's error.
Status LoadAfter(const std::string& name, const LlamaConfig& load_config,
                 const std::function<void(const std::string& dir, LoraAdapters& adapters)>& mutate) {
  const LlamaConfig c = TinyConfig();
  LoraOptions o;
  o.rank = 2;
  o.target_modules = {"q_proj", "down_proj"};
  auto adapters = MakeAdapters(c, o);
  const std::string dir = TempDir(name);
  EXPECT_TRUE(adapters->Save(dir).ok());
  mutate(dir, *adapters);
  auto loaded = LoraAdapters::Load(dir, load_config);
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(loaded.ok());
  return loaded.ok() ? Status::OK() : loaded.status();
}

void RewriteConfig(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto text = ReadFileToString(JoinPath(dir, "adapter_config.json"));
  ASSERT_TRUE(text.ok());
  nlohmann::json j = nlohmann::json::parse(*text);
  edit(j);
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "adapter_config.json"), j.dump()).ok());
}

// Rewrites the weights file keeping the tensors `keep` accepts, plus `extra` when non-empty.
void RewriteWeights(const std::string& dir, const LoraAdapters& adapters,
                    const std::function<bool(const std::string&)>& keep, const std::string& extra) {
  std::vector<SafetensorsWriteTensor> tensors;
  const TensorTable& t = adapters.params().table();
  for (size_t i = 0; i < t.size(); ++i) {
    if (!keep(t[i].name)) continue;
    tensors.push_back({t[i].name, SafetensorsDType::kF32, t[i].shape, adapters.params().tensor(i), nullptr});
  }
  if (!extra.empty())
    tensors.push_back({extra, SafetensorsDType::kF32, t[0].shape, adapters.params().tensor(size_t{0}), nullptr});
  ASSERT_TRUE(WriteSafetensors(JoinPath(dir, "adapter_model.safetensors"), tensors, {{"format", "pt"}}).ok());
}

TEST(LoraIoTest, LoadErrorsNameTheFileAndTheProblem) {
  const LlamaConfig c = TinyConfig();
  auto none = [](const std::string&, LoraAdapters&) {};

  Status s = LoadAfter("nodir", c, [](const std::string& dir, LoraAdapters&) { std::filesystem::remove_all(dir); });
  EXPECT_NE(s.message().find("adapter_config.json"), std::string::npos) << s.ToString();

  s = LoadAfter("type", c, [](const std::string& dir, LoraAdapters&) {
    RewriteConfig(dir, [](nlohmann::json& j) { j["peft_type"] = "PREFIX_TUNING"; });
  });
  EXPECT_NE(s.message().find("adapter_config.json: field 'peft_type'"), std::string::npos) << s.ToString();

  s = LoadAfter("regex", c, [](const std::string& dir, LoraAdapters&) {
    RewriteConfig(dir, [](nlohmann::json& j) { j["target_modules"] = ".*proj"; });
  });
  EXPECT_NE(s.message().find("field 'target_modules'"), std::string::npos) << s.ToString();

  s = LoadAfter("unknown_module", c, [](const std::string& dir, LoraAdapters&) {
    RewriteConfig(dir, [](nlohmann::json& j) { j["target_modules"] = {"q_proj", "lm_head"}; });
  });
  EXPECT_NE(s.message().find("unknown module 'lm_head'"), std::string::npos) << s.ToString();

  s = LoadAfter("dora", c, [](const std::string& dir, LoraAdapters&) {
    RewriteConfig(dir, [](nlohmann::json& j) { j["use_dora"] = true; });
  });
  EXPECT_NE(s.message().find("field 'use_dora'"), std::string::npos) << s.ToString();

  // A rank in the config that the stored tensors do not have.
  s = LoadAfter("rank", c, [](const std::string& dir, LoraAdapters&) {
    RewriteConfig(dir, [](nlohmann::json& j) { j["r"] = 4; });
  });
  EXPECT_NE(s.message().find("adapter_model.safetensors: tensor 'base_model.model.model.layers.0.self_attn.q_proj."
                             "lora_A.weight': shape [2, 16] does not match config [4, 16]"),
            std::string::npos)
      << s.ToString();

  // An adapter trained for a different model (wider MLP).
  LlamaConfig wide = c;
  wide.intermediate_size = 32;
  s = LoadAfter("model", wide, none);
  EXPECT_NE(s.message().find("mlp.down_proj.lora_A.weight': shape [2, 24] does not match config [2, 32]"),
            std::string::npos)
      << s.ToString();

  // Fewer layers in the model than in the adapter.
  LlamaConfig shallow = c;
  shallow.num_hidden_layers = 1;
  s = LoadAfter("layers", shallow, none);
  EXPECT_NE(s.message().find("tensor 'base_model.model.model.layers.1."), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("is not a LoRA weight"), std::string::npos) << s.ToString();

  s = LoadAfter("missing", c, [](const std::string& dir, LoraAdapters& a) {
    RewriteWeights(
        dir, a, [](const std::string& n) { return n.find("layers.1.mlp.down_proj.lora_B") == std::string::npos; }, "");
  });
  EXPECT_NE(s.message().find("tensor 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' is missing"),
            std::string::npos)
      << s.ToString();

  s = LoadAfter("extra", c, [](const std::string& dir, LoraAdapters& a) {
    RewriteWeights(
        dir, a, [](const std::string&) { return true; },
        "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
  });
  EXPECT_NE(s.message().find("'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight' is not a LoRA weight"),
            std::string::npos)
      << s.ToString();
}

// Runs tests/oracle/peft_roundtrip_check.py; returns its exit status and output.
int RunPeftOracle(const std::string& adapter_dir, const std::string& base_dir, const std::string& merged_dir,
                  std::string* output) {
  const std::string cmd = "/usr/bin/python3 tests/oracle/peft_roundtrip_check.py '" + adapter_dir + "' '" + base_dir +
                          "' '" + merged_dir + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) *output += buf;
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// An independent Python reader checks the PEFT layout and the merge formula W + (alpha / r) B A; with
// HF peft + transformers importable it also merges with PEFT itself.
TEST(LoraIoTest, PythonOracleAcceptsTheAdapterAndTheMerge) {
  if (!std::filesystem::exists("/usr/bin/python3") ||
      std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  const LlamaConfig c = TinyConfig();
  auto model = MakeModel(c, 51, 0.2f);
  LoraOptions o;
  o.rank = 2;
  o.alpha = 5.0;
  o.target_modules = {"q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"};
  auto adapters = MakeAdapters(c, o);
  RandomizeB(*adapters, 52, 0.3f);
  const std::string base = TempDir("oracle_base"), adapter = TempDir("oracle_adapter"),
                    merged = TempDir("oracle_merged");
  ASSERT_TRUE(SaveModelDir(base, c, model->params()).ok());
  ASSERT_TRUE(adapters->Save(adapter, base).ok());
  adapters->MergeInto(model->params());
  ASSERT_TRUE(SaveModelDir(merged, c, model->params()).ok());

  std::string out;
  EXPECT_EQ(RunPeftOracle(adapter, base, merged, &out), 0) << out;
  EXPECT_NE(out.find("OK: numpy check"), std::string::npos) << out;
  if (out.find("SKIP: peft") != std::string::npos) std::printf("note: %s", out.c_str());
  // The oracle is able to fail: the unmerged base is not the merge.
  std::string bad;
  EXPECT_EQ(RunPeftOracle(adapter, base, base, &bad), 1) << bad;
  EXPECT_NE(bad.find("merged weight differs"), std::string::npos) << bad;
  for (const std::string& d : {base, adapter, merged}) std::filesystem::remove_all(d);
}

}  // namespace
}  // namespace tributary
