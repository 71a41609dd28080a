#include "federation/outer_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "base/half.h"
#include "base/parallel.h"

namespace tributary {
namespace {

static_assert(std::endian::native == std::endian::little, "the codecs write host floats as little-endian bytes");

// Work is split into fixed slices (a multiple of the fp4 block and even, so slices own whole blocks
// and whole bytes); reductions combine per-slice partials in slice order, independent of the threads.
constexpr int64_t kSlice = int64_t{1} << 16;
constexpr int kBins = 256;
constexpr int64_t kCodebookBytes = kBins * 4;
constexpr int64_t kFp4Block = 32;
static_assert(kSlice % kFp4Block == 0 && kSlice % 2 == 0);

// E2M1 magnitudes; index 8..15 are the negatives (8 is -0, never written).
constexpr float kFp4Grid[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

int64_t NumSlices(int64_t n) {
  return (n + kSlice - 1) / kSlice;
}

// fn(slice, begin, end) for every slice of [0, n), in parallel.
template <typename Fn>
void ForSlices(int64_t n, const Fn& fn) {
  ParallelTasks(NumSlices(n), [&](int64_t s) { fn(s, s * kSlice, std::min(n, (s + 1) * kSlice)); });
}

std::string Prefix(OuterCodec codec) {
  return std::string("outer codec ") + OuterCodecName(codec) + ": ";
}

bool IsFiniteBits(uint32_t bits) {
  return (bits & 0x7f800000u) != 0x7f800000u;
}

// Hot loops run over fixed-length chunks: -O2's cheap vectorizer only takes loops whose trip count is
// a known multiple of the vector width.
constexpr int64_t kChunk = 256;

// The index of the first NaN or inf in p[0, n), or -1 (a branch-free scan first: the usual case).
int64_t FirstNonFinite(const float* p, int64_t n) {
  uint32_t bad = 0;
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk)
    for (int64_t j = 0; j < kChunk; ++j) bad |= static_cast<uint32_t>(!IsFiniteBits(FloatBits(p[i + j])));
  for (; i < n; ++i) bad |= static_cast<uint32_t>(!IsFiniteBits(FloatBits(p[i])));
  if (!bad) return -1;
  for (int64_t i = 0; i < n; ++i)
    if (!IsFiniteBits(FloatBits(p[i]))) return i;
  return -1;
}

// The lowest entry that is not -1 of per-slice first-bad indices, or -1.
int64_t FirstBad(const std::vector<int64_t>& per_slice) {
  for (int64_t i : per_slice)
    if (i >= 0) return i;
  return -1;
}

Status NotFinite(OuterCodec codec, const char* what, int64_t index) {
  return Status::InvalidArgument(Prefix(codec) + what + " " + std::to_string(index) + " is not finite");
}

// ---- fp32, bf16 ----

// bf16 of p[0, n) (n <= kChunk) into dst, staged so that full chunks vectorize.
void ToBF16(const float* p, int64_t n, uint8_t* dst) {
  uint16_t h[kChunk];
  if (n == kChunk) {
    for (int64_t j = 0; j < kChunk; ++j) h[j] = FloatToBF16(p[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) h[j] = FloatToBF16(p[j]);
  }
  std::memcpy(dst, h, static_cast<size_t>(2 * n));
}

// Copies (fp32) or rounds (bf16) the values; the first non-finite index, or -1.
int64_t EncodeRaw(OuterCodec codec, std::span<const float> values, uint8_t* dst) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<int64_t> bad(static_cast<size_t>(NumSlices(n)), -1);
  ForSlices(n, [&](int64_t s, int64_t b, int64_t e) {
    const int64_t first = FirstNonFinite(values.data() + b, e - b);
    if (first >= 0) bad[static_cast<size_t>(s)] = b + first;
    if (codec == OuterCodec::kFp32) {
      std::memcpy(dst + 4 * b, values.data() + b, static_cast<size_t>(4 * (e - b)));
      return;
    }
    for (int64_t i = b; i < e; i += kChunk) ToBF16(values.data() + i, std::min(kChunk, e - i), dst + 2 * i);
  });
  return FirstBad(bad);
}

int64_t DecodeRaw(OuterCodec codec, const uint8_t* src, std::span<float> out) {
  const int64_t n = static_cast<int64_t>(out.size());
  std::vector<int64_t> bad(static_cast<size_t>(NumSlices(n)), -1);
  ForSlices(n, [&](int64_t s, int64_t b, int64_t e) {
    if (codec == OuterCodec::kFp32) {
      std::memcpy(out.data() + b, src + 4 * b, static_cast<size_t>(4 * (e - b)));
    } else {
      for (int64_t i = b; i < e; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[static_cast<size_t>(i)] = BF16ToFloat(h);
      }
    }
    const int64_t first = FirstNonFinite(out.data() + b, e - b);
    if (first >= 0) bad[static_cast<size_t>(s)] = b + first;
  });
  return FirstBad(bad);
}

// ---- int8 ----

// Sum of p[0, n) (or of squared deviations from mean) in fp64 with eight fixed interleaved
// accumulators: independent add chains for speed; the order is part of the format.
template <bool kSquared>
double SliceSum(const float* p, int64_t n, double mean) {
  constexpr int kAcc = 8;
  double acc[kAcc] = {};
  int64_t i = 0;
  for (; i + kAcc <= n; i += kAcc) {
    for (int j = 0; j < kAcc; ++j) {
      const double d = static_cast<double>(p[i + j]) - mean;
      acc[j] += kSquared ? d * d : d;
    }
  }
  for (; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - mean;
    acc[i % kAcc] += kSquared ? d * d : d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

struct Int8Range {
  double lo = 0, hi = 0, scale = 0;  // scale = 256 / (hi - lo), or 0 when the range is empty
};

// mu and sigma (two passes, fp64, slice order) and the clip range; the first non-finite index in *bad.
Int8Range Int8RangeOf(std::span<const float> values, int64_t* bad) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<double> part(static_cast<size_t>(NumSlices(n)));
  std::vector<int64_t> first(part.size(), -1);
  ForSlices(n, [&](int64_t s, int64_t b, int64_t e) {
    const int64_t f = FirstNonFinite(values.data() + b, e - b);
    if (f >= 0) first[static_cast<size_t>(s)] = b + f;
    part[static_cast<size_t>(s)] = SliceSum<false>(values.data() + b, e - b, 0.0);
  });
  *bad = FirstBad(first);
  Int8Range r;
  if (*bad >= 0 || n == 0) return r;
  double sum = 0;
  for (double p : part) sum += p;
  const double mean = sum / static_cast<double>(n);
  ForSlices(n, [&](int64_t s, int64_t b, int64_t e) {
    part[static_cast<size_t>(s)] = SliceSum<true>(values.data() + b, e - b, mean);
  });
  double ss = 0;
  for (double p : part) ss += p;
  const double sigma = std::sqrt(ss / static_cast<double>(n));
  r.lo = mean - 6 * sigma;
  r.hi = mean + 6 * sigma;
  r.scale = kBins / (r.hi - r.lo);
  if (!(r.hi > r.lo) || !std::isfinite(r.scale)) r.scale = 0;
  return r;
}

// Per-slice bin sums, two interleaved copies (even and odd positions) so that consecutive values in
// the same bin do not wait on each other's read-modify-write; combined as even + odd.
struct BinSums {
  double sum[2][kBins];
  uint32_t count[2][kBins];  // a slice holds at most kSlice values
};

// Codes of p[0, n) into codes[], and the per-bin sums and counts of the clipped values.
void Int8Slice(const float* p, int64_t n, const Int8Range& r, uint8_t* codes, BinSums* bins) {
  *bins = BinSums{};
  // Locals, not stores through uint8_t* that may alias them, so that the first loop vectorizes.
  const double lo = r.lo, hi = r.hi, scale = r.scale;
  double clipped[kChunk];
  int32_t code[kChunk];
  const auto code_of = [&](int64_t i, const float* x) {
    const double c = std::min(std::max(static_cast<double>(x[i]), lo), hi);
    clipped[i] = c;
    code[i] = static_cast<int32_t>(std::min((c - lo) * scale, 255.0));
  };
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m = std::min(kChunk, n - b);
    if (m == kChunk) {
      for (int64_t i = 0; i < kChunk; ++i) code_of(i, p + b);  // clamp, multiply, clamp, truncate
    } else {
      for (int64_t i = 0; i < m; ++i) code_of(i, p + b);
    }
    for (int64_t i = 0; i < m; ++i) {
      const auto k = static_cast<size_t>(code[i]);
      codes[b + i] = static_cast<uint8_t>(k);
      bins->sum[i & 1][k] += clipped[i];  // kChunk is even: i's parity is the position's parity
      ++bins->count[i & 1][k];
    }
  }
}

int64_t EncodeInt8(std::span<const float> values, uint8_t* dst) {
  const int64_t n = static_cast<int64_t>(values.size());
  int64_t bad = -1;
  const Int8Range r = Int8RangeOf(values, &bad);
  if (bad >= 0) return bad;
  std::vector<BinSums> bins(static_cast<size_t>(NumSlices(n)));
  ForSlices(n, [&](int64_t s, int64_t b, int64_t e) {
    Int8Slice(values.data() + b, e - b, r, dst + kCodebookBytes + b, &bins[static_cast<size_t>(s)]);
  });
  const double width = (r.hi - r.lo) / kBins;
  float codebook[kBins];
  for (int k = 0; k < kBins; ++k) {
    double sum = 0;
    uint64_t count = 0;
    for (const BinSums& slice : bins) {
      sum += slice.sum[0][k] + slice.sum[1][k];
      count += slice.count[0][k] + slice.count[1][k];
    }
    // Explicit fma: the centre must not depend on whether the compiler would contract it.
    const double value = count > 0 ? sum / static_cast<double>(count) : std::fma(k + 0.5, width, r.lo);
    codebook[k] = static_cast<float>(value);
  }
  std::memcpy(dst, codebook, sizeof(codebook));
  return -1;
}

Status DecodeInt8(std::span<const uint8_t> bytes, std::span<float> out) {
  float codebook[kBins];
  std::memcpy(codebook, bytes.data(), sizeof(codebook));
  for (int k = 0; k < kBins; ++k)
    if (!std::isfinite(codebook[k])) return NotFinite(OuterCodec::kInt8, "codebook entry", k);
  const uint8_t* codes = bytes.data() + kCodebookBytes;
  ForSlices(static_cast<int64_t>(out.size()), [&](int64_t, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = codebook[codes[i]];
  });
  return Status::OK();
}

// ---- fp4 ----

// The E2M1 code of y = |x| / scale (y in [0, 6]): midpoint compares, ties to the even index.
inline uint8_t Fp4Magnitude(float y) {
  return static_cast<uint8_t>((y > 0.25f) + (y >= 0.75f) + (y > 1.25f) + (y >= 1.75f) + (y > 2.5f) + (y >= 3.5f) +
                              (y > 5.0f));
}

inline uint8_t Fp4Code(float x, float inv) {
  const uint8_t mag = Fp4Magnitude(std::fabs(x) * inv);
  return static_cast<uint8_t>(mag | ((x < 0 && mag != 0) ? 8 : 0));
}

// Codes of one block p[0, n) (n <= 32) into codes[]; returns the block's scale. N: n when known.
template <int64_t N>
float Fp4Block(const float* p, int64_t n, uint8_t* codes) {
  if constexpr (N > 0) n = N;
  // absmax as the integer max of the magnitude bits (the same order for finite floats; vectorizes).
  int32_t maxbits = 0;
  for (int64_t i = 0; i < n; ++i) maxbits = std::max(maxbits, static_cast<int32_t>(FloatBits(p[i]) & 0x7fffffffu));
  const float absmax = BitsToFloat(static_cast<uint32_t>(maxbits));
  const float inv = 6.0f / absmax;  // inf for a zero block (and for absmax < 6 / FLT_MAX, handled below)
  if (std::isfinite(inv)) {
    for (int64_t i = 0; i < n; ++i) codes[i] = Fp4Code(p[i], inv);
  } else {
    // Tiny (or zero) blocks: the same rule with y in fp64, where 6 / absmax cannot overflow.
    const double inv64 = absmax > 0 ? 6.0 / static_cast<double>(absmax) : 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t mag = Fp4Magnitude(static_cast<float>(std::fabs(static_cast<double>(p[i])) * inv64));
      codes[i] = static_cast<uint8_t>(mag | ((p[i] < 0 && mag != 0) ? 8 : 0));
    }
  }
  return absmax / 6.0f;
}

int64_t Fp4NumBlocks(int64_t n) {
  return (n + kFp4Block - 1) / kFp4Block;
}

int64_t EncodeFp4(std::span<const float> values, uint8_t* dst) {
  const int64_t n = static_cast<int64_t>(values.size());
  uint8_t* packed = dst + 4 * Fp4NumBlocks(n);
  std::vector<int64_t> bad(static_cast<size_t>(NumSlices(n)), -1);
  ForSlices(n, [&](int64_t s, int64_t b, int64_t e) {
    const int64_t first = FirstNonFinite(values.data() + b, e - b);
    if (first >= 0) {
      bad[static_cast<size_t>(s)] = b + first;
      return;
    }
    uint8_t codes[kFp4Block + 1];
    for (int64_t blk = b; blk < e; blk += kFp4Block) {
      const int64_t m = std::min(kFp4Block, e - blk);
      const float* p = values.data() + blk;
      const float scale = m == kFp4Block ? Fp4Block<kFp4Block>(p, m, codes) : Fp4Block<0>(p, m, codes);
      std::memcpy(dst + 4 * (blk / kFp4Block), &scale, 4);
      codes[m] = 0;  // the high nibble of an odd tail
      for (int64_t j = 0; j < m; j += 2) packed[(blk + j) / 2] = static_cast<uint8_t>(codes[j] | (codes[j + 1] << 4));
    }
  });
  return FirstBad(bad);
}

Status DecodeFp4(std::span<const uint8_t> bytes, std::span<float> out) {
  const int64_t n = static_cast<int64_t>(out.size());
  const int64_t blocks = Fp4NumBlocks(n);
  std::vector<float> scales(static_cast<size_t>(blocks));
  // No values, no scales: both pointers may be null then, and memcpy from null is undefined even for 0 bytes.
  if (blocks > 0) std::memcpy(scales.data(), bytes.data(), static_cast<size_t>(4 * blocks));
  for (int64_t k = 0; k < blocks; ++k) {
    const float scale = scales[static_cast<size_t>(k)];
    if (!std::isfinite(scale) || scale < 0)
      return Status::InvalidArgument(Prefix(OuterCodec::kFp4) + "scale of block " + std::to_string(k) + " is " +
                                     std::to_string(scale) + " (expected finite and >= 0)");
  }
  const uint8_t* packed = bytes.data() + 4 * blocks;
  if (n % 2 == 1 && (packed[n / 2] >> 4) != 0)
    return Status::InvalidArgument(Prefix(OuterCodec::kFp4) + "padding nibble of the last byte is not 0");
  ForSlices(n, [&](int64_t, int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; blk += kFp4Block) {
      const float scale = scales[static_cast<size_t>(blk / kFp4Block)];
      const int64_t m = std::min(kFp4Block, e - blk);
      const uint8_t* q = packed + blk / 2;
      float* o = out.data() + blk;
      for (int64_t j = 0; j + 1 < m; j += 2) {
        o[j] = kFp4Grid[q[j / 2] & 0xf] * scale;
        o[j + 1] = kFp4Grid[q[j / 2] >> 4] * scale;
      }
      if (m % 2 == 1) o[m - 1] = kFp4Grid[q[m / 2] & 0xf] * scale;
    }
  });
  return Status::OK();
}

}  // namespace

Result<OuterCodec> ParseOuterCodec(std::string_view name) {
  for (OuterCodec c : {OuterCodec::kFp32, OuterCodec::kBf16, OuterCodec::kInt8, OuterCodec::kFp4})
    if (name == OuterCodecName(c)) return c;
  return Status::InvalidArgument("outer codec '" + std::string(name) + "': expected one of fp32, bf16, int8, fp4");
}

std::vector<OuterCodec> AutoOuterCodecs() {
  return {OuterCodec::kFp32, OuterCodec::kBf16, OuterCodec::kInt8, OuterCodec::kFp4};
}

const char* OuterCodecName(OuterCodec codec) {
  switch (codec) {
    case OuterCodec::kFp32: return "fp32";
    case OuterCodec::kBf16: return "bf16";
    case OuterCodec::kInt8: return "int8";
    case OuterCodec::kFp4: return "fp4";
  }
  return "?";
}

uint64_t OuterCodecBytes(OuterCodec codec, int64_t n) {
  TRIB_CHECK(n >= 0);
  const auto u = static_cast<uint64_t>(n);
  switch (codec) {
    case OuterCodec::kFp32: return 4 * u;
    case OuterCodec::kBf16: return 2 * u;
    case OuterCodec::kInt8: return kCodebookBytes + u;
    case OuterCodec::kFp4: return 4 * static_cast<uint64_t>(Fp4NumBlocks(n)) + (u + 1) / 2;
  }
  return 0;
}

Status EncodeOuter(OuterCodec codec, std::span<const float> values, std::vector<uint8_t>* out) {
  const size_t start = out->size();
  out->resize(start + OuterCodecBytes(codec, static_cast<int64_t>(values.size())));
  uint8_t* dst = out->data() + start;
  int64_t bad = -1;
  switch (codec) {
    case OuterCodec::kFp32:
    case OuterCodec::kBf16: bad = EncodeRaw(codec, values, dst); break;
    case OuterCodec::kInt8: bad = EncodeInt8(values, dst); break;
    case OuterCodec::kFp4: bad = EncodeFp4(values, dst); break;
  }
  if (bad >= 0) {
    out->resize(start);
    return NotFinite(codec, "value", bad);
  }
  return Status::OK();
}

Status DecodeOuter(OuterCodec codec, std::span<const uint8_t> bytes, std::span<float> out) {
  const uint64_t expected = OuterCodecBytes(codec, static_cast<int64_t>(out.size()));
  if (bytes.size() != expected)
    return Status::InvalidArgument(Prefix(codec) + std::to_string(bytes.size()) + " bytes for " +
                                   std::to_string(out.size()) + " values (expected " + std::to_string(expected) + ")");
  switch (codec) {
    case OuterCodec::kFp32:
    case OuterCodec::kBf16: {
      const int64_t bad = DecodeRaw(codec, bytes.data(), out);
      return bad >= 0 ? NotFinite(codec, "value", bad) : Status::OK();
    }
    case OuterCodec::kInt8: return DecodeInt8(bytes, out);
    case OuterCodec::kFp4: return DecodeFp4(bytes, out);
  }
  return Status::Internal(Prefix(codec) + "unknown codec");
}

}  // namespace tributary
