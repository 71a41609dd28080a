#include "tests/checkpoint/checkpoint_test_util.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

namespace tributary::checkpoint::testutil {

void WithRawDb(const std::string& path,
               const std::function<void(rocksdb::DB*, std::map<std::string, rocksdb::ColumnFamilyHandle*>&)>& fn) {
  rocksdb::DBOptions options;
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, path, &names);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::Open(options, path, descriptors, &handles, &raw);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<rocksdb::DB> db(raw);
  std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name;
  for (size_t i = 0; i < names.size(); ++i) by_name[names[i]] = handles[i];
  fn(db.get(), by_name);
  for (auto* h : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  EXPECT_TRUE(db->Close().ok());
}

std::map<std::string, std::string> RawDump(const std::string& path, const std::string& cf_name) {
  std::map<std::string, std::string> out;
  WithRawDb(path, [&](rocksdb::DB* db, std::map<std::string, rocksdb::ColumnFamilyHandle*>& cfs) {
    ASSERT_TRUE(cfs.count(cf_name)) << cf_name;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs[cf_name]));
    std::string previous;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (!out.empty()) {
        EXPECT_LT(previous, it->key().ToString());
      }
      previous = it->key().ToString();
      out[previous] = it->value().ToString();
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  });
  return out;
}

JobRecord SampleJob(const std::string& job_id, const std::string& token) {
  JobRecord job;
  job.job_id = job_id;
  job.spec_yaml = "job: " + job_id + "\nmode: ferret\nrounds: 100\nmodel: {dir: /models/tiny}\n";
  job.submit_token = token;
  job.state = JobState::kPending;
  job.created_unix_ms = 1700000000000;
  job.updated_unix_ms = 1700000000000;
  return job;
}

UpdateRecord SampleUpdate(const std::string& job_id, uint32_t round, const std::string& worker_id) {
  UpdateRecord u;
  u.job_id = job_id;
  u.round = round;
  u.worker_id = worker_id;
  u.num_samples = 40 + round;
  u.train_loss = 2.5 / (1.0 + round);
  u.payload.resize(200 + round % 17);
  for (size_t i = 0; i < u.payload.size(); ++i) {
    u.payload[i] = static_cast<char>((i * 31 + round * 7 + worker_id.size()) & 0xFF);
  }
  u.received_unix_ms = 1700000000000 + round * 1000;
  return u;
}

RoundRecord SampleRound(const std::string& job_id, uint32_t round) {
  RoundRecord r;
  r.job_id = job_id;
  r.round = round;
  r.job_seed = 42;
  r.seed_mode = "per_round";
  r.participants = {{"worker-a", 0.25}, {"worker-b", 0.5}, {"worker-c", 0.25}};
  r.aggregate.resize(1000 + round % 13);
  for (size_t i = 0; i < r.aggregate.size(); ++i) {
    r.aggregate[i] = static_cast<char>((i * 131 + round * 17 + job_id.size()) & 0xFF);
  }
  r.metrics.heldout_loss = 3.0 - 0.01 * round;
  r.metrics.bytes_up = 3 * (r.aggregate.size() / 2);
  r.metrics.bytes_down = 3 * r.aggregate.size();
  r.weights_hash = 0x9E3779B97F4A7C15ull * (round + 1) ^ job_id.size();
  r.committed_unix_ms = 1700000000000 + round * 1000 + 500;
  return r;
}

JobRecord CommitJob(const std::string& job_id, uint32_t round) {
  JobRecord job = SampleJob(job_id);
  job.state = JobState::kRunning;
  job.updated_unix_ms = 1700000000000 + round * 1000 + 500;
  return job;
}

std::unique_ptr<CheckpointStore> OpenOrDie(const std::string& path, const StoreOptions& options) {
  auto store = CheckpointStore::Open(path, options);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

Status LoadSnapshotInto(CheckpointStore* store, const std::string& job_id, uint32_t round, HostTensors* out) {
  if (out->size() == 0) {
    TRIB_ASSIGN_OR_RETURN(std::shared_ptr<TensorTable> table, store->SnapshotTable(job_id, round));
    *out = HostTensors(std::move(table));
  }
  return store->LoadSnapshot(job_id, round, out->table(), out->data());
}

}  // namespace tributary::checkpoint::testutil
