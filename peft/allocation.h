// Per-block coefficient budgets K_l (docs/ferret.md, "Allocation").
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace tributary {

// Score x_l; K_l = max(floor(x_l / max_j x_j * K), 2), so the highest-scoring block gets exactly K.
enum class Allocation {
  kNormRatio,  // x_l = ||Delta_l|| (the Ferret authors' choice, default)
  kSqrtDNorm,  // x_l = sqrt(d_l) * ||Delta_l|| (MSE-optimal under MSE ~ (d_l / K_l) ||Delta_l||^2)
  kUniform,    // x_l = 1: every block gets K
};

inline constexpr int kMinCoefficientsPerBlock = 2;
// K and every K_l travel as u16 on the wire.
inline constexpr int kMaxSeedBudget = 65535;

const char* AllocationName(Allocation allocation);
// "norm_ratio" | "sqrt_d_norm" | "uniform".
Result<Allocation> ParseAllocation(std::string_view name);

// K_l for every block. block_norms[l] = ||Delta_l||, block_numels[l] = d_l (same length). A non-finite
// norm is an InvalidArgument naming the block (the client's round is aborted; nothing is uploaded).
// K must be in [2, 65535]. Scores of exactly zero everywhere give K_l = 2 for all blocks.
Result<std::vector<int>> AllocateCoefficients(Allocation allocation, int K, const std::vector<double>& block_norms,
                                              const std::vector<int64_t>& block_numels);

}  // namespace tributary
