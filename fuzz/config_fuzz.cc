// The daemons' and the CLI's configuration file (base/config.h Config::LoadString with the schema of
// cli/cli_config.h): YAML an operator writes, typed and range-checked per key.
//
// Input: YAML text; after a NUL byte, one `key=value` override per line (as `--set`).
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "base/config.h"
#include "cli/cli_config.h"

using namespace tributary;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  auto config = Config::LoadString(cli::GlobalConfigSchema(), std::string(all.substr(0, nul)), "fuzz/config.yaml");
  if (!config.ok()) return 0;
  if (nul != std::string_view::npos) {
    std::istringstream lines{std::string(all.substr(nul + 1))};
    int n = 0;
    for (std::string line; std::getline(lines, line) && ++n <= 8;) config.value().Set(line).IgnoreError();
  }
  (void)config.value().Dump();
  return 0;
}
