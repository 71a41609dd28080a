// safetensors reader and writer (the HF weight format).
//
// Layout: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
// then the raw little-endian tensor bytes (offsets are relative to the end of the header).
// Files are memory-mapped; tensors are converted straight into the caller's buffer (an arena slot),
// so loading a large model never holds a second whole-file copy. Every structural problem is
// reported as one line naming the file and, where it applies, the tensor; nothing aborts on bad input.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace tributary {

enum class SafetensorsDType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

const char* SafetensorsDTypeName(SafetensorsDType dtype);  // "F32", "BF16", ...
int64_t SafetensorsDTypeSize(SafetensorsDType dtype);      // bytes per element

struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  int64_t numel = 1;
  uint64_t data_begin = 0;  // relative to the start of the data section
  uint64_t data_end = 0;
};

// "[2, 3]"
std::string ShapeToString(const std::vector<int64_t>& shape);

// A validated, memory-mapped safetensors file. Move-only.
class SafetensorsFile {
 public:
  // Maps `path` and validates the header (sizes, JSON, dtypes, offsets in range, not overlapping,
  // matching dtype x shape). IOError when it cannot be opened; InvalidArgument naming the file (and
  // the tensor) when it is malformed: a truncated file, bad header JSON, offsets out of range.
  static Result<SafetensorsFile> Open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  // Tensors in file order (sorted by data offset).
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Converts tensor `name` (F32/F16/BF16/F64/I64/I32/I16/I8/U8/BOOL) to fp32 into dst[0, numel).
  // InvalidArgument when absent or when `numel` differs from the tensor's element count.
  Status ReadAsFloat(const std::string& name, float* dst, int64_t numel) const;
  Result<std::vector<float>> ReadFloatVector(const std::string& name) const;
  // Integer tensors (I64/I32/I16/I8/U8/BOOL) widened to int64; InvalidArgument for float dtypes.
  Result<std::vector<int64_t>> ReadInt64Vector(const std::string& name) const;
  // The tensor's raw little-endian bytes inside the mapping.
  const uint8_t* RawData(const SafetensorsTensorInfo& info) const { return data_ + info.data_begin; }

 private:
  SafetensorsFile() = default;
  void Unmap();

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section inside the mapping
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write. Exactly one of `f32` (converted to `dtype`, which must be F32, F16 or BF16)
// or `raw` (bytes already in `dtype`, little-endian, numel * dtype size of them) is set.
struct SafetensorsWriteTensor {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  const float* f32 = nullptr;
  const void* raw = nullptr;
};

// Writes a safetensors file atomically (a temporary file in the same directory, then rename).
// Tensors are stored in the given order; the header is padded with spaces to a multiple of 8 bytes.
Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// Parses a header JSON text against a data section of `data_size` bytes (exposed for tests and for
// validating a header without a mapping). `source` names the file in errors.
Status ParseSafetensorsHeader(const std::string& header_json, uint64_t data_size, const std::string& source,
                              std::vector<SafetensorsTensorInfo>* tensors,
                              std::map<std::string, std::string>* metadata);

}  // namespace tributary
