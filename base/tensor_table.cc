#include "base/tensor_table.h"

#include "base/status.h"

namespace tributary {

size_t TensorTable::Add(const std::string& name, std::vector<int64_t> shape) {
  TRIB_CHECK(index_.find(name) == index_.end());
  int64_t numel = 1;
  for (int64_t d : shape) {
    TRIB_CHECK(d >= 0);
    numel *= d;
  }
  TensorEntry entry;
  entry.name = name;
  entry.shape = std::move(shape);
  entry.offset = total_elems_;
  entry.numel = numel;
  total_elems_ += (numel + kArenaAlignElems - 1) / kArenaAlignElems * kArenaAlignElems;
  index_[name] = entries_.size();
  entries_.push_back(std::move(entry));
  return entries_.size() - 1;
}

const TensorEntry* TensorTable::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

int64_t TensorTable::IndexOf(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : static_cast<int64_t>(it->second);
}

int64_t TensorTable::param_count() const {
  int64_t n = 0;
  for (const auto& e : entries_) n += e.numel;
  return n;
}

}  // namespace tributary
