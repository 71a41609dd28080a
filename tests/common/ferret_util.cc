#include "tests/common/ferret_util.h"

#include <cstring>

#include "base/hash.h"

namespace tributary::ferret_test {

std::shared_ptr<TensorTable> MakeTable(const std::vector<int64_t>& sizes) {
  auto table = std::make_shared<TensorTable>();
  for (size_t i = 0; i < sizes.size(); ++i) table->Add("t" + std::to_string(i), {sizes[i]});
  return table;
}

void FillNormal(Arena& arena, std::mt19937_64& rng, double mean, double sd) {
  std::normal_distribution<double> normal(mean, sd);
  for (size_t t = 0; t < arena.table().size(); ++t) {
    for (float& x : arena.span(t)) x = static_cast<float>(normal(rng));
  }
}

std::vector<double> Gather(const float* arena, const std::vector<Block>& blocks) {
  std::vector<double> out;
  for (const Block& b : blocks) {
    for (const BlockSegment& s : b.segments) {
      for (int64_t i = 0; i < s.numel; ++i) out.push_back(arena[s.offset + i]);
    }
  }
  return out;
}

std::vector<double> Reconstruct(const FerretOptions& options, const std::vector<Block>& blocks,
                                const std::shared_ptr<TensorTable>& table, const Payload& payload) {
  FerretOptions no_clip = options;
  no_clip.clip = 0;
  Arena w(table);
  const Status s = ApplyAggregate(no_clip, blocks, payload, 1.0, w);
  if (!s.ok()) return {};
  std::vector<double> out = Gather(w.data(), blocks);
  for (double& x : out) x = -x;  // w = 0 - Delta~
  return out;
}

uint64_t HashArena(const Arena& arena) {
  return Fnv1a64(arena.data(), static_cast<size_t>(arena.size()) * sizeof(float));
}

}  // namespace tributary::ferret_test
