#include "federation/shamir.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>

#include "federation/secagg_crypto.h"

namespace tributary {
namespace {

constexpr size_t kScalarBytes = crypto_core_ed25519_SCALARBYTES;  // 32
static_assert(kShamirShareBytes == 2 * kScalarBytes && kShamirSecretBytes == 2 * 16);
using Scalar = std::array<uint8_t, kScalarBytes>;

// L, little-endian.
constexpr Scalar kOrder = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                           0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};

bool IsCanonical(const uint8_t* s) {  // s < L
  for (int i = static_cast<int>(kScalarBytes) - 1; i >= 0; --i) {
    if (s[i] < kOrder[static_cast<size_t>(i)]) return true;
    if (s[i] > kOrder[static_cast<size_t>(i)]) return false;
  }
  return false;
}

Scalar FromU32(uint32_t v) {
  Scalar s{};
  for (int i = 0; i < 4; ++i) s[static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
  return s;
}

Scalar Add(const Scalar& a, const Scalar& b) {
  Scalar r;
  crypto_core_ed25519_scalar_add(r.data(), a.data(), b.data());
  return r;
}
Scalar Sub(const Scalar& a, const Scalar& b) {
  Scalar r;
  crypto_core_ed25519_scalar_sub(r.data(), a.data(), b.data());
  return r;
}
Scalar Mul(const Scalar& a, const Scalar& b) {
  Scalar r;
  crypto_core_ed25519_scalar_mul(r.data(), a.data(), b.data());
  return r;
}
Scalar Invert(const Scalar& a) {  // a != 0 (distinct points)
  Scalar r{};
  const int rc = crypto_core_ed25519_scalar_invert(r.data(), a.data());
  TRIB_CHECK(rc == 0);
  return r;
}

Scalar Half(const ShamirShare& share, int half) {
  Scalar s;
  std::memcpy(s.data(), share.y.data() + half * kScalarBytes, kScalarBytes);
  return s;
}

Status CheckPoints(std::span<const ShamirShare> shares) {
  std::set<uint32_t> seen;
  for (const ShamirShare& s : shares) {
    if (s.x == 0) return Status::InvalidArgument("share at x=0 (points start at 1)");
    if (!seen.insert(s.x).second) return Status::InvalidArgument("two shares at x=" + std::to_string(s.x));
    if (!IsCanonical(s.y.data()) || !IsCanonical(s.y.data() + kScalarBytes))
      return Status::InvalidArgument("share at x=" + std::to_string(s.x) + " is not two field elements");
  }
  return Status::OK();
}

// The Lagrange coefficients that evaluate the polynomial through `basis` at `at`:
// f(at) = sum_j c_j y_j with c_j = prod_{m != j} (at - x_m) / (x_j - x_m).
std::vector<Scalar> LagrangeAt(std::span<const ShamirShare> basis, uint32_t at) {
  const Scalar at_s = FromU32(at);
  std::vector<Scalar> coeffs;
  coeffs.reserve(basis.size());
  for (size_t j = 0; j < basis.size(); ++j) {
    Scalar num = FromU32(1);
    Scalar den = FromU32(1);
    const Scalar xj = FromU32(basis[j].x);
    for (size_t m = 0; m < basis.size(); ++m) {
      if (m == j) continue;
      const Scalar xm = FromU32(basis[m].x);
      num = Mul(num, Sub(at_s, xm));
      den = Mul(den, Sub(xj, xm));
    }
    coeffs.push_back(Mul(num, Invert(den)));
  }
  return coeffs;
}

// Both halves' polynomial values at the point the coefficients were made for.
std::array<Scalar, 2> Evaluate(std::span<const ShamirShare> basis, const std::vector<Scalar>& coeffs) {
  std::array<Scalar, 2> out{};
  for (int half = 0; half < 2; ++half) {
    Scalar acc{};
    for (size_t j = 0; j < basis.size(); ++j) acc = Add(acc, Mul(coeffs[j], Half(basis[j], half)));
    out[static_cast<size_t>(half)] = acc;
  }
  return out;
}

// The secret of the polynomials through `basis`; InvalidArgument when a half is not below 2^128.
Result<ShamirSecret> Interpolate(std::span<const ShamirShare> basis) {
  const std::array<Scalar, 2> at0 = Evaluate(basis, LagrangeAt(basis, 0));
  ShamirSecret secret{};
  for (size_t half = 0; half < 2; ++half) {
    for (size_t i = 16; i < kScalarBytes; ++i) {
      if (at0[half][i] != 0) {
        std::string xs;
        for (const ShamirShare& s : basis) xs += (xs.empty() ? "" : ",") + std::to_string(s.x);
        return Status::InvalidArgument("shares at x=" + xs + " do not reconstruct a valid secret (a share is bad)");
      }
    }
    std::memcpy(secret.data() + 16 * half, at0[half].data(), 16);
  }
  return secret;
}

bool OnPolynomials(std::span<const ShamirShare> basis, const ShamirShare& share) {
  const std::array<Scalar, 2> at = Evaluate(basis, LagrangeAt(basis, share.x));
  return sodium_memcmp(at[0].data(), share.y.data(), kScalarBytes) == 0 &&
         sodium_memcmp(at[1].data(), share.y.data() + kScalarBytes, kScalarBytes) == 0;
}

Status CheckCount(std::span<const ShamirShare> shares, uint32_t threshold) {
  if (threshold == 0) return Status::InvalidArgument("Shamir threshold 0 (at least 1)");
  if (shares.size() < threshold)
    return Status::InvalidArgument(std::to_string(shares.size()) + " shares, threshold " + std::to_string(threshold));
  return CheckPoints(shares);
}

}  // namespace

bool ShamirShareValid(const std::array<uint8_t, kShamirShareBytes>& y) {
  return IsCanonical(y.data()) && IsCanonical(y.data() + kScalarBytes);
}

Result<std::vector<ShamirShare>> ShamirSplit(const ShamirSecret& secret, uint32_t threshold,
                                             std::span<const uint32_t> xs) {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  if (threshold == 0 || threshold > xs.size())
    return Status::InvalidArgument("Shamir threshold " + std::to_string(threshold) + " for " +
                                   std::to_string(xs.size()) + " holders (1 <= threshold <= holders)");
  std::set<uint32_t> seen;
  for (uint32_t x : xs) {
    if (x == 0) return Status::InvalidArgument("Shamir holder at x=0 (points start at 1)");
    if (!seen.insert(x).second) return Status::InvalidArgument("two Shamir holders at x=" + std::to_string(x));
  }
  std::vector<ShamirShare> shares(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) shares[i].x = xs[i];
  for (size_t half = 0; half < 2; ++half) {
    // f(z) = a_0 + a_1 z + ... + a_{t-1} z^{t-1}, a_0 the half, the others uniform below L.
    std::vector<Scalar> coeffs(threshold);
    coeffs[0].fill(0);
    std::memcpy(coeffs[0].data(), secret.data() + 16 * half, 16);
    for (uint32_t k = 1; k < threshold; ++k) crypto_core_ed25519_scalar_random(coeffs[k].data());
    for (ShamirShare& share : shares) {
      const Scalar x = FromU32(share.x);
      Scalar acc{};
      for (uint32_t k = threshold; k-- > 0;) acc = Add(Mul(acc, x), coeffs[k]);  // Horner
      std::memcpy(share.y.data() + half * kScalarBytes, acc.data(), kScalarBytes);
    }
    for (Scalar& c : coeffs) sodium_memzero(c.data(), c.size());
  }
  return shares;
}

Result<ShamirSecret> ShamirCombine(std::span<const ShamirShare> shares, uint32_t threshold) {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  TRIB_RETURN_IF_ERROR(CheckCount(shares, threshold));
  const std::span<const ShamirShare> basis = shares.first(threshold);
  TRIB_ASSIGN_OR_RETURN(ShamirSecret secret, Interpolate(basis));
  for (size_t i = threshold; i < shares.size(); ++i) {
    if (!OnPolynomials(basis, shares[i]))
      return Status::InvalidArgument("share at x=" + std::to_string(shares[i].x) +
                                     " is inconsistent with the other shares");
  }
  return secret;
}

Result<ShamirRecovery> ShamirRecover(std::span<const ShamirShare> shares, uint32_t threshold,
                                     const std::function<bool(const ShamirSecret&)>& verify) {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  TRIB_RETURN_IF_ERROR(CheckCount(shares, threshold));
  // Candidate bases: the first threshold shares; then, with a spare share, the first threshold + 1
  // with one left out (finds a single bad share among them).
  std::vector<std::vector<ShamirShare>> candidates;
  candidates.emplace_back(shares.begin(), shares.begin() + threshold);
  if (shares.size() > threshold) {
    for (size_t skip = 0; skip < threshold; ++skip) {
      std::vector<ShamirShare> basis;
      for (size_t i = 0; i <= threshold; ++i) {
        if (i != skip) basis.push_back(shares[i]);
      }
      candidates.push_back(std::move(basis));
    }
  }
  for (const std::vector<ShamirShare>& basis : candidates) {
    Result<ShamirSecret> secret = Interpolate(basis);
    if (!secret.ok() || !verify(*secret)) continue;
    ShamirRecovery recovery;
    recovery.secret = *secret;
    for (const ShamirShare& share : shares) {
      if (!OnPolynomials(basis, share)) recovery.bad_x.push_back(share.x);
    }
    std::sort(recovery.bad_x.begin(), recovery.bad_x.end());
    return recovery;
  }
  std::string xs;
  for (const ShamirShare& s : shares) xs += (xs.empty() ? "" : ",") + std::to_string(s.x);
  return Status::InvalidArgument("shares at x=" + xs + " do not reconstruct the expected secret (" +
                                 (shares.size() > threshold ? "more than one bad share" : "a bad share, and no spare") +
                                 ")");
}

}  // namespace tributary
