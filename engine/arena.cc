#include "engine/arena.h"

#include <vector>

namespace tributary {

Arena::Arena(std::shared_ptr<const TensorTable> table, const BufferType& type)
    : table_(std::move(table)),
      buffer_(type, static_cast<size_t>(table_->total_elems()) * sizeof(float), BufferInit::kZeroed) {}

float* Arena::tensor(const std::string& name) {
  const TensorEntry* e = table_->Find(name);
  return e ? data() + e->offset : nullptr;
}

const float* Arena::tensor(const std::string& name) const {
  const TensorEntry* e = table_->Find(name);
  return e ? data() + e->offset : nullptr;
}

void Arena::Zero() {
  buffer_type().Memset(data(), 0, bytes());
}

void Arena::CopyFrom(const Arena& other) {
  TRIB_CHECK(other.size() == size());
  const BufferType& to = buffer_type();
  const BufferType& from = other.buffer_type();
  if (&to == &from) {
    to.Copy(data(), other.data(), bytes());
  } else if (from.IsHost()) {
    to.CopyFromHost(data(), other.data(), bytes());
  } else if (to.IsHost()) {
    from.CopyToHost(data(), other.data(), bytes());
  } else {  // two devices: stage through the host
    std::vector<float> staging(static_cast<size_t>(size()));
    from.CopyToHost(staging.data(), other.data(), bytes());
    to.CopyFromHost(data(), staging.data(), bytes());
  }
}

void Arena::CopyToHost(float* host_dst) const {
  buffer_type().CopyToHost(host_dst, data(), bytes());
}

void Arena::CopyFromHost(const float* host_src) {
  buffer_type().CopyFromHost(data(), host_src, bytes());
}

}  // namespace tributary
