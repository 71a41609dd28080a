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
#include <vector>

#include "base/status.h"
#include "base/tensor_table.h"

namespace tributary {

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
