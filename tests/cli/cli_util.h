// Runs the real `tributary` binary as a child process and captures its output and exit code.
#pragma once

#include <string>
#include <vector>

#include "tests/common/temp_dir.h"

namespace tributary::testutil {

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs TRIBUTARY_BINARY with `args` (no shell), stdin from /dev/null.
ProcessResult RunTributary(const std::vector<std::string>& args);

// A fresh temporary directory, removed by the destructor.

}  // namespace tributary::testutil
