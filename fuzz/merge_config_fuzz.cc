// Merge configs (peft/merge.h ParseMergeConfig): the YAML of `tributary merge` (method, base, models,
// weights, densities, t, seed, dtype).
//
// Input: the YAML text.
#include <cstdint>
#include <string>

#include "peft/merge.h"

using namespace tributary;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  ParseMergeConfig(yaml, "fuzz/merge.yaml").status().IgnoreError();
  return 0;
}
