#include "peft/projection.h"

#include <cmath>
#include <cstring>
#include <string>

#include "base/parallel.h"

namespace tributary {
namespace {

constexpr int kLanes = 8;

// One (block, slice) unit of parallel work.
struct SliceTask {
  size_t block = 0;
  int64_t slice = 0;
};

std::vector<SliceTask> MakeSliceTasks(const std::vector<Block>& blocks) {
  std::vector<SliceTask> tasks;
  for (size_t l = 0; l < blocks.size(); ++l) {
    const int64_t n = NumSlices(blocks[l]);
    for (int64_t s = 0; s < n; ++s) tasks.push_back({l, s});
  }
  return tasks;
}

inline void LoadDelta(const DeltaSource& delta, int64_t offset, int64_t n, float* out) {
  const float* a = delta.w_old + offset;
  if (delta.w_new == nullptr) {
    std::memcpy(out, a, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  const float* b = delta.w_new + offset;
  for (int64_t t = 0; t < n; ++t) out[t] = a[t] - b[t];
}

// Dot of one tile: fp32 products into kLanes fixed lanes (a fixed order the compiler vectorises without
// reassociating), the lanes summed in fp64.
inline double TileDot(const float* a, const float* b, int64_t n) {
  float lane[kLanes] = {};
  int64_t t = 0;
  for (; t + kLanes <= n; t += kLanes) {
    for (int m = 0; m < kLanes; ++m) lane[m] += a[t + m] * b[t + m];
  }
  for (int m = 0; t < n; ++t, ++m) lane[m] += a[t] * b[t];
  double sum = 0;
  for (int m = 0; m < kLanes; ++m) sum += static_cast<double>(lane[m]);
  return sum;
}

// TileDot of a full tile with a constant trip count (vectorised at -O2); same lane assignment.
inline double FullTileDot(const float* __restrict a, const float* __restrict b) {
  float lane[kLanes] = {};
  for (int64_t t = 0; t < kBlockTileElems; t += kLanes) {
    for (int m = 0; m < kLanes; ++m) lane[m] += a[t + m] * b[t + m];
  }
  double sum = 0;
  for (int m = 0; m < kLanes; ++m) sum += static_cast<double>(lane[m]);
  return sum;
}

inline double TileSumSquares(const float* a, int64_t n) {
  double lane[kLanes] = {};
  int64_t t = 0;
  for (; t + kLanes <= n; t += kLanes) {
    for (int m = 0; m < kLanes; ++m) lane[m] += static_cast<double>(a[t + m]) * static_cast<double>(a[t + m]);
  }
  for (int m = 0; t < n; ++t, ++m) lane[m] += static_cast<double>(a[t]) * static_cast<double>(a[t]);
  double sum = 0;
  for (int m = 0; m < kLanes; ++m) sum += lane[m];
  return sum;
}

}  // namespace

BasisStream MakeStream(const BasisConfig& basis, const Block& block, uint32_t k) {
  return MakeBasisStream(basis.dist, basis.job_seed, basis.key_round, k, block.id, block.numel);
}

const char* SeedModeName(SeedMode mode) {
  return mode == SeedMode::kPerRound ? "per_round" : "fixed_pool";
}

Result<SeedMode> ParseSeedMode(std::string_view name) {
  if (name == "per_round") return SeedMode::kPerRound;
  if (name == "fixed_pool") return SeedMode::kFixedPool;
  return Status::InvalidArgument("ferret seed mode '" + std::string(name) + "': expected per_round or fixed_pool");
}

const char* ScalingName(Scaling scaling) {
  return scaling == Scaling::kUnbiased ? "unbiased" : "reference";
}

Result<Scaling> ParseScaling(std::string_view name) {
  if (name == "unbiased") return Scaling::kUnbiased;
  if (name == "reference") return Scaling::kReference;
  return Status::InvalidArgument("ferret scaling '" + std::string(name) + "': expected unbiased or reference");
}

double GammaScale(Scaling scaling, Distribution dist, int64_t block_numel, int k_l) {
  if (scaling == Scaling::kReference) return static_cast<double>(block_numel) / k_l;
  return 1.0 / (BasisRho(dist, block_numel) * k_l);
}

std::vector<double> BlockDeltaNorms(const DeltaSource& delta, const std::vector<Block>& blocks) {
  const std::vector<SliceTask> tasks = MakeSliceTasks(blocks);
  std::vector<double> partial(tasks.size(), 0.0);
  ParallelTasks(static_cast<int64_t>(tasks.size()), [&](int64_t t) {
    const SliceTask& task = tasks[static_cast<size_t>(t)];
    const Block& block = blocks[task.block];
    const int64_t begin = task.slice * kBlockSliceElems;
    const int64_t end = std::min(block.numel, begin + kBlockSliceElems);
    alignas(64) float tile[kBlockTileElems];
    double sum = 0;
    ForEachTile(block, begin, end, [&](int64_t, int64_t offset, int64_t n) {
      LoadDelta(delta, offset, n, tile);
      sum += TileSumSquares(tile, n);
    });
    partial[static_cast<size_t>(t)] = sum;
  });
  std::vector<double> norms(blocks.size(), 0.0);
  for (size_t t = 0; t < tasks.size(); ++t) norms[tasks[t].block] += partial[t];  // ascending slice order
  for (double& n : norms) n = std::sqrt(n);
  return norms;
}

std::vector<BlockProjection> ProjectBlocks(const DeltaSource& delta, const std::vector<Block>& blocks,
                                           const BasisConfig& basis, const std::vector<int>& k_per_block) {
  TRIB_CHECK(k_per_block.size() == blocks.size());
  const std::vector<SliceTask> tasks = MakeSliceTasks(blocks);
  // partials[task] holds K_l dot partials; task_base[t] is its first index.
  std::vector<size_t> task_base(tasks.size() + 1, 0);
  for (size_t t = 0; t < tasks.size(); ++t) {
    task_base[t + 1] = task_base[t] + static_cast<size_t>(k_per_block[tasks[t].block]);
  }
  std::vector<double> partials(task_base.back(), 0.0);
  std::vector<double> square_partials(tasks.size(), 0.0);
  std::vector<std::vector<BasisStream>> streams(blocks.size());
  for (size_t l = 0; l < blocks.size(); ++l) {
    TRIB_CHECK(k_per_block[l] >= 0);
    for (int k = 0; k < k_per_block[l]; ++k)
      streams[l].push_back(MakeStream(basis, blocks[l], static_cast<uint32_t>(k)));
  }

  ParallelTasks(static_cast<int64_t>(tasks.size()), [&](int64_t t) {
    const SliceTask& task = tasks[static_cast<size_t>(t)];
    const Block& block = blocks[task.block];
    const std::vector<BasisStream>& block_streams = streams[task.block];
    double* dots = partials.data() + task_base[static_cast<size_t>(t)];
    const int64_t begin = task.slice * kBlockSliceElems;
    const int64_t end = std::min(block.numel, begin + kBlockSliceElems);
    alignas(64) float delta_tile[kBlockTileElems];
    alignas(64) float basis_tile[kBlockTileElems];
    double squares = 0;
    ForEachTile(block, begin, end, [&](int64_t i, int64_t offset, int64_t n) {
      LoadDelta(delta, offset, n, delta_tile);
      squares += TileSumSquares(delta_tile, n);
      // Delta stays in L1 while every vector's matching chunk is generated and dotted.
      const bool full = n == kBlockTileElems;
      for (size_t k = 0; k < block_streams.size(); ++k) {
        GenerateBasis(block_streams[k], static_cast<uint64_t>(i), n, basis_tile);
        dots[k] += full ? FullTileDot(delta_tile, basis_tile) : TileDot(delta_tile, basis_tile, n);
      }
    });
    square_partials[static_cast<size_t>(t)] = squares;
  });

  std::vector<BlockProjection> out(blocks.size());
  for (size_t l = 0; l < blocks.size(); ++l) out[l].dots.assign(static_cast<size_t>(k_per_block[l]), 0.0);
  for (size_t t = 0; t < tasks.size(); ++t) {  // ascending slice order within each block
    BlockProjection& p = out[tasks[t].block];
    const double* dots = partials.data() + task_base[t];
    for (size_t k = 0; k < p.dots.size(); ++k) p.dots[k] += dots[k];
    p.delta_norm += square_partials[t];
  }
  for (auto& p : out) p.delta_norm = std::sqrt(p.delta_norm);
  return out;
}

}  // namespace tributary
