// The Ferret coefficient payload (docs/ferret.md, "Payload"), little-endian:
//   header, 8 bytes : round u32 | L u16 | dtype u8 (0 = fp32, 1 = bf16) | flags u8 (0; none defined)
//   per block l     : block id u16 (= l, ascending) | K_l u16 | gamma[K_l] in dtype
//   bytes = 8 + 4 L + sum_l K_l * b,  b = 4 (fp32) or 2 (bf16)
// Client uploads and aggregates use the same format. Coefficients use prefix support: block l's
// gamma[k] belongs to seed k of the round, k < K_l. Job, client and signatures live in the envelope.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace tributary {

enum class WireDtype : uint8_t { kFp32 = 0, kBf16 = 1 };

const char* WireDtypeName(WireDtype dtype);
// "fp32" | "bf16".
Result<WireDtype> ParseWireDtype(std::string_view name);
inline int WireDtypeBytes(WireDtype dtype) {
  return dtype == WireDtype::kFp32 ? 4 : 2;
}

inline constexpr size_t kPayloadHeaderBytes = 8;
inline constexpr size_t kPayloadBlockHeaderBytes = 4;
inline constexpr int kMaxPayloadBlocks = 65535;

struct Payload {
  uint32_t round = 0;
  WireDtype dtype = WireDtype::kFp32;
  // gamma[l] holds K_l coefficients of block l. Under bf16 they are bf16-representable after
  // serialisation (Serialize rounds; Parse returns exact values).
  std::vector<std::vector<float>> gamma;
};

// 8 + 4 L + sum_l K_l * b.
size_t PayloadBytes(WireDtype dtype, const std::vector<int>& k_per_block);
size_t PayloadBytes(const Payload& payload);

// bf16 conversions, round to nearest even (NaN stays NaN).
uint16_t Bf16FromFloat(float x);
uint16_t Bf16FromDouble(double x);  // one rounding from fp64 (aggregates round once to the wire dtype)
float FloatFromBf16(uint16_t bits);

// InvalidArgument naming the block/element when L or a K_l exceeds 65535 or a value is not finite
// (before or after rounding to bf16).
Result<std::vector<uint8_t>> SerializePayload(const Payload& payload);

// What the receiver expects: exactly `num_blocks` blocks and K_l <= max_coefficients (the job's K).
struct PayloadExpectation {
  int num_blocks = 0;
  int max_coefficients = 0;
};
// Full validation; Corruption naming what is wrong (truncated, wrong L, bad id, K_l > K, unknown dtype
// or flags, non-finite value, trailing bytes).
Result<Payload> ParsePayload(std::span<const uint8_t> bytes, const PayloadExpectation& expect);

}  // namespace tributary
