// Process-wide logging setup for the CLI and daemons (spdlog on stderr).
#pragma once

#include <string>

#include "base/status.h"

namespace tributary::cli {

// level: trace|debug|info|warn|error|critical|off; format: text|json (one JSON object per line,
// with the message escaped). Errors name the offending value.
Status SetupLogging(const std::string& level, const std::string& format);

}  // namespace tributary::cli
