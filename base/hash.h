// Small non-cryptographic hashes shared across libraries (seeding, content and weight hashes).
#pragma once

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

// Callable from CUDA kernels too (peft/philox.h derives Philox keys with SplitMix64 on both sides).
#if defined(__CUDACC__)
#define TRIB_HOST_DEVICE __host__ __device__
#else
#define TRIB_HOST_DEVICE
#endif

namespace tributary {

// SplitMix64 finaliser (Steele, Lea, Flood 2014; Vigna's constants), arithmetic mod 2^64: a
// bijective 64-bit mixer that turns counters and seed combinations into uniform bits. Frozen: the
// Ferret basis keys of every stored round depend on it (docs/ferret.md, "Seeds").
TRIB_HOST_DEVICE inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A 64-bit hash as 16 lower-case hex digits: how weights and spec hashes appear on the wire, in logs
// and in the CLI.
inline std::string HashHex(uint64_t hash) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016" PRIx64, hash);
  return text;
}

// 64-bit FNV-1a over bytes; `seed` chains several buffers (pass the previous result).
inline uint64_t Fnv1a64(const void* data, size_t size, uint64_t seed = 0xcbf29ce484222325ull) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < size; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace tributary
