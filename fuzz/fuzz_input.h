// A cursor over a fuzz input: harnesses split one byte string into the fields of their format
// (lengths, flags, frames) without FuzzedDataProvider, so they also build with g++ for the corpus
// replay tests. Reads past the end return zeros / empty spans, never fail.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace tributary::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - pos_; }
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint32_t U32() { return static_cast<uint32_t>(U16()) | (static_cast<uint32_t>(U16()) << 16); }
  uint64_t U64() { return static_cast<uint64_t>(U32()) | (static_cast<uint64_t>(U32()) << 32); }
  // Up to n bytes (fewer at the end).
  std::span<const uint8_t> Bytes(size_t n) {
    n = std::min(n, remaining());
    std::span<const uint8_t> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }
  // A u16 length, then that many bytes.
  std::span<const uint8_t> Field() { return Bytes(U16()); }
  std::span<const uint8_t> Rest() { return Bytes(remaining()); }
  static std::string Text(std::span<const uint8_t> bytes) { return {bytes.begin(), bytes.end()}; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace tributary::fuzz
