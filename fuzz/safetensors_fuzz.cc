// safetensors files (engine/io/safetensors.h): the u64 header length, the JSON header (dtypes, shapes,
// offsets, metadata) and the conversion of each tensor a header admits. A model directory, an adapter
// or a merge input can come from anywhere.
//
// Input: the whole file. It is written to one memfd and opened through /proc/self/fd, so the real
// Open (fstat, mmap, the header length checks) runs, not only the JSON parser.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"

using namespace tributary;

namespace {

int MemFd() {
  static const int fd = [] {
    const int f = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (f < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = MemFd();
  if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))) {
    std::perror("memfd write");
    std::abort();
  }
  auto file = SafetensorsFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (!file.ok()) return 0;
  for (const SafetensorsTensorInfo& info : file.value().tensors()) {
    // A valid header bounds every tensor by the file's data section; converting reads all of it.
    if (info.numel > (int64_t{1} << 20)) continue;
    file.value().ReadFloatVector(info.name).status().IgnoreError();
    file.value().ReadInt64Vector(info.name).status().IgnoreError();
  }
  return 0;
}
