#include "engine/io/model_dir.h"
#include "engine/model/llama_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/file_util.h"
#include "base/half.h"
#include "base/parallel.h"
#include "engine/model/model_init.h"
#include "engine/text/tokenizer.h"
#include "tests/common/tiny_llama.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;

class ModelDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("trib_md_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  void WriteText(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
  }

  fs::path dir_;
};

LlamaConfig TinyConfig() {
  return testutil::MicroLlama(/*vocab_size=*/300, /*max_positions=*/64);
}

// Fills every tensor with distinct values derived from its index so mix-ups are visible.
Arena PatternArena(const LlamaConfig& c) {
  Arena a(BuildLlamaTensorTable(c));
  for (size_t t = 0; t < a.table().size(); ++t) {
    auto s = a.span(t);
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<float>(t) + 0.001f * static_cast<float>(i % 997);
  }
  return a;
}

void ExpectArenasEqual(const Arena& a, const Arena& b) {
  ASSERT_EQ(a.table().size(), b.table().size());
  for (size_t t = 0; t < a.table().size(); ++t) {
    ASSERT_EQ(a.table()[t].name, b.table()[t].name);
    for (int64_t i = 0; i < a.table()[t].numel; ++i)
      ASSERT_EQ(a.tensor(t)[i], b.tensor(t)[i]) << a.table()[t].name << "[" << i << "]";
  }
}

TEST_F(ModelDirTest, ParsesLlama31Config) {
  const std::string text = R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": true, "attention_bias": false, "mlp_bias": false, "hidden_act": "silu",
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16"})";
  auto c = ParseLlamaConfigJson(text, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->HeadDim(), 64);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_EQ(c->rope_scaling.factor, 32.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_id, 128001);
}

// transformers 5 writes RoPE as one rope_parameters object; it must give the same positions as the
// older layout (not a silent theta = 10000), and be written back in the layout it was read in.
TEST_F(ModelDirTest, ReadsTransformers5RopeParametersAndWritesTheLayoutItRead) {
  const std::string head = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 4096, )";
  const std::string v5 = head + R"("rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3",
    "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})";
  const std::string v4 = head + R"("rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3",
    "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})";
  auto a = ParseLlamaConfigJson(v5, "v5/config.json");
  auto b = ParseLlamaConfigJson(v4, "v4/config.json");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(a->rope_theta, 500000.0);
  EXPECT_EQ(a->rope_scaling.type, "llama3");
  EXPECT_EQ(a->rope_scaling.factor, 8.0);
  EXPECT_TRUE(a->rope_in_parameters);
  EXPECT_FALSE(b->rope_in_parameters);
  // The same rotary frequencies, and not the default theta's.
  EXPECT_EQ(RopeInvFreq(*a), RopeInvFreq(*b));
  EXPECT_NE(RopeInvFreq(*a), RopeInvFreq(TinyConfig()));
  // Written back in the layout read: no top-level rope_theta that a v5 reader would ignore.
  const auto written = nlohmann::json::parse(LlamaConfigToJson(*a));
  EXPECT_FALSE(written.contains("rope_theta"));
  EXPECT_FALSE(written.contains("rope_scaling"));
  EXPECT_EQ(written["rope_parameters"]["rope_theta"], 500000.0);
  EXPECT_EQ(written["rope_parameters"]["rope_type"], "llama3");
  EXPECT_EQ(nlohmann::json::parse(LlamaConfigToJson(*b))["rope_theta"], 500000.0);
  auto again = ParseLlamaConfigJson(LlamaConfigToJson(*a), "again/config.json");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->rope_theta, 500000.0);
  EXPECT_TRUE(again->rope_in_parameters);
  // A default rope_parameters carries only theta.
  auto plain = ParseLlamaConfigJson(head + R"("rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}})", "c");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->rope_theta, 1e6);
  EXPECT_TRUE(plain->rope_scaling.type.empty());

  // What is not understood is an error naming the field, never a default.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"("rope_parameters": {"rope_type": "default"}})", "field 'rope_parameters.rope_theta': missing"},
      {R"("rope_parameters": {"rope_theta": 1e4, "rope_type": "yarn", "factor": 4}})",
       "field 'rope_parameters': unsupported rope_type 'yarn'"},
      {R"("rope_parameters": {"rope_theta": 1e4, "rope_type": "default", "partial_rotary_factor": 0.5}})",
       "field 'rope_parameters.partial_rotary_factor': not understood"},
      {R"("rope_parameters": {"rope_theta": 1e4, "rope_type": "default", "factor": 2}})",
       "field 'rope_parameters.factor': set, but rope_type is default"},
      {R"("rope_theta": 10000, "rope_parameters": {"rope_theta": 500000, "rope_type": "default"}})",
       "field 'rope_theta': 10000.000000 disagrees with rope_parameters.rope_theta 500000.000000"},
      {R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "mrope_section": [1]}})",
       "field 'rope_scaling.mrope_section': not understood"},
  };
  for (const auto& [tail, expect] : bad) {
    auto r = ParseLlamaConfigJson(head + tail, "x/config.json");
    ASSERT_FALSE(r.ok()) << tail;
    EXPECT_NE(r.status().message().find("x/config.json: " + expect), std::string::npos) << r.status().message();
  }
}

TEST_F(ModelDirTest, ParsesQwen2AndMistralConfigs) {
  auto q = ParseLlamaConfigJson(R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
    "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": 32768,
    "bos_token_id": 151643, "eos_token_id": 151643})",
                                "config.json");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->model_type, "qwen2");
  EXPECT_TRUE(q->attention_bias);  // implied by Qwen2
  EXPECT_EQ(q->HeadDim(), 64);
  auto m = ParseLlamaConfigJson(R"({"architectures": ["MistralForCausalLM"], "model_type": "mistral",
    "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 1, "sliding_window": null, "bos_token_id": null})",
                                "config.json");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->architecture, "MistralForCausalLM");
  EXPECT_EQ(m->bos_token_id, -1);
  EXPECT_EQ(m->rms_norm_eps, 1e-6);  // HF default when absent
}

TEST_F(ModelDirTest, ConfigErrorsNameFileAndField) {
  struct Case {
    std::string json, expect;
  };
  const std::vector<Case> cases = {
      {R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 10})", "unsupported architecture 'GPT2LMHeadModel'"},
      {R"({"model_type": "gpt_neox"})", "unsupported model_type 'gpt_neox'"},
      {R"({"model_type": "llama", "hidden_size": 8})", "field 'vocab_size': missing"},
      {R"({"model_type": "llama", "vocab_size": "big"})", "field 'vocab_size': expected an integer"},
      {R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 3})",
       "hidden_size"},
      {R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2, "rope_scaling": {"rope_type": "yarn"}})",
       "unsupported rope_type 'yarn'"},
      {R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2, "hidden_act": "gelu"})",
       "hidden_act"},
      {R"({"model_type": "llama", )", "invalid JSON"},
  };
  for (const auto& c : cases) {
    auto r = ParseLlamaConfigJson(c.json, "some/config.json");
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_TRUE(r.status().IsInvalidArgument());
    EXPECT_NE(r.status().message().find("some/config.json"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
  }
  EXPECT_TRUE(ReadLlamaConfig(Path("absent.json")).status().IsNotFound());
}

TEST_F(ModelDirTest, ConfigJsonRoundTrips) {
  LlamaConfig c = TinyConfig();
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8.0;
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  c.eos_token_id = -1;
  auto back = ParseLlamaConfigJson(LlamaConfigToJson(c), "config.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->hidden_size, c.hidden_size);
  EXPECT_EQ(back->num_key_value_heads, c.num_key_value_heads);
  EXPECT_EQ(back->rope_scaling.factor, 8.0);
  EXPECT_EQ(back->rms_norm_eps, c.rms_norm_eps);
  EXPECT_TRUE(back->tie_word_embeddings);
  EXPECT_TRUE(back->attention_bias);
  EXPECT_EQ(back->eos_token_id, -1);
  EXPECT_NE(LlamaConfigToJson(c).find("\"torch_dtype\": \"float32\""), std::string::npos);
}

TEST_F(ModelDirTest, SaveLoadRoundTripF32) {
  for (bool tied : {false, true}) {
    LlamaConfig c = TinyConfig();
    c.tie_word_embeddings = tied;
    Arena params = PatternArena(c);
    const std::string dir = Path(tied ? "tied" : "untied");
    ASSERT_TRUE(SaveModelDir(dir, c, params).ok());
    EXPECT_TRUE(fs::exists(dir + "/config.json"));
    auto file = SafetensorsFile::Open(dir + "/model.safetensors");
    ASSERT_TRUE(file.ok());
    EXPECT_EQ(file->metadata().at("format"), "pt");
    EXPECT_EQ(file->Find("lm_head.weight") != nullptr, !tied);
    auto loaded = LoadModelDir(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ(loaded->config.tie_word_embeddings, tied);
    ExpectArenasEqual(params, loaded->params);
  }
}

TEST_F(ModelDirTest, Qwen2WithBiasesAndBf16Storage) {
  LlamaConfig c = TinyConfig();
  c.architecture = "Qwen2ForCausalLM";
  c.model_type = "qwen2";
  c.attention_bias = true;
  Arena params = PatternArena(c);
  SaveModelOptions options;
  options.dtype = SafetensorsDType::kBF16;
  ASSERT_TRUE(SaveModelDir(Path("q"), c, params, options).ok());
  auto file = SafetensorsFile::Open(Path("q/model.safetensors"));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->Find("model.layers.1.self_attn.k_proj.bias")->dtype, SafetensorsDType::kBF16);
  auto loaded = LoadModelDir(Path("q"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->config.model_type, "qwen2");
  EXPECT_EQ(loaded->stored_dtype, SafetensorsDType::kBF16) << "so a tuned copy is saved as bf16 again";
  ASSERT_TRUE(SaveModelDir(Path("q32"), c, params).ok());
  EXPECT_EQ(LoadModelDir(Path("q32"))->stored_dtype, SafetensorsDType::kF32);
  auto config_text = ReadFileToString(Path("q/config.json"));
  ASSERT_TRUE(config_text.ok());
  EXPECT_NE(config_text->find("\"torch_dtype\": \"bfloat16\""), std::string::npos);
  for (size_t t = 0; t < params.table().size(); ++t) {
    for (int64_t i = 0; i < params.table()[t].numel; ++i)
      ASSERT_EQ(loaded->params.tensor(t)[i], BF16ToFloat(FloatToBF16(params.tensor(t)[i])));
  }
}

TEST_F(ModelDirTest, ShardedSaveAndLoad) {
  LlamaConfig c = TinyConfig();
  Arena params = PatternArena(c);
  // A single-file save first, so the sharded save must remove the stale model.safetensors.
  ASSERT_TRUE(SaveModelDir(Path("s"), c, params).ok());
  SaveModelOptions options;
  options.max_shard_bytes = 20000;  // embed / lm_head are 300*16*4 = 19200 bytes
  ASSERT_TRUE(SaveModelDir(Path("s"), c, params, options).ok());
  EXPECT_FALSE(fs::exists(Path("s/model.safetensors")));
  ASSERT_TRUE(fs::exists(Path("s/model.safetensors.index.json")));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(Path("s"))) {
    const std::string name = e.path().filename().string();
    if (name.rfind("model-", 0) == 0) ++shards;
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << name;
  }
  EXPECT_GT(shards, 2);
  auto loaded = LoadModelDir(Path("s"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectArenasEqual(params, loaded->params);
}

// Writes a checkpoint by hand: the table's tensors plus / minus / altered ones.
std::vector<SafetensorsWriteTensor> TableTensors(const Arena& params) {
  std::vector<SafetensorsWriteTensor> out;
  for (size_t t = 0; t < params.table().size(); ++t)
    out.push_back({params.table()[t].name, SafetensorsDType::kF32, params.table()[t].shape, params.tensor(t), nullptr});
  return out;
}

TEST_F(ModelDirTest, LoadPolicyForExtraMissingAndMisshapenTensors) {
  LlamaConfig c = TinyConfig();
  c.tie_word_embeddings = true;
  Arena params = PatternArena(c);
  const std::string dir = Path("m");
  fs::create_directories(dir);
  WriteText(dir + "/config.json", LlamaConfigToJson(c));
  std::vector<float> junk(300 * 16, 9.0f);

  // inv_freq buffers and a tied lm_head are skipped.
  auto tensors = TableTensors(params);
  tensors.push_back(
      {"model.layers.0.self_attn.rotary_emb.inv_freq", SafetensorsDType::kF32, {2}, junk.data(), nullptr});
  tensors.push_back({"lm_head.weight", SafetensorsDType::kF32, {300, 16}, junk.data(), nullptr});
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  auto loaded = LoadModelDir(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->skipped_tensors.size(), 2u);
  ExpectArenasEqual(params, loaded->params);

  // A NaN weight, and a file that is not safetensors, are bad input naming the file (exit 4, not 1).
  std::vector<float> with_nan(params.table()[0].numel, 0.5f);
  with_nan[7] = std::nanf("");
  tensors = TableTensors(params);
  tensors[0].f32 = with_nan.data();
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  Status nan = LoadModelDir(dir).status();
  EXPECT_TRUE(nan.IsInvalidArgument()) << nan.ToString();
  EXPECT_NE(nan.message().find("tensor '" + params.table()[0].name + "': element 7 is nan, not a finite number"),
            std::string::npos)
      << nan.ToString();
  WriteText(dir + "/model.safetensors", "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}");
  Status corrupt = LoadModelDir(dir).status();
  EXPECT_TRUE(corrupt.IsInvalidArgument()) << corrupt.ToString();
  EXPECT_NE(corrupt.message().find(dir + "/model.safetensors"), std::string::npos) << corrupt.ToString();

  // An unknown tensor is an error naming it and the file.
  tensors = TableTensors(params);
  tensors.push_back({"model.layers.0.mlp.extra.weight", SafetensorsDType::kF32, {2}, junk.data(), nullptr});
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  Status st = LoadModelDir(dir).status();
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("unexpected tensor 'model.layers.0.mlp.extra.weight'"), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("model.safetensors"), std::string::npos) << st.message();

  // A missing tensor.
  tensors = TableTensors(params);
  const std::string missing_name = params.table()[3].name;
  tensors.erase(tensors.begin() + 3);
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  st = LoadModelDir(dir).status();
  EXPECT_NE(st.message().find("missing tensor '" + missing_name + "'"), std::string::npos) << st.message();

  // A shape mismatch.
  tensors = TableTensors(params);
  tensors.back().shape = {8, 2};  // model.norm.weight is [16]
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  st = LoadModelDir(dir).status();
  EXPECT_NE(st.message().find("model.safetensors: tensor 'model.norm.weight': shape [8, 2] does not match config [16]"),
            std::string::npos)
      << st.message();

  // An index that promises a tensor its shard lacks.
  fs::remove(dir + "/model.safetensors");
  tensors = TableTensors(params);
  ASSERT_TRUE(WriteSafetensors(dir + "/part.safetensors", tensors).ok());
  WriteText(
      dir + "/model.safetensors.index.json",
      R"({"metadata": {}, "weight_map": {"model.norm.weight": "part.safetensors", "ghost": "part.safetensors"}})");
  st = LoadModelDir(dir).status();
  EXPECT_NE(st.message().find("'ghost'"), std::string::npos) << st.message();

  fs::remove(dir + "/model.safetensors.index.json");
  st = LoadModelDir(dir).status();
  EXPECT_TRUE(st.IsNotFound()) << st.ToString();
}

TEST_F(ModelDirTest, RandomInitIsDeterministicAndHfLike) {
  LlamaConfig c = TinyConfig();
  c.attention_bias = true;
  Arena a(BuildLlamaTensorTable(c)), b(BuildLlamaTensorTable(c)), other(BuildLlamaTensorTable(c));
  SetNumThreads(1);
  ASSERT_TRUE(InitRandomModel(c, 42, &a).ok());
  SetNumThreads(4);
  ASSERT_TRUE(InitRandomModel(c, 42, &b).ok());
  SetNumThreads(0);
  ASSERT_TRUE(InitRandomModel(c, 43, &other).ok());
  ExpectArenasEqual(a, b);
  EXPECT_NE(a.tensor("model.embed_tokens.weight")[0], other.tensor("model.embed_tokens.weight")[0]);
  for (size_t t = 0; t < a.table().size(); ++t) {
    const std::string& name = a.table()[t].name;
    auto s = a.span(t);
    if (name.find("norm") != std::string::npos) {
      for (float v : s) ASSERT_EQ(v, 1.0f) << name;
    } else if (name.find(".bias") != std::string::npos) {
      for (float v : s) ASSERT_EQ(v, 0.0f) << name;
    } else {
      double sum = 0, sq = 0;
      for (float v : s) {
        sum += v;
        sq += static_cast<double>(v) * v;
      }
      const double n = static_cast<double>(s.size()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
      // n >= 128 samples: the sample sd is within ~3 of its standard errors (0.02 / sqrt(2n)) of 0.02
      // and the mean within 4 standard errors of 0.
      EXPECT_NEAR(sd, 0.02, 0.004) << name;
      EXPECT_NEAR(mean, 0.0, 4 * 0.02 / std::sqrt(n)) << name;
    }
  }
  // The same tensor gets the same values regardless of the rest of the table.
  LlamaConfig tied = c;
  tied.tie_word_embeddings = true;
  Arena t(BuildLlamaTensorTable(tied));
  ASSERT_TRUE(InitRandomModel(tied, 42, &t).ok());
  for (int64_t i = 0; i < 300 * 16; ++i)
    ASSERT_EQ(t.tensor("model.embed_tokens.weight")[i], a.tensor("model.embed_tokens.weight")[i]);
  Arena wrong(BuildLlamaTensorTable(TinyConfig()));
  EXPECT_TRUE(InitRandomModel(c, 1, &wrong).IsInvalidArgument());
}

TEST_F(ModelDirTest, WriteRandomModelDirIsLoadable) {
  LlamaConfig c = TinyConfig();
  c.bos_token_id = 7;  // replaced by the byte tokenizer's ids
  ASSERT_TRUE(WriteRandomModelDir(Path("r"), c, 5).ok());
  auto loaded = LoadModelDir(Path("r"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->config.bos_token_id, ByteTokenizer::kBosId);
  EXPECT_EQ(loaded->config.eos_token_id, ByteTokenizer::kEosId);
  Arena expected(BuildLlamaTensorTable(loaded->config));
  ASSERT_TRUE(InitRandomModel(loaded->config, 5, &expected).ok());
  ExpectArenasEqual(expected, loaded->params);
  auto tok = LoadTokenizer(Path("r"));
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->eos_id(), ByteTokenizer::kEosId);
  EXPECT_EQ((*tok)->Encode("hi", true), (std::vector<int32_t>{1, 3 + 'h', 3 + 'i'}));

  LlamaConfig small = TinyConfig();
  small.vocab_size = 256;
  Status st = WriteRandomModelDir(Path("small"), small, 5);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("vocab_size"), std::string::npos);
}

TEST_F(ModelDirTest, CopiesTokenizerFiles) {
  LlamaConfig c = TinyConfig();
  Arena params = PatternArena(c);
  ASSERT_TRUE(ByteTokenizer().SaveToDir(dir_.string()).ok());
  SaveModelOptions options;
  options.copy_tokenizer_from = dir_.string();
  ASSERT_TRUE(SaveModelDir(Path("copy"), c, params, options).ok());
  EXPECT_TRUE(fs::exists(Path("copy/tokenizer.json")));
  EXPECT_TRUE(fs::exists(Path("copy/tokenizer_config.json")));
  options.copy_tokenizer_from = Path("nothing_here");
  EXPECT_TRUE(SaveModelDir(Path("copy2"), c, params, options).IsNotFound());

  // generation_config.json (e.g. eos_token_id [1, 0]) travels with a model saved with its own tokenizer.
  const std::string generation = R"({"bos_token_id": 1, "eos_token_id": [1, 0]})";
  ASSERT_TRUE(WriteFileAtomic((dir_ / "generation_config.json").string(), generation).ok());
  SaveModelOptions with_tokenizer;
  ByteTokenizer tokenizer;
  with_tokenizer.tokenizer = &tokenizer;
  with_tokenizer.copy_generation_config_from = dir_.string();
  ASSERT_TRUE(SaveModelDir(Path("tuned"), c, params, with_tokenizer).ok());
  EXPECT_EQ(*ReadFileToString(Path("tuned/generation_config.json")), generation);
  with_tokenizer.copy_generation_config_from = Path("nothing_here");  // none there: nothing copied, no error
  ASSERT_TRUE(SaveModelDir(Path("tuned2"), c, params, with_tokenizer).ok());
  EXPECT_FALSE(fs::exists(Path("tuned2/generation_config.json")));
}

}  // namespace
}  // namespace tributary
