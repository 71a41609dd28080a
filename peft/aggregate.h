// Server-side aggregation in coefficient space (ferret-spec section 7). Seeds never depend on the
// client, so the weighted mean of the clients' coefficients reconstructs to the weighted mean of
// their reconstructions (linearity) and the server reconstructs once.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "peft/payload.h"

namespace tributary {

enum class AggregationWeights {
  kEqual,    // w_i = 1/n
  kSamples,  // w_i = samples_i / sum_j samples_j
};
const char* AggregationWeightsName(AggregationWeights weights);
Result<AggregationWeights> ParseAggregationWeights(std::string_view name);  // "equal" | "samples"

enum class SeedMode {
  kPerRound,   // fresh bases every round (paper; pairs with prefix support)
  kFixedPool,  // one pool for all rounds (reference code): the round is left out of the key
};
const char* SeedModeName(SeedMode mode);
Result<SeedMode> ParseSeedMode(std::string_view name);  // "per_round" | "fixed_pool"

// The round number that enters the Philox key derivation.
inline uint32_t KeyRound(SeedMode mode, uint32_t round) {
  return mode == SeedMode::kPerRound ? round : 0;
}

struct ClientCoefficients {
  uint64_t client_id = 0;
  int64_t num_samples = 0;  // used with kSamples (must then be > 0)
  const Payload* payload = nullptr;
};

// gamma_bar[l][k] = sum_i w_i gamma_i[l][k] (gamma_i[l][k] = 0 for k >= K_l^(i)), summed in fp64 in
// ascending client id, rounded once to `out_dtype`; the support of block l is max_i K_l^(i). All
// payloads must carry `round` and `num_blocks` blocks; client ids must be distinct. InvalidArgument
// naming the client otherwise (or when there is none).
Result<Payload> AggregateCoefficients(const std::vector<ClientCoefficients>& clients, AggregationWeights weights,
                                      uint32_t round, int num_blocks, WireDtype out_dtype);

}  // namespace tributary
