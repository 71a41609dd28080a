// The job spec (federation/job_spec.h ParseJobSpec): YAML a client submits and the coordinator parses,
// validates and stores; its canonical form and hash are computed from every accepted spec.
//
// Input: YAML text; after a NUL byte, one `key=value` override per line (as `submit --set`).
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "federation/job_spec.h"

using namespace tributary;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string yaml(all.substr(0, nul));
  std::vector<std::string> overrides;
  if (nul != std::string_view::npos) {
    std::istringstream lines{std::string(all.substr(nul + 1))};
    for (std::string line; std::getline(lines, line) && overrides.size() < 8;) overrides.push_back(line);
  }
  auto spec = ParseJobSpec(yaml, "fuzz/job.yaml", overrides);
  if (!spec.ok()) return 0;
  (void)JobSpecHash(spec.value());
  (void)CanonicalJobSpec(spec.value());
  return 0;
}
