// A job's measured link matrix in the store (docs/placement.md, "Measured links"): round trip,
// replacement, refusal for an unknown job, corruption detection, and a real kill -9 after the write
// returned: the reopened store holds the same matrix.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "checkpoint/records.h"
#include "checkpoint/store.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace tributary::checkpoint {
namespace {

using testutil::OpenOrDie;
using testutil::SampleJob;
using testutil::TempDir;

JobLinksRecord SampleLinks(const std::string& job_id, uint64_t campaign) {
  JobLinksRecord links;
  links.job_id = job_id;
  links.campaign = campaign;
  links.reason = "job start: 3 pair(s) and 3 uplink(s) among 3 eligible worker(s)";
  links.updated_unix_ms = 1765000000000 + static_cast<int64_t>(campaign);
  links.members = {"w1", "w2", "w3"};
  links.pairs = {{"w1", "w2", 9412.5, 0.061, 1765000000001},
                 {"w1", "w3", 95.7, 20.25, 1765000000002},
                 {"w2", "w3", 1000.0 * static_cast<double>(campaign), 0.5, 1765000000003}};
  links.uplinks = {{"w1", "", 880.0, 1.5, 1765000000004}, {"w2", "", 91.25, 12.0, 1765000000005}};
  return links;
}

void ExpectSameLinks(const JobLinksRecord& a, const JobLinksRecord& b) {
  EXPECT_EQ(a.job_id, b.job_id);
  EXPECT_EQ(a.campaign, b.campaign);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.updated_unix_ms, b.updated_unix_ms);
  EXPECT_EQ(a.members, b.members);
  for (const auto& [x, y] : {std::pair{&a.pairs, &b.pairs}, std::pair{&a.uplinks, &b.uplinks}}) {
    ASSERT_EQ(x->size(), y->size());
    for (size_t i = 0; i < x->size(); ++i) {
      EXPECT_EQ((*x)[i].a, (*y)[i].a);
      EXPECT_EQ((*x)[i].b, (*y)[i].b);
      EXPECT_EQ((*x)[i].mbps, (*y)[i].mbps);  // bit patterns: exact
      EXPECT_EQ((*x)[i].rtt_ms, (*y)[i].rtt_ms);
      EXPECT_EQ((*x)[i].measured_unix_ms, (*y)[i].measured_unix_ms);
    }
  }
}

TEST(JobLinksStoreTest, RoundTripsAndIsReplacedAsAWhole) {
  TempDir dir("job_links");
  auto store = OpenOrDie(dir.path());
  ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
  EXPECT_TRUE(store->GetJobLinks("j1").status().IsNotFound()) << "no matrix before the first campaign";
  ASSERT_TRUE(store->PutJobLinks(SampleLinks("j1", 1)).ok());
  auto read = store->GetJobLinks("j1");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameLinks(*read, SampleLinks("j1", 1));

  JobLinksRecord second = SampleLinks("j1", 2);
  second.members = {"w1", "w2"};
  second.pairs.resize(1);
  ASSERT_TRUE(store->PutJobLinks(second).ok());
  read = store->GetJobLinks("j1");
  ASSERT_TRUE(read.ok());
  ExpectSameLinks(*read, second);
  // The matrix lives beside the jobs, not among them.
  auto jobs = store->ListJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->size(), 1u);
}

TEST(JobLinksStoreTest, RefusesAnUnknownJobAndBadIds) {
  TempDir dir("job_links");
  auto store = OpenOrDie(dir.path());
  Status missing = store->PutJobLinks(SampleLinks("nope", 1));
  EXPECT_TRUE(missing.IsNotFound()) << missing.ToString();
  EXPECT_NE(missing.message().find("nope"), std::string::npos) << missing.message();
  ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
  JobLinksRecord bad = SampleLinks("j1", 1);
  bad.pairs[0].b = "";
  Status refused = store->PutJobLinks(bad);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  EXPECT_NE(refused.message().find("checkpoint links: job 'j1'"), std::string::npos) << refused.message();
}

TEST(JobLinksStoreTest, ADamagedValueIsCorruptionNamingTheJob) {
  TempDir dir("job_links");
  {
    auto store = OpenOrDie(dir.path());
    ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
    ASSERT_TRUE(store->PutJobLinks(SampleLinks("j1", 1)).ok());
  }
  testutil::WithRawDb(dir.path(), [](rocksdb::DB* db, std::map<std::string, rocksdb::ColumnFamilyHandle*>& cfs) {
    const std::string key = internal::JobLinksKey("j1");
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs["meta"], key, &value).ok());
    value[value.size() / 2] ^= 0x20;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs["meta"], key, value).ok());
  });
  auto store = OpenOrDie(dir.path());
  auto read = store->GetJobLinks("j1");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kCorruption) << read.status().ToString();
  EXPECT_NE(read.status().message().find("checkpoint links: job 'j1'"), std::string::npos);
}

TEST(JobLinksStoreTest, EncodingRefusesAnotherRecordKind) {
  const std::string value = internal::EncodeJobLinks(SampleLinks("j1", 1));
  JobLinksRecord decoded;
  ASSERT_TRUE(internal::DecodeJobLinks(value, "what", &decoded).ok());
  ExpectSameLinks(decoded, SampleLinks("j1", 1));
  WorkerRecord worker;
  EXPECT_FALSE(internal::DecodeWorker(value, "what", &worker).ok()) << "the kind byte tells them apart";
  EXPECT_FALSE(internal::DecodeJobLinks(value.substr(0, value.size() - 5), "what", &decoded).ok());
}

// A child writes the matrix, says so through a pipe and waits; the parent kills it with SIGKILL (no
// clean close, no flush) and reopens the store: the acknowledged matrix is there, unchanged.
TEST(JobLinksStoreTest, SurvivesKillNineAfterTheWriteReturned) {
  TempDir dir("job_links");
  {
    auto store = OpenOrDie(dir.path());
    ASSERT_TRUE(store->PutJob(SampleJob("j1")).ok());
    ASSERT_TRUE(store->PutJobLinks(SampleLinks("j1", 1)).ok());
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    auto store = CheckpointStore::Open(dir.path());
    const bool ok = store.ok() && (*store)->PutJobLinks(SampleLinks("j1", 2)).ok();
    const char byte = ok ? 'y' : 'n';
    if (write(fds[1], &byte, 1) != 1) _exit(2);
    pause();  // killed here, the store still open
    _exit(0);
  }
  close(fds[1]);
  char byte = 0;
  ASSERT_EQ(read(fds[0], &byte, 1), 1);
  close(fds[0]);
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(byte, 'y') << "the child could not write the matrix";
  auto store = OpenOrDie(dir.path());
  auto read_back = store->GetJobLinks("j1");
  ASSERT_TRUE(read_back.ok()) << read_back.status().ToString();
  ExpectSameLinks(*read_back, SampleLinks("j1", 2));
}

}  // namespace
}  // namespace tributary::checkpoint
