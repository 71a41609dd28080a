#include "federation/secagg_quantize.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "federation/secagg_crypto.h"

namespace tributary {
namespace {

// The ChaCha20 key of a stochastic-rounding seed (BLAKE2b-256 of a label and the seed).
SecAggKey RoundingKey(uint64_t seed) {
  static constexpr char kLabel[] = "tributary secagg stochastic rounding v1";
  uint8_t message[sizeof(kLabel) + 8];
  std::memcpy(message, kLabel, sizeof(kLabel));
  for (int i = 0; i < 8; ++i) message[sizeof(kLabel) + static_cast<size_t>(i)] = static_cast<uint8_t>(seed >> (8 * i));
  SecAggKey key{};
  crypto_generichash(key.data(), key.size(), message, sizeof(message), nullptr, 0);
  return key;
}

}  // namespace

Result<SecAggQuantizer> SecAggQuantizer::Create(const QuantizationParams& params) {
  if (!std::isfinite(params.clip) || params.clip <= 0)
    return Status::InvalidArgument("secagg quantization: clip " + std::to_string(params.clip) +
                                   " (expected a finite value > 0)");
  if (params.max_clients == 0) return Status::InvalidArgument("secagg quantization: max_clients 0 (at least 1)");
  SecAggQuantizer q;
  q.params_ = params;
  q.max_level_ = std::numeric_limits<uint32_t>::max() / params.max_clients;
  q.scale_ = static_cast<double>(q.max_level_) / (2.0 * params.clip);
  return q;
}

Status SecAggQuantizer::Quantize(std::span<const float> x, QuantizeRounding rounding, uint64_t seed,
                                 std::span<uint32_t> out) const {
  if (out.size() != x.size())
    return Status::InvalidArgument("secagg quantization: output of " + std::to_string(out.size()) + " values for " +
                                   std::to_string(x.size()) + " inputs");
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  const double clip = params_.clip;
  const double top = static_cast<double>(max_level_);
  // Stochastic rounding draws one 32-bit word per coordinate, chunk by chunk.
  constexpr size_t kChunk = 4096;
  uint32_t random[kChunk];
  static constexpr unsigned char kNonce[crypto_stream_chacha20_NONCEBYTES] = {'q', 'u', 'a', 'n', 't', 'i', 'z', 'e'};
  const SecAggKey key = rounding == QuantizeRounding::kStochastic ? RoundingKey(seed) : SecAggKey{};
  for (size_t begin = 0; begin < x.size(); begin += kChunk) {
    const size_t n = std::min(kChunk, x.size() - begin);
    if (rounding == QuantizeRounding::kStochastic) {
      std::memset(random, 0, sizeof(random));
      crypto_stream_chacha20_xor_ic(reinterpret_cast<unsigned char*>(random), reinterpret_cast<unsigned char*>(random),
                                    sizeof(random), kNonce, begin * sizeof(uint32_t) / 64, key.data());
    }
    for (size_t j = 0; j < n; ++j) {
      const float value = x[begin + j];
      if (!std::isfinite(value))
        return Status::InvalidArgument("secagg quantization: coordinate " + std::to_string(begin + j) +
                                       " is not finite");
      const double v = (std::clamp(static_cast<double>(value), -clip, clip) + clip) * scale_;
      double level;
      if (rounding == QuantizeRounding::kNearest) {
        level = std::floor(v + 0.5);
      } else {
        const double floor = std::floor(v);
        const double u = static_cast<double>(random[j]) * 0x1p-32;  // uniform in [0, 1)
        level = floor + (u < v - floor ? 1.0 : 0.0);
      }
      out[begin + j] = static_cast<uint32_t>(std::clamp(level, 0.0, top));
    }
  }
  return Status::OK();
}

Result<std::vector<uint32_t>> SecAggQuantizer::Quantize(std::span<const float> x, QuantizeRounding rounding,
                                                        uint64_t seed) const {
  std::vector<uint32_t> out(x.size());
  TRIB_RETURN_IF_ERROR(Quantize(x, rounding, seed, out));
  return out;
}

Status SecAggQuantizer::DequantizeSum(std::span<const uint32_t> sum, uint32_t num_summed, std::span<double> out) const {
  if (num_summed == 0 || num_summed > params_.max_clients)
    return Status::InvalidArgument("secagg dequantization: " + std::to_string(num_summed) +
                                   " clients summed, expected 1 to max_clients " + std::to_string(params_.max_clients));
  if (out.size() != sum.size())
    return Status::InvalidArgument("secagg dequantization: output of " + std::to_string(out.size()) +
                                   " values for a sum of " + std::to_string(sum.size()));
  const uint64_t bound = uint64_t{num_summed} * max_level_;
  const double offset = static_cast<double>(num_summed) * params_.clip;
  for (size_t i = 0; i < sum.size(); ++i) {
    if (sum[i] > bound)
      return Status::InvalidArgument("secagg dequantization: coordinate " + std::to_string(i) + " of the sum is " +
                                     std::to_string(sum[i]) + ", above " + std::to_string(num_summed) + " clients x " +
                                     std::to_string(max_level_) +
                                     " (the sum wrapped, or a client quantized with other parameters)");
    out[i] = static_cast<double>(sum[i]) / scale_ - offset;
  }
  return Status::OK();
}

}  // namespace tributary
