#include "federation/replica_state.h"

#include <bit>
#include <cstring>
#include <string>

#include "base/hash.h"
#include "federation/job_spec.h"
#include "federation/method.h"

namespace tributary {

static_assert(std::endian::native == std::endian::little, "dense payloads are written as native little-endian floats");

Result<std::unique_ptr<LoraAdapters>> CreateJobAdapters(const JobSpec& spec, const LlamaConfig& config) {
  if (!MethodOf(spec).trains_adapters) return std::unique_ptr<LoraAdapters>();
  LoraOptions options = spec.lora;
  options.seed = spec.seed;
  auto adapters = LoraAdapters::Create(config, options);
  if (!adapters.ok()) return adapters.status().WithContext("section 'lora'");
  return std::move(*adapters);
}

uint64_t WeightsHash(const Arena& arena) {
  return Fnv1a64(arena.data(), static_cast<size_t>(arena.size()) * sizeof(float));
}

std::vector<uint8_t> FloatsToBytes(const float* values, int64_t count) {
  std::vector<uint8_t> bytes(static_cast<size_t>(count) * sizeof(float));
  if (count > 0) std::memcpy(bytes.data(), values, bytes.size());
  return bytes;
}

Status BytesToFloats(std::span<const uint8_t> bytes, int64_t count, float* out, std::string_view what) {
  const size_t expected = static_cast<size_t>(count) * sizeof(float);
  if (bytes.size() != expected)
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                                   std::to_string(expected) + " (" + std::to_string(count) + " fp32 values)");
  if (count > 0) std::memcpy(out, bytes.data(), expected);
  return Status::OK();
}

}  // namespace tributary
