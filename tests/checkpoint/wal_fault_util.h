// A RocksDB file system that can make the write-ahead log fail the way a failing disk does (EIO),
// through RocksDB's public FileSystem API: the checkpoint store's fault tests run a real RocksDB on it
// (StoreOptions::file_system_for_testing).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <rocksdb/file_system.h>

namespace tributary::checkpoint::testutil {

class WalFaultFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // no_space: the failing calls return NoSpace (ENOSPC) instead.
  explicit WalFaultFileSystem(bool no_space = false)
      : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()), no_space_(no_space) {}

  static const char* kClassName() { return "TributaryWalFaultFileSystem"; }
  const char* Name() const override { return kClassName(); }

  enum class Fault {
    kNone,
    kWrite,  // Append, Flush, Sync and Fsync fail: nothing of the write reaches the file
    kSync,   // only Sync and Fsync fail: the bytes reach the file (page cache) but are not synced
  };
  // Applies to every WAL file (`*.log`), open or opened later; failing calls return
  // IOError("<file>: <call>: injected EIO (Input/output error)").
  void SetWalFault(Fault fault) { fault_.store(fault); }
  // How many WAL calls failed because of the switch.
  int injected_errors() const { return injected_.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

  // OK, or the injected error when the switch is on (counted).
  rocksdb::IOStatus MaybeFail(const char* op, const std::string& fname);

 private:
  void Wrap(const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile>* result);

  const bool no_space_;
  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<int> injected_{0};
};

}  // namespace tributary::checkpoint::testutil
