// Quantization for secure aggregation: a client's fp32 vector becomes integers modulo 2^32 whose sum
// over up to max_clients clients never wraps, and the server turns that sum back into fp64.
//
// A coordinate x is clipped to [-clip, clip] and mapped to
//   q = R((x + clip) * scale),  scale = Q / (2 clip),  Q = floor((2^32 - 1) / max_clients)
// with R rounding to nearest or stochastically (unbiased), so 0 <= q <= Q. A sum of m <= max_clients
// such values is at most m Q <= 2^32 - 1: the sum modulo 2^32 that secure aggregation yields is the
// exact integer sum S, and
//   sum_i clip(x_i) ~= S / scale - m clip
// with an error of at most m / (2 scale) (nearest) or zero-mean with at most m / scale (stochastic).
// One step 1/scale = 2 clip / Q: 4.7e-9 for clip 1 and 10 clients, 4.7e-7 for 1000.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"

namespace tributary {

enum class QuantizeRounding {
  kNearest,     // deterministic: round half up
  kStochastic,  // floor + 1 with probability equal to the fraction, from a ChaCha20 stream of the caller's seed
};

struct QuantizationParams {
  double clip = 1.0;         // values are clipped to [-clip, clip]; finite and > 0
  uint32_t max_clients = 0;  // the most clients whose vectors are summed (a round's selected count); >= 1
};

class SecAggQuantizer {
 public:
  // InvalidArgument naming the field for a clip that is not finite and positive, or max_clients 0.
  static Result<SecAggQuantizer> Create(const QuantizationParams& params);

  const QuantizationParams& params() const { return params_; }
  uint32_t max_level() const { return max_level_; }  // Q: the largest quantized value
  double scale() const { return scale_; }            // levels per unit

  // out[i] = q(x[i]) for every i (out.size() == x.size()). `seed` drives stochastic rounding (ignored
  // for nearest): the same seed and input give the same bytes, so a redone client step uploads the
  // same vector. InvalidArgument "coordinate i is not finite" (nothing is clipped silently then).
  Status Quantize(std::span<const float> x, QuantizeRounding rounding, uint64_t seed, std::span<uint32_t> out) const;
  Result<std::vector<uint32_t>> Quantize(std::span<const float> x, QuantizeRounding rounding, uint64_t seed) const;

  // out[i] = sum[i] / scale - num_summed * clip: the sum of the num_summed clients' clipped values.
  // InvalidArgument when num_summed is 0 or above max_clients, or a coordinate exceeds num_summed * Q
  // (the sum wrapped, or a client quantized with other parameters); out.size() == sum.size().
  Status DequantizeSum(std::span<const uint32_t> sum, uint32_t num_summed, std::span<double> out) const;

 private:
  QuantizationParams params_;
  uint32_t max_level_ = 0;
  double scale_ = 0;
};

}  // namespace tributary
