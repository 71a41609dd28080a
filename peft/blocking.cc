#include "peft/blocking.h"

#include <algorithm>

namespace tributary {

const char* BlockingRuleName(BlockingRule rule) {
  return rule == BlockingRule::kReference ? "reference" : "fixed_chunks";
}

Result<BlockingRule> ParseBlockingRule(std::string_view name) {
  if (name == "reference") return BlockingRule::kReference;
  if (name == "fixed_chunks") return BlockingRule::kFixedChunks;
  return Status::InvalidArgument("ferret blocking '" + std::string(name) + "': expected reference or fixed_chunks");
}

std::vector<Block> GroupByReferenceRule(const TensorTable& table) {
  // Tensors without elements carry nothing to project; they take no part in the rule.
  std::vector<const TensorEntry*> tensors;
  for (const auto& e : table.entries()) {
    if (e.numel > 0) tensors.push_back(&e);
  }
  std::vector<Block> blocks;
  if (tensors.empty()) return blocks;
  std::vector<int64_t> sizes;
  sizes.reserve(tensors.size());
  for (const TensorEntry* e : tensors) sizes.push_back(e->numel);
  std::sort(sizes.begin(), sizes.end());
  const size_t n = sizes.size();
  const double median = n % 2 == 1 ? static_cast<double>(sizes[n / 2])
                                   : 0.5 * (static_cast<double>(sizes[n / 2 - 1]) + static_cast<double>(sizes[n / 2]));
  const int64_t target = static_cast<int64_t>(0.9 * median);

  Block current;
  for (const TensorEntry* e : tensors) {
    if (!current.segments.empty() && current.numel + e->numel > target) {
      current.id = static_cast<uint32_t>(blocks.size());
      blocks.push_back(std::move(current));
      current = Block();
    }
    if (current.segments.empty()) current.first_tensor = e->name;
    current.last_tensor = e->name;
    current.segments.push_back({e->offset, e->numel});
    current.numel += e->numel;
  }
  current.id = static_cast<uint32_t>(blocks.size());
  blocks.push_back(std::move(current));
  return blocks;
}

Result<std::vector<Block>> SplitFixedChunks(const TensorTable& table, int64_t chunk_elems) {
  if (chunk_elems < 1) {
    return Status::InvalidArgument("ferret chunk_elems " + std::to_string(chunk_elems) + ": must be >= 1");
  }
  std::vector<Block> blocks;
  Block current;
  for (const auto& e : table.entries()) {
    int64_t done = 0;
    while (done < e.numel) {
      if (current.numel == 0) current.first_tensor = e.name;
      const int64_t take = std::min(e.numel - done, chunk_elems - current.numel);
      current.segments.push_back({e.offset + done, take});
      current.numel += take;
      current.last_tensor = e.name;
      done += take;
      if (current.numel == chunk_elems) {
        current.id = static_cast<uint32_t>(blocks.size());
        blocks.push_back(std::move(current));
        current = Block();
      }
    }
  }
  if (current.numel > 0) {
    current.id = static_cast<uint32_t>(blocks.size());
    blocks.push_back(std::move(current));
  }
  return blocks;
}

Result<std::vector<Block>> MakeBlocks(const TensorTable& table, BlockingRule rule, int64_t chunk_elems) {
  if (rule == BlockingRule::kReference) return GroupByReferenceRule(table);
  return SplitFixedChunks(table, chunk_elems);
}

Status ValidateBlocks(const std::vector<Block>& blocks, int64_t arena_elems) {
  for (size_t l = 0; l < blocks.size(); ++l) {
    const Block& b = blocks[l];
    const std::string where = "ferret block " + std::to_string(l);
    if (b.id != l) return Status::InvalidArgument(where + ": id " + std::to_string(b.id) + " is not its position");
    if (b.numel <= 0) return Status::InvalidArgument(where + ": empty");
    int64_t sum = 0;
    for (const auto& s : b.segments) {
      if (s.offset < 0 || s.numel < 0 || s.offset > arena_elems || s.numel > arena_elems - s.offset) {
        return Status::InvalidArgument(where + ": segment [" + std::to_string(s.offset) + ", +" +
                                       std::to_string(s.numel) + ") outside the arena of " +
                                       std::to_string(arena_elems) + " elements");
      }
      sum += s.numel;
    }
    if (sum != b.numel) {
      return Status::InvalidArgument(where + ": numel " + std::to_string(b.numel) + " != segment total " +
                                     std::to_string(sum));
    }
  }
  return Status::OK();
}

int64_t MaxBlockNumel(const std::vector<Block>& blocks) {
  int64_t m = 0;
  for (const auto& b : blocks) m = std::max(m, b.numel);
  return m;
}

}  // namespace tributary
