#include "engine/buffer.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/status.h"

namespace tributary {
namespace {

class HostBuffers final : public BufferType {
 public:
  const char* Name() const override { return "host"; }
  bool IsHost() const override { return true; }
  size_t Alignment() const override { return 64; }
  void* Allocate(size_t bytes) const override { return std::aligned_alloc(64, bytes); }
  void Free(void* ptr) const override { std::free(ptr); }
  void Memset(void* dst, int value, size_t bytes) const override { std::memset(dst, value, bytes); }
  void CopyFromHost(void* dst, const void* host_src, size_t bytes) const override {
    if (bytes > 0) std::memcpy(dst, host_src, bytes);
  }
  void CopyToHost(void* host_dst, const void* src, size_t bytes) const override {
    if (bytes > 0) std::memcpy(host_dst, src, bytes);
  }
  void Copy(void* dst, const void* src, size_t bytes) const override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
};

}  // namespace

const BufferType& HostBufferType() {
  static const HostBuffers host;
  return host;
}

Buffer::Buffer(const BufferType& type, size_t bytes, BufferInit init) : type_(&type), bytes_(bytes) {
  const size_t align = type.Alignment();
  const size_t rounded = bytes == 0 ? align : (bytes + align - 1) / align * align;
  data_ = type.Allocate(rounded);
  TRIB_CHECK(data_ != nullptr);  // out of memory
  if (init == BufferInit::kZeroed) type.Memset(data_, 0, rounded);
}

Buffer::Buffer(Buffer&& other) noexcept
    : type_(std::exchange(other.type_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Release();
    type_ = std::exchange(other.type_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

Buffer::~Buffer() {
  Release();
}

void Buffer::Release() {
  if (data_ != nullptr) type_->Free(data_);
  data_ = nullptr;
  bytes_ = 0;
}

void Buffer::Reserve(const BufferType& type, size_t bytes) {
  if (data_ != nullptr && type_ == &type && bytes_ >= bytes) return;
  Release();
  *this = Buffer(type, bytes, BufferInit::kUninitialized);
}

}  // namespace tributary
