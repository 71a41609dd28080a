// Secure aggregation in a federated job (the job spec's secure_aggregation section; docs/secure-aggregation.md):
// the options, the round parameters the coordinator hands each client, what a client turns its upload
// into before masking (federation/secagg.h) and how the coordinator turns the unmasked sum back into the
// round's aggregate, in the method's own format (so committed rounds, replicas and catch-up are as in a
// plain round).
//
// Weights: client i uploads [a_i v_i, a_i] where v_i is its method vector (FederatedMethod::SecAggVector,
// clipped to aggregation.clip_norm in L2 when set) and a_i = n_i / W its weight (n_i its num_samples, W the
// largest num_samples among the clients that advertised keys; a_i = 1 under equal weights), so a_i <= 1 and
// every coordinate stays in [-clip, clip]. The coordinator learns sum a_i v_i and sum a_i (the last
// coordinate, scaled by clip) and commits their ratio: the weighted mean of a plain round up to quantization.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"
#include "federation/aggregator.h"
#include "federation/method.h"
#include "federation/secagg.h"
#include "federation/secagg_quantize.h"

namespace tributary {

// The job spec's secure_aggregation section.
struct SecureAggregationOptions {
  bool enabled = false;
  int64_t threshold = 0;   // t; 0: ceil(2 (k + 1) / 3) for the round's degree k
  int64_t neighbours = 0;  // k; 0: all pairs
  double clip = 0;         // quantization range per coordinate, [-clip, clip]; required when enabled
  QuantizeRounding rounding = QuantizeRounding::kNearest;
  double stage_timeout_s = 30;  // how long the key-sharing, masked-input and unmasking stages wait
};

const char* QuantizeRoundingName(QuantizeRounding rounding);  // "nearest" | "stochastic"
Result<QuantizeRounding> ParseQuantizeRounding(std::string_view name);

// The round's threshold for a communication graph of `degree` neighbours per client.
uint32_t SecAggThreshold(const SecureAggregationOptions& options, uint32_t degree);

// A fresh random session id (binds one round's SecAgg messages; a re-opened round gets a new one).
uint64_t NewSecAggSession();

// SecAggReply.stage of an answer that says the round is committed already: the client is done.
inline constexpr uint32_t kSecAggStageCommitted = 5;

// What a client needs to take part in a round's session (the coordinator's answer to its join).
struct SecAggRoundParams {
  SecAggConfig config;       // session, dim (the method's SecAggDim() + 1), threshold, neighbours
  uint32_t client_id = 0;    // 1..n over the round's participants in ascending worker id
  uint32_t num_clients = 0;  // n: the most vectors summed (the quantizer's max_clients)
  double clip = 0;
  QuantizeRounding rounding = QuantizeRounding::kNearest;
};

// The round's config for `num_clients` selected clients of a job whose method has `method_dim` values.
// InvalidArgument naming secure_aggregation.threshold when it does not fit the round's degree.
Result<SecAggConfig> SecAggRoundConfig(const SecureAggregationOptions& options, int64_t method_dim, size_t num_clients,
                                       uint64_t session);

// a_i: num_samples / weight_unit under samples weighting, 1 under equal weights.
double SecAggClientWeight(AggregationWeights weights, uint64_t num_samples, uint64_t weight_unit);

// A client's quantized input and what clipping did to it.
struct SecAggClientInput {
  std::vector<uint32_t> quantized;  // config.dim values
  double clip_scale = 1.0;          // aggregation.clip_norm's factor (1: not clipped)
  int64_t clipped_coordinates = 0;  // coordinates outside [-clip, clip], clamped by the quantizer
};

// Worker: the method vector of `payload` (relative to `reference`), clipped to `clip_norm` in L2 when it is
// > 0, times `weight`, with weight * clip appended, quantized with the round's parameters.
Result<SecAggClientInput> MakeSecAggInput(const FederatedMethod& method, std::span<const uint8_t> payload,
                                          const Arena& reference, uint32_t round, double clip_norm, double weight,
                                          const SecAggRoundParams& params, uint64_t rounding_seed);

// Coordinator: the aggregate of `round` from the unmasked sum of `num_summed` clients' inputs (quantized for
// `num_clients` with `clip`) whose weights add up to `expected_weight`. InvalidArgument when the sum does not
// dequantize or its weight coordinate disagrees with expected_weight beyond the quantization error (a client
// weighted its vector with another weight than it declared). sum_noise_stddev > 0: central differential
// privacy (federation/privacy.h) adds N(0, sum_noise_stddev^2) to each coordinate of the sum, i.e.
// sum_noise_stddev / expected_weight on the mean, from a fresh key.
Result<std::vector<uint8_t>> SecAggAggregateFromSum(const FederatedMethod& method, std::span<const uint32_t> sum,
                                                    uint32_t num_summed, uint32_t num_clients, double clip,
                                                    double expected_weight, const Arena& global, uint32_t round,
                                                    double sum_noise_stddev = 0);

}  // namespace tributary
