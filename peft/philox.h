// Philox4x32-10 counter-based RNG and the SplitMix64 key derivation (docs/ferret.md, "Seeds").
//
// Header-only and free of std:: containers so the same code compiles for the CPU and (later) for
// CUDA device code: every replica must regenerate bit-identical basis vectors. Frozen before v1:
// changing anything here changes every basis vector of every stored round.
#pragma once

#include <cstdint>

#include "base/hash.h"  // SplitMix64 (host and device)

#if defined(__CUDACC__)
#define TRIB_HD __host__ __device__
#else
#define TRIB_HD
#endif

namespace tributary {

inline constexpr uint32_t kPhiloxMul0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxMul1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9u;
inline constexpr uint32_t kPhiloxWeyl1 = 0xBB67AE85u;
inline constexpr int kPhiloxRounds = 10;

// Counter word c3: which stream of a (key, block) pair. 0 = basis vectors; others are reserved.
inline constexpr uint32_t kStreamBasis = 0;

struct PhiloxKey {
  uint32_t k0 = 0;
  uint32_t k1 = 0;
};

// One Philox4x32-10 block: out = Philox(ctr, key). `ctr` and `out` may alias.
TRIB_HD inline void Philox4x32_10(const uint32_t ctr[4], PhiloxKey key, uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key.k0, k1 = key.k1;
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxWeyl0;
    k1 += kPhiloxWeyl1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// Key of basis vector k in round r: SplitMix64(job_seed XOR ((r << 32) | k)); k0 = low word.
// `fixed_pool` seeding passes r = 0.
TRIB_HD inline PhiloxKey BasisKey(uint64_t job_seed, uint32_t round, uint32_t k) {
  const uint64_t h = (static_cast<uint64_t>(round) << 32) | k;
  const uint64_t key64 = SplitMix64(job_seed ^ h);
  PhiloxKey key;
  key.k0 = static_cast<uint32_t>(key64);
  key.k1 = static_cast<uint32_t>(key64 >> 32);
  return key;
}

// Counter of Philox block j of basis block `block_id`: (l, low(j), high(j), stream).
TRIB_HD inline void BasisCounter(uint32_t block_id, uint64_t j, uint32_t ctr[4]) {
  ctr[0] = block_id;
  ctr[1] = static_cast<uint32_t>(j);
  ctr[2] = static_cast<uint32_t>(j >> 32);
  ctr[3] = kStreamBasis;
}

}  // namespace tributary
