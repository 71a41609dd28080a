// Shamir t-of-n secret sharing of 32-byte secrets (the self-mask seeds and mask secret keys of secure
// aggregation, docs/security.md).
//
// Field: the prime L = 2^252 + 27742317777372353535851937790883648493 (the ed25519 group order), with
// libsodium's crypto_core_ed25519_scalar_* arithmetic, so no modular arithmetic is written here. A
// 32-byte secret is shared as two field elements, its low and high 16-byte halves (each below
// 2^128 < L), with independent random polynomials of degree t-1; a holder's share is the two
// evaluations at its point x >= 1 (two little-endian 32-byte scalars, 64 bytes). Reconstruction
// interpolates at 0 and refuses a result whose halves are not below 2^128 (a corrupted share among the
// ones used gives that with probability 1 - 2^-124); callers that can check the secret itself (a public
// key, a commitment) use ShamirRecover, which also finds one bad share among more than t.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/status.h"

namespace tributary {

inline constexpr size_t kShamirSecretBytes = 32;
inline constexpr size_t kShamirShareBytes = 64;
using ShamirSecret = std::array<uint8_t, kShamirSecretBytes>;

struct ShamirShare {
  uint32_t x = 0;                                 // the holder's evaluation point, >= 1
  std::array<uint8_t, kShamirShareBytes> y = {};  // f_lo(x) || f_hi(x), little-endian scalars below L
};

// Whether `y` is two field elements (both little-endian scalars below L): what a received share must be.
bool ShamirShareValid(const std::array<uint8_t, kShamirShareBytes>& y);

// Splits `secret` among holders at the distinct points `xs` (each >= 1) so that any `threshold` of the
// shares give the secret and fewer give no information (1 <= threshold <= xs.size()). Shares come in
// the order of xs. InvalidArgument for a bad threshold or a zero or repeated point.
Result<std::vector<ShamirShare>> ShamirSplit(const ShamirSecret& secret, uint32_t threshold,
                                             std::span<const uint32_t> xs);

// The secret from the first `threshold` shares; every further share must lie on the same polynomials.
// InvalidArgument when there are fewer than `threshold` shares, a point is zero or repeated, a share is
// not two field elements, a further share is inconsistent ("share at x=5 ...") or the result is not a
// valid secret (a bad share among the first threshold).
Result<ShamirSecret> ShamirCombine(std::span<const ShamirShare> shares, uint32_t threshold);

// What ShamirRecover found: the secret and the points of the shares that are not on its polynomials.
struct ShamirRecovery {
  ShamirSecret secret = {};
  std::vector<uint32_t> bad_x;  // ascending
};

// The secret from `shares` (at least `threshold`, distinct points) that satisfies `verify` (the caller's
// check against a public key or a commitment): the first `threshold` shares, or when their secret does
// not verify, the first `threshold` of the first threshold + 1 shares with one left out. The shares not
// on the verified polynomials are reported in bad_x. InvalidArgument when no candidate verifies (more
// than one bad share among the first threshold + 1, or exactly threshold shares with a bad one).
Result<ShamirRecovery> ShamirRecover(std::span<const ShamirShare> shares, uint32_t threshold,
                                     const std::function<bool(const ShamirSecret&)>& verify);

}  // namespace tributary
