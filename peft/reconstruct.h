// Reconstruct-apply on every replica: w_l -= sum_k c_{l,k} v_{l,k} (docs/ferret.md, "Reconstruct-apply").
//
// Fused per tile: each element accumulates c_k * v_k[i] over the support in ascending k (fp32 product,
// then fp32 add; the build has -ffp-contract=off, so no implicit FMA), then w_i -= acc_i once. An
// element's arithmetic never depends on how the block is sliced or threaded, so replicas applying the
// same coefficients are bit-identical. Zero coefficients are skipped (their vectors are not generated).
#pragma once

#include <cstdint>
#include <vector>

#include "peft/blocking.h"
#include "peft/projection.h"

namespace tributary {

// ||v_{l,k}||^2 for k = 0..count-1 (fp64, deterministic). Rademacher returns 1 (||v|| = 1 by design).
std::vector<double> BasisNormsSquared(const Block& block, const BasisConfig& basis, int count);

// The per-vector clip of reference scaling: s = min(1, max_norm / (|gamma| ||v|| + 1e-8)).
double ClipFactor(double gamma, double vector_norm_sq, double max_norm);

// c_k = fp32(server_lr * s_k * gamma_k) with s_k = ClipFactor(...) when max_norm > 0 (norms_sq needed
// then, one per gamma), else s_k = 1.
std::vector<float> ApplyCoefficients(const std::vector<float>& gamma, double server_lr, double max_norm,
                                     const std::vector<double>* norms_sq);

// w -= sum_k coefficients[l][k] * v_{l,k} for every block, in parallel over (block, slice). `weights`
// is the start of an arena laid out like the blocks' segments. coefficients.size() == blocks.size().
void ApplyBlocks(float* weights, const std::vector<Block>& blocks, const BasisConfig& basis,
                 const std::vector<std::vector<float>>& coefficients);

}  // namespace tributary
