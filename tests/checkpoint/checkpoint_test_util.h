// Helpers shared by the checkpoint tests: a fresh temp directory per test, sample records, and raw
// RocksDB access for damaging stored values the way a disk or a foreign writer would.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <rocksdb/db.h>

#include "checkpoint/store.h"
#include "tests/common/temp_dir.h"

namespace tributary::checkpoint::testutil {

using tributary::testutil::TempDir;

// Opens the store at `path` directly with RocksDB (every column family) and calls `fn` with the DB and
// the handles by family name. Fails the current test on errors. The store must be closed.
void WithRawDb(const std::string& path,
               const std::function<void(rocksdb::DB*, std::map<std::string, rocksdb::ColumnFamilyHandle*>&)>& fn);

// Every key/value of one column family, in iteration order.
std::map<std::string, std::string> RawDump(const std::string& path, const std::string& cf_name);

JobRecord SampleJob(const std::string& job_id, const std::string& token = "");
UpdateRecord SampleUpdate(const std::string& job_id, uint32_t round, const std::string& worker_id);
// A round whose contents (aggregate bytes, hash, participants) are a function of (job_id, round).
RoundRecord SampleRound(const std::string& job_id, uint32_t round);
// The job record to pass to CommitRound for `round` (state RUNNING).
JobRecord CommitJob(const std::string& job_id, uint32_t round);

// A host float buffer with a tensor table: the snapshot tests' model (the store takes raw floats and a
// table, so these tests need nothing of the engine).
class HostTensors {
 public:
  HostTensors() = default;
  explicit HostTensors(std::shared_ptr<const TensorTable> table)
      : table_(std::move(table)), data_(static_cast<size_t>(table_->total_elems()), 0.0f) {}
  const TensorTable& table() const { return *table_; }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  int64_t size() const { return static_cast<int64_t>(data_.size()); }
  float* tensor(size_t index) { return data_.data() + table_->entries()[index].offset; }
  // nullptr when the name is not in the table.
  float* tensor(const std::string& name) {
    const TensorEntry* e = table_->Find(name);
    return e == nullptr ? nullptr : data_.data() + e->offset;
  }

 private:
  std::shared_ptr<const TensorTable> table_;
  std::vector<float> data_;
};

// Loads snapshot (job_id, round) into `out`; an empty `out` first gets the snapshot's table.
Status LoadSnapshotInto(CheckpointStore* store, const std::string& job_id, uint32_t round, HostTensors* out);
inline Status LoadSnapshotInto(const std::unique_ptr<CheckpointStore>& store, const std::string& job_id, uint32_t round,
                               HostTensors* out) {
  return LoadSnapshotInto(store.get(), job_id, round, out);
}

// Opens (creating) the store; fails the current test and returns null on errors.
std::unique_ptr<CheckpointStore> OpenOrDie(const std::string& path, const StoreOptions& options = {});

}  // namespace tributary::checkpoint::testutil
