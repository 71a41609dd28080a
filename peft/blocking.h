// Ferret blocks: the units that get their own random vectors and coefficient budget K_l
// (docs/ferret.md, "Blocking").
//
// A block is a list of arena element ranges. Arena tensors are padded to 16-element alignment,
// so a block spanning several tensors skips the padding: element i of the block walks its
// segments in order. Blocks never overlap and together cover every parameter element exactly once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"

namespace tributary {

struct BlockSegment {
  int64_t offset = 0;  // arena element offset
  int64_t numel = 0;
};

struct Block {
  uint32_t id = 0;    // l: position in the block list, the Philox counter word c0
  int64_t numel = 0;  // d_l = sum of segment lengths
  std::vector<BlockSegment> segments;
  std::string first_tensor;  // names for messages and logs
  std::string last_tensor;
};

enum class BlockingRule {
  kReference,    // large tensors alone, small ones merged up to 0.9 x the median size (Ferret authors' rule)
  kFixedChunks,  // contiguous ranges of chunk_elems parameter elements (the last one shorter)
};

const char* BlockingRuleName(BlockingRule rule);
// "reference" | "fixed_chunks".
Result<BlockingRule> ParseBlockingRule(std::string_view name);

// The reference grouping rule over the table's tensors in order: target = int(0.9 * median numel)
// (numpy median: the mean of the two middle values for an even count); a group is closed before a
// tensor that would push it past target. DataJuicer-1.3B gives L = 194, open_llama_3b L = 210.
std::vector<Block> GroupByReferenceRule(const TensorTable& table);

// Fixed-size chunks of the concatenated parameter elements (padding skipped); chunk_elems >= 1.
Result<std::vector<Block>> SplitFixedChunks(const TensorTable& table, int64_t chunk_elems);

Result<std::vector<Block>> MakeBlocks(const TensorTable& table, BlockingRule rule, int64_t chunk_elems);

// Checks ids 0..L-1, positive sizes within 2^63, segments inside an arena of arena_elems elements and
// numel = sum of segments (InvalidArgument naming the block otherwise). Blocks from the functions above pass.
Status ValidateBlocks(const std::vector<Block>& blocks, int64_t arena_elems);

// Largest d_l (0 for an empty list).
int64_t MaxBlockNumel(const std::vector<Block>& blocks);

// Parallel kernels split a block into slices of this many elements; the boundaries never depend on
// the thread count, so per-slice partial sums reduced in slice order are bitwise reproducible.
inline constexpr int64_t kBlockSliceElems = int64_t{1} << 16;
// Slices are cut further into tiles of at most this many elements (a multiple of every generator
// batch) that fit in L1 next to one generated vector chunk.
inline constexpr int64_t kBlockTileElems = 1024;

inline int64_t NumSlices(const Block& block) {
  return (block.numel + kBlockSliceElems - 1) / kBlockSliceElems;
}

// Calls fn(block_index, arena_offset, n) for block elements [begin, end) in ascending order, in pieces
// that each lie inside one segment and one kBlockTileElems-aligned tile.
template <typename Fn>
void ForEachTile(const Block& block, int64_t begin, int64_t end, Fn&& fn) {
  int64_t seg_start = 0;  // block index of the current segment's first element
  for (const BlockSegment& seg : block.segments) {
    const int64_t seg_end = seg_start + seg.numel;
    int64_t pos = begin > seg_start ? begin : seg_start;
    const int64_t stop = end < seg_end ? end : seg_end;
    while (pos < stop) {
      const int64_t tile_end = (pos / kBlockTileElems + 1) * kBlockTileElems;
      const int64_t n = (tile_end < stop ? tile_end : stop) - pos;
      fn(pos, seg.offset + (pos - seg_start), n);
      pos += n;
    }
    if (seg_end >= end) break;
    seg_start = seg_end;
  }
}

}  // namespace tributary
