// `tributary init-model` + `tributary train` as a user runs them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "engine/io/model_dir.h"
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
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_LT(summary["held_out_loss_after"].get<double>(), summary["held_out_loss_before"].get<double>());
  EXPECT_GT(summary["held_out_tokens"].get<int64_t>(), 0);
  EXPECT_EQ(summary["generated_examples"].get<int64_t>(), 2);
  Result<LoadedModel> reloaded = LoadModelDir(out);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  EXPECT_EQ(reloaded->config.hidden_size, 64);
  EXPECT_TRUE(std::ifstream(out + "/tokenizer.json").good());
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
