// `tributary status JOB --watch`: a refreshing view of one job (state, round, progress, bytes and the
// loss curve drawn by RenderLossChart) until the job reaches a terminal state or Ctrl-C.
//
// On a terminal the screen is cleared and redrawn every interval; otherwise (stdout logged to a file) a
// new block is printed each time the job's view changed. With --format json every change is one line of
// NDJSON: the `status --format json` envelope. Exit codes as `wait`: 0 completed, 1 failed or stopped
// (the last JSON line is then wait's error envelope), 2 connection; Ctrl-C ends it with 0.
#pragma once

#include <string>

#include "base/status.h"
#include "cli/coordinator_client.h"

namespace tributary::cli {

struct WatchOptions {
  std::string job_id;
  double interval_s = 2;
  bool json = false;
};

// The text block of one refresh: a few summary lines and the loss chart, `width` columns wide.
std::string WatchBlock(const v1::GetJobReply& reply, int width);

// Runs the watch. *exit_code is set for a job that ended without completing (1); *json_printed when the
// JSON error envelope was printed.
Status WatchJob(CoordinatorClient& client, const WatchOptions& options, int* exit_code, bool* json_printed);

}  // namespace tributary::cli
