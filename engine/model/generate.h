// Autoregressive generation for LlamaModel with a KV cache: greedy or temperature + top-p sampling
// (seeded), stopping at eos or after max_new_tokens.
//
// The cached forward runs the same Backend kernels and LinearForward calls as the training forward,
// with attention over [cache, new tokens] (AttentionShape with q_len < kv_len), so its logits equal
// the full forward's (tests/engine/generate_test.cc checks this). The cache and the per-call scratch
// are memory of the model's backend; only the logits come back to the host (for sampling).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "base/status.h"
#include "engine/model/llama_model.h"

namespace tributary {

// Keys (after RoPE) and values of every layer: per layer [batch, capacity, n_kv_heads * head_dim], in
// the memory of a buffer type (that of the model's backend), zero-initialised.
struct KvCache {
  int64_t batch = 0;
  int64_t capacity = 0;      // positions the cache can hold
  int64_t length = 0;        // positions filled so far (the next token's position)
  std::vector<Buffer> k, v;  // [layer]
  Buffer scratch;            // ForwardCached's activations and ids, grown on demand and reused
};

// capacity must be within max_position_embeddings. type: the model backend's buffer type (null: host,
// which suits the CPU backend).
Result<KvCache> CreateKvCache(const LlamaConfig& config, int64_t batch, int64_t capacity,
                              const BufferType* type = nullptr);

// Runs tokens [batch, n] (host ids) at positions cache.length .. cache.length + n - 1, appends their
// keys and values to the cache and copies logits [batch * n, vocab] to the host vector *logits. The
// cache must live in the model backend's memory (checked).
Status ForwardCached(LlamaModel& model, KvCache& cache, const int32_t* tokens, int64_t n, std::vector<float>* logits);

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  float temperature = 0.0f;  // 0: greedy (argmax)
  float top_p = 1.0f;        // nucleus sampling mass in (0, 1]
  int64_t top_k = 0;         // > 0: sample among the k most likely tokens only (applied before top_p)
  uint64_t seed = 0;
  int64_t eos_token_id = -2;  // -2: the config's eos_token_id; -1: never stop early
  // Called with each new token as soon as it is chosen (streaming); returning false stops generation
  // after that token.
  std::function<bool(int32_t)> on_token;
};

// Picks the next token from one row of logits: argmax when temperature <= 0, otherwise a draw from
// softmax(logits / temperature) restricted to the top_k most likely tokens (top_k > 0) and then to the
// smallest set of those whose mass reaches top_p.
int32_t SampleToken(const float* logits, int64_t vocab, float temperature, float top_p, int64_t top_k,
                    std::mt19937_64& rng);
inline int32_t SampleToken(const float* logits, int64_t vocab, float temperature, float top_p, std::mt19937_64& rng) {
  return SampleToken(logits, vocab, temperature, top_p, 0, rng);
}

// Generates up to max_new_tokens after `prompt` (batch 1); returns the new tokens (the eos token, when
// produced, is included as the last one). Errors: empty prompt, bad ids, length over max positions.
Result<std::vector<int32_t>> Generate(LlamaModel& model, const std::vector<int32_t>& prompt,
                                      const GenerateOptions& options);

}  // namespace tributary
