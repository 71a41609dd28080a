// Codecs for the outer sync of cluster mode: an island sends its pseudo-gradient Delta (a flat fp32
// vector, one per tensor of the model) to the coordinator once per outer round (DiLoCo). The receiver
// decodes every island's Delta to fp32 and accumulates in fp32 or wider (Q(a) + Q(b) != Q(a + b), so
// nothing is summed in the compressed domain).
//
// Formats (little-endian; n values; the byte count is OuterCodecBytes):
//   fp32 : 4 n        the raw values.
//   bf16 : 2 n        each value rounded to nearest-even bfloat16 (base/half.h).
//   int8 : 1024 + n   PRIME's codec: 256 fp32 codebook entries, then one uint8 code per value. With mu
//                     and sigma the mean and population standard deviation of the n values (fp64), each
//                     value is clipped to [lo, hi] = [mu - 6 sigma, mu + 6 sigma] and its code is
//                     min(floor((clip(x) - lo) * 256 / (hi - lo)), 255) (all of it fp64; code 0 when
//                     hi == lo). Entry k is the mean of the clipped values with code k (fp64 sums,
//                     rounded once to fp32); an empty bin holds its centre lo + (k + 1/2)(hi - lo)/256.
//                     A constant vector decodes exactly; a value inside mu +- 6 sigma decodes within one
//                     bin width (hi - lo)/256.
//   fp4  : 4 ceil(n/32) + ceil(n/2)
//                     E2M1 (Streaming DiLoCo's 4-bit outer gradients): one fp32 scale per block of 32
//                     values (the last block may be shorter), then the codes, two per byte, the earlier
//                     value in the low nibble (an odd n leaves the last high nibble 0). A block's scale is
//                     absmax / 6 (0 for an all-zero block); a value's code is sign (bit 3, never set for a
//                     zero magnitude) and the magnitude index 0..7 of {0, 0.5, 1, 1.5, 2, 3, 4, 6} nearest
//                     to |x| * 6 / absmax, ties to the even index. Decoded: grid value * scale; values on
//                     the grid times a power of two decode exactly, others within half a grid step * scale.
//
// Every codec is deterministic: the same input gives the same bytes on every machine and thread count
// (the work is split into fixed slices and reduced in slice order; the build has -ffp-contract=off).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace tributary {

enum class OuterCodec { kFp32, kBf16, kInt8, kFp4 };

// "fp32", "bf16", "int8", "fp4"; InvalidArgument naming the value and the choices otherwise.
Result<OuterCodec> ParseOuterCodec(std::string_view name);
const char* OuterCodecName(OuterCodec codec);
// cluster.codec auto's candidates, least lossy first (the planner takes the first whose outer sync fits).
std::vector<OuterCodec> AutoOuterCodecs();

// The exact encoded size of n >= 0 values (the formulas above).
uint64_t OuterCodecBytes(OuterCodec codec, int64_t n);

// Appends the encoding of `values` (OuterCodecBytes(codec, values.size()) bytes) to *out.
// InvalidArgument "outer codec int8: value 12 is not finite" (and *out unchanged) for NaN or inf.
Status EncodeOuter(OuterCodec codec, std::span<const float> values, std::vector<uint8_t>* out);

// Decodes out.size() values from exactly OuterCodecBytes(codec, out.size()) bytes. InvalidArgument
// naming what is wrong: the size, a non-finite value (fp32, bf16) or codebook entry (int8), a scale
// that is negative or not finite (fp4), a nonzero padding nibble (fp4). Every uint8 code and every
// nibble is otherwise valid.
Status DecodeOuter(OuterCodec codec, std::span<const uint8_t> bytes, std::span<float> out);

}  // namespace tributary
