#include "federation/secagg_job.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "federation/privacy.h"

namespace tributary {

const char* QuantizeRoundingName(QuantizeRounding rounding) {
  return rounding == QuantizeRounding::kNearest ? "nearest" : "stochastic";
}

Result<QuantizeRounding> ParseQuantizeRounding(std::string_view name) {
  if (name == "nearest") return QuantizeRounding::kNearest;
  if (name == "stochastic") return QuantizeRounding::kStochastic;
  return Status::InvalidArgument("rounding '" + std::string(name) + "': expected nearest or stochastic");
}

uint32_t SecAggThreshold(const SecureAggregationOptions& options, uint32_t degree) {
  if (options.threshold > 0) return static_cast<uint32_t>(options.threshold);
  const uint32_t shares = degree + 1;
  return (2 * shares + 2) / 3;  // ceil(2 (k + 1) / 3): above half of the shares, below all of them
}

uint64_t NewSecAggSession() {
  TRIB_CHECK(sodium_init() >= 0);
  uint64_t session = 0;
  while (session == 0) randombytes_buf(&session, sizeof(session));
  return session;
}

Result<SecAggConfig> SecAggRoundConfig(const SecureAggregationOptions& options, int64_t method_dim, size_t num_clients,
                                       uint64_t session) {
  SecAggConfig config;
  config.session = session;
  config.dim = method_dim + 1;  // the weight coordinate
  config.neighbours = static_cast<uint32_t>(options.neighbours);
  config.threshold = SecAggThreshold(options, SecAggDegree(config.neighbours, num_clients));
  Status valid = ValidateSecAggConfig(config, num_clients);
  if (!valid.ok()) return Status::InvalidArgument("secure_aggregation.threshold: " + valid.message());
  return config;
}

double SecAggClientWeight(AggregationWeights weights, uint64_t num_samples, uint64_t weight_unit) {
  if (weights == AggregationWeights::kEqual || weight_unit == 0) return 1.0;
  return std::min(1.0, static_cast<double>(num_samples) / static_cast<double>(weight_unit));
}

Result<SecAggClientInput> MakeSecAggInput(const FederatedMethod& method, std::span<const uint8_t> payload,
                                          const Arena& reference, uint32_t round, double clip_norm, double weight,
                                          const SecAggRoundParams& params, uint64_t rounding_seed) {
  const int64_t dim = method.SecAggDim();
  if (params.config.dim != dim + 1)
    return Status::InvalidArgument("secure aggregation: the round's dim is " + std::to_string(params.config.dim) +
                                   ", this job's vectors have " + std::to_string(dim) + " values + 1");
  if (!(weight > 0 && weight <= 1))
    return Status::InvalidArgument("secure aggregation: client weight " + std::to_string(weight) + " not in (0, 1]");
  std::vector<float> vector(static_cast<size_t>(dim) + 1);
  TRIB_RETURN_IF_ERROR(method.SecAggVector(payload, reference, round, std::span<float>(vector).first(dim)));
  SecAggClientInput out;
  if (clip_norm > 0) {  // aggregation.clip_norm, as the coordinator clips a plain round (aggregator.h step 2)
    double squared = 0;
    for (int64_t i = 0; i < dim; ++i) squared += static_cast<double>(vector[i]) * vector[i];
    const double norm = std::sqrt(squared);
    if (norm > clip_norm) out.clip_scale = clip_norm / norm;
  }
  const double scale = out.clip_scale * weight;
  for (int64_t i = 0; i < dim; ++i) {
    const float v = static_cast<float>(scale * static_cast<double>(vector[i]));
    if (std::fabs(v) > params.clip) ++out.clipped_coordinates;
    vector[i] = v;
  }
  vector[static_cast<size_t>(dim)] = static_cast<float>(weight * params.clip);
  TRIB_ASSIGN_OR_RETURN(SecAggQuantizer quantizer, SecAggQuantizer::Create({params.clip, params.num_clients}));
  TRIB_ASSIGN_OR_RETURN(out.quantized, quantizer.Quantize(vector, params.rounding, rounding_seed));
  return out;
}

Result<std::vector<uint8_t>> SecAggAggregateFromSum(const FederatedMethod& method, std::span<const uint32_t> sum,
                                                    uint32_t num_summed, uint32_t num_clients, double clip,
                                                    double expected_weight, const Arena& global, uint32_t round,
                                                    double sum_noise_stddev) {
  const int64_t dim = method.SecAggDim();
  if (sum.size() != static_cast<size_t>(dim) + 1)
    return Status::InvalidArgument("secure aggregation: sum of " + std::to_string(sum.size()) + " values, expected " +
                                   std::to_string(dim + 1));
  TRIB_ASSIGN_OR_RETURN(SecAggQuantizer quantizer, SecAggQuantizer::Create({clip, num_clients}));
  std::vector<double> values(sum.size());
  TRIB_RETURN_IF_ERROR(quantizer.DequantizeSum(sum, num_summed, values));
  const double weight = values.back() / clip;
  // Quantization (m steps of 1 / scale) plus the fp32 rounding of each a_i * clip.
  const double tolerance = num_summed * (1.0 / (quantizer.scale() * clip) + 1e-6);
  if (!(expected_weight > 0) || std::fabs(weight - expected_weight) > tolerance)
    return Status::InvalidArgument("secure aggregation: the summed weight is " + std::to_string(weight) +
                                   ", the included clients declared " + std::to_string(expected_weight) +
                                   " (a client weighted its vector with another weight than it declared)");
  values.pop_back();
  for (double& v : values) v /= expected_weight;
  if (sum_noise_stddev > 0)
    AddGaussianNoise(FreshNoiseKey(), sum_noise_stddev / expected_weight, 0, static_cast<int64_t>(values.size()),
                     values.data());
  return method.SecAggAggregate(values, global, round);
}

}  // namespace tributary
