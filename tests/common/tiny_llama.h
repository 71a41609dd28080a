// The tests' small LLaMA configurations: one that trains something real in well under a second, and
// one small enough for finite-difference gradient checks.
#pragma once

#include <cstdint>

#include "engine/model/llama_config.h"
#include "engine/text/tokenizer.h"

namespace tributary::testutil {

// A 2-layer GQA LLaMA over the byte tokenizer's vocabulary (~27k parameters, tied embeddings).
inline LlamaConfig TinyByteLlama(int64_t max_positions = 128) {
  LlamaConfig c;
  c.vocab_size = ByteTokenizer::kVocabSize;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = max_positions;
  c.tie_word_embeddings = true;
  return c;
}

// A 2-layer GQA LLaMA (hidden 16, intermediate 24, 4 heads, 2 KV heads, untied, no bias) for exact
// gradient and layout checks.
inline LlamaConfig MicroLlama(int64_t vocab_size = 32, int64_t max_positions = 16) {
  LlamaConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = max_positions;
  return c;
}

}  // namespace tributary::testutil
