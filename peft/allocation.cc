#include "peft/allocation.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tributary {

const char* AllocationName(Allocation allocation) {
  switch (allocation) {
    case Allocation::kNormRatio: return "norm_ratio";
    case Allocation::kSqrtDNorm: return "sqrt_d_norm";
    case Allocation::kUniform: return "uniform";
  }
  return "?";
}

Result<Allocation> ParseAllocation(std::string_view name) {
  if (name == "norm_ratio") return Allocation::kNormRatio;
  if (name == "sqrt_d_norm") return Allocation::kSqrtDNorm;
  if (name == "uniform") return Allocation::kUniform;
  return Status::InvalidArgument("ferret allocation '" + std::string(name) +
                                 "': expected norm_ratio, sqrt_d_norm or uniform");
}

Result<std::vector<int>> AllocateCoefficients(Allocation allocation, int K, const std::vector<double>& block_norms,
                                              const std::vector<int64_t>& block_numels) {
  if (K < kMinCoefficientsPerBlock || K > kMaxSeedBudget) {
    return Status::InvalidArgument("ferret K " + std::to_string(K) + ": must be in [2, 65535]");
  }
  if (block_norms.size() != block_numels.size()) {
    return Status::InvalidArgument("ferret allocation: " + std::to_string(block_norms.size()) + " norms for " +
                                   std::to_string(block_numels.size()) + " blocks");
  }
  const size_t L = block_norms.size();
  std::vector<double> score(L);
  for (size_t l = 0; l < L; ++l) {
    if (!std::isfinite(block_norms[l])) {
      return Status::InvalidArgument("ferret block " + std::to_string(l) + ": update norm is not finite");
    }
    switch (allocation) {
      case Allocation::kNormRatio: score[l] = block_norms[l]; break;
      case Allocation::kSqrtDNorm: score[l] = std::sqrt(static_cast<double>(block_numels[l])) * block_norms[l]; break;
      case Allocation::kUniform: score[l] = 1.0; break;
    }
  }
  // The reference floors the maximum at 1e-8 so an all-zero update divides safely.
  double max_score = 1e-8;
  for (double s : score) max_score = std::max(max_score, s);
  std::vector<int> k_l(L);
  for (size_t l = 0; l < L; ++l) {
    const double share = std::floor(score[l] / max_score * static_cast<double>(K));
    k_l[l] = std::max(kMinCoefficientsPerBlock, static_cast<int>(std::min(share, static_cast<double>(K))));
  }
  return k_l;
}

}  // namespace tributary
