// Snapshots: chunked fp32 arenas in the BlobDB-backed snapshots column family.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include <rocksdb/db.h>

#include "checkpoint/records.h"
#include "checkpoint/store.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace tributary::checkpoint {
namespace {

using testutil::CommitJob;
using testutil::HostTensors;
using testutil::LoadSnapshotInto;
using testutil::OpenOrDie;
using testutil::RawDump;
using testutil::SampleJob;
using testutil::SampleRound;
using testutil::TempDir;
using testutil::WithRawDb;

// A job with rounds 1..rounds committed.
void MakeJob(CheckpointStore* store, const std::string& job_id, uint32_t rounds) {
  ASSERT_TRUE(store->PutJob(SampleJob(job_id)).ok());
  for (uint32_t r = 1; r <= rounds; ++r) {
    ASSERT_TRUE(store->CommitRound(SampleRound(job_id, r), CommitJob(job_id, r)).ok());
  }
}

// Fills the arena with random bit patterns (NaNs, denormals and negative zeros included: the
// round trip must be bit-exact, not merely value-equal).
void FillRandomBits(HostTensors* arena, uint32_t seed) {
  std::mt19937 rng(seed);
  auto* words = reinterpret_cast<uint32_t*>(arena->data());
  for (int64_t i = 0; i < arena->size(); ++i) words[i] = rng();
}

std::shared_ptr<TensorTable> SmallTable() {
  auto t = std::make_shared<TensorTable>();
  t->Add("model.embed_tokens.weight", {10, 8});
  t->Add("model.norm.weight", {8});
  t->Add("lm_head.weight", {3, 7});
  return t;
}

TEST(SnapshotTest, FiftyMegabyteArenaRoundTripsBitExactlyInChunks) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto table = std::make_shared<TensorTable>();
  table->Add("model.embed_tokens.weight", {4096, 1024});
  table->Add("model.layers.0.mlp.up_proj.weight", {2816, 1024});
  table->Add("model.layers.0.mlp.down_proj.weight", {1024, 2816});
  table->Add("model.layers.0.mlp.gate_proj.weight", {2816, 1024});
  table->Add("model.layers.0.self_attn.o_proj.weight", {1024, 1024});
  table->Add("model.layers.0.input_layernorm.weight", {1024});
  table->Add("lm_head.weight", {3, 1001});
  HostTensors model(table);
  const uint64_t bytes = static_cast<uint64_t>(model.size()) * sizeof(float);
  ASSERT_GE(bytes, 50ull << 20);
  FillRandomBits(&model, 1234);

  const StoreOptions options;  // default 8 MiB chunks
  {
    auto store = OpenOrDie(path, options);
    MakeJob(store.get(), "j", 1);
    ASSERT_TRUE(store->PutSnapshot("j", 1, model.data(), model.size(), *table, 0xABCDEF, 77).ok());

    auto info = store->GetSnapshotInfo("j", 1);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->chunk_crcs.size(), (bytes + options.snapshot_chunk_bytes - 1) / options.snapshot_chunk_bytes);
    EXPECT_GT(info->chunk_crcs.size(), 1u);
    EXPECT_EQ(info->total_elems, model.size());
    EXPECT_EQ(info->weights_hash, 0xABCDEFu);
    EXPECT_EQ(info->created_unix_ms, 77);
    ASSERT_EQ(info->tensors.size(), table->size());
    EXPECT_EQ(info->tensors[1].name, "model.layers.0.mlp.up_proj.weight");
    EXPECT_EQ(info->tensors[1].shape, (std::vector<int64_t>{2816, 1024}));

    HostTensors fresh;  // no table: built from the manifest
    ASSERT_TRUE(LoadSnapshotInto(store, "j", 1, &fresh).ok());
    ASSERT_EQ(fresh.size(), model.size());
    EXPECT_EQ(std::memcmp(fresh.data(), model.data(), bytes), 0);
    EXPECT_EQ(fresh.table()[5].offset, (*table)[5].offset);
    ASSERT_NE(fresh.tensor("lm_head.weight"), nullptr);
  }
  // Reopened (WAL replay / flushed blob files) it is still bit-exact, into an arena with the layout.
  {
    auto store = OpenOrDie(path, options);
    HostTensors same_layout(table);
    ASSERT_TRUE(LoadSnapshotInto(store, "j", 1, &same_layout).ok());
    EXPECT_EQ(std::memcmp(same_layout.data(), model.data(), bytes), 0);
  }
  // Stored as chunks: no value is larger than a chunk plus the record envelope.
  auto raw = RawDump(path, "snapshots");
  size_t chunk_values = 0;
  uint64_t largest = 0;
  for (const auto& [key, value] : raw) {
    largest = std::max<uint64_t>(largest, value.size());
    if (key[0] == 'c') ++chunk_values;
  }
  EXPECT_EQ(chunk_values, (bytes + options.snapshot_chunk_bytes - 1) / options.snapshot_chunk_bytes);
  EXPECT_LE(largest, options.snapshot_chunk_bytes + 6);
}

TEST(SnapshotTest, SmallChunksRoundTripAndSnapshotsAreImmutable) {
  TempDir dir;
  StoreOptions options;
  options.snapshot_chunk_bytes = 64;  // 16 floats: many chunks, a short last one
  auto store = OpenOrDie(dir.Sub("db"), options);
  MakeJob(store.get(), "j", 2);
  auto table = SmallTable();
  HostTensors model(table);
  FillRandomBits(&model, 5);
  ASSERT_TRUE(store->PutSnapshot("j", 0, model.data(), model.size(), *table, 1).ok());  // the initial model
  HostTensors loaded;
  ASSERT_TRUE(LoadSnapshotInto(store, "j", 0, &loaded).ok());
  EXPECT_EQ(std::memcmp(loaded.data(), model.data(), model.size() * sizeof(float)), 0);
  EXPECT_EQ(store->GetSnapshotInfo("j", 0)->chunk_crcs.size(), (model.size() * 4 + 63) / 64);

  EXPECT_EQ(store->PutSnapshot("j", 0, model.data(), model.size(), *table, 1).code(), StatusCode::kAlreadyExists);
  Status future = store->PutSnapshot("j", 3, model.data(), model.size(), *table, 1);
  EXPECT_EQ(future.code(), StatusCode::kFailedPrecondition) << future.ToString();
  EXPECT_TRUE(store->PutSnapshot("j", 1, model.data(), model.size() - 1, *table, 1).IsInvalidArgument());
  EXPECT_TRUE(store->PutSnapshot("nope", 0, model.data(), model.size(), *table, 1).IsNotFound());
  EXPECT_TRUE(LoadSnapshotInto(store, "j", 2, &loaded).IsNotFound());
}

TEST(SnapshotTest, LatestSnapshotAtOrBeforeFindsTheRightRound) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  MakeJob(store.get(), "a", 12);
  MakeJob(store.get(), "ab", 12);
  MakeJob(store.get(), "b", 3);
  auto table = SmallTable();
  HostTensors model(table);
  for (uint32_t r : {0u, 5u, 10u}) {
    FillRandomBits(&model, r);
    ASSERT_TRUE(store->PutSnapshot("a", r, model.data(), model.size(), *table, r).ok());
  }
  FillRandomBits(&model, 99);
  ASSERT_TRUE(store->PutSnapshot("ab", 7, model.data(), model.size(), *table, 7).ok());

  const std::pair<uint32_t, uint32_t> cases[] = {{0, 0}, {4, 0}, {5, 5}, {9, 5}, {10, 10}, {12, 10}, {UINT32_MAX, 10}};
  for (auto [query, expected] : cases) {
    auto found = store->LatestSnapshotAtOrBefore("a", query);
    ASSERT_TRUE(found.ok()) << query << ": " << found.status().ToString();
    EXPECT_EQ(found->round, expected) << query;
    EXPECT_EQ(found->weights_hash, expected) << query;
  }
  HostTensors loaded;
  ASSERT_TRUE(LoadSnapshotInto(store, "a", store->LatestSnapshotAtOrBefore("a", 9)->round, &loaded).ok());
  HostTensors expected_model(table);
  FillRandomBits(&expected_model, 5);
  EXPECT_EQ(std::memcmp(loaded.data(), expected_model.data(), model.size() * sizeof(float)), 0);

  EXPECT_EQ(store->LatestSnapshotAtOrBefore("ab", 6).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->LatestSnapshotAtOrBefore("ab", 8)->round, 7u);
  EXPECT_TRUE(store->LatestSnapshotAtOrBefore("b", 3).status().IsNotFound());
}

TEST(SnapshotTest, LayoutMismatchIsInvalidArgumentNamingTheTensor) {
  TempDir dir;
  auto store = OpenOrDie(dir.Sub("db"));
  MakeJob(store.get(), "j", 0);
  auto table = SmallTable();
  HostTensors model(table);
  ASSERT_TRUE(store->PutSnapshot("j", 0, model.data(), model.size(), *table, 0).ok());
  auto other = std::make_shared<TensorTable>();
  other->Add("model.embed_tokens.weight", {10, 8});
  other->Add("model.norm.weight", {9});
  other->Add("lm_head.weight", {3, 7});
  HostTensors wrong(other);
  Status st = LoadSnapshotInto(store, "j", 0, &wrong);
  ASSERT_TRUE(st.IsInvalidArgument()) << st.ToString();
  EXPECT_NE(st.message().find("model.norm.weight"), std::string::npos) << st.message();
}

TEST(SnapshotTest, DamagedStaleOrMissingChunksAreCorruption) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  StoreOptions options;
  options.snapshot_chunk_bytes = 128;
  auto table = SmallTable();
  HostTensors model(table);
  FillRandomBits(&model, 3);
  {
    auto store = OpenOrDie(path, options);
    MakeJob(store.get(), "j", 2);
    for (uint32_t r : {0u, 1u, 2u}) ASSERT_TRUE(store->PutSnapshot("j", r, model.data(), model.size(), *table, r).ok());
  }
  WithRawDb(path, [&](rocksdb::DB* db, std::map<std::string, rocksdb::ColumnFamilyHandle*>& cfs) {
    rocksdb::WriteOptions wo;
    auto* cf = cfs["snapshots"];
    // Round 0: garbage in chunk 1. Round 1: a well-formed chunk with other contents in chunk 0
    // (what an interrupted earlier write would leave). Round 2: chunk 2 deleted.
    ASSERT_TRUE(db->Put(wo, cf, internal::SnapshotChunkKey("j", 0, 1), "\x01\x06garbage").ok());
    std::vector<float> other(32, 1.5f);
    ASSERT_TRUE(db->Put(wo, cf, internal::SnapshotChunkKey("j", 1, 0),
                        internal::EncodeSnapshotChunk(other.data(), other.size() * sizeof(float)))
                    .ok());
    ASSERT_TRUE(db->Delete(wo, cf, internal::SnapshotChunkKey("j", 2, 2)).ok());
  });
  auto store = OpenOrDie(path, options);
  HostTensors loaded(table);
  Status st = LoadSnapshotInto(store, "j", 0, &loaded);
  ASSERT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_NE(st.message().find("job 'j' round 0 chunk 1"), std::string::npos) << st.message();
  st = LoadSnapshotInto(store, "j", 1, &loaded);
  ASSERT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_NE(st.message().find("round 1 chunk 0"), std::string::npos) << st.message();
  st = LoadSnapshotInto(store, "j", 2, &loaded);
  ASSERT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_NE(st.message().find("round 2 chunk 2"), std::string::npos) << st.message();
}

TEST(SnapshotTest, ConcurrentWritersOfOneSnapshotCannotMixChunks) {
  TempDir dir;
  StoreOptions options;
  options.snapshot_chunk_bytes = 4096;
  auto store = OpenOrDie(dir.Sub("db"), options);
  MakeJob(store.get(), "j", 1);
  auto table = std::make_shared<TensorTable>();
  table->Add("w", {256, 256});  // 64 chunks
  constexpr int kWriters = 4;
  std::vector<HostTensors> models;
  for (int i = 0; i < kWriters; ++i) {
    models.emplace_back(table);
    FillRandomBits(&models.back(), 100 + i);
  }
  std::vector<Status> results(kWriters);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&, i] {
      results[i] = store->PutSnapshot("j", 1, models[i].data(), models[i].size(), *table, static_cast<uint64_t>(i));
    });
  }
  // Rounds keep committing while snapshots are written.
  for (uint32_t r = 2; r <= 10; ++r) {
    ASSERT_TRUE(store->CommitRound(SampleRound("j", r), CommitJob("j", r)).ok());
  }
  for (auto& t : threads) t.join();
  int winners = 0;
  for (const Status& st : results) {
    if (st.ok()) {
      ++winners;
    } else {
      EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
    }
  }
  ASSERT_EQ(winners, 1);
  auto info = store->GetSnapshotInfo("j", 1);
  ASSERT_TRUE(info.ok());
  const auto winner = static_cast<size_t>(info->weights_hash);
  ASSERT_LT(winner, models.size());
  EXPECT_TRUE(results[winner].ok());
  HostTensors loaded;
  ASSERT_TRUE(LoadSnapshotInto(store, "j", 1, &loaded).ok());
  EXPECT_EQ(std::memcmp(loaded.data(), models[winner].data(), loaded.size() * sizeof(float)), 0);
  EXPECT_EQ(*store->LastCommittedRound("j"), 10u);
}

TEST(SnapshotTest, BackupCarriesBlobFiles) {
  TempDir dir;
  StoreOptions options;
  options.snapshot_chunk_bytes = 1 << 20;
  options.snapshot_blob_lz4 = true;
  auto table = std::make_shared<TensorTable>();
  table->Add("w", {1024, 1024});  // 4 MiB: four blob-sized chunks
  HostTensors model(table);
  FillRandomBits(&model, 8);
  {
    auto store = OpenOrDie(dir.Sub("db"), options);
    MakeJob(store.get(), "j", 1);
    ASSERT_TRUE(store->PutSnapshot("j", 1, model.data(), model.size(), *table, 1).ok());
    ASSERT_TRUE(store->CreateCheckpoint(dir.Sub("backup")).ok());
  }
  bool has_blob_file = false;
  for (const auto& entry : std::filesystem::directory_iterator(dir.Sub("backup"))) {
    if (entry.path().extension() == ".blob") has_blob_file = true;
  }
  EXPECT_TRUE(has_blob_file) << "snapshot chunks should live in blob files";
  auto copy = OpenOrDie(dir.Sub("backup"), options);
  HostTensors loaded;
  ASSERT_TRUE(LoadSnapshotInto(copy, "j", 1, &loaded).ok());
  EXPECT_EQ(std::memcmp(loaded.data(), model.data(), model.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace tributary::checkpoint
