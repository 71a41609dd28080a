#include "engine/model/model_init.h"

#include <cmath>
#include <numbers>

#include "base/hash.h"
#include "base/parallel.h"
#include "engine/io/model_dir.h"
#include "engine/text/tokenizer.h"

namespace tributary {

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void FillNormal(uint64_t seed, uint64_t stream_key, float stddev, float* dst, int64_t n) {
  const uint64_t key = SplitMix64(seed ^ SplitMix64(stream_key));
  // Box-Muller on pairs: pair p gives elements 2p and 2p+1, so any chunking yields the same values.
  ParallelFor(0, (n + 1) / 2, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const uint64_t a = SplitMix64(key + 2 * static_cast<uint64_t>(p));
      const uint64_t b = SplitMix64(key + 2 * static_cast<uint64_t>(p) + 1);
      const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
      const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;          // [0, 1)
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double theta = 2.0 * std::numbers::pi * u2;
      dst[2 * p] = static_cast<float>(stddev * r * std::cos(theta));
      if (2 * p + 1 < n) dst[2 * p + 1] = static_cast<float>(stddev * r * std::sin(theta));
    }
  });
}

Status InitRandomModel(const LlamaConfig& config, uint64_t seed, Arena* params, double initializer_range) {
  TRIB_CHECK(params->is_host());  // filled by host code
  TRIB_RETURN_IF_ERROR(config.Validate());
  const auto expected = BuildLlamaTensorTable(config);
  const TensorTable& table = params->table();
  if (table.size() != expected->size())
    return Status::InvalidArgument("InitRandomModel: parameter arena does not match the config's tensor table");
  for (size_t i = 0; i < table.size(); ++i) {
    const TensorEntry& e = table[i];
    if (e.name != (*expected)[i].name || e.shape != (*expected)[i].shape)
      return Status::InvalidArgument("InitRandomModel: tensor '" + e.name + "' does not match the config's table");
    float* dst = params->tensor(i);
    if (EndsWith(e.name, "layernorm.weight") || e.name == "model.norm.weight") {
      for (int64_t k = 0; k < e.numel; ++k) dst[k] = 1.0f;
    } else if (EndsWith(e.name, ".bias")) {
      for (int64_t k = 0; k < e.numel; ++k) dst[k] = 0.0f;
    } else {
      FillNormal(seed, Fnv1a64(e.name.data(), e.name.size()), static_cast<float>(initializer_range), dst, e.numel);
    }
  }
  return Status::OK();
}

Status WriteRandomModelDir(const std::string& dir, const LlamaConfig& config, uint64_t seed,
                           const Tokenizer* tokenizer) {
  ByteTokenizer byte_tokenizer;
  const Tokenizer& tok = tokenizer != nullptr ? *tokenizer : byte_tokenizer;
  if (config.vocab_size < tok.vocab_size())
    return Status::InvalidArgument("model config field 'vocab_size': " + std::to_string(config.vocab_size) +
                                   " is smaller than the " + (tokenizer != nullptr ? "" : "byte ") + "tokenizer's " +
                                   std::to_string(tok.vocab_size()) + " tokens");
  LlamaConfig written = config;
  if (tok.bos_id() >= 0) written.bos_token_id = tok.bos_id();
  if (tok.eos_id() >= 0) written.eos_token_id = tok.eos_id();
  TRIB_RETURN_IF_ERROR(written.Validate());
  Arena params(BuildLlamaTensorTable(written));
  TRIB_RETURN_IF_ERROR(InitRandomModel(written, seed, &params));
  SaveModelOptions options;
  options.tokenizer = &tok;
  return SaveModelDir(dir, written, params, options);
}

}  // namespace tributary
