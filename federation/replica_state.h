// The trainable state of a job's replica: the one arena its committed rounds change (the model's
// parameters, or the LoRA adapters on a frozen base for methods that train adapters), how replicas
// compare it (the weights hash) and how dense payloads carry it (fp32 bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"
#include "engine/model/llama_config.h"
#include "peft/lora.h"

namespace tributary {

struct JobSpec;

// The job's LoRA adapters (initialised from spec.lora, whose seed is the job seed) when its method
// trains adapters; nullptr when the rounds change the model's parameters. Errors name section 'lora'.
Result<std::unique_ptr<LoraAdapters>> CreateJobAdapters(const JobSpec& spec, const LlamaConfig& config);

// 64-bit FNV-1a of the arena's bytes, padding included: every replica of a round must report the
// coordinator's value (host arenas only).
uint64_t WeightsHash(const Arena& arena);

// Dense fp32 vectors <-> little-endian bytes (the fedavg and lora payloads and aggregates).
std::vector<uint8_t> FloatsToBytes(const float* values, int64_t count);
// InvalidArgument naming `what` when the size is not count * 4 bytes.
Status BytesToFloats(std::span<const uint8_t> bytes, int64_t count, float* out, std::string_view what);

}  // namespace tributary
