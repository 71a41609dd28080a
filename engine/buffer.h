// Memory separate from compute, as ggml's buffer types: a BufferType says where memory lives (host
// RAM, one GPU's memory) and how to allocate, fill and copy it; a Backend (engine/backend.h) computes
// on the memory of its buffer_type(). Arenas (engine/arena.h), the model's activations, the KV cache
// and LoRA scratch allocate from the backend's buffer type, so model, LoRA, optimizer and trainer code
// never assume host memory and a CUDA backend adds a device buffer type under engine/cuda/.
//
// This header is part of the backend contract (engine/backend.h includes it):
//  - BufferType operations are synchronous: they complete before returning, after any kernel already
//    queued on memory of that type (a CUDA type gets this from the legacy default stream).
//  - IsHost() memory may be dereferenced by host code; other memory only through copies.
//  - Identity is the object: a buffer type is a process-lifetime singleton (HostBufferType() here),
//    so "same memory" is `&a == &b`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tributary {

class BufferType {
 public:
  virtual ~BufferType() = default;
  virtual const char* Name() const = 0;
  virtual bool IsHost() const = 0;
  // Alignment in bytes of every Allocate result (64 for the host: one cache line, AVX-512 loads).
  virtual size_t Alignment() const = 0;
  // bytes > 0, a multiple of Alignment(); contents undefined. Returns nullptr when out of memory.
  virtual void* Allocate(size_t bytes) const = 0;
  virtual void Free(void* ptr) const = 0;

  // dst, src: memory of this type unless named host.
  virtual void Memset(void* dst, int value, size_t bytes) const = 0;
  virtual void CopyFromHost(void* dst, const void* host_src, size_t bytes) const = 0;
  virtual void CopyToHost(void* host_dst, const void* src, size_t bytes) const = 0;
  virtual void Copy(void* dst, const void* src, size_t bytes) const = 0;
};

// Host RAM: 64-byte aligned (std::aligned_alloc), memset/memcpy. The CPU backend's buffer type.
const BufferType& HostBufferType();

enum class BufferInit { kZeroed, kUninitialized };

// An owning, move-only allocation from a buffer type. The size is rounded up to the type's alignment
// (at least one alignment unit, so data() is never null); the rounding bytes are zeroed with the rest
// when kZeroed, which keeps arena padding exactly zero.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const BufferType& type, size_t bytes, BufferInit init = BufferInit::kZeroed);
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  // Requested bytes (not the rounded allocation).
  size_t bytes() const { return bytes_; }
  // Null for a default-constructed Buffer.
  const BufferType* type() const { return type_; }
  bool is_host() const { return type_ == nullptr || type_->IsHost(); }

  // Grows to at least `bytes` of `type` (contents undefined after a growth, kept otherwise). For
  // scratch that is reused across calls; frees the old allocation first so the peak holds one.
  void Reserve(const BufferType& type, size_t bytes);

 private:
  void Release();

  const BufferType* type_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tributary
