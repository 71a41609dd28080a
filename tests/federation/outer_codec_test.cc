// The outer-sync codecs: sizes against the formulas, each format's error guarantee and layout, the
// int8 codebook against a naive recomputation, determinism across thread counts, the decoder's and
// encoder's rejections, and the aggregation use (the fp32 mean of several islands' decoded Delta).
#include "federation/outer_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/half.h"
#include "base/parallel.h"

namespace tributary {
namespace {

constexpr OuterCodec kAll[] = {OuterCodec::kFp32, OuterCodec::kBf16, OuterCodec::kInt8, OuterCodec::kFp4};
constexpr int64_t kSizes[] = {0, 1, 31, 32, 33, 1000, 4097, 65536 + 33};

std::vector<float> Gaussian(int64_t n, uint64_t seed, double mean = 0, double stddev = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

std::vector<uint8_t> Encode(OuterCodec codec, const std::vector<float>& values) {
  std::vector<uint8_t> bytes;
  const Status st = EncodeOuter(codec, values, &bytes);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return bytes;
}

std::vector<float> Decode(OuterCodec codec, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  const Status st = DecodeOuter(codec, bytes, out);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

std::vector<float> RoundTrip(OuterCodec codec, const std::vector<float>& values) {
  return Decode(codec, Encode(codec, values), static_cast<int64_t>(values.size()));
}

// The naive int8 reference: mu, sigma, codes and bin means straight from the format's definition.
struct NaiveInt8 {
  double lo = 0, hi = 0;
  std::vector<int> codes;
  std::vector<double> codebook;
};

NaiveInt8 NaiveInt8Encode(const std::vector<float>& v) {
  NaiveInt8 r;
  const double n = static_cast<double>(v.size());
  double sum = 0, ss = 0;
  for (float x : v) sum += x;
  const double mu = sum / n;
  for (float x : v) ss += (x - mu) * (x - mu);
  const double sigma = std::sqrt(ss / n);
  r.lo = mu - 6 * sigma;
  r.hi = mu + 6 * sigma;
  std::vector<double> bin_sum(256, 0.0);
  std::vector<int64_t> bin_count(256, 0);
  for (float x : v) {
    const double c = std::clamp(static_cast<double>(x), r.lo, r.hi);
    const int code = std::min(static_cast<int>(std::floor((c - r.lo) * 256 / (r.hi - r.lo))), 255);
    r.codes.push_back(code);
    bin_sum[static_cast<size_t>(code)] += c;
    ++bin_count[static_cast<size_t>(code)];
  }
  const double width = (r.hi - r.lo) / 256;
  for (int k = 0; k < 256; ++k) {
    const auto kk = static_cast<size_t>(k);
    r.codebook.push_back(bin_count[kk] > 0 ? bin_sum[kk] / static_cast<double>(bin_count[kk])
                                           : r.lo + (k + 0.5) * width);
  }
  return r;
}

TEST(OuterCodecTest, ParsesAndNamesEveryCodec) {
  for (OuterCodec c : kAll) {
    auto parsed = ParseOuterCodec(OuterCodecName(c));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, c);
  }
  auto bad = ParseOuterCodec("fp8");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsInvalidArgument());
  EXPECT_NE(bad.status().message().find("'fp8'"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("fp32, bf16, int8, fp4"), std::string::npos) << bad.status().message();
}

TEST(OuterCodecTest, EncodedSizesMatchTheFormulas) {
  EXPECT_EQ(OuterCodecBytes(OuterCodec::kFp32, 33), 132u);
  EXPECT_EQ(OuterCodecBytes(OuterCodec::kBf16, 33), 66u);
  EXPECT_EQ(OuterCodecBytes(OuterCodec::kInt8, 33), 1024u + 33u);
  EXPECT_EQ(OuterCodecBytes(OuterCodec::kFp4, 0), 0u);
  EXPECT_EQ(OuterCodecBytes(OuterCodec::kFp4, 1), 4u + 1u);
  EXPECT_EQ(OuterCodecBytes(OuterCodec::kFp4, 32), 4u + 16u);
  EXPECT_EQ(OuterCodecBytes(OuterCodec::kFp4, 33), 8u + 17u);
  for (OuterCodec c : kAll) {
    for (int64_t n : kSizes) {
      const std::vector<float> v = Gaussian(n, 7);
      std::vector<uint8_t> out = {1, 2, 3};  // encoders append
      ASSERT_TRUE(EncodeOuter(c, v, &out).ok());
      EXPECT_EQ(out.size(), 3 + OuterCodecBytes(c, n)) << OuterCodecName(c) << " n=" << n;
      EXPECT_EQ(out[0], 1);
      EXPECT_EQ(out.size() - 3, OuterCodecBytes(c, n));
      std::vector<float> back(static_cast<size_t>(n));
      EXPECT_TRUE(DecodeOuter(c, std::span<const uint8_t>(out).subspan(3), back).ok()) << OuterCodecName(c);
    }
  }
}

TEST(OuterCodecTest, Fp32RoundTripsExactly) {
  std::vector<float> v = Gaussian(4097, 1);
  v[0] = -0.0f;
  v[1] = std::numeric_limits<float>::denorm_min();
  v[2] = std::numeric_limits<float>::max();
  const std::vector<uint8_t> bytes = Encode(OuterCodec::kFp32, v);
  EXPECT_EQ(std::memcmp(bytes.data(), v.data(), bytes.size()), 0);
  const std::vector<float> back = Decode(OuterCodec::kFp32, bytes, 4097);
  EXPECT_EQ(std::memcmp(back.data(), v.data(), bytes.size()), 0);
}

TEST(OuterCodecTest, Bf16IsRoundToNearestEvenWithinRelative2ToMinus8) {
  std::vector<float> v = Gaussian(4097, 2, 0, 1e-3);
  v[0] = BitsToFloat(0x3f808000u);  // exactly halfway between two bf16 values: ties to even (down)
  v[1] = BitsToFloat(0x3f818000u);  // halfway, odd lower neighbour: rounds up
  const std::vector<float> back = RoundTrip(OuterCodec::kBf16, v);
  EXPECT_EQ(FloatBits(back[0]), 0x3f800000u);
  EXPECT_EQ(FloatBits(back[1]), 0x3f820000u);
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_LE(std::fabs(back[i] - v[i]), std::ldexp(std::fabs(v[i]), -8)) << i;
    EXPECT_EQ(back[i], BF16ToFloat(FloatToBF16(v[i]))) << i;
  }
}

TEST(OuterCodecTest, Int8ConstantVectorsDecodeExactly) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{65536 * 3 + 5}}) {
    for (float c : {0.0f, 0.37f, -1.5e-7f, 3.0e30f}) {
      const std::vector<float> v(static_cast<size_t>(n), c);
      const std::vector<float> back = RoundTrip(OuterCodec::kInt8, v);
      for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], c) << "n=" << n << " i=" << i;
    }
  }
}

TEST(OuterCodecTest, Int8CodebookHoldsTheBinMeansOfANaiveRecomputation) {
  const std::vector<float> v = Gaussian(200'000, 3, 0.01, 2e-3);  // spans several slices
  const std::vector<uint8_t> bytes = Encode(OuterCodec::kInt8, v);
  const NaiveInt8 ref = NaiveInt8Encode(v);
  float codebook[256];
  std::memcpy(codebook, bytes.data(), sizeof(codebook));
  for (int k = 0; k < 256; ++k) {
    const double want = ref.codebook[static_cast<size_t>(k)];
    EXPECT_NEAR(codebook[k], want, 1e-6 * std::fabs(want)) << "bin " << k;
  }
  int mismatches = 0;
  for (size_t i = 0; i < v.size(); ++i) mismatches += bytes[1024 + i] != ref.codes[i];
  EXPECT_EQ(mismatches, 0);
}

TEST(OuterCodecTest, Int8ErrorIsWithinOneBinInsideSixSigmaAndOutliersAreClipped) {
  std::vector<float> v = Gaussian(100'000, 4, -0.5, 0.1);
  v[10] = 50;  // outliers far outside mu +- 6 sigma
  v[20] = -50;
  const NaiveInt8 ref = NaiveInt8Encode(v);
  const double width = (ref.hi - ref.lo) / 256;
  // Codebook entries are fp64 means rounded once to fp32: allow that rounding on top of the bound.
  const auto tol = [&](double x) { return 1e-6 * width + std::ldexp(std::fabs(x), -24); };
  const std::vector<float> back = RoundTrip(OuterCodec::kInt8, v);
  int inside = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_GE(back[i], ref.lo - tol(ref.lo)) << i;
    EXPECT_LE(back[i], ref.hi + tol(ref.hi)) << i;
    if (v[i] >= ref.lo && v[i] <= ref.hi) {
      ++inside;
      EXPECT_LE(std::fabs(back[i] - v[i]), width + tol(v[i])) << i;
    }
  }
  EXPECT_EQ(inside, 100'000 - 2);
  EXPECT_NEAR(back[10], ref.hi, tol(ref.hi));  // clipped: alone in the top bin
  EXPECT_NEAR(back[20], ref.lo, tol(ref.lo));
}

TEST(OuterCodecTest, EveryCodecIsDeterministicAcrossRunsAndThreadCounts) {
  const std::vector<float> v = Gaussian(65536 * 4 + 77, 5, 1e-3, 1e-2);
  for (OuterCodec c : kAll) {
    SetNumThreads(1);
    const std::vector<uint8_t> one = Encode(c, v);
    SetNumThreads(4);
    const std::vector<uint8_t> four = Encode(c, v);
    const std::vector<uint8_t> again = Encode(c, v);
    SetNumThreads(0);
    EXPECT_EQ(one, four) << OuterCodecName(c);
    EXPECT_EQ(four, again) << OuterCodecName(c);
  }
}

// The E2M1 grid, its midpoints and half a step at each magnitude index.
constexpr float kGrid[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};

TEST(OuterCodecTest, Fp4IsExactOnTheGridTimesAPowerOfTwo) {
  std::vector<float> v;
  std::mt19937_64 rng(6);
  for (int e = -30; e <= 30; e += 3) {  // one block per exponent, each with absmax 6 * 2^e
    for (int j = 0; j < 32; ++j) {
      const float g = j == 5 ? 6.0f : kGrid[rng() % 8];
      v.push_back(std::ldexp((rng() % 2) ? -g : g, e));
    }
  }
  v.push_back(std::ldexp(-6.0f, 4));  // a short last block
  v.push_back(std::ldexp(1.5f, 4));
  const std::vector<float> back = RoundTrip(OuterCodec::kFp4, v);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(back[i], v[i]) << i;
}

TEST(OuterCodecTest, Fp4ErrorIsAtMostHalfAGridStepTimesTheScale) {
  std::vector<float> v = Gaussian(4097, 8, 0, 3e-3);
  for (size_t i = 0; i < 64; ++i) v[i] = 0;                                // an all-zero block
  for (size_t i = 64; i < 96; ++i) v[i] = static_cast<float>(i) * 1e-40f;  // subnormal block
  const std::vector<uint8_t> bytes = Encode(OuterCodec::kFp4, v);
  const std::vector<float> back = Decode(OuterCodec::kFp4, bytes, 4097);
  for (size_t i = 0; i < v.size(); ++i) {
    float scale;
    std::memcpy(&scale, bytes.data() + 4 * (i / 32), 4);
    const float y = std::fabs(v[i]) / scale;
    const double half_step = y < 2 ? 0.25 : y < 4 ? 0.5 : 1.0;
    EXPECT_LE(std::fabs(back[i] - v[i]), half_step * scale * (1 + 1e-5) + 1e-44) << i;
  }
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(FloatBits(back[i]), 0u) << i;
}

TEST(OuterCodecTest, Fp4RoundsTiesToTheEvenCode) {
  // absmax 6 gives scale 1; every midpoint of the grid, positive and negative.
  const std::vector<float> v = {6, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5, -0.25f, -0.75f, -2.5f, -5};
  const std::vector<float> want = {6, 0, 1, 1, 2, 2, 4, 4, 0, -1, -2, -4};
  const std::vector<float> back = RoundTrip(OuterCodec::kFp4, v);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(back[i], want[i]) << v[i];
  EXPECT_EQ(FloatBits(back[8]), 0u);  // a negative value that rounds to zero is +0 (code 0)
}

TEST(OuterCodecTest, Fp4LayoutIsScalesThenLowNibbleFirstCodes) {
  const std::vector<float> v = {12, -2, 1};  // scale 2: codes 7, 8|2, 1
  const std::vector<uint8_t> bytes = Encode(OuterCodec::kFp4, v);
  ASSERT_EQ(bytes.size(), 6u);
  float scale;
  std::memcpy(&scale, bytes.data(), 4);
  EXPECT_EQ(scale, 2.0f);
  EXPECT_EQ(bytes[4], 0xa7);
  EXPECT_EQ(bytes[5], 0x01);  // the odd tail's high nibble is 0
}

TEST(OuterCodecTest, Int8LayoutIsCodebookThenCodes) {
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  const std::vector<uint8_t> bytes = Encode(OuterCodec::kInt8, v);
  const NaiveInt8 ref = NaiveInt8Encode(v);
  const double width = (ref.hi - ref.lo) / 256;
  for (size_t i = 0; i < v.size(); ++i) {
    const uint8_t code = bytes[1024 + i];
    if (i > 0) {
      EXPECT_GE(code, bytes[1024 + i - 1]) << i;  // codes follow the values
    }
    float entry;
    std::memcpy(&entry, bytes.data() + 4 * code, 4);
    EXPECT_LE(std::fabs(entry - v[i]), width) << i;
  }
}

std::string DecodeError(OuterCodec c, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  const Status st = DecodeOuter(c, bytes, out);
  EXPECT_TRUE(st.IsInvalidArgument()) << OuterCodecName(c) << ": " << st.ToString();
  return st.message();
}

TEST(OuterCodecTest, DecodeRejectsWrongSizes) {
  for (OuterCodec c : kAll) {
    std::vector<uint8_t> bytes = Encode(c, Gaussian(33, 9));
    bytes.push_back(0);
    EXPECT_NE(DecodeError(c, bytes, 33).find("expected"), std::string::npos);
    bytes.resize(bytes.size() - 2);
    EXPECT_NE(DecodeError(c, bytes, 33).find("for 33 values"), std::string::npos);
    EXPECT_FALSE(DecodeError(c, {}, 1).empty());
  }
}

TEST(OuterCodecTest, DecodeRejectsNonFiniteCodebookScalesValuesAndPadding) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<uint8_t> int8 = Encode(OuterCodec::kInt8, Gaussian(100, 10));
  std::memcpy(int8.data() + 4 * 3, &nan, 4);
  EXPECT_NE(DecodeError(OuterCodec::kInt8, int8, 100).find("codebook entry 3 is not finite"), std::string::npos);

  const std::vector<uint8_t> fp4 = Encode(OuterCodec::kFp4, Gaussian(65, 11));
  for (float bad : {nan, inf, -1.0f}) {
    std::vector<uint8_t> b = fp4;
    std::memcpy(b.data() + 4 * 1, &bad, 4);
    EXPECT_NE(DecodeError(OuterCodec::kFp4, b, 65).find("scale of block 1"), std::string::npos) << bad;
  }
  std::vector<uint8_t> padded = fp4;
  padded.back() |= 0x10;
  EXPECT_NE(DecodeError(OuterCodec::kFp4, padded, 65).find("padding nibble"), std::string::npos);

  std::vector<uint8_t> fp32 = Encode(OuterCodec::kFp32, Gaussian(10, 12));
  std::memcpy(fp32.data() + 4 * 7, &inf, 4);
  EXPECT_NE(DecodeError(OuterCodec::kFp32, fp32, 10).find("value 7 is not finite"), std::string::npos);
  std::vector<uint8_t> bf16 = Encode(OuterCodec::kBf16, Gaussian(10, 12));
  bf16[2 * 4 + 1] = 0x7f;  // exponent all ones
  bf16[2 * 4] = 0xc0;
  EXPECT_NE(DecodeError(OuterCodec::kBf16, bf16, 10).find("value 4 is not finite"), std::string::npos);
}

TEST(OuterCodecTest, EncodeRejectsNonFiniteValuesNamingTheFirstIndex) {
  for (OuterCodec c : kAll) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
      std::vector<float> v = Gaussian(65536 * 2 + 9, 13);
      v[70'000] = bad;
      v[100'000] = bad;
      std::vector<uint8_t> out = {42};
      const Status st = EncodeOuter(c, v, &out);
      EXPECT_TRUE(st.IsInvalidArgument()) << OuterCodecName(c);
      EXPECT_NE(st.message().find("value 70000 is not finite"), std::string::npos) << st.message();
      EXPECT_EQ(out, std::vector<uint8_t>{42}) << OuterCodecName(c);  // unchanged on error
    }
  }
}

// The aggregation use: several islands' Delta (a shared direction plus island noise) decoded and
// averaged in fp32 land within the codecs' per-value guarantees of the true mean.
TEST(OuterCodecTest, MeanOfDecodedIslandDeltasIsCloseToTheTrueMean) {
  constexpr int kIslands = 4;
  constexpr int64_t kN = 50'000;
  const std::vector<float> shared = Gaussian(kN, 14, 0, 1e-3);
  std::vector<std::vector<float>> deltas;
  std::vector<double> truth(kN, 0.0);
  for (int isl = 0; isl < kIslands; ++isl) {
    std::vector<float> d = Gaussian(kN, 100 + static_cast<uint64_t>(isl), 0, 1e-3);
    for (int64_t i = 0; i < kN; ++i) d[static_cast<size_t>(i)] += shared[static_cast<size_t>(i)];
    for (int64_t i = 0; i < kN; ++i) truth[static_cast<size_t>(i)] += d[static_cast<size_t>(i)] / kIslands;
    deltas.push_back(std::move(d));
  }
  double truth_rms = 0;
  for (double t : truth) truth_rms += t * t;
  truth_rms = std::sqrt(truth_rms / kN);
  const double max_rel_rms[] = {1e-7, 3e-3, 2e-2, 0.15};  // fp32, bf16, int8, fp4
  for (OuterCodec c : kAll) {
    std::vector<float> mean(kN, 0.0f);
    for (const auto& d : deltas) {
      const std::vector<float> back = RoundTrip(c, d);
      for (int64_t i = 0; i < kN; ++i) mean[static_cast<size_t>(i)] += back[static_cast<size_t>(i)];
    }
    double err = 0;
    for (int64_t i = 0; i < kN; ++i) {
      const double e = mean[static_cast<size_t>(i)] / kIslands - truth[static_cast<size_t>(i)];
      err += e * e;
    }
    const double rel = std::sqrt(err / kN) / truth_rms;
    EXPECT_LT(rel, max_rel_rms[static_cast<int>(c)]) << OuterCodecName(c);
    std::printf("%s: relative RMS error of the 4-island mean %.3g\n", OuterCodecName(c), rel);
  }
}

}  // namespace
}  // namespace tributary
