// The upload and aggregate bodies of the federated methods (federation/method.h), as the coordinator
// validates an UploadUpdate's payload and every replica reads a RoundCommitted's aggregate:
//   ferret  : the coefficient payload (peft/payload.h ParsePayload)
//   fedavg, lora : dense fp32 payloads (federation/dense_payload.h ValidateDensePayload)
//   cluster : the outer codecs fp32 / bf16 / int8 / fp4 (federation/outer_codec.h DecodeOuter)
//   fedkseed: K scalars after a round and K header (federation/fedkseed_method.h ParseFedKSeedPayload)
// A payload that parses must serialize back to the same bytes (the format has one encoding).
//
// Input: blocks u16 | K u16 | n u16 | the payload bytes (the rest). blocks and K are the job's
// expectation of a ferret payload (K also a fedkseed payload's); n the value count a dense or outer payload
// should hold.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "federation/dense_payload.h"
#include "federation/fedkseed_method.h"
#include "federation/outer_codec.h"
#include "fuzz/fuzz_input.h"
#include "peft/payload.h"

using namespace tributary;

namespace {

void Ferret(std::span<const uint8_t> bytes, int blocks, int k) {
  auto parsed = ParsePayload(bytes, PayloadExpectation{blocks, k});
  if (!parsed.ok()) return;
  auto again = SerializePayload(parsed.value());
  if (!again.ok() || !std::equal(bytes.begin(), bytes.end(), again.value().begin(), again.value().end())) {
    std::fprintf(stderr, "ferret payload of %zu bytes parsed but does not serialize back to itself\n", bytes.size());
    std::abort();
  }
}

void FedKSeed(std::span<const uint8_t> bytes, int k) {
  // The fuzzer's K, and the K whose payload size is exactly the input's where one exists.
  const int exact = bytes.size() >= kFedKSeedHeaderBytes && (bytes.size() - kFedKSeedHeaderBytes) % 4 == 0
                        ? static_cast<int>(std::min<size_t>((bytes.size() - kFedKSeedHeaderBytes) / 4, 1 << 20))
                        : -1;
  for (const int K : {k, exact}) {
    if (K < 0) continue;
    auto parsed = ParseFedKSeedPayload(bytes, K);
    if (!parsed.ok()) continue;
    const std::vector<uint8_t> again = SerializeFedKSeedPayload(parsed.value());
    if (!std::equal(bytes.begin(), bytes.end(), again.begin(), again.end())) {
      std::fprintf(stderr, "fedkseed payload of %zu bytes parsed but does not serialize back to itself\n",
                   bytes.size());
      std::abort();
    }
  }
}

void Outer(std::span<const uint8_t> bytes, int64_t n) {
  std::vector<float> out;
  for (const OuterCodec codec : {OuterCodec::kFp32, OuterCodec::kBf16, OuterCodec::kInt8, OuterCodec::kFp4}) {
    // The fuzzer's n, and the n whose encoded size is exactly the input's where one exists.
    int64_t exact = -1;
    const int64_t size = static_cast<int64_t>(bytes.size());
    if (codec == OuterCodec::kFp32 && size % 4 == 0) exact = size / 4;
    if (codec == OuterCodec::kBf16 && size % 2 == 0) exact = size / 2;
    if (codec == OuterCodec::kInt8 && size >= 1024) exact = size - 1024;
    if (codec == OuterCodec::kFp4) {
      // 4 ceil(m/32) + ceil(m/2) bytes: about 5/8 of a byte per value.
      for (int64_t m = std::max<int64_t>(0, size * 8 / 5 - 64); m <= size * 8 / 5 + 64 && exact < 0; ++m) {
        if (OuterCodecBytes(codec, m) == bytes.size()) exact = m;
      }
    }
    for (const int64_t count : {n, exact}) {
      if (count < 0) continue;
      out.assign(static_cast<size_t>(count), 0.0f);
      DecodeOuter(codec, bytes, out).IgnoreError();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  const int blocks = in.U16();
  const int k = in.U16();
  const int64_t n = in.U16();
  const auto bytes = in.Rest();
  Ferret(bytes, blocks, k);
  ValidateDensePayload(bytes, n).IgnoreError();
  ValidateDensePayload(bytes, static_cast<int64_t>(bytes.size() / 4)).IgnoreError();
  Outer(bytes, n);
  FedKSeed(bytes, k);
  return 0;
}
