// Client-side projection of an update onto the shared random vectors (docs/ferret.md, "Projection").
//
// Fused: Delta = w_old - w_new is formed tile by tile in fp32, each vector chunk is generated next to
// it and dotted at once, so no block-sized temporary exists. Each fixed-size slice of a block keeps
// fp64 partials per k; they are summed in slice order, so the result is bitwise independent of the
// thread count.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "peft/blocking.h"
#include "peft/random_basis.h"

namespace tributary {

// Where Delta comes from: Delta = w_old - w_new, or Delta = w_old when w_new is null. Both point to
// the start of arenas laid out like the blocks' segments.
struct DeltaSource {
  const float* w_old = nullptr;
  const float* w_new = nullptr;
};

enum class SeedMode {
  kPerRound,   // fresh bases every round (pairs with prefix support)
  kFixedPool,  // one pool of K vectors for the whole job: the round is left out of the key
};
const char* SeedModeName(SeedMode mode);
Result<SeedMode> ParseSeedMode(std::string_view name);  // "per_round" | "fixed_pool"

// The round number that enters the Philox key derivation.
inline uint32_t KeyRound(SeedMode mode, uint32_t round) {
  return mode == SeedMode::kPerRound ? round : 0;
}

// The shared seeds of one round: v_{k,l} = generator(dist, BasisKey(job_seed, key_round, k), l).
struct BasisConfig {
  Distribution dist = Distribution::kRademacher;
  uint64_t job_seed = 0;
  uint32_t key_round = 0;  // the round in per_round mode, 0 in fixed_pool mode
};

BasisStream MakeStream(const BasisConfig& basis, const Block& block, uint32_t k);

enum class Scaling {
  kUnbiased,   // gamma = <v, Delta> / (rho_l K_l): E[reconstruction] = Delta
  kReference,  // gamma = (d_l / K_l) <Delta, v>, plus the per-vector clip at 10 when applied (docs/ferret.md)
};
const char* ScalingName(Scaling scaling);
Result<Scaling> ParseScaling(std::string_view name);

// The factor turning <v_k, Delta_l> into gamma_k.
double GammaScale(Scaling scaling, Distribution dist, int64_t block_numel, int k_l);

struct BlockProjection {
  double delta_norm = 0;     // ||Delta_l||
  std::vector<double> dots;  // <v_k, Delta_l> for k = 0..K_l-1 (prefix support)
};

// ||Delta_l|| of every block (fp64, deterministic; needed before K_l can be allocated).
std::vector<double> BlockDeltaNorms(const DeltaSource& delta, const std::vector<Block>& blocks);

// Dots of every block with its first k_per_block[l] vectors, in parallel over (block, slice).
std::vector<BlockProjection> ProjectBlocks(const DeltaSource& delta, const std::vector<Block>& blocks,
                                           const BasisConfig& basis, const std::vector<int>& k_per_block);

}  // namespace tributary
