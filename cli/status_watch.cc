#include "cli/status_watch.h"

#include <csignal>
#include <cstdio>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "cli/loss_chart.h"

namespace tributary::cli {
namespace {

constexpr int kChartHeight = 12;
constexpr auto kSleepSlice = std::chrono::milliseconds(100);  // Ctrl-C is noticed this fast
// Polls ride out a coordinator restart, as `wait` does.
constexpr int kPollRetries = 3;

std::atomic<bool> g_interrupted{false};

void OnInterrupt(int) {
  g_interrupted = true;
}

// Ctrl-C (SIGINT) ends the watch cleanly while this is alive.
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupted = false;
    struct sigaction action {};
    action.sa_handler = OnInterrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previous_);
  }
  ~InterruptGuard() { ::sigaction(SIGINT, &previous_, nullptr); }

 private:
  struct sigaction previous_ {};
};

std::string Line(const char* label, const std::string& value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%-14s", label);
  return buf + value + "\n";
}

std::string JobLineOf(const v1::JobStatus& job) {
  return "job " + job.job_id() + " " + job.state() + ", round " + std::to_string(job.round()) + "/" +
         std::to_string(job.total_rounds()) + ", loss " + FormatLoss(job.loss()) +
         (job.error().empty() ? "" : ": " + job.error());
}

}  // namespace

std::string WatchBlock(const v1::GetJobReply& reply, int width) {
  const v1::JobStatus& job = reply.job();
  std::string out = Line("job", job.job_id() + (job.name().empty() ? "" : " (" + job.name() + ")"));
  out += Line("state", job.state() + "  (" + job.mode() + ")");
  if (!job.error().empty()) out += Line("error", job.error());
  out += Line("round", std::to_string(job.round()) + "/" + std::to_string(job.total_rounds()) + "  " +
                           ProgressBar(job.round(), job.total_rounds(), std::clamp(width - 40, 10, 40)));
  std::string workers;
  for (const std::string& w : reply.workers()) workers += (workers.empty() ? "" : ", ") + w;
  out += Line("participants", std::to_string(job.participants()) + (workers.empty() ? "" : "  (now: " + workers + ")"));
  out += Line("loss", "train " + FormatLoss(job.loss()) + ", held-out " + FormatLoss(job.heldout_loss()));
  out += Line("bytes", "up " + FormatBytes(job.bytes_up()) + ", down " + FormatBytes(job.bytes_down()) +
                           " (last round: up " + FormatBytes(job.last_round_bytes_up()) + ", down " +
                           FormatBytes(job.last_round_bytes_down()) + ")");
  if (job.mode() == "cluster")
    out += Line("in islands",
                FormatBytes(job.island_bytes()) + " (last round: " + FormatBytes(job.last_round_island_bytes()) + ")");
  if (!job.waiting().empty()) out += Line("waiting", job.waiting());
  for (const v1::JobProblem& p : reply.worker_problems())
    out +=
        Line("cannot train", "worker '" + p.worker_id() + "' (round " + std::to_string(p.round()) + "): " + p.reason());
  out += Line("updated (UTC)", FormatUnixMs(job.updated_unix_ms()));
  std::vector<RoundLoss> rounds;
  for (const v1::RoundSummary& r : reply.rounds()) rounds.push_back({r.round(), r.train_loss(), r.heldout_loss()});
  out += "\n" + RenderLossChart(rounds, width, kChartHeight);
  return out;
}

Status WatchJob(CoordinatorClient& client, const WatchOptions& options, int* exit_code, bool* json_printed) {
  InterruptGuard guard;
  const bool redraw = !options.json && StdoutIsTerminal();
  const auto interval = std::chrono::milliseconds(static_cast<int64_t>(options.interval_s * 1000));
  std::string last_shown;
  std::optional<v1::GetJobReply> last;
  int failures = 0;
  while (!g_interrupted) {
    Result<v1::GetJobReply> reply = client.GetJob(options.job_id);
    if (!reply.ok()) {
      if (g_interrupted) break;
      if (IsConnectionFailure(reply.status()) && last && ++failures <= kPollRetries) {
        std::fprintf(stderr, "tributary status: %s; retrying\n", reply.status().message().c_str());
        continue;
      }
      return reply.status();
    }
    failures = 0;
    last = *reply;
    const std::string shown = options.json
                                  ? JobDetailJson(*reply).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                                  : WatchBlock(*reply, TerminalWidth());
    if (redraw) {
      std::printf("\033[H\033[2J%s", shown.c_str());
    } else if (shown != last_shown) {
      if (options.json) {
        PrintJsonOk("status", JobDetailJson(*reply));
      } else {
        std::printf("%s%s", last_shown.empty() ? "" : "\n", shown.c_str());
      }
    }
    std::fflush(stdout);
    last_shown = shown;
    if (OutcomeOfState(reply->job().state()) != JobOutcome::kRunning) break;
    for (auto slept = std::chrono::milliseconds(0); slept < interval && !g_interrupted; slept += kSleepSlice)
      std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(kSleepSlice, interval - slept));
  }
  if (g_interrupted || !last) return Status::OK();  // Ctrl-C: the operator stopped watching, not the job
  const JobOutcome outcome = OutcomeOfState(last->job().state());
  if (outcome == JobOutcome::kCompleted) return Status::OK();
  // As `wait`: FAILED and STOPPED mean "no finished model", exit 1.
  *exit_code = kExitJobFailed;
  const std::string message = JobLineOf(last->job());
  if (options.json) {
    PrintJsonError("status", kExitJobFailed, outcome == JobOutcome::kStopped ? "JOB_STOPPED" : "JOB_FAILED", message,
                   JobStatusJson(last->job()));
    *json_printed = true;
  }
  return Status(StatusCode::kFailedPrecondition, message);
}

}  // namespace tributary::cli
