// The layout of a flat tensor buffer (llm.c style): named row-major tensors at aligned offsets of one
// float array. Every arena of a model (parameters, gradients, optimizer state, w_old) shares one
// table, and a snapshot stores the table next to the bytes, so a buffer and its layout travel
// together without the code that owns the memory (engine/arena.h) or the model that fills it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace tributary {

// One named tensor inside a buffer: row-major, HF naming and shape convention ([out, in] for linears).
struct TensorEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in elements from the buffer start (a multiple of kArenaAlignElems)
  int64_t numel = 0;
};

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
  // Index of a tensor; -1 when absent.
  int64_t IndexOf(const std::string& name) const;
  // Total elements including alignment padding (the buffer length).
  int64_t total_elems() const { return total_elems_; }
  // Sum of numel over entries (the parameter count).
  int64_t param_count() const;

 private:
  std::vector<TensorEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_elems_ = 0;
};

}  // namespace tributary
