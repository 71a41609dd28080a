#include "tests/checkpoint/wal_fault_util.h"

#include <cstring>
#include <utility>

namespace tributary::checkpoint::testutil {
namespace {

bool IsWal(const std::string& fname) {
  return fname.size() >= 4 && fname.compare(fname.size() - 4, 4, ".log") == 0;
}

// A WAL file whose writes go through the file system's switch.
class FaultyWalFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultyWalFile(std::unique_ptr<rocksdb::FSWritableFile> file, WalFaultFileSystem* fs, std::string fname)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), fname_(std::move(fname)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->MaybeFail("append", fname_);
    return s.ok() ? target()->Append(data, options, dbg) : s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->MaybeFail("append", fname_);
    return s.ok() ? target()->Append(data, options, info, dbg) : s;
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->MaybeFail("flush", fname_);
    return s.ok() ? target()->Flush(options, dbg) : s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->MaybeFail("sync", fname_);
    return s.ok() ? target()->Sync(options, dbg) : s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->MaybeFail("fsync", fname_);
    return s.ok() ? target()->Fsync(options, dbg) : s;
  }

 private:
  WalFaultFileSystem* fs_;
  std::string fname_;
};

}  // namespace

rocksdb::IOStatus WalFaultFileSystem::MaybeFail(const char* op, const std::string& fname) {
  const Fault fault = fault_.load();
  const bool is_sync = std::strcmp(op, "sync") == 0 || std::strcmp(op, "fsync") == 0;
  if (fault == Fault::kNone || (fault == Fault::kSync && !is_sync)) return rocksdb::IOStatus::OK();
  injected_.fetch_add(1);
  if (no_space_) return rocksdb::IOStatus::NoSpace(fname, std::string(op) + ": injected ENOSPC");
  return rocksdb::IOStatus::IOError(fname, std::string(op) + ": injected EIO (Input/output error)");
}

void WalFaultFileSystem::Wrap(const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile>* result) {
  if (IsWal(fname) && *result != nullptr) *result = std::make_unique<FaultyWalFile>(std::move(*result), this, fname);
}

rocksdb::IOStatus WalFaultFileSystem::NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                      rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->NewWritableFile(fname, options, result, dbg);
  if (s.ok()) Wrap(fname, result);
  return s;
}

rocksdb::IOStatus WalFaultFileSystem::ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                                         std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                         rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->ReopenWritableFile(fname, options, result, dbg);
  if (s.ok()) Wrap(fname, result);
  return s;
}

rocksdb::IOStatus WalFaultFileSystem::ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                                        const rocksdb::FileOptions& options,
                                                        std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                        rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->ReuseWritableFile(fname, old_fname, options, result, dbg);
  if (s.ok()) Wrap(fname, result);
  return s;
}

}  // namespace tributary::checkpoint::testutil
