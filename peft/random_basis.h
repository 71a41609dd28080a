// Shared random basis vectors v_{k,l} of Ferret (docs/ferret.md, "Bases" and "Seeds").
//
// Element i of vector k of block l is a pure function of (job seed, round, k, l, i): any thread,
// tile or replica generates exactly the slice it needs and no vector is ever stored. Scale
// constants are computed once on the host in fp64 and rounded to fp32, so CPU and GPU agree.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "peft/philox.h"

namespace tributary {

enum class Distribution : uint8_t {
  kRademacher = 0,   // +-1/sqrt(d); rho = 1/d; ||v|| = 1 exactly (default)
  kUniform = 1,      // U[-a, a], a = 1/sqrt(d); rho = 1/(3d)
  kTruncNormal = 2,  // TN(0, 1; [-a, a]) by fp32 inverse CDF (the Ferret paper's distribution)
  // v_k = e_k, the k-th standard unit vector (rho = 1/d, so the unbiased gamma_k = Delta_k when K_l = d).
  // Only for tests and diagnostics: it makes one Ferret round reproduce FedAvg exactly.
  kStandardBasis = 3,
};

const char* DistributionName(Distribution dist);
// "rademacher" | "uniform" | "trunc_normal"; InvalidArgument naming the value otherwise.
Result<Distribution> ParseDistribution(std::string_view name);

// rho_l = E[v_i^2] for a block of d elements (d >= 1).
double BasisRho(Distribution dist, int64_t d);
// Variance of TN(0, 1; [-a, a]) with a = 1/sqrt(d): 3-term series for d >= 1000, erf closed form below.
double TruncNormalRho(int64_t d);

// Inverse error function in fp32, a polynomial evaluated with explicit fma (bit-identical on CPU and
// GPU; no libm or CUDA erfinv). Valid for |x| <= 0.7, which covers every trunc_normal argument:
// |x| <= erf(a/sqrt(2)) <= erf(1/sqrt(2)) = 0.6827. Relative error < 3e-7 there (tested).
float ErfInvCentral(float x);
// The same polynomial truncated to its first `terms` (1..9) coefficients.
float ErfInvCentralTerms(float x, int terms);

// fp32 constants of one block size, computed in fp64 on the host and rounded once.
struct BasisScales {
  float inv_sqrt_d = 0;  // 1/sqrt(d) = a: Rademacher magnitude and uniform/TN bound
  float a_ulp = 0;       // a * 2^-24 (exact): uniform v = float(s) * a_ulp for the odd integer s
  float erf_a = 0;       // fp32(erf(a/sqrt(2))): TN maps 2u-1 in (-1, 1) to (-erf_a, erf_a)
  int erfinv_terms = 9;  // Horner terms of the erfinv polynomial TN needs for |x| <= erf_a (host-chosen)
};
BasisScales MakeBasisScales(int64_t d);

// Everything that identifies the vector v_{k,l}: the generator of its elements.
struct BasisStream {
  Distribution dist = Distribution::kRademacher;
  PhiloxKey key;          // BasisKey(job_seed, round or 0, k)
  uint32_t block_id = 0;  // l
  uint32_t k = 0;         // only used by kStandardBasis
  BasisScales scales;
};

BasisStream MakeBasisStream(Distribution dist, uint64_t job_seed, uint32_t key_round, uint32_t k, uint32_t block_id,
                            int64_t block_numel);

// v[i] by the definition (scalar; the reference the batched generator is tested against).
float BasisElement(const BasisStream& stream, uint64_t i);

// out[0..n) = v[begin .. begin + n), generated in vectorisable batches. Any begin (i >= 2^32 works).
void GenerateBasis(const BasisStream& stream, uint64_t begin, int64_t n, float* out);

}  // namespace tributary
