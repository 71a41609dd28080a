// Value encoding and key layout of the checkpoint store, without RocksDB.
#include "checkpoint/records.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "tests/checkpoint/checkpoint_test_util.h"

namespace tributary::checkpoint {
namespace {

using namespace internal;  // NOLINT(google-build-using-namespace)
using testutil::SampleJob;
using testutil::SampleRound;
using testutil::SampleUpdate;

TEST(Crc32cTest, MatchesPublishedCheckValues) {
  // The CRC-32C check value and the RFC 3720 (iSCSI) test vectors.
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  std::string ones(32, '\xFF');
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(Crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
}

TEST(Crc32cTest, HardwareAndPortableAgree) {
  EXPECT_EQ(Crc32cPortable("123456789", 9), 0xE3069283u);
  std::string data(4099, '\0');
  uint32_t x = 12345;
  for (auto& c : data) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  for (size_t offset : {0, 1, 3}) {
    for (size_t size : {0, 1, 7, 8, 15, 64, 4096}) {
      EXPECT_EQ(Crc32c(data.data() + offset, size, 0x1234u), Crc32cPortable(data.data() + offset, size, 0x1234u))
          << offset << " " << size;
    }
  }
  std::printf("crc32c hardware accelerated: %s\n", Crc32cIsHardwareAccelerated() ? "yes" : "no");
}

TEST(Crc32cTest, ContinuationEqualsOneShot) {
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + 3);
  for (size_t split : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    uint32_t first = Crc32c(data.data(), split);
    EXPECT_EQ(Crc32c(data.data() + split, data.size() - split, first), Crc32c(data.data(), data.size())) << split;
  }
}

TEST(RecordsTest, JobRoundTrips) {
  JobRecord job = SampleJob("job-1", "tok-123");
  job.state = JobState::kFailed;
  job.current_round = 17;
  job.failure_reason = "worker w3: out of memory";
  JobRecord back;
  ASSERT_TRUE(DecodeJob(EncodeJob(job), "t", &back).ok());
  EXPECT_EQ(back.job_id, job.job_id);
  EXPECT_EQ(back.spec_yaml, job.spec_yaml);
  EXPECT_EQ(back.submit_token, job.submit_token);
  EXPECT_EQ(back.state, JobState::kFailed);
  EXPECT_EQ(back.created_unix_ms, job.created_unix_ms);
  EXPECT_EQ(back.updated_unix_ms, job.updated_unix_ms);
  EXPECT_EQ(back.current_round, 17u);
  EXPECT_EQ(back.failure_reason, job.failure_reason);
}

TEST(RecordsTest, UpdateRoundTripsWithBinaryPayload) {
  UpdateRecord u = SampleUpdate("j", 3, "worker-7");
  u.payload += std::string("\0\xFF\0", 3);
  u.train_loss = -0.0;
  UpdateRecord back;
  ASSERT_TRUE(DecodeUpdate(EncodeUpdate(u), "t", &back).ok());
  EXPECT_EQ(back.job_id, "j");
  EXPECT_EQ(back.round, 3u);
  EXPECT_EQ(back.worker_id, "worker-7");
  EXPECT_EQ(back.num_samples, u.num_samples);
  EXPECT_TRUE(std::signbit(back.train_loss));
  EXPECT_EQ(back.payload, u.payload);
  EXPECT_EQ(back.received_unix_ms, u.received_unix_ms);
  EXPECT_EQ(back.island_bytes, 0u);
}

TEST(RecordsTest, RoundRoundTripsIncludingNaNLoss) {
  RoundRecord r = SampleRound("j", 9);
  r.metrics.heldout_loss = std::numeric_limits<double>::quiet_NaN();
  RoundRecord back;
  ASSERT_TRUE(DecodeRound(EncodeRound(r), "t", &back).ok());
  EXPECT_EQ(back.job_id, r.job_id);
  EXPECT_EQ(back.round, 9u);
  EXPECT_EQ(back.job_seed, r.job_seed);
  EXPECT_EQ(back.seed_mode, r.seed_mode);
  ASSERT_EQ(back.participants.size(), r.participants.size());
  for (size_t i = 0; i < r.participants.size(); ++i) {
    EXPECT_EQ(back.participants[i].worker_id, r.participants[i].worker_id);
    EXPECT_EQ(back.participants[i].weight, r.participants[i].weight);
  }
  EXPECT_EQ(back.aggregate, r.aggregate);
  EXPECT_TRUE(std::isnan(back.metrics.heldout_loss));
  EXPECT_EQ(back.metrics.bytes_up, r.metrics.bytes_up);
  EXPECT_EQ(back.metrics.bytes_down, r.metrics.bytes_down);
  EXPECT_EQ(back.weights_hash, r.weights_hash);
  EXPECT_EQ(back.committed_unix_ms, r.committed_unix_ms);
}

TEST(RecordsTest, RoundKeepsEachParticipantsAggregationReport) {
  RoundRecord r = SampleRound("j", 4);
  r.participants[0].anomaly_score = 0.9;
  r.participants[1].anomaly_score = 37.5;
  r.participants[1].clip_scale = 0.125;
  r.participants[1].excluded = true;
  RoundRecord back;
  ASSERT_TRUE(DecodeRound(EncodeRound(r), "t", &back).ok());
  EXPECT_EQ(back.participants[0].anomaly_score, 0.9);
  EXPECT_EQ(back.participants[1].anomaly_score, 37.5);
  EXPECT_EQ(back.participants[1].clip_scale, 0.125);
  EXPECT_TRUE(back.participants[1].excluded);
  EXPECT_FALSE(back.participants[0].excluded);
  EXPECT_TRUE(std::isnan(back.participants[2].anomaly_score)) << "not scored";
}

// A round written before the report existed (value format 1: worker id and weight per participant)
// still reads, with the report's fields unknown; a newer format than this build knows is refused.
TEST(RecordsTest, FormatOneRoundsStillReadAndNewerFormatsAreRefused) {
  auto encode_v1 = [](uint8_t version) {
    std::string v;
    v.push_back(static_cast<char>(version));
    v.push_back(static_cast<char>(RecordKind::kRound));
    auto raw = [&v](const void* p, size_t n) { v.append(static_cast<const char*>(p), n); };
    auto bytes = [&](const std::string& b) {
      const uint32_t n = static_cast<uint32_t>(b.size());
      raw(&n, 4);
      v.append(b);
    };
    const uint32_t round = 3, participants = 1;
    const uint64_t seed = 42, up = 10, down = 20, hash = 77;
    const double weight = 1.0, loss = 2.5;
    const int64_t committed = 1700000000000;
    bytes("j");
    raw(&round, 4);
    raw(&seed, 8);
    bytes("per_round");
    raw(&participants, 4);
    bytes("w1");
    raw(&weight, 8);
    bytes("aggregate");
    raw(&loss, 8);
    raw(&up, 8);
    raw(&down, 8);
    raw(&hash, 8);
    raw(&committed, 8);
    const uint32_t crc = Crc32c(v.data(), v.size());
    raw(&crc, 4);
    return v;
  };
  RoundRecord old;
  ASSERT_TRUE(DecodeRound(encode_v1(1), "t", &old).ok());
  ASSERT_EQ(old.participants.size(), 1u);
  EXPECT_EQ(old.participants[0].worker_id, "w1");
  EXPECT_EQ(old.participants[0].weight, 1.0);
  EXPECT_TRUE(std::isnan(old.participants[0].anomaly_score));
  EXPECT_EQ(old.participants[0].clip_scale, 1.0);
  EXPECT_FALSE(old.participants[0].excluded);
  EXPECT_EQ(old.aggregate, "aggregate");
  EXPECT_EQ(old.weights_hash, 77u);
  Status newer = DecodeRound(encode_v1(kFormatVersion + 1), "t", &old);
  EXPECT_TRUE(newer.IsCorruption());
  EXPECT_NE(newer.message().find("unknown value format version"), std::string::npos) << newer.message();
}

// `value` as format 2 wrote it: format 3 only appended island_bytes (a u64) to updates and rounds.
std::string AsFormatTwo(const std::string& value) {
  std::string v = value.substr(0, value.size() - 4 - 8);  // drop the checksum and island_bytes
  v[0] = 2;
  const uint32_t crc = Crc32c(v.data(), v.size());
  v.append(reinterpret_cast<const char*>(&crc), 4);
  return v;
}

TEST(RecordsTest, IslandBytesRoundTripAndFormatTwoRecordsReadZero) {
  UpdateRecord u = SampleUpdate("j", 3, "leader");
  u.island_bytes = 5'000'000'000ULL;
  RoundRecord r = SampleRound("j", 3);
  r.metrics.island_bytes = 12'000'000'000ULL;
  UpdateRecord u_back;
  RoundRecord r_back;
  ASSERT_TRUE(DecodeUpdate(EncodeUpdate(u), "t", &u_back).ok());
  ASSERT_TRUE(DecodeRound(EncodeRound(r), "t", &r_back).ok());
  EXPECT_EQ(u_back.island_bytes, u.island_bytes);
  EXPECT_EQ(r_back.metrics.island_bytes, r.metrics.island_bytes);

  ASSERT_TRUE(DecodeUpdate(AsFormatTwo(EncodeUpdate(u)), "t", &u_back).ok());
  ASSERT_TRUE(DecodeRound(AsFormatTwo(EncodeRound(r)), "t", &r_back).ok());
  EXPECT_EQ(u_back.island_bytes, 0u);
  EXPECT_EQ(u_back.payload, u.payload);
  EXPECT_EQ(u_back.received_unix_ms, u.received_unix_ms);
  EXPECT_EQ(r_back.metrics.island_bytes, 0u);
  EXPECT_EQ(r_back.weights_hash, r.weights_hash);
  EXPECT_EQ(r_back.committed_unix_ms, r.committed_unix_ms);
  // A format-3 value cut short by its last field is corrupt, not silently zero.
  std::string truncated = AsFormatTwo(EncodeRound(r));
  truncated[0] = 3;
  const uint32_t crc = Crc32c(truncated.data(), truncated.size() - 4);
  std::memcpy(truncated.data() + truncated.size() - 4, &crc, 4);
  EXPECT_TRUE(DecodeRound(truncated, "t", &r_back).IsCorruption());
}

TEST(RecordsTest, ManifestWorkerTokenAndSchemaRoundTrip) {
  SnapshotRecord m;
  m.job_id = "j";
  m.round = 4;
  m.total_elems = 48;
  m.chunk_bytes = 64;
  m.chunk_crcs = {1, 2, 0xFFFFFFFFu};
  m.tensors = {{"a", {3, 5}, 0, 15}, {"b", {7}, 16, 7}, {"scalar", {}, 32, 1}};
  m.weights_hash = 0xDEADBEEFCAFEF00Dull;
  m.created_unix_ms = 5;
  SnapshotRecord mb;
  ASSERT_TRUE(DecodeSnapshotManifest(EncodeSnapshotManifest(m), "t", &mb).ok());
  EXPECT_EQ(mb.job_id, "j");
  EXPECT_EQ(mb.round, 4u);
  EXPECT_EQ(mb.total_elems, 48);
  EXPECT_EQ(mb.chunk_bytes, 64u);
  EXPECT_EQ(mb.chunk_crcs, m.chunk_crcs);
  ASSERT_EQ(mb.tensors.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(mb.tensors[i].name, m.tensors[i].name);
    EXPECT_EQ(mb.tensors[i].shape, m.tensors[i].shape);
    EXPECT_EQ(mb.tensors[i].offset, m.tensors[i].offset);
    EXPECT_EQ(mb.tensors[i].numel, m.tensors[i].numel);
  }
  EXPECT_EQ(mb.weights_hash, m.weights_hash);

  WorkerRecord w{"w1", std::string("\x01\x02\0key", 6), "{\"gpus\":1}", 99};
  WorkerRecord wb;
  ASSERT_TRUE(DecodeWorker(EncodeWorker(w), "t", &wb).ok());
  EXPECT_EQ(wb.worker_id, w.worker_id);
  EXPECT_EQ(wb.public_key, w.public_key);
  EXPECT_EQ(wb.capabilities, w.capabilities);
  EXPECT_EQ(wb.last_seen_unix_ms, 99);

  std::string job_id;
  ASSERT_TRUE(DecodeTokenIndex(EncodeTokenIndex("job-x"), "t", &job_id).ok());
  EXPECT_EQ(job_id, "job-x");
  uint32_t version = 0;
  ASSERT_TRUE(DecodeSchemaVersion(EncodeSchemaVersion(7), "t", &version).ok());
  EXPECT_EQ(version, 7u);

  std::string chunk_data = "0123456789abcdef";
  std::string_view bytes;
  std::string chunk = EncodeSnapshotChunk(chunk_data.data(), chunk_data.size());
  ASSERT_TRUE(DecodeSnapshotChunk(chunk, "t", &bytes).ok());
  EXPECT_EQ(bytes, chunk_data);
}

TEST(RecordsTest, EveryFlippedBitIsCaught) {
  const std::string good = EncodeRound(SampleRound("job", 2));
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit : {0, 5}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      RoundRecord r;
      Status st = DecodeRound(bad, "checkpoint rounds: job 'job' round 2", &r);
      ASSERT_TRUE(st.IsCorruption()) << "byte " << i << " bit " << bit << ": " << st.ToString();
      EXPECT_NE(st.message().find("job 'job' round 2"), std::string::npos) << st.message();
    }
  }
}

TEST(RecordsTest, TruncatedGarbageAndWrongKindAreCorruption) {
  const std::string good = EncodeJob(SampleJob("j"));
  JobRecord job;
  for (size_t n : {size_t{0}, size_t{3}, size_t{6}, good.size() - 1}) {
    EXPECT_TRUE(DecodeJob(good.substr(0, n), "what", &job).IsCorruption()) << n;
  }
  EXPECT_TRUE(DecodeJob("definitely not a record", "what", &job).IsCorruption());
  // A valid worker value under a job key: the checksum holds, the kind does not.
  Status st = DecodeJob(EncodeWorker({"w", "", "", 0}), "what", &job);
  ASSERT_TRUE(st.IsCorruption());
  EXPECT_NE(st.message().find("expected a job record"), std::string::npos) << st.message();
}

TEST(RecordsTest, ValidChecksumWithBadStructureIsCorruption) {
  // Hand-build a job value whose checksum is right but whose fields are inconsistent: a string
  // length that runs past the end. The decoder must refuse, not read out of bounds.
  std::string v;
  v.push_back(static_cast<char>(kFormatVersion));
  v.push_back(static_cast<char>(RecordKind::kJob));
  uint32_t huge = 1u << 30;
  v.append(reinterpret_cast<const char*>(&huge), 4);
  v.append("abc");
  uint32_t crc = Crc32c(v.data(), v.size());
  v.append(reinterpret_cast<const char*>(&crc), 4);
  JobRecord job;
  Status st = DecodeJob(v, "what", &job);
  ASSERT_TRUE(st.IsCorruption());
  EXPECT_NE(st.message().find("runs past the end"), std::string::npos) << st.message();
}

TEST(KeysTest, BigEndianKeysSortInRoundAndWorkerOrder) {
  EXPECT_LT(RoundKey("j", 1), RoundKey("j", 2));
  EXPECT_LT(RoundKey("j", 255), RoundKey("j", 256));
  EXPECT_LT(RoundKey("j", 65535), RoundKey("j", 65536));
  EXPECT_LT(RoundKey("j", 0x00FFFFFF), RoundKey("j", 0x01000000));
  EXPECT_LT(UpdateKey("j", 1, "zzz"), UpdateKey("j", 2, "aaa"));
  EXPECT_LT(UpdateKey("j", 2, "w1"), UpdateKey("j", 2, "w2"));
  // A job id that extends another never falls inside the shorter one's range.
  EXPECT_LT(RoundKey("a", UINT32_MAX), RoundKey("ab", 0));
  EXPECT_NE(RoundKey("ab", 0).rfind(RoundPrefix("a"), 0), 0u);
  EXPECT_EQ(ReadBigEndian32(RoundKey("j", 0x01020304), 2), 0x01020304u);
  EXPECT_LT(SnapshotManifestKey("j", 9), SnapshotManifestKey("j", 10));
}

TEST(KeysTest, IdsAreValidated) {
  EXPECT_TRUE(ValidateId("job-1", "job id").ok());
  EXPECT_TRUE(ValidateId("", "job id").IsInvalidArgument());
  EXPECT_TRUE(ValidateId(std::string("a\0b", 3), "job id").IsInvalidArgument());
  EXPECT_TRUE(ValidateId(std::string(kMaxIdBytes + 1, 'x'), "job id").IsInvalidArgument());
  Status st = ValidateId("", "update: worker id");
  EXPECT_NE(st.message().find("update: worker id"), std::string::npos);
}

}  // namespace
}  // namespace tributary::checkpoint
