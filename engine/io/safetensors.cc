#include "engine/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/half.h"
#include "base/parallel.h"

namespace tributary {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// The reference implementation refuses headers above 100 MB; so do we (it also bounds a bad length).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeName {
  SafetensorsDType dtype;
  const char* name;
  int64_t size;
};

constexpr DTypeName kDTypes[] = {
    {SafetensorsDType::kF32, "F32", 4},   {SafetensorsDType::kF16, "F16", 2}, {SafetensorsDType::kBF16, "BF16", 2},
    {SafetensorsDType::kF64, "F64", 8},   {SafetensorsDType::kI64, "I64", 8}, {SafetensorsDType::kI32, "I32", 4},
    {SafetensorsDType::kI16, "I16", 2},   {SafetensorsDType::kI8, "I8", 1},   {SafetensorsDType::kU8, "U8", 1},
    {SafetensorsDType::kBool, "BOOL", 1},
};

bool DTypeFromName(const std::string& name, SafetensorsDType* dtype) {
  for (const auto& d : kDTypes) {
    if (name == d.name) {
      *dtype = d.dtype;
      return true;
    }
  }
  return false;
}

template <typename T>
T LoadUnaligned(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converts n elements starting at `src` (raw bytes of `dtype`) to fp32.
void ConvertToFloat(SafetensorsDType dtype, const uint8_t* src, float* dst, int64_t n) {
  switch (dtype) {
    case SafetensorsDType::kF32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); break;
    case SafetensorsDType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToFloat(LoadUnaligned<uint16_t>(src + 2 * i));
      break;
    case SafetensorsDType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = BF16ToFloat(LoadUnaligned<uint16_t>(src + 2 * i));
      break;
    case SafetensorsDType::kF64:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<double>(src + 8 * i));
      break;
    case SafetensorsDType::kI64:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<int64_t>(src + 8 * i));
      break;
    case SafetensorsDType::kI32:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<int32_t>(src + 4 * i));
      break;
    case SafetensorsDType::kI16:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<int16_t>(src + 2 * i));
      break;
    case SafetensorsDType::kI8:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<int8_t>(src[i]));
      break;
    case SafetensorsDType::kU8:
    case SafetensorsDType::kBool:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
      break;
  }
}

// A safetensors file is an input a user gave (a model, an adapter): a malformed one is bad input, which the
// CLI exits 4 for (docs/cli.md), whichever command reads it.
Status HeaderError(const std::string& source, const std::string& what) {
  return Status::InvalidArgument(source + ": " + what);
}

}  // namespace

const char* SafetensorsDTypeName(SafetensorsDType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

int64_t SafetensorsDTypeSize(SafetensorsDType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Status ParseSafetensorsHeader(const std::string& header_json, uint64_t data_size, const std::string& source,
                              std::vector<SafetensorsTensorInfo>* tensors,
                              std::map<std::string, std::string>* metadata) {
  tensors->clear();
  metadata->clear();
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_json);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    return HeaderError(source, "invalid JSON header: " + what);
  }
  if (!header.is_object()) return HeaderError(source, "header is not a JSON object");
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return HeaderError(source, "'__metadata__' is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return HeaderError(source, "'__metadata__' value '" + m.key() + "' is not a string");
        (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) return HeaderError(source, where + ": entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return HeaderError(source, where + ": missing or non-string 'dtype'");
    if (sh == v.end() || !sh->is_array()) return HeaderError(source, where + ": missing or non-array 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      return HeaderError(source, where + ": 'data_offsets' must be [begin, end]");
    SafetensorsTensorInfo info;
    info.name = name;
    const std::string dtype_name = dt->get<std::string>();
    if (!DTypeFromName(dtype_name, &info.dtype))
      return Status::InvalidArgument(source + ": " + where + ": unsupported dtype '" + dtype_name + "'");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) return HeaderError(source, where + ": shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (dim > 0 && numel > (std::numeric_limits<uint64_t>::max() >> 4) / dim)
        return HeaderError(source, where + ": shape is too large");
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    info.numel = static_cast<int64_t>(numel);
    for (const auto& o : *off) {
      if (!o.is_number_unsigned()) return HeaderError(source, where + ": data_offsets must be non-negative integers");
    }
    info.data_begin = (*off)[0].get<uint64_t>();
    info.data_end = (*off)[1].get<uint64_t>();
    if (info.data_begin > info.data_end)
      return HeaderError(source, where + ": data_offsets begin " + std::to_string(info.data_begin) + " > end " +
                                     std::to_string(info.data_end));
    if (info.data_end > data_size)
      return HeaderError(source, where + ": data_offsets end " + std::to_string(info.data_end) +
                                     " is beyond the data section (" + std::to_string(data_size) + " bytes)");
    const uint64_t expected = numel * static_cast<uint64_t>(SafetensorsDTypeSize(info.dtype));
    if (info.data_end - info.data_begin != expected)
      return HeaderError(source, where + ": " + std::to_string(info.data_end - info.data_begin) +
                                     " bytes do not match dtype " + dtype_name + " x shape " +
                                     ShapeToString(info.shape) + " (" + std::to_string(expected) + " bytes)");
    tensors->push_back(std::move(info));
  }
  std::sort(tensors->begin(), tensors->end(), [](const SafetensorsTensorInfo& a, const SafetensorsTensorInfo& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
  });
  for (size_t i = 1; i < tensors->size(); ++i) {
    const auto& prev = (*tensors)[i - 1];
    const auto& cur = (*tensors)[i];
    // Empty tensors occupy no bytes and cannot overlap anything.
    if (cur.data_begin < prev.data_end && cur.data_begin != cur.data_end)
      return HeaderError(source, "tensor '" + cur.name + "': data overlaps tensor '" + prev.name + "'");
  }
  return Status::OK();
}

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open: " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    return Status::IOError(path + ": cannot stat: " + err);
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return HeaderError(path, "truncated: " + std::to_string(file_size) + " bytes, need 8 for the header length");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return Status::IOError(path + ": mmap failed: " + std::strerror(errno));

  SafetensorsFile file;
  file.path_ = path;
  file.map_ = map;
  file.map_size_ = file_size;
  const uint8_t* bytes = static_cast<const uint8_t*>(map);
  const uint64_t header_len = LoadUnaligned<uint64_t>(bytes);
  if (header_len > file_size - 8)
    return HeaderError(path, "truncated: header length " + std::to_string(header_len) + " exceeds the file size (" +
                                 std::to_string(file_size) + " bytes)");
  if (header_len > kMaxHeaderBytes)
    return HeaderError(path, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  const std::string header(reinterpret_cast<const char*>(bytes + 8), static_cast<size_t>(header_len));
  const uint64_t data_size = file_size - 8 - header_len;
  TRIB_RETURN_IF_ERROR(ParseSafetensorsHeader(header, data_size, path, &file.tensors_, &file.metadata_));
  file.data_ = bytes + 8 + header_len;
  for (size_t i = 0; i < file.tensors_.size(); ++i) file.index_[file.tensors_[i].name] = i;
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept {
  *this = std::move(other);
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    map_ = other.map_;
    map_size_ = other.map_size_;
    data_ = other.data_;
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
    other.map_ = nullptr;
    other.map_size_ = 0;
    other.data_ = nullptr;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  Unmap();
}

void SafetensorsFile::Unmap() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
  data_ = nullptr;
}

const SafetensorsTensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::ReadAsFloat(const std::string& name, float* dst, int64_t numel) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) return Status::InvalidArgument(path_ + ": no tensor '" + name + "'");
  if (info->numel != numel)
    return Status::InvalidArgument(path_ + ": tensor '" + name + "': has " + std::to_string(info->numel) +
                                   " elements, expected " + std::to_string(numel));
  const uint8_t* src = RawData(*info);
  const int64_t elem = SafetensorsDTypeSize(info->dtype);
  // Large tensors convert in parallel; each element's result does not depend on the split.
  ParallelFor(0, numel, 1 << 18, [&](int64_t begin, int64_t end) {
    ConvertToFloat(info->dtype, src + begin * elem, dst + begin, end - begin);
  });
  return Status::OK();
}

Result<std::vector<float>> SafetensorsFile::ReadFloatVector(const std::string& name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) return Status::InvalidArgument(path_ + ": no tensor '" + name + "'");
  std::vector<float> out(static_cast<size_t>(info->numel));
  TRIB_RETURN_IF_ERROR(ReadAsFloat(name, out.data(), info->numel));
  return out;
}

Result<std::vector<int64_t>> SafetensorsFile::ReadInt64Vector(const std::string& name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) return Status::InvalidArgument(path_ + ": no tensor '" + name + "'");
  std::vector<int64_t> out(static_cast<size_t>(info->numel));
  const uint8_t* src = RawData(*info);
  for (int64_t i = 0; i < info->numel; ++i) {
    switch (info->dtype) {
      case SafetensorsDType::kI64: out[i] = LoadUnaligned<int64_t>(src + 8 * i); break;
      case SafetensorsDType::kI32: out[i] = LoadUnaligned<int32_t>(src + 4 * i); break;
      case SafetensorsDType::kI16: out[i] = LoadUnaligned<int16_t>(src + 2 * i); break;
      case SafetensorsDType::kI8:              // signed: the sign extension is the point
        out[i] = static_cast<int8_t>(src[i]);  // NOLINT(bugprone-signed-char-misuse)
        break;
      case SafetensorsDType::kU8:
      case SafetensorsDType::kBool: out[i] = src[i]; break;
      default:
        return Status::InvalidArgument(path_ + ": tensor '" + name + "': dtype " + SafetensorsDTypeName(info->dtype) +
                                       " is not an integer type");
    }
  }
  return out;
}

namespace {

// Writes all of [data, data + size) to fd.
bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteTensorData(int fd, const SafetensorsWriteTensor& t, int64_t numel) {
  const int64_t elem = SafetensorsDTypeSize(t.dtype);
  if (t.raw != nullptr) return WriteAll(fd, t.raw, static_cast<size_t>(numel * elem));
  if (t.dtype == SafetensorsDType::kF32) return WriteAll(fd, t.f32, static_cast<size_t>(numel) * 4);
  // F16 / BF16: convert in bounded chunks so no whole-tensor temporary is needed.
  constexpr int64_t kChunk = 1 << 16;
  std::vector<uint16_t> buf(static_cast<size_t>(std::min<int64_t>(kChunk, numel)));
  for (int64_t begin = 0; begin < numel; begin += kChunk) {
    const int64_t n = std::min(kChunk, numel - begin);
    for (int64_t i = 0; i < n; ++i) {
      const float f = t.f32[begin + i];
      buf[static_cast<size_t>(i)] = t.dtype == SafetensorsDType::kBF16 ? FloatToBF16(f) : FloatToF16(f);
    }
    if (!WriteAll(fd, buf.data(), static_cast<size_t>(n) * 2)) return false;
  }
  return true;
}

}  // namespace

Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::vector<int64_t> numels;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const bool has_f32 = t.f32 != nullptr, has_raw = t.raw != nullptr;
    if (has_f32 == has_raw)
      return Status::InvalidArgument(path + ": tensor '" + t.name + "': exactly one of f32 / raw data must be set");
    if (has_f32 && t.dtype != SafetensorsDType::kF32 && t.dtype != SafetensorsDType::kF16 &&
        t.dtype != SafetensorsDType::kBF16)
      return Status::InvalidArgument(path + ": tensor '" + t.name + "': cannot write float data as " +
                                     SafetensorsDTypeName(t.dtype));
    if (t.name == "__metadata__" || header.contains(t.name))
      return Status::InvalidArgument(path + ": tensor '" + t.name + "': duplicate or reserved name");
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return Status::InvalidArgument(path + ": tensor '" + t.name + "': negative dimension");
      numel *= d;
    }
    numels.push_back(numel);
    const uint64_t bytes = static_cast<uint64_t>(numel * SafetensorsDTypeSize(t.dtype));
    header[t.name] = {
        {"dtype", SafetensorsDTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  const uint64_t header_len = header_text.size();

  const std::string tmp = TempPathFor(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(path + ": cannot create temporary file: " + std::strerror(errno));
  bool ok = WriteAll(fd, &header_len, 8) && WriteAll(fd, header_text.data(), header_text.size());
  for (size_t i = 0; ok && i < tensors.size(); ++i) ok = WriteTensorData(fd, tensors[i], numels[i]);
  if (ok) ok = ::fsync(fd) == 0;
  const std::string err = ok ? "" : std::strerror(errno);
  if (::close(fd) != 0 && ok) ok = false;
  if (!ok) {
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": write failed: " + err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string rename_err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": rename failed: " + rename_err);
  }
  return Status::OK();
}

}  // namespace tributary
