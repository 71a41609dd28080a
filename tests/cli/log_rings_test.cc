// The bounded log rings behind `tributary logs JOB --worker W`: the worker's per-job capture
// (worker/job_log_capture.h) and the coordinator's per-(job, worker) store (coordinator/worker_logs.h).
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <string>
#include <thread>
#include <vector>

#include "coordinator/worker_logs.h"
#include "worker/job_log_capture.h"
#include "worker/status_board.h"

namespace tributary {
namespace {

std::vector<std::string> Numbered(int from, int count) {
  std::vector<std::string> lines;
  for (int i = from; i < from + count; ++i) lines.push_back("line " + std::to_string(i));
  return lines;
}

TEST(WorkerLogsTest, KeepsTheLatestLinesUpToTheCap) {
  WorkerLogs logs;
  const int total = static_cast<int>(WorkerLogs::kMaxLines) + 500;
  for (int at = 0; at < total; at += 100) logs.Append("j1", "w1", static_cast<uint64_t>(at), Numbered(at, 100));
  WorkerLogs::Page page = logs.Read("j1", "w1", 0, 100000);
  ASSERT_EQ(page.lines.size(), WorkerLogs::kMaxLines);
  EXPECT_EQ(page.lines.front(), "line 500") << "the oldest lines fell out";
  EXPECT_EQ(page.lines.back(), "line " + std::to_string(total - 1));
  EXPECT_EQ(page.next_line, static_cast<uint64_t>(total));
  // A reader continues where it stopped; nothing new yet.
  EXPECT_TRUE(logs.Read("j1", "w1", page.next_line, 10).lines.empty());
  logs.Append("j1", "w1", static_cast<uint64_t>(total), {"new"});
  EXPECT_EQ(logs.Read("j1", "w1", page.next_line, 10).lines, std::vector<std::string>{"new"});
  // Other workers and jobs are separate streams.
  EXPECT_FALSE(logs.Has("j1", "w2"));
  EXPECT_TRUE(logs.Read("j2", "w1", 0, 10).lines.empty());
}

TEST(WorkerLogsTest, ByteCapDuplicatesAndGaps) {
  WorkerLogs logs;
  const std::string big(WorkerLogs::kMaxLineBytes, 'x');
  std::vector<std::string> bigs(400, big);  // 400 * 4 KiB > 1 MiB
  logs.Append("j", "w", 0, bigs);
  WorkerLogs::Page page = logs.Read("j", "w", 0, 100000);
  EXPECT_LE(page.lines.size() * (WorkerLogs::kMaxLineBytes), WorkerLogs::kMaxBytes);
  EXPECT_GT(page.lines.size(), 0u);
  // A line longer than the cap is cut.
  logs.Append("j", "long", 0, {std::string(3 * WorkerLogs::kMaxLineBytes, 'y')});
  EXPECT_EQ(logs.Read("j", "long", 0, 10).lines.at(0).size(), WorkerLogs::kMaxLineBytes);

  WorkerLogs dup;
  EXPECT_EQ(dup.Append("j", "w", 0, {"a", "b"}), 2u);
  EXPECT_EQ(dup.Append("j", "w", 0, {"a", "b"}), 0u) << "a message sent again is not kept twice";
  EXPECT_EQ(dup.Append("j", "w", 1, {"b", "c"}), 1u);
  EXPECT_EQ(dup.Append("j", "w", 10, {"k"}), 1u);
  const std::vector<std::string> lines = dup.Read("j", "w", 0, 100).lines;
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[2], "c");
  EXPECT_NE(lines[3].find("7 line(s) lost"), std::string::npos) << lines[3];
  EXPECT_EQ(lines[4], "k");
}

TEST(WorkerLogsTest, WorkersOfJob) {
  v1::GetJobReply detail;
  detail.add_workers("open");
  detail.add_rounds()->add_clients()->set_worker_id("past");
  detail.add_replicas()->set_worker_id("replica");
  detail.add_islands()->add_members("member");
  EXPECT_EQ(WorkersOfJob(detail), (std::set<std::string>{"member", "open", "past", "replica"}));
}

TEST(JobLogCaptureTest, RingSendsEachLineOnceAndDropsTheOldest) {
  JobLogCapture capture;
  for (int i = 0; i < 10; ++i) capture.Append("j", "line " + std::to_string(i));
  JobLogBatch batch = capture.Unsent(1 << 20);
  EXPECT_EQ(batch.job_id, "j");
  EXPECT_EQ(batch.first_line, 0u);
  ASSERT_EQ(batch.lines.size(), 10u);
  capture.MarkSent("j", 10);
  EXPECT_TRUE(capture.Unsent(1 << 20).job_id.empty());
  // More lines than the ring holds: the unsent ones that fell out are skipped.
  const size_t n = JobLogCapture::kMaxLinesPerJob + 5;
  for (size_t i = 0; i < n; ++i) capture.Append("j", "more " + std::to_string(i));
  batch = capture.Unsent(1 << 30);
  EXPECT_EQ(batch.first_line, 10u + 5u);
  EXPECT_EQ(batch.lines.size(), JobLogCapture::kMaxLinesPerJob);
  EXPECT_EQ(batch.lines.front(), "more 5");
  EXPECT_EQ(capture.Captured("j"), 10u + n);
  // A batch stops at max_bytes (but holds at least one line).
  batch = capture.Unsent(13);  // "more 5" + "more 6" are 12 bytes
  EXPECT_EQ(batch.lines.size(), 2u);
  EXPECT_EQ(capture.Unsent(1).lines.size(), 1u);
}

TEST(JobLogCaptureTest, KeepsAtMostMaxJobs) {
  JobLogCapture capture;
  for (size_t j = 0; j <= JobLogCapture::kMaxJobs; ++j) capture.Append("job" + std::to_string(j), "x");
  EXPECT_TRUE(capture.Lines("job0").empty()) << "the least recently captured job goes first";
  EXPECT_EQ(capture.Lines("job" + std::to_string(JobLogCapture::kMaxJobs)).size(), 1u);
}

TEST(JobLogCaptureTest, SinkCapturesMarkedThreadsByJob) {
  JobLogCapture::InstallSink();
  JobLogCapture capture;
  StatusBoard board;
  spdlog::info("unmarked: job j1 round 1: not captured");
  std::thread marked([&] {
    JobLogThread mark(&capture, &board);
    spdlog::info("worker 'w': job j1 round 2: trained 3 steps");
    spdlog::info("no job named and the worker idle: not captured");
    board.SetActivity("training", "j2", 4);
    spdlog::warn("a line while training j2");
  });
  marked.join();
  const std::vector<std::string> j1 = capture.Lines("j1");
  ASSERT_EQ(j1.size(), 1u);
  EXPECT_NE(j1[0].find("job j1 round 2: trained 3 steps"), std::string::npos) << j1[0];
  EXPECT_NE(j1[0].find("info"), std::string::npos) << j1[0];
  const std::vector<std::string> j2 = capture.Lines("j2");
  ASSERT_EQ(j2.size(), 1u);
  EXPECT_NE(j2[0].find("a line while training j2"), std::string::npos);
  EXPECT_EQ(JobNamedInLine("worker 'w': job abc round 3: x"), "abc");
  EXPECT_EQ(JobNamedInLine("the job was fine"), "");
}

}  // namespace
}  // namespace tributary
