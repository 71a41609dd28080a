// `tributary tokenizer-train` and `init-model --tokenizer` as a user runs them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>

#include "engine/io/model_dir.h"
#include "engine/text/tokenizer.h"
#include "tests/cli/cli_util.h"

namespace tributary::testutil {
namespace {

// Short English-like lines, one document each.
std::string WriteText(const TempDir& dir, const std::string& name, int lines) {
  const char* subjects[] = {"The river", "A tributary", "The small model", "Every worker", "The coordinator"};
  const char* verbs[] = {"joins", "feeds", "learns from", "trains on", "waits for"};
  const char* objects[] = {"the sea.", "the valley.", "its own data.", "the next round.", "a quiet lake."};
  std::string text;
  for (int i = 0; i < lines; ++i)
    text += std::string(subjects[i % 5]) + " " + verbs[(i / 5) % 5] + " " + objects[(i / 25) % 5] + "\n";
  return dir.Write(name, text);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(TokenizerCliTest, TrainTokenizerThenInitModelAndTrain) {
  TempDir dir;
  const std::string a = WriteText(dir, "a.txt", 300), b = WriteText(dir, "b.txt", 100);
  const std::string tok_dir = dir.path() + "/tok";
  ProcessResult r = RunTributary(
      {"tokenizer-train", "--data", a, "--data", b, "--vocab-size", "320", "-o", tok_dir, "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto envelope = nlohmann::json::parse(r.out);
  EXPECT_EQ(envelope["command"], "tokenizer-train");
  const auto& data = envelope["data"];
  EXPECT_EQ(data["vocab_size"].get<int64_t>(), 320);
  EXPECT_EQ(data["merges"].get<int64_t>(), 320 - 259);
  EXPECT_EQ(data["input_bytes"].get<int64_t>(), static_cast<int64_t>(ReadAll(a).size() + ReadAll(b).size()));
  EXPECT_GT(data["bytes_per_token"].get<double>(), 2.0);

  auto tok = LoadTokenizer(tok_dir);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->vocab_size(), 320);
  const std::string line = "The river feeds the valley.\n";
  EXPECT_LT((*tok)->Encode(line, false).size(), line.size());

  // Text output; an existing tokenizer needs --force.
  r = RunTributary({"tokenizer-train", "--data", a, "--vocab-size", "300", "-o", tok_dir});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  r = RunTributary({"tokenizer-train", "--data", a, "--vocab-size", "300", "-o", tok_dir, "--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("vocab size 300 (41 merges)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bytes per token"), std::string::npos) << r.out;

  // init-model takes the tokenizer: vocab_size and bos/eos from it, its files copied verbatim.
  const std::string cfg = dir.Write("m.yaml",
                                    "hidden_size: 32\nintermediate_size: 64\nnum_attention_heads: 2\n"
                                    "num_key_value_heads: 1\nmax_position_embeddings: 64\n");
  const std::string model = dir.path() + "/model";
  r = RunTributary({"init-model", "--config", cfg, "--tokenizer", tok_dir, "-o", model});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Result<LoadedModel> loaded = LoadModelDir(model);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->config.vocab_size, 300);
  EXPECT_EQ(loaded->config.bos_token_id, 1);
  EXPECT_EQ(loaded->config.eos_token_id, 2);
  EXPECT_EQ(ReadAll(model + "/tokenizer.json"), ReadAll(tok_dir + "/tokenizer.json"));
  EXPECT_EQ(ReadAll(model + "/tokenizer_config.json"), ReadAll(tok_dir + "/tokenizer_config.json"));

  r = RunTributary({"train", "--model", model, "--data", a, "--data-format", "text_lines", "--steps", "2", "--batch",
                    "2", "--seq-len", "32", "--eval-generations", "0", "--format", "json", "-o",
                    dir.path() + "/trained"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto summary = nlohmann::json::parse(r.out)["data"];
  EXPECT_EQ(summary["steps"].get<int64_t>(), 2);
  EXPECT_TRUE(std::isfinite(summary["final_train_loss"].get<double>()));

  // An explicit vocab_size that disagrees names both numbers.
  r = RunTributary(
      {"init-model", "--config", cfg, "--set", "vocab_size=512", "--tokenizer", tok_dir, "-o", dir.path() + "/m2"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("vocab_size 512 disagrees with --tokenizer"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(300 tokens)"), std::string::npos) << r.err;
}

TEST(TokenizerCliTest, BadInputsAreOneLineErrors) {
  TempDir dir;
  const std::string a = WriteText(dir, "a.txt", 20);
  ProcessResult r =
      RunTributary({"tokenizer-train", "--data", dir.path() + "/missing.txt", "--vocab-size", "300", "-o", dir.path()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("missing.txt: no such file"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  r = RunTributary({"tokenizer-train", "--data", a, "--vocab-size", "100", "-o", dir.path()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("--vocab-size 100 is smaller than 259"), std::string::npos) << r.err;

  r = RunTributary({"tokenizer-train", "--data", a, "--vocab-size", "300", "--min-frequency", "0", "-o", dir.path(),
                    "--format", "json"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ok"], false) << r.out;

  const std::string empty = dir.Write("empty.txt", "");
  r = RunTributary({"tokenizer-train", "--data", empty, "--vocab-size", "300", "-o", dir.path() + "/t"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("no text"), std::string::npos) << r.err;

  r = RunTributary({"init-model", "--config", "examples/tiny-model.yaml", "--tokenizer", dir.path() + "/none", "-o",
                    dir.path() + "/m"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("none/tokenizer.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tributary::testutil
