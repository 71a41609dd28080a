// `tributary demo --base DIR --data DIR` end to end: a tiny stand-in base (byte tokenizer) and a task
// directory with fewer client files than the study's 8; the real coordinator and workers run 2 rounds and
// the demo prints the before/after answers to the first two held-out questions and the scores.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "base/file_util.h"
#include "engine/model/model_init.h"
#include "tests/common/tiny_llama.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

// Alpaca records with the study's extra "category" field: "What is the capital of COUNTRY?" -> CAPITAL.
std::string Questions(const std::vector<std::pair<std::string, std::string>>& country_capital) {
  std::string out;
  for (const auto& [country, capital] : country_capital)
    out += "{\"category\": \"capital\", \"input\": \"\", \"instruction\": \"What is the capital of " + country +
           "?\", \"output\": \"" + capital + "\"}\n";
  return out;
}

void Write(const fs::path& path, const std::string& contents) {
  ASSERT_TRUE(WriteFileAtomic(path.string(), contents).ok()) << path;
}

// Writes a tiny base and a task directory with client-00, client-01 and client-05 (worker 2 holds 01 + 05).
void WriteTask(const std::string& dir) {
  ASSERT_TRUE(WriteRandomModelDir((fs::path(dir) / "base").string(), testutil::TinyByteLlama(), 0).ok());
  const fs::path data = fs::path(dir) / "task";
  fs::create_directories(data);
  Write(data / "client-00.jsonl", Questions({{"France", "Paris"}, {"Spain", "Madrid"}}));
  Write(data / "client-01.jsonl", Questions({{"Italy", "Rome"}}));
  Write(data / "client-05.jsonl", Questions({{"Peru", "Lima"}}));
  Write(data / "heldout.jsonl", Questions({{"Kenya", "Nairobi"}, {"Chile", "Santiago"}, {"Japan", "Tokyo"}}));
}

TEST(DemoSystemTest, FineTunesAGivenBaseOnATaskDirectory) {
  TestDir dir;
  ASSERT_NO_FATAL_FAILURE(WriteTask(dir.path()));
  const std::string base = (fs::path(dir.path()) / "base").string();
  const std::string task = (fs::path(dir.path()) / "task").string();
  const std::string work = (fs::path(dir.path()) / "demo").string();
  CliRun run =
      Cli(dir.path(), "", {"demo", "--base", base, "--data", task, "--rounds", "2", "--timeout", "120", "--dir", work});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("a coordinator and 2 workers"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("worker-2:    2 questions (client-01.jsonl + client-05.jsonl)"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("FINISHED:COMPLETED"), std::string::npos) << run.out;
  // The first two held-out questions, in file order, each with the reference and both answers.
  const size_t first = run.out.find("question:  What is the capital of Kenya?");
  const size_t second = run.out.find("question:  What is the capital of Chile?");
  ASSERT_NE(first, std::string::npos) << run.out;
  ASSERT_NE(second, std::string::npos) << run.out;
  EXPECT_LT(first, second);
  EXPECT_EQ(run.out.find("What is the capital of Japan?"), std::string::npos) << "only two questions shown";
  EXPECT_NE(run.out.find("reference: \"Nairobi\"", first), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("before:    \"", first), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("after:     \"", first), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("reference: \"Santiago\"", second), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("held-out answers (3 questions): Rouge-L "), std::string::npos) << run.out;
  EXPECT_TRUE(fs::exists(fs::path(work) / "model" / "model.safetensors"));
}

TEST(DemoSystemTest, BadPathsExitFourWithOneLine) {
  TestDir dir;
  ASSERT_NO_FATAL_FAILURE(WriteTask(dir.path()));
  const std::string base = (fs::path(dir.path()) / "base").string();
  const std::string task = (fs::path(dir.path()) / "task").string();
  const std::string missing = (fs::path(dir.path()) / "missing").string();
  for (const auto& args : std::vector<std::vector<std::string>>{{"demo", "--base", missing, "--data", task},
                                                                {"demo", "--base", base, "--data", missing},
                                                                {"demo", "--base", task, "--data", task},
                                                                {"demo", "--base", base, "--data", base},
                                                                {"demo", "--base", base}}) {
    CliRun run = Cli(dir.path(), "", args);
    EXPECT_EQ(run.exit_code, 4) << args[2] << ": " << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    EXPECT_TRUE(run.err.find("--base") != std::string::npos || run.err.find("--data") != std::string::npos) << run.err;
  }
}

}  // namespace
}  // namespace tributary::system_test
