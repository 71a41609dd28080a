// Flat arenas with a table of named tensors (llm.c style): parameters, gradients and optimizer
// state of one model each live in ONE contiguous float buffer with the same layout, so an
// optimizer step, a delta w_old - w_new, a projection, a checkpoint or an all-reduce each
// handle a single buffer.
//
// Memory comes from a buffer type (engine/buffer.h): host RAM by default, or the memory of the
// backend that computes on it (LlamaModel, LoraAdapters and the optimizers allocate from their
// backend's buffer_type()). data() and tensor() return pointers into that memory: backend kernels
// take them as they are; host code may dereference them only when is_host(). Host-only paths
// (hashing, safetensors I/O, Ferret projection, checkpoints, weight init) require host arenas
// (they TRIB_CHECK is_host() where cheap) or stage through CopyToHost / CopyFromHost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/tensor_table.h"
#include "engine/buffer.h"

namespace tributary {

// A zero-initialised float buffer laid out by a TensorTable, aligned to the buffer type's alignment
// (64 bytes for the host). Padding between tensors is zero and stays zero: kernels touch tensor
// elements only.
class Arena {
 public:
  Arena() = default;
  explicit Arena(std::shared_ptr<const TensorTable> table, const BufferType& type = HostBufferType());

  const TensorTable& table() const { return *table_; }
  std::shared_ptr<const TensorTable> table_ptr() const { return table_; }
  // The arena's memory (backend memory; host-dereferenceable only when is_host()).
  float* data() { return buffer_.as<float>(); }
  const float* data() const { return buffer_.as<float>(); }
  int64_t size() const { return table_ ? table_->total_elems() : 0; }
  size_t bytes() const { return static_cast<size_t>(size()) * sizeof(float); }
  const BufferType& buffer_type() const { return buffer_.type() ? *buffer_.type() : HostBufferType(); }
  bool is_host() const { return buffer_.is_host(); }

  float* tensor(size_t index) { return data() + table_->entries()[index].offset; }
  const float* tensor(size_t index) const { return data() + table_->entries()[index].offset; }
  // Host arenas only (checked).
  std::span<float> span(size_t index) {
    TRIB_CHECK(is_host());
    const auto& e = table_->entries()[index];
    return {data() + e.offset, static_cast<size_t>(e.numel)};
  }
  // nullptr when the name is not in the table.
  float* tensor(const std::string& name);
  const float* tensor(const std::string& name) const;

  // Synchronous (engine/buffer.h), whatever the buffer type.
  void Zero();
  void CopyFrom(const Arena& other);         // same size (checked); any pair of buffer types
  void CopyToHost(float* host_dst) const;    // size() floats
  void CopyFromHost(const float* host_src);  // size() floats

 private:
  std::shared_ptr<const TensorTable> table_;
  Buffer buffer_;
};

}  // namespace tributary
