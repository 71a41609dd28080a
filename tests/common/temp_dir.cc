#include "tests/common/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace tributary::testutil {

TempDir::TempDir(const std::string& prefix, bool keep_on_failure) : keep_on_failure_(keep_on_failure) {
  std::string pattern = (std::filesystem::temp_directory_path() / (prefix + ".XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << pattern << " failed";
    return;
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  if (keep_on_failure_ && testing::Test::HasFailure()) {
    std::fprintf(stderr, "test failed: files kept in %s\n", path_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::Write(const std::string& name, const std::string& text) const {
  const std::string path = Sub(name);
  std::ofstream(path) << text;
  return path;
}

}  // namespace tributary::testutil
