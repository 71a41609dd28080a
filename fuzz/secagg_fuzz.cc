// The secure-aggregation stage messages (federation/secagg_messages.h) carried as `bytes` in
// SecAggRequest / SecAggReply: every parser sees every input (the type byte picks at most one). A
// message that parses must serialize back to the same bytes (the format has one encoding).
//
// Input: the message bytes.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "federation/secagg_messages.h"

using namespace tributary;

namespace {

template <typename Msg>
void RoundTrip(std::span<const uint8_t> bytes, const char* name) {
  auto parsed = Msg::Parse(bytes);
  if (!parsed.ok()) return;
  const std::vector<uint8_t> again = parsed.value().Serialize();
  if (!std::equal(bytes.begin(), bytes.end(), again.begin(), again.end())) {
    std::fprintf(stderr, "%s of %zu bytes parsed but does not serialize back to itself\n", name, bytes.size());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  RoundTrip<AdvertiseKeysMsg>(bytes, "AdvertiseKeysMsg");
  RoundTrip<KeyDirectoryMsg>(bytes, "KeyDirectoryMsg");
  RoundTrip<ShareKeysMsg>(bytes, "ShareKeysMsg");
  RoundTrip<ForwardedSharesMsg>(bytes, "ForwardedSharesMsg");
  RoundTrip<MaskedInputMsg>(bytes, "MaskedInputMsg");
  RoundTrip<UnmaskRequestMsg>(bytes, "UnmaskRequestMsg");
  RoundTrip<UnmaskResponseMsg>(bytes, "UnmaskResponseMsg");
  return 0;
}
