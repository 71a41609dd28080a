#include "peft/random_basis.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

namespace tributary {
namespace {

// erfinv(x) = x * P(x^2), P of degree 8 fitted (relative least squares at Chebyshev nodes, fp64,
// coefficients rounded to fp32) to erfinv(x)/x on |x| <= 0.7; Horner with explicit fma.
constexpr int kErfInvTerms = 9;
constexpr float kErfInvP[kErfInvTerms] = {8.862269521e-01f, 2.320122421e-01f,  1.276314557e-01f,
                                          8.502992243e-02f, 8.014745265e-02f,  -3.152619302e-02f,
                                          3.013332486e-01f, -3.994534612e-01f, 3.621198237e-01f};

// Philox blocks per batch: plain loops over arrays of this length auto-vectorise at -O2.
constexpr int kUniformBatchBlocks = 16;
constexpr int kUniformBatchElems = 4 * kUniformBatchBlocks;  // 4 words per block, one element per word
constexpr int kSignBatchBlocks = 8;
constexpr int kSignBatchElems = 128 * kSignBatchBlocks;  // 128 sign bits per block
constexpr int kMaxBatchElems = kSignBatchElems;
constexpr float kSqrt2f = 1.41421356237309505f;

// words[w][m] = word w of Philox block (j0 + m) of the stream, for m < kBlocks.
template <int kBlocks>
inline void PhiloxBatch(PhiloxKey key, uint32_t block_id, uint64_t j0, uint32_t words[4][kBlocks]) {
  uint32_t c0[kBlocks], c1[kBlocks], c2[kBlocks], c3[kBlocks];
  for (int m = 0; m < kBlocks; ++m) {
    const uint64_t j = j0 + static_cast<uint64_t>(m);
    c0[m] = block_id;
    c1[m] = static_cast<uint32_t>(j);
    c2[m] = static_cast<uint32_t>(j >> 32);
    c3[m] = kStreamBasis;
  }
  uint32_t k0 = key.k0, k1 = key.k1;
  for (int round = 0; round < kPhiloxRounds; ++round) {
    for (int m = 0; m < kBlocks; ++m) {
      const uint64_t p0 = static_cast<uint64_t>(kPhiloxMul0) * c0[m];
      const uint64_t p1 = static_cast<uint64_t>(kPhiloxMul1) * c2[m];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[m] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[m] ^ k1;
      c1[m] = static_cast<uint32_t>(p1);
      c3[m] = static_cast<uint32_t>(p0);
      c0[m] = n0;
      c2[m] = n2;
    }
    k0 += kPhiloxWeyl0;
    k1 += kPhiloxWeyl1;
  }
  for (int m = 0; m < kBlocks; ++m) {
    words[0][m] = c0[m];
    words[1][m] = c1[m];
    words[2][m] = c2[m];
    words[3][m] = c3[m];
  }
}

// The odd integer s = 2*(x >> 8) + 1 - 2^24 in (-2^24, 2^24): 2u - 1 = s * 2^-24 exactly in fp32.
inline int32_t CenteredOdd24(uint32_t x) {
  return static_cast<int32_t>(((x >> 8) << 1) | 1u) - (1 << 24);
}

inline float TruncNormalFromWord(uint32_t x, const BasisScales& s) {
  const float centered = static_cast<float>(CenteredOdd24(x)) * 0x1p-24f;  // 2u - 1, exact
  const float v = kSqrt2f * ErfInvCentralTerms(s.erf_a * centered, s.erfinv_terms);
  return std::min(std::max(v, -s.inv_sqrt_d), s.inv_sqrt_d);
}

// Elements [i0, i0 + kUniformBatchElems) for uniform / trunc_normal; i0 % kUniformBatchElems == 0.
void UniformBatch(const BasisStream& st, uint64_t i0, float* out) {
  uint32_t words[4][kUniformBatchBlocks];
  PhiloxBatch<kUniformBatchBlocks>(st.key, st.block_id, i0 / 4, words);
  float vals[4][kUniformBatchBlocks];
  if (st.dist == Distribution::kUniform) {
    const float scale = st.scales.a_ulp;
    for (int w = 0; w < 4; ++w) {
      for (int m = 0; m < kUniformBatchBlocks; ++m) vals[w][m] = static_cast<float>(CenteredOdd24(words[w][m])) * scale;
    }
  } else {
    for (int w = 0; w < 4; ++w) {
      for (int m = 0; m < kUniformBatchBlocks; ++m) vals[w][m] = TruncNormalFromWord(words[w][m], st.scales);
    }
  }
  for (int m = 0; m < kUniformBatchBlocks; ++m) {
    for (int w = 0; w < 4; ++w) out[4 * m + w] = vals[w][m];
  }
}

constexpr uint32_t kBitMask[32] = {1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
                                   1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
                                   1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
                                   1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};

// Elements [i0, i0 + kSignBatchElems) for Rademacher; bit b of word w of block j is element
// 128 j + 32 w + b (LSB first); a set bit is the negative sign.
void SignBatch(const BasisStream& st, uint64_t i0, float* out) {
  uint32_t words[4][kSignBatchBlocks];
  PhiloxBatch<kSignBatchBlocks>(st.key, st.block_id, i0 / 128, words);
  uint32_t magnitude;
  std::memcpy(&magnitude, &st.scales.inv_sqrt_d, sizeof(magnitude));
  const uint32_t negative = magnitude | 0x80000000u;
  for (int m = 0; m < kSignBatchBlocks; ++m) {
    for (int w = 0; w < 4; ++w) {
      const uint32_t word = words[w][m];
      uint32_t bits[32];
      // A mask test per lane (not a per-lane variable shift) so baseline SSE2 vectorises it.
      for (int b = 0; b < 32; ++b) bits[b] = (word & kBitMask[b]) != 0 ? negative : magnitude;
      std::memcpy(out + 128 * m + 32 * w, bits, sizeof(bits));
    }
  }
}

int BatchElems(Distribution dist) {
  return dist == Distribution::kRademacher ? kSignBatchElems : kUniformBatchElems;
}

}  // namespace

const char* DistributionName(Distribution dist) {
  switch (dist) {
    case Distribution::kRademacher: return "rademacher";
    case Distribution::kUniform: return "uniform";
    case Distribution::kTruncNormal: return "trunc_normal";
    case Distribution::kStandardBasis: return "standard_basis";
  }
  return "?";
}

Result<Distribution> ParseDistribution(std::string_view name) {
  if (name == "rademacher") return Distribution::kRademacher;
  if (name == "uniform") return Distribution::kUniform;
  if (name == "trunc_normal") return Distribution::kTruncNormal;
  return Status::InvalidArgument("ferret distribution '" + std::string(name) +
                                 "': expected rademacher, uniform or trunc_normal");
}

double TruncNormalRho(int64_t d) {
  const double dd = static_cast<double>(d);
  if (d >= 1000) {
    // 3 d rho = 1 - 2/(15 d) + 2/(315 d^2) - ...; truncation error < 5e-13 relative here, while the
    // closed form below cancels catastrophically for large d.
    return (1.0 - 2.0 / (15.0 * dd) + 2.0 / (315.0 * dd * dd)) / (3.0 * dd);
  }
  const double a = 1.0 / std::sqrt(dd);
  const double pdf = std::exp(-0.5 * a * a) / std::sqrt(2.0 * std::numbers::pi);
  return 1.0 - 2.0 * a * pdf / std::erf(a / std::sqrt(2.0));
}

double BasisRho(Distribution dist, int64_t d) {
  const double dd = static_cast<double>(d);
  switch (dist) {
    case Distribution::kRademacher:
    case Distribution::kStandardBasis: return 1.0 / dd;
    case Distribution::kUniform: return 1.0 / (3.0 * dd);
    case Distribution::kTruncNormal: return TruncNormalRho(d);
  }
  return 0.0;
}

float ErfInvCentral(float x) {
  return ErfInvCentralTerms(x, kErfInvTerms);
}

float ErfInvCentralTerms(float x, int terms) {
  const float y = x * x;
  float p = kErfInvP[terms - 1];
  for (int i = terms - 2; i >= 0; --i) p = std::fma(p, y, kErfInvP[i]);
  return x * p;
}

BasisScales MakeBasisScales(int64_t d) {
  const double a = 1.0 / std::sqrt(static_cast<double>(d));
  BasisScales s;
  s.inv_sqrt_d = static_cast<float>(a);
  s.a_ulp = s.inv_sqrt_d * 0x1p-24f;  // power-of-two scaling: exact
  s.erf_a = static_cast<float>(std::erf(a / std::sqrt(2.0)));
  // Fewest Horner terms whose dropped tail is below 2^-28 relative for |x| <= erf_a (far below fp32
  // rounding): large blocks need 1-3 instead of 9 fma.
  const double y_max = static_cast<double>(s.erf_a) * static_cast<double>(s.erf_a);
  s.erfinv_terms = kErfInvTerms;
  for (int n = 1; n < kErfInvTerms; ++n) {
    double tail = 0;
    for (int i = n; i < kErfInvTerms; ++i) tail += std::fabs(static_cast<double>(kErfInvP[i])) * std::pow(y_max, i);
    if (tail <= std::ldexp(static_cast<double>(kErfInvP[0]), -28)) {
      s.erfinv_terms = n;
      break;
    }
  }
  return s;
}

BasisStream MakeBasisStream(Distribution dist, uint64_t job_seed, uint32_t key_round, uint32_t k, uint32_t block_id,
                            int64_t block_numel) {
  BasisStream st;
  st.dist = dist;
  st.key = BasisKey(job_seed, key_round, k);
  st.block_id = block_id;
  st.k = k;
  st.scales = MakeBasisScales(block_numel);
  return st;
}

float BasisElement(const BasisStream& st, uint64_t i) {
  if (st.dist == Distribution::kStandardBasis) return i == st.k ? 1.0f : 0.0f;
  uint32_t ctr[4], out[4];
  if (st.dist == Distribution::kRademacher) {
    BasisCounter(st.block_id, i / 128, ctr);
    Philox4x32_10(ctr, st.key, out);
    const uint32_t bit = (out[(i % 128) / 32] >> (i % 32)) & 1u;
    return bit ? -st.scales.inv_sqrt_d : st.scales.inv_sqrt_d;
  }
  BasisCounter(st.block_id, i / 4, ctr);
  Philox4x32_10(ctr, st.key, out);
  const uint32_t x = out[i % 4];
  if (st.dist == Distribution::kUniform) return static_cast<float>(CenteredOdd24(x)) * st.scales.a_ulp;
  return TruncNormalFromWord(x, st.scales);
}

void GenerateBasis(const BasisStream& st, uint64_t begin, int64_t n, float* out) {
  if (n <= 0) return;
  if (st.dist == Distribution::kStandardBasis) {
    for (int64_t t = 0; t < n; ++t) out[t] = begin + static_cast<uint64_t>(t) == st.k ? 1.0f : 0.0f;
    return;
  }
  const uint64_t batch = static_cast<uint64_t>(BatchElems(st.dist));
  const bool signs = st.dist == Distribution::kRademacher;
  alignas(64) float tmp[kMaxBatchElems];
  uint64_t pos = begin;
  int64_t done = 0;
  while (done < n) {
    const uint64_t batch_start = pos / batch * batch;
    const uint64_t offset = pos - batch_start;
    const int64_t take = std::min<int64_t>(static_cast<int64_t>(batch - offset), n - done);
    const bool whole = offset == 0 && static_cast<uint64_t>(take) == batch;
    float* dst = whole ? out + done : tmp;
    if (signs) {
      SignBatch(st, batch_start, dst);
    } else {
      UniformBatch(st, batch_start, dst);
    }
    if (!whole) std::memcpy(out + done, tmp + offset, static_cast<size_t>(take) * sizeof(float));
    pos += static_cast<uint64_t>(take);
    done += take;
  }
}

}  // namespace tributary
