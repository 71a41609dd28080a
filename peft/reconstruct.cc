#include "peft/reconstruct.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/parallel.h"

namespace tributary {
namespace {

// Constant trip counts and restrict: -O2 (very cheap cost model) vectorises these loops. The
// arithmetic per element is the same as in the partial-tile loops: fp32 product, then fp32 add.
inline void AxpyFullTile(float c, const float* __restrict v, float* __restrict acc) {
  for (int64_t e = 0; e < kBlockTileElems; ++e) acc[e] += c * v[e];
}

inline void SubtractFullTile(const float* __restrict acc, float* __restrict w) {
  for (int64_t e = 0; e < kBlockTileElems; ++e) w[e] -= acc[e];
}

}  // namespace

std::vector<double> BasisNormsSquared(const Block& block, const BasisConfig& basis, int count) {
  if (basis.dist == Distribution::kRademacher || basis.dist == Distribution::kStandardBasis) {
    return std::vector<double>(static_cast<size_t>(count), 1.0);
  }
  const int64_t slices = NumSlices(block);
  std::vector<double> partial(static_cast<size_t>(slices * count), 0.0);
  std::vector<BasisStream> streams;
  streams.reserve(static_cast<size_t>(count));
  for (int k = 0; k < count; ++k) streams.push_back(MakeStream(basis, block, static_cast<uint32_t>(k)));
  ParallelTasks(slices, [&](int64_t s) {
    const int64_t begin = s * kBlockSliceElems;
    const int64_t end = std::min(block.numel, begin + kBlockSliceElems);
    alignas(64) float tile[kBlockTileElems];
    for (int k = 0; k < count; ++k) {
      double sum = 0;
      for (int64_t i = begin; i < end; i += kBlockTileElems) {
        const int64_t n = std::min(kBlockTileElems, end - i);
        GenerateBasis(streams[static_cast<size_t>(k)], static_cast<uint64_t>(i), n, tile);
        for (int64_t t = 0; t < n; ++t) sum += static_cast<double>(tile[t]) * static_cast<double>(tile[t]);
      }
      partial[static_cast<size_t>(s * count + k)] = sum;
    }
  });
  std::vector<double> norms(static_cast<size_t>(count), 0.0);
  for (int64_t s = 0; s < slices; ++s) {
    for (int k = 0; k < count; ++k) norms[static_cast<size_t>(k)] += partial[static_cast<size_t>(s * count + k)];
  }
  return norms;
}

double ClipFactor(double gamma, double vector_norm_sq, double max_norm) {
  const double u_norm = std::fabs(gamma) * std::sqrt(vector_norm_sq);
  return std::min(1.0, max_norm / (u_norm + 1e-8));
}

std::vector<float> ApplyCoefficients(const std::vector<float>& gamma, double server_lr, double max_norm,
                                     const std::vector<double>* norms_sq) {
  std::vector<float> c(gamma.size());
  for (size_t k = 0; k < gamma.size(); ++k) {
    double s = 1.0;
    if (max_norm > 0) {
      TRIB_CHECK(norms_sq != nullptr && norms_sq->size() >= gamma.size());
      s = ClipFactor(gamma[k], (*norms_sq)[k], max_norm);
    }
    c[k] = static_cast<float>(server_lr * s * static_cast<double>(gamma[k]));
  }
  return c;
}

void ApplyBlocks(float* weights, const std::vector<Block>& blocks, const BasisConfig& basis,
                 const std::vector<std::vector<float>>& coefficients) {
  TRIB_CHECK(coefficients.size() == blocks.size());
  struct Term {
    float c;
    BasisStream stream;
  };
  // The support of each block: nonzero coefficients in ascending k.
  std::vector<std::vector<Term>> terms(blocks.size());
  struct SliceTask {
    size_t block;
    int64_t slice;
  };
  std::vector<SliceTask> tasks;
  for (size_t l = 0; l < blocks.size(); ++l) {
    for (size_t k = 0; k < coefficients[l].size(); ++k) {
      const float c = coefficients[l][k];
      if (c != 0.0f) terms[l].push_back({c, MakeStream(basis, blocks[l], static_cast<uint32_t>(k))});
    }
    if (terms[l].empty()) continue;
    for (int64_t s = 0; s < NumSlices(blocks[l]); ++s) tasks.push_back({l, s});
  }
  ParallelTasks(static_cast<int64_t>(tasks.size()), [&](int64_t t) {
    const SliceTask& task = tasks[static_cast<size_t>(t)];
    const Block& block = blocks[task.block];
    const std::vector<Term>& block_terms = terms[task.block];
    const int64_t begin = task.slice * kBlockSliceElems;
    const int64_t end = std::min(block.numel, begin + kBlockSliceElems);
    alignas(64) float acc[kBlockTileElems];
    alignas(64) float basis_tile[kBlockTileElems];
    ForEachTile(block, begin, end, [&](int64_t i, int64_t offset, int64_t n) {
      if (n == kBlockTileElems) {
        std::memset(acc, 0, sizeof(acc));
        for (const Term& term : block_terms) {
          GenerateBasis(term.stream, static_cast<uint64_t>(i), n, basis_tile);
          AxpyFullTile(term.c, basis_tile, acc);
        }
        SubtractFullTile(acc, weights + offset);
        return;
      }
      // A partial tile at a segment or block edge: the same arithmetic, element by element.
      std::fill(acc, acc + n, 0.0f);
      for (const Term& term : block_terms) {
        GenerateBasis(term.stream, static_cast<uint64_t>(i), n, basis_tile);
        for (int64_t e = 0; e < n; ++e) acc[e] += term.c * basis_tile[e];
      }
      float* w = weights + offset;
      for (int64_t e = 0; e < n; ++e) w[e] -= acc[e];
    });
  });
}

}  // namespace tributary
