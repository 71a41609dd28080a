// Random initialisation of a LLaMA-family model, matching HF `_init_weights` in distribution:
// linears and embeddings ~ normal(0, initializer_range), RMSNorm weights = 1, biases = 0.
//
// Deterministic by seed and independent of the thread count and of the tensor order: element i of
// tensor `name` is drawn from a counter-based stream keyed by (seed, hash(name)), so e.g. the embedding
// of a tied and an untied model with the same seed is identical.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "engine/arena.h"
#include "engine/model/llama_config.h"

namespace tributary {

class Tokenizer;

constexpr double kDefaultInitializerRange = 0.02;

// Fills `params` (laid out by BuildLlamaTensorTable(config), a host arena: checked) with fresh weights.
Status InitRandomModel(const LlamaConfig& config, uint64_t seed, Arena* params,
                       double initializer_range = kDefaultInitializerRange);

// Fills dst[0, n) with normal(0, stddev) values of the stream (seed, stream_key); value i depends only
// on (seed, stream_key, i).
void FillNormal(uint64_t seed, uint64_t stream_key, float stddev, float* dst, int64_t n);

// Creates a complete model directory (config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json) with random weights and `tokenizer`'s files, the ByteTokenizer when null
// (backs `tributary init-model [--tokenizer DIR]`). config.vocab_size must be >= the tokenizer's
// vocab_size (259 for the ByteTokenizer); the written config's bos/eos ids are the tokenizer's (1 and 2
// for the ByteTokenizer; a tokenizer without one keeps the config's).
Status WriteRandomModelDir(const std::string& dir, const LlamaConfig& config, uint64_t seed,
                           const Tokenizer* tokenizer = nullptr);

}  // namespace tributary
