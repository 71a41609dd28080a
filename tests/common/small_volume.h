// A small tmpfs mounted for one test (root only), for storage faults: fill it, free it, remount it.
#pragma once

#include <cstdint>
#include <string>

#include "tests/common/temp_dir.h"

namespace tributary::testutil {

class SmallVolume {
 public:
  // Mounts a tmpfs of `size_mib` MiB at a fresh directory; error() says why when it could not.
  explicit SmallVolume(uint64_t size_mib);
  // Mounts it at `at` instead (created if missing), e.g. a daemon's data dir.
  SmallVolume(uint64_t size_mib, const std::string& at);
  ~SmallVolume();  // unmounts (lazily)
  SmallVolume(const SmallVolume&) = delete;
  SmallVolume& operator=(const SmallVolume&) = delete;

  const std::string& error() const { return error_; }  // "" when mounted
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  uint64_t FreeBytes() const;
  // Writes <path>/filler so that about `leave` bytes stay free.
  void FillLeaving(uint64_t leave) const;
  void RemoveFiller() const;
  // Remounts read-only or read-write; false (errno set) when the kernel refuses (EBUSY with open writers).
  bool Remount(bool read_only) const;

 private:
  TempDir dir_;
  std::string path_;
  std::string error_;
};

}  // namespace tributary::testutil

// Skips the test unless it runs as root, and fails it when the volume could not be mounted.
#define TRIB_SKIP_UNLESS_MOUNTED(volume)                                                                       \
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mounts a small tmpfs); run as root to test storage faults"; \
  ASSERT_TRUE((volume).error().empty()) << "mount tmpfs: " << (volume).error()
