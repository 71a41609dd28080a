#include "peft/ferret.h"

#include <cmath>
#include <string>

namespace tributary {

Status ValidateFerretOptions(const FerretOptions& o) {
  if (o.K < kMinCoefficientsPerBlock || o.K > kMaxSeedBudget) {
    return Status::InvalidArgument("ferret option K = " + std::to_string(o.K) + ": must be in [2, 65535]");
  }
  if (o.blocking == BlockingRule::kFixedChunks && o.chunk_elems < 1) {
    return Status::InvalidArgument("ferret option chunk_elems = " + std::to_string(o.chunk_elems) + ": must be >= 1");
  }
  if (!std::isfinite(o.server_lr) || o.server_lr <= 0) {
    return Status::InvalidArgument("ferret option server_lr = " + std::to_string(o.server_lr) + ": must be > 0");
  }
  if (!std::isfinite(o.clip) || o.clip < 0) {
    return Status::InvalidArgument("ferret option clip = " + std::to_string(o.clip) + ": must be >= 0");
  }
  return Status::OK();
}

Result<std::vector<Block>> MakeFerretBlocks(const FerretOptions& options, const TensorTable& table) {
  TRIB_RETURN_IF_ERROR(ValidateFerretOptions(options));
  TRIB_ASSIGN_OR_RETURN(std::vector<Block> blocks, MakeBlocks(table, options.blocking, options.chunk_elems));
  if (blocks.size() > static_cast<size_t>(kMaxPayloadBlocks)) {
    return Status::InvalidArgument("ferret blocking gives " + std::to_string(blocks.size()) +
                                   " blocks, more than the payload's 65535");
  }
  return blocks;
}

BasisConfig RoundBasis(const FerretOptions& options, uint32_t round) {
  BasisConfig basis;
  basis.dist = options.distribution;
  basis.job_seed = options.job_seed;
  basis.key_round = KeyRound(options.seed_mode, round);
  return basis;
}

Result<ClientProjection> ProjectUpdate(const FerretOptions& options, const std::vector<Block>& blocks,
                                       const DeltaSource& delta, int64_t arena_elems, uint32_t round) {
  TRIB_RETURN_IF_ERROR(ValidateFerretOptions(options));
  TRIB_RETURN_IF_ERROR(ValidateBlocks(blocks, arena_elems));
  ClientProjection out;
  out.block_norms = BlockDeltaNorms(delta, blocks);
  std::vector<int64_t> numels;
  numels.reserve(blocks.size());
  for (const Block& b : blocks) numels.push_back(b.numel);
  TRIB_ASSIGN_OR_RETURN(out.k_per_block, AllocateCoefficients(options.allocation, options.K, out.block_norms, numels));

  const BasisConfig basis = RoundBasis(options, round);
  const std::vector<BlockProjection> proj = ProjectBlocks(delta, blocks, basis, out.k_per_block);
  out.payload.round = round;
  out.payload.dtype = options.wire_dtype;
  out.payload.gamma.resize(blocks.size());
  for (size_t l = 0; l < blocks.size(); ++l) {
    const int k_l = out.k_per_block[l];
    const double scale = GammaScale(options.scaling, options.distribution, blocks[l].numel, k_l);
    auto& g = out.payload.gamma[l];
    g.resize(static_cast<size_t>(k_l));
    for (int k = 0; k < k_l; ++k) {
      const double gamma = scale * proj[l].dots[static_cast<size_t>(k)];
      g[static_cast<size_t>(k)] =
          options.wire_dtype == WireDtype::kFp32 ? static_cast<float>(gamma) : FloatFromBf16(Bf16FromDouble(gamma));
      if (!std::isfinite(g[static_cast<size_t>(k)])) {
        return Status::InvalidArgument("ferret block " + std::to_string(l) + " (" + blocks[l].first_tensor +
                                       "): coefficient " + std::to_string(k) + " is not finite in " +
                                       WireDtypeName(options.wire_dtype));
      }
    }
  }
  return out;
}

Result<ClientProjection> ProjectUpdate(const FerretOptions& options, const std::vector<Block>& blocks,
                                       const Arena& w_old, const Arena& w_new, uint32_t round) {
  if (w_old.size() != w_new.size()) {
    return Status::InvalidArgument("ferret projection: w_old has " + std::to_string(w_old.size()) +
                                   " elements, w_new " + std::to_string(w_new.size()));
  }
  return ProjectUpdate(options, blocks, DeltaSource{w_old.data(), w_new.data()}, w_old.size(), round);
}

Status ApplyAggregate(const FerretOptions& options, const std::vector<Block>& blocks, const Payload& aggregate,
                      double server_lr, float* weights, int64_t arena_elems) {
  TRIB_RETURN_IF_ERROR(ValidateFerretOptions(options));
  TRIB_RETURN_IF_ERROR(ValidateBlocks(blocks, arena_elems));
  if (aggregate.gamma.size() != blocks.size()) {
    return Status::InvalidArgument("ferret aggregate of round " + std::to_string(aggregate.round) + ": " +
                                   std::to_string(aggregate.gamma.size()) + " blocks, expected " +
                                   std::to_string(blocks.size()));
  }
  if (!std::isfinite(server_lr)) return Status::InvalidArgument("ferret apply: server_lr is not finite");
  const BasisConfig basis = RoundBasis(options, aggregate.round);
  const bool clip = options.scaling == Scaling::kReference && options.clip > 0;
  std::vector<std::vector<float>> coefficients(blocks.size());
  for (size_t l = 0; l < blocks.size(); ++l) {
    const auto& g = aggregate.gamma[l];
    if (g.size() > static_cast<size_t>(options.K)) {
      return Status::InvalidArgument("ferret aggregate: block " + std::to_string(l) + " has " +
                                     std::to_string(g.size()) +
                                     " coefficients, more than K = " + std::to_string(options.K));
    }
    for (size_t k = 0; k < g.size(); ++k) {
      if (!std::isfinite(g[k])) {
        return Status::InvalidArgument("ferret aggregate: block " + std::to_string(l) + " gamma[" + std::to_string(k) +
                                       "] is not finite");
      }
    }
    if (clip) {
      const std::vector<double> norms = BasisNormsSquared(blocks[l], basis, static_cast<int>(g.size()));
      coefficients[l] = ApplyCoefficients(g, server_lr, options.clip, &norms);
    } else {
      coefficients[l] = ApplyCoefficients(g, server_lr, 0.0, nullptr);
    }
  }
  ApplyBlocks(weights, blocks, basis, coefficients);
  return Status::OK();
}

Status ApplyAggregate(const FerretOptions& options, const std::vector<Block>& blocks, const Payload& aggregate,
                      double server_lr, Arena& weights) {
  return ApplyAggregate(options, blocks, aggregate, server_lr, weights.data(), weights.size());
}

}  // namespace tributary
