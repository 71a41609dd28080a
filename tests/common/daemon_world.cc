#include "tests/common/daemon_world.h"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/io/model_dir.h"
#include "engine/text/tokenizer.h"
#include "tests/common/tiny_llama.h"

namespace tributary::testutil {

DaemonWorld::DaemonWorld(int64_t seq_len)
    : model_dir(dir.path() + "/model"), data_path(dir.path() + "/letters.jsonl"), config(TinyByteLlama(seq_len)) {
  auto model = LlamaModel::Create(config);
  EXPECT_TRUE(model.ok());
  base = std::move(*model);
  base->InitRandom(11);
  ByteTokenizer tokenizer;
  SaveModelOptions save;
  save.tokenizer = &tokenizer;
  EXPECT_TRUE(SaveModelDir(model_dir, config, base->params(), save).ok());
  std::ofstream out(data_path);
  const char* const words[] = {"abc", "xyz", "mno", "qrs", "hello", "world"};
  for (int i = 0; i < 18; ++i) {
    out << R"({"instruction": "repeat )" << words[i % 6] << R"(", "output": ")" << words[(i + 1) % 6] << " "
        << words[i % 6] << "\"}\n";
    ++num_examples;
  }
  out.close();
  auto examples = LoadExamples(data_path);
  EXPECT_TRUE(examples.ok());
  auto tokenized = TokenizeExamples(*examples, tokenizer, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  rows = BuildRows(*tokenized, seq_len, /*pack=*/true, ByteTokenizer::kPadId);
}

std::unique_ptr<LlamaModel> DaemonWorld::Replica() const {
  auto model = LlamaModel::Create(config);
  EXPECT_TRUE(model.ok());
  (*model)->params().CopyFrom(base->params());
  return std::move(*model);
}

}  // namespace tributary::testutil
