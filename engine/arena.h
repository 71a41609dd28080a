// Flat arenas with a table of named tensors (llm.c style): parameters, gradients and optimizer
// state of one model each live in ONE contiguous float buffer with the same layout, so an
// optimizer step, a delta w_old - w_new, a projection, a checkpoint or an all-reduce each
// handle a single buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/status.h"

namespace tributary {

// One named tensor inside an arena: row-major, HF naming and shape convention ([out, in] for linears).
struct TensorEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in elements from the arena start (a multiple of kArenaAlignElems)
  int64_t numel = 0;
};

// The layout shared by every arena of one model (params, grads, Adam m and v, w_old).
class TensorTable {
 public:
  // Elements are aligned so each tensor starts on a 64-byte boundary.
  static constexpr int64_t kArenaAlignElems = 16;

  // Appends a tensor; returns its index. Names must be unique (checked).
  size_t Add(const std::string& name, std::vector<int64_t> shape);

  const std::vector<TensorEntry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  const TensorEntry& operator[](size_t i) const { return entries_[i]; }
  // nullptr when absent.
  const TensorEntry* Find(const std::string& name) const;
  // Total elements including alignment padding (the arena length).
  int64_t total_elems() const { return total_elems_; }
  // Sum of numel over entries (the parameter count).
  int64_t param_count() const;

 private:
  std::vector<TensorEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_elems_ = 0;
};

// A 64-byte aligned, zero-initialised float buffer laid out by a TensorTable.
class Arena {
 public:
  Arena() = default;
  explicit Arena(std::shared_ptr<const TensorTable> table);

  const TensorTable& table() const { return *table_; }
  std::shared_ptr<const TensorTable> table_ptr() const { return table_; }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  int64_t size() const { return table_ ? table_->total_elems() : 0; }

  float* tensor(size_t index) { return data_.get() + table_->entries()[index].offset; }
  const float* tensor(size_t index) const { return data_.get() + table_->entries()[index].offset; }
  std::span<float> span(size_t index) {
    const auto& e = table_->entries()[index];
    return {data_.get() + e.offset, static_cast<size_t>(e.numel)};
  }
  // nullptr when the name is not in the table.
  float* tensor(const std::string& name);
  const float* tensor(const std::string& name) const;

  void Zero();
  void CopyFrom(const Arena& other);  // same table (checked)

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::shared_ptr<const TensorTable> table_;
  std::unique_ptr<float, Free> data_;
};

}  // namespace tributary
