#include "worker/status_board.h"

#include <gtest/gtest.h>

#include "base/utf8.h"

namespace tributary {
namespace {

TEST(StatusBoardTest, ProblemsAreKeptPerJobUntilCleared) {
  StatusBoard board;
  board.SetProblem("j1", 1, "RoundStart: dataset 'words': /data/a.jsonl: no such file", 1000);
  board.SetProblem("j2", 4, "RoundStart: training diverged: loss is nan at step 3", 2000);
  // The same job failing again: the new round and reason, since when it first failed.
  board.SetProblem("j1", 2, "RoundStart: out of memory", 3000);
  PublishedStatus status = board.Snapshot();
  ASSERT_EQ(status.problems.size(), 2u);
  EXPECT_EQ(status.problems[0].job_id, "j2");
  EXPECT_EQ(status.problems[1].job_id, "j1");
  EXPECT_EQ(status.problems[1].round, 2u);
  EXPECT_EQ(status.problems[1].reason, "RoundStart: out of memory");
  EXPECT_EQ(status.problems[1].since_unix_ms, 1000);

  board.ClearProblem("j1");
  status = board.Snapshot();
  ASSERT_EQ(status.problems.size(), 1u);
  EXPECT_EQ(status.problems[0].job_id, "j2");
}

TEST(StatusBoardTest, ProblemsAreBoundedAndReasonsCutAtACharacter) {
  StatusBoard board;
  for (size_t i = 0; i < StatusBoard::kProblemsKept + 3; ++i)
    board.SetProblem("job-" + std::to_string(i), 1, "reason", static_cast<int64_t>(i));
  PublishedStatus status = board.Snapshot();
  ASSERT_EQ(status.problems.size(), StatusBoard::kProblemsKept);
  EXPECT_EQ(status.problems.front().job_id, "job-3");  // the oldest were forgotten

  // 'é' is two bytes: a cut at kMaxReasonBytes would split the last one, which the heartbeat could not encode.
  std::string reason = "x";
  while (reason.size() < StatusBoard::kMaxReasonBytes + 10) reason += "\xc3\xa9";
  board.SetProblem("long", 1, reason, 0);
  const std::string kept = board.Snapshot().problems.back().reason;
  EXPECT_LE(kept.size(), StatusBoard::kMaxReasonBytes);
  EXPECT_GE(kept.size(), StatusBoard::kMaxReasonBytes - 1);
  EXPECT_TRUE(IsValidUtf8(kept));
}

}  // namespace
}  // namespace tributary
