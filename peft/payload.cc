#include "peft/payload.h"

#include <cmath>
#include <cstring>
#include <string>

namespace tributary {
namespace {

void PutU16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 0; s < 32; s += 8) out.push_back(static_cast<uint8_t>(v >> s));
}

uint16_t GetU16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

uint32_t FloatBits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof(b));
  return b;
}

float BitsFloat(uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof(x));
  return x;
}

}  // namespace

const char* WireDtypeName(WireDtype dtype) {
  return dtype == WireDtype::kFp32 ? "fp32" : "bf16";
}

Result<WireDtype> ParseWireDtype(std::string_view name) {
  if (name == "fp32") return WireDtype::kFp32;
  if (name == "bf16") return WireDtype::kBf16;
  return Status::InvalidArgument("ferret wire dtype '" + std::string(name) + "': expected fp32 or bf16");
}

size_t PayloadBytes(WireDtype dtype, const std::vector<int>& k_per_block) {
  size_t bytes = kPayloadHeaderBytes + kPayloadBlockHeaderBytes * k_per_block.size();
  for (int k : k_per_block) bytes += static_cast<size_t>(k) * static_cast<size_t>(WireDtypeBytes(dtype));
  return bytes;
}

size_t PayloadBytes(const Payload& payload) {
  std::vector<int> k;
  for (const auto& g : payload.gamma) k.push_back(static_cast<int>(g.size()));
  return PayloadBytes(payload.dtype, k);
}

uint16_t Bf16FromFloat(float x) {
  const uint32_t b = FloatBits(x);
  if (std::isnan(x)) return static_cast<uint16_t>((b >> 16) | 0x40);  // keep it a (quiet) NaN
  const uint32_t rounding = 0x7FFF + ((b >> 16) & 1);                 // to nearest, ties to even
  return static_cast<uint16_t>((b + rounding) >> 16);
}

uint16_t Bf16FromDouble(double x) {
  if (std::isnan(x)) return 0x7FC0;
  // Round the fp64 value to 8 significant bits directly (rounding to fp32 first would round twice).
  const double mag = std::fabs(x);
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (mag == 0.0) return sign;
  int exp;
  std::frexp(mag, &exp);  // mag = f * 2^exp, f in [0.5, 1)
  // bf16 keeps 8 significant bits for normals (exp >= -125); subnormals have a fixed quantum 2^-133.
  const int quantum_exp = std::max(exp - 8, -133);
  const double q = std::ldexp(1.0, quantum_exp);
  const double rounded = std::nearbyint(mag / q) * q;  // exact scaling; nearbyint ties to even
  if (rounded > 0x1.fep127) return sign | 0x7F80;      // beyond the largest bf16: infinity
  const float as_float = static_cast<float>(rounded);  // exact: bf16 values are fp32 values
  return static_cast<uint16_t>(sign | (FloatBits(as_float) >> 16));
}

float FloatFromBf16(uint16_t bits) {
  return BitsFloat(static_cast<uint32_t>(bits) << 16);
}

Result<std::vector<uint8_t>> SerializePayload(const Payload& payload) {
  const size_t L = payload.gamma.size();
  if (L > static_cast<size_t>(kMaxPayloadBlocks)) {
    return Status::InvalidArgument("ferret payload: " + std::to_string(L) + " blocks exceed 65535");
  }
  if (payload.dtype != WireDtype::kFp32 && payload.dtype != WireDtype::kBf16) {
    return Status::InvalidArgument("ferret payload: unknown dtype " + std::to_string(static_cast<int>(payload.dtype)));
  }
  std::vector<uint8_t> out;
  out.reserve(PayloadBytes(payload));
  PutU32(out, payload.round);
  PutU16(out, static_cast<uint16_t>(L));
  out.push_back(static_cast<uint8_t>(payload.dtype));
  out.push_back(0);  // flags
  for (size_t l = 0; l < L; ++l) {
    const auto& g = payload.gamma[l];
    if (g.size() > 65535) {
      return Status::InvalidArgument("ferret payload: block " + std::to_string(l) + " has K_l " +
                                     std::to_string(g.size()) + " > 65535");
    }
    PutU16(out, static_cast<uint16_t>(l));
    PutU16(out, static_cast<uint16_t>(g.size()));
    for (size_t k = 0; k < g.size(); ++k) {
      const float v = g[k];
      const bool bf16 = payload.dtype == WireDtype::kBf16;
      const uint16_t h = bf16 ? Bf16FromFloat(v) : 0;
      if (!std::isfinite(v) || (bf16 && !std::isfinite(FloatFromBf16(h)))) {
        return Status::InvalidArgument("ferret payload: block " + std::to_string(l) + " gamma[" + std::to_string(k) +
                                       "] = " + std::to_string(v) + " is not finite in " +
                                       WireDtypeName(payload.dtype));
      }
      if (bf16) {
        PutU16(out, h);
      } else {
        PutU32(out, FloatBits(v));
      }
    }
  }
  return out;
}

Result<Payload> ParsePayload(std::span<const uint8_t> bytes, const PayloadExpectation& expect) {
  auto bad = [](const std::string& what) { return Status::Corruption("ferret payload: " + what); };
  if (bytes.size() < kPayloadHeaderBytes) {
    return bad("truncated header: " + std::to_string(bytes.size()) + " of 8 bytes");
  }
  Payload p;
  p.round = GetU32(bytes.data());
  const int L = GetU16(bytes.data() + 4);
  const uint8_t dtype = bytes[6];
  const uint8_t flags = bytes[7];
  if (dtype > 1) return bad("unknown dtype " + std::to_string(dtype) + " (expected 0 = fp32 or 1 = bf16)");
  if (flags != 0) return bad("unknown flags " + std::to_string(flags) + " (expected 0)");
  if (L != expect.num_blocks) {
    return bad("L = " + std::to_string(L) + " blocks, expected " + std::to_string(expect.num_blocks));
  }
  p.dtype = static_cast<WireDtype>(dtype);
  const size_t b = static_cast<size_t>(WireDtypeBytes(p.dtype));
  size_t pos = kPayloadHeaderBytes;
  p.gamma.resize(static_cast<size_t>(L));
  for (int l = 0; l < L; ++l) {
    if (bytes.size() - pos < kPayloadBlockHeaderBytes)
      return bad("truncated at the header of block " + std::to_string(l));
    const int id = GetU16(bytes.data() + pos);
    const int k_l = GetU16(bytes.data() + pos + 2);
    pos += kPayloadBlockHeaderBytes;
    if (id != l) return bad("block " + std::to_string(l) + " carries id " + std::to_string(id));
    if (k_l > expect.max_coefficients) {
      return bad("block " + std::to_string(l) + ": K_l = " + std::to_string(k_l) +
                 " exceeds K = " + std::to_string(expect.max_coefficients));
    }
    if (bytes.size() - pos < static_cast<size_t>(k_l) * b) {
      return bad("truncated in block " + std::to_string(l) + ": " + std::to_string(k_l) + " coefficients need " +
                 std::to_string(static_cast<size_t>(k_l) * b) + " bytes, " + std::to_string(bytes.size() - pos) +
                 " left");
    }
    auto& g = p.gamma[static_cast<size_t>(l)];
    g.resize(static_cast<size_t>(k_l));
    for (int k = 0; k < k_l; ++k) {
      const uint8_t* q = bytes.data() + pos + static_cast<size_t>(k) * b;
      const float v = p.dtype == WireDtype::kFp32 ? BitsFloat(GetU32(q)) : FloatFromBf16(GetU16(q));
      if (!std::isfinite(v)) {
        return bad("block " + std::to_string(l) + " gamma[" + std::to_string(k) + "] is not finite");
      }
      g[static_cast<size_t>(k)] = v;
    }
    pos += static_cast<size_t>(k_l) * b;
  }
  if (pos != bytes.size())
    return bad(std::to_string(bytes.size() - pos) + " trailing bytes after block " + std::to_string(L - 1));
  return p;
}

}  // namespace tributary
