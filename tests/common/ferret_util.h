// Shared helpers of the Ferret tests: small arenas of random weights and reconstructions.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "engine/arena.h"
#include "peft/ferret.h"

namespace tributary::ferret_test {

// A table of 1-D tensors with the given sizes (names t0, t1, ...).
std::shared_ptr<TensorTable> MakeTable(const std::vector<int64_t>& sizes);

// Fills the parameter elements (not the padding) with N(mean, sd) draws.
void FillNormal(Arena& arena, std::mt19937_64& rng, double mean, double sd);

// Delta~ = sum_k gamma_k v_k of a payload (server_lr 1, no clip), read back from a zero arena.
std::vector<double> Reconstruct(const FerretOptions& options, const std::vector<Block>& blocks,
                                const std::shared_ptr<TensorTable>& table, const Payload& payload);

// The parameter elements of an arena, in block order (blocks' segments concatenated), as fp64.
std::vector<double> Gather(const float* arena, const std::vector<Block>& blocks);

// FNV-1a 64 of the arena bytes (a stand-in for the replicas' weight hash).
uint64_t HashArena(const Arena& arena);

}  // namespace tributary::ferret_test
