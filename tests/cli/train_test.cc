// `tributary init-model` + `tributary train` as a user runs them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iterator>

#include "engine/io/model_dir.h"
#include "engine/model/generate.h"
#include "engine/model/llama_model.h"
#include "engine/text/tokenizer.h"
#include "tests/cli/cli_util.h"

namespace tributary::testutil {
namespace {

std::string WriteAlpaca(const TempDir& dir, int n) {
  const char* colours[] = {"red", "green", "blue", "black", "white"};
  std::string text;
  for (int i = 0; i < n; ++i) {
    nlohmann::json j = {{"instruction", std::string("Name colour number ") + std::to_string(i % 5) + "."},
                        {"input", ""},
                        {"output", colours[i % 5]}};
    text += j.dump() + "\n";
  }
  return dir.Write("data.jsonl", text);
}

TEST(TrainCliTest, InitModelThenTrainLowersHeldOutLoss) {
  TempDir dir;
  const std::string model = dir.path() + "/base", out = dir.path() + "/tuned";
  ProcessResult r = RunTributary({"init-model", "--config", "examples/tiny-model.yaml", "-o", model});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string data = WriteAlpaca(dir, 120);
  r = RunTributary({"train", "--model",
                    model,   "--data",
                    data,    "--steps",
                    "30",    "--lr",
                    "3e-3",  "--seq-len",
                    "96",    "--batch",
                    "8",     "--eval-generations",
                    "2",     "--max-new-tokens",
                    "8",     "--format",
                    "json",  "-o",
                    out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto envelope = nlohmann::json::parse(r.out);
  EXPECT_EQ(envelope["command"], "train");
  const auto& summary = envelope["data"];
  EXPECT_LT(summary["held_out_loss_after"].get<double>(), summary["held_out_loss_before"].get<double>());
  EXPECT_GT(summary["held_out_tokens"].get<int64_t>(), 0);
  EXPECT_EQ(summary["generated_examples"].get<int64_t>(), 2);
  Result<LoadedModel> reloaded = LoadModelDir(out);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  EXPECT_EQ(reloaded->config.hidden_size, 64);
  EXPECT_TRUE(std::ifstream(out + "/tokenizer.json").good());
}

// `generate` streams exactly the engine's greedy continuation and stops at --stop; `eval` scores the
// tuned model better than its base on the data it was tuned on; train keeps generation_config.json.
TEST(TrainCliTest, GenerateAndEvalATunedModel) {
  TempDir dir;
  const std::string model = dir.path() + "/base", out = dir.path() + "/tuned";
  ASSERT_EQ(RunTributary({"init-model", "--config", "examples/tiny-model.yaml", "-o", model}).exit_code, 0);
  const std::string generation_config = R"({"bos_token_id": 256, "eos_token_id": [257, 0]})";
  dir.Write("base/generation_config.json", generation_config);
  const std::string data = WriteAlpaca(dir, 120);
  ProcessResult r = RunTributary({"train", "--model", model, "--data", data, "--steps", "30", "--lr", "3e-3",
                                  "--seq-len", "96", "--batch", "8", "--eval-generations", "0", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream kept(out + "/generation_config.json");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(kept), {}), generation_config);

  auto eval = [&](const std::string& m) {
    ProcessResult e = RunTributary({"eval", "--model", m, "--data", data, "--seq-len", "96", "--generations", "3",
                                    "--max-new-tokens", "6", "--format", "json"});
    EXPECT_EQ(e.exit_code, 0) << e.err;
    return e.exit_code == 0 ? nlohmann::json::parse(e.out)["data"] : nlohmann::json();
  };
  const nlohmann::json before = eval(model), after = eval(out);
  ASSERT_TRUE(after.contains("loss")) << after.dump();
  EXPECT_LT(after["loss"].get<double>(), before["loss"].get<double>());
  EXPECT_NEAR(after["perplexity"].get<double>(), std::exp(after["loss"].get<double>()), 1e-6);
  EXPECT_EQ(after["generated_examples"].get<int64_t>(), 3);
  EXPECT_EQ(after["examples"].get<int64_t>(), 120);

  // Greedy streaming output = the engine's Generate, decoded.
  const std::string prompt = "### Instruction:\nName colour number 2.\n\n### Response:\n";
  r = RunTributary({"generate", "--model", out, "--prompt", prompt, "--max-new-tokens", "12"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto loaded = LoadModelDir(out);
  auto tokenizer = LoadTokenizer(out);
  ASSERT_TRUE(loaded.ok() && tokenizer.ok());
  auto llama = LlamaModel::Create(loaded->config);
  ASSERT_TRUE(llama.ok());
  (*llama)->params().CopyFrom(loaded->params);
  GenerateOptions greedy;
  greedy.max_new_tokens = 12;
  greedy.eos_token_id = (*tokenizer)->eos_id();
  auto tokens = Generate(**llama, (*tokenizer)->Encode(prompt, true), greedy);
  ASSERT_TRUE(tokens.ok());
  if (!tokens->empty() && tokens->back() == (*tokenizer)->eos_id()) tokens->pop_back();
  EXPECT_EQ(r.out, *(*tokenizer)->Decode(*tokens) + "\n");
  const std::string full = r.out;
  ASSERT_GE(full.size(), 4u);
  const std::string stop = full.substr(1, 2);  // stop at the text's second character
  r = RunTributary({"generate", "--model", out, "--prompt", prompt, "--max-new-tokens", "12", "--stop", stop});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, full.substr(0, 1) + "\n") << "stop " << stop << " in " << full;

  // Bad inputs: one line, the documented exit codes.
  r = RunTributary({"generate", "--model", out});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("give one of --prompt or --prompt-file"), std::string::npos) << r.err;
  r = RunTributary({"generate", "--model", "job:abc", "--prompt", "x"});
  EXPECT_EQ(r.exit_code, 69) << r.err;
  r = RunTributary({"eval", "--model", dir.path() + "/nothing", "--data", data});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("nothing"), std::string::npos) << r.err;
}

TEST(TrainCliTest, BadInputsAreOneLineErrors) {
  TempDir dir;
  const std::string model = dir.path() + "/base";
  ASSERT_EQ(RunTributary({"init-model", "--config", "examples/tiny-model.yaml", "-o", model}).exit_code, 0);
  const std::string bad = dir.Write("bad.jsonl", "{\"instruction\": \"x\", \"output\": \"y\"}\n{not json\n");
  ProcessResult r = RunTributary({"train", "--model", model, "--data", bad, "--steps", "1", "-o", dir.path() + "/o"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("bad.jsonl:2"), std::string::npos) << r.err;

  const std::string cfg = dir.Write("m.yaml", "hidden_size: 64\nnum_attention_heads: 5\n");
  r = RunTributary({"init-model", "--config", cfg, "-o", dir.path() + "/m"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("num_"), std::string::npos) << r.err;

  const std::string unknown = dir.Write("u.yaml", "hidden_size: 64\nlayers: 3\n");
  r = RunTributary({"init-model", "--config", unknown, "-o", dir.path() + "/m"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find(unknown + ":2: unknown key 'layers'"), std::string::npos) << r.err;

  r = RunTributary({"train", "--model", model, "--data", bad, "--seq-len", "100000", "-o", dir.path() + "/o"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("max_position_embeddings"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tributary::testutil
