#include "engine/arena.h"

#include <cstdlib>
#include <cstring>

namespace tributary {

void Arena::Free::operator()(float* p) const {
  std::free(p);
}

Arena::Arena(std::shared_ptr<const TensorTable> table) : table_(std::move(table)) {
  size_t bytes = static_cast<size_t>(table_->total_elems()) * sizeof(float);
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  float* p = static_cast<float*>(std::aligned_alloc(64, rounded));
  TRIB_CHECK(p != nullptr);
  std::memset(p, 0, rounded);
  data_.reset(p);
}

float* Arena::tensor(const std::string& name) {
  const TensorEntry* e = table_->Find(name);
  return e ? data_.get() + e->offset : nullptr;
}

const float* Arena::tensor(const std::string& name) const {
  const TensorEntry* e = table_->Find(name);
  return e ? data_.get() + e->offset : nullptr;
}

void Arena::Zero() {
  std::memset(data_.get(), 0, static_cast<size_t>(size()) * sizeof(float));
}

void Arena::CopyFrom(const Arena& other) {
  TRIB_CHECK(other.size() == size());
  std::memcpy(data_.get(), other.data(), static_cast<size_t>(size()) * sizeof(float));
}

}  // namespace tributary
