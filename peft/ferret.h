// Ferret: federated full-parameter tuning by shared-randomness projection (docs/architecture.md,
// "One federated round").
//
// A client projects its update Delta = w_old - w_new onto K_l shared random vectors per block and
// uploads K_l coefficients per block; the server averages coefficients (federation/ferret_method.cc,
// through the aggregator seam); every replica regenerates the vectors and applies the aggregate. This
// header is the small public facade over peft/*:
//
//   auto blocks = MakeFerretBlocks(options, arena.table());
//   // client                                            // every replica
//   auto up = ProjectUpdate(options, *blocks, w_old, w_new, round);
//                                                        ApplyAggregate(options, *blocks, aggregate, ...);
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"
#include "peft/allocation.h"
#include "peft/blocking.h"
#include "peft/payload.h"
#include "peft/projection.h"
#include "peft/random_basis.h"
#include "peft/reconstruct.h"

namespace tributary {

struct FerretOptions {
  int K = 200;  // seed budget; the block with the largest score gets exactly K coefficients
  Distribution distribution = Distribution::kRademacher;
  Scaling scaling = Scaling::kUnbiased;
  BlockingRule blocking = BlockingRule::kReference;
  int64_t chunk_elems = int64_t{1} << 24;  // fixed_chunks only
  Allocation allocation = Allocation::kNormRatio;
  SeedMode seed_mode = SeedMode::kPerRound;
  uint64_t job_seed = 0;
  double server_lr = 1.0;  // base slr (a schedule passes the round's value to ApplyAggregate)
  // Per-(seed, block) max norm of slr-free updates gamma_k v_k, applied with reference scaling only
  // (docs/ferret.md, "Projection"); 0 disables it.
  double clip = 10.0;
  WireDtype wire_dtype = WireDtype::kFp32;
};

// InvalidArgument naming the option when a value is out of range.
Status ValidateFerretOptions(const FerretOptions& options);

Result<std::vector<Block>> MakeFerretBlocks(const FerretOptions& options, const TensorTable& table);

// The shared seeds of `round` under the options' distribution and seed mode.
BasisConfig RoundBasis(const FerretOptions& options, uint32_t round);

struct ClientProjection {
  Payload payload;                  // what the client uploads
  std::vector<double> block_norms;  // ||Delta_l||
  std::vector<int> k_per_block;     // K_l
};

// Client side: block norms, K_l allocation, fused projection, gamma scaling, rounding to the wire
// dtype. `delta` addresses arenas of `arena_elems` floats laid out like `blocks`. A non-finite update
// or coefficient is an InvalidArgument naming the block (nothing must be uploaded).
Result<ClientProjection> ProjectUpdate(const FerretOptions& options, const std::vector<Block>& blocks,
                                       const DeltaSource& delta, int64_t arena_elems, uint32_t round);
// Delta = w_old - w_new (arenas of one table).
Result<ClientProjection> ProjectUpdate(const FerretOptions& options, const std::vector<Block>& blocks,
                                       const Arena& w_old, const Arena& w_new, uint32_t round);

// Every replica: weights -= server_lr * sum_{l,k} s_{l,k} gamma_bar_{l,k} v_{l,k} (s = clip factor under
// reference scaling, else 1). InvalidArgument when the aggregate does not fit the blocks or K.
Status ApplyAggregate(const FerretOptions& options, const std::vector<Block>& blocks, const Payload& aggregate,
                      double server_lr, float* weights, int64_t arena_elems);
Status ApplyAggregate(const FerretOptions& options, const std::vector<Block>& blocks, const Payload& aggregate,
                      double server_lr, Arena& weights);

}  // namespace tributary
