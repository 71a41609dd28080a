// One temporary directory class for every test binary: a fresh directory under $TMPDIR (mkdtemp),
// removed with everything in it when the object goes away.
#pragma once

#include <string>

namespace tributary::testutil {

class TempDir {
 public:
  // `prefix` names the directory (prefix.XXXXXX). keep_on_failure: when the current test has failed, the
  // directory is kept and its path printed, so daemon logs can be read afterwards.
  explicit TempDir(const std::string& prefix = "tributary_test", bool keep_on_failure = false);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // A path inside the directory (not created).
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  // Writes `text` to a file inside the directory; returns its path.
  std::string Write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
  bool keep_on_failure_;
};

}  // namespace tributary::testutil
