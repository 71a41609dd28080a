#include "tests/common/small_volume.h"

#include <sys/mount.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace tributary::testutil {

SmallVolume::SmallVolume(uint64_t size_mib) : SmallVolume(size_mib, "") {}

SmallVolume::SmallVolume(uint64_t size_mib, const std::string& at) : path_(at.empty() ? dir_.Sub("vol") : at) {
  std::filesystem::create_directories(path_);
  const std::string data = "size=" + std::to_string(size_mib) + "m";
  if (mount("tmpfs", path_.c_str(), "tmpfs", 0, data.c_str()) != 0) error_ = std::strerror(errno);
}

SmallVolume::~SmallVolume() {
  if (error_.empty()) umount2(path_.c_str(), MNT_DETACH);
}

uint64_t SmallVolume::FreeBytes() const {
  struct statvfs fs {};
  if (statvfs(path_.c_str(), &fs) != 0) return 0;
  return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

void SmallVolume::FillLeaving(uint64_t leave) const {
  const uint64_t free_bytes = FreeBytes();
  if (free_bytes <= leave) return;
  std::ofstream out(Sub("filler"), std::ios::binary);
  const std::string block(1 << 16, 'f');
  for (uint64_t left = free_bytes - leave; left > 0;) {
    const uint64_t n = std::min<uint64_t>(left, block.size());
    out.write(block.data(), static_cast<std::streamsize>(n));
    left -= n;
  }
}

void SmallVolume::RemoveFiller() const {
  std::error_code ec;
  std::filesystem::remove(Sub("filler"), ec);
}

bool SmallVolume::Remount(bool read_only) const {
  const unsigned long flags = MS_REMOUNT | (read_only ? MS_RDONLY : 0);
  return mount("tmpfs", path_.c_str(), "tmpfs", flags, nullptr) == 0;
}

}  // namespace tributary::testutil
