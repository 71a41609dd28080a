#include "cli/worker_calibrations.h"

#include <cstdio>

#include "cli/coordinator_client.h"

namespace tributary::cli {

void PrintCalibrations(const v1::ListWorkersReply& reply) {
  bool header = false;
  for (const v1::WorkerStatus& w : reply.workers()) {
    for (const v1::JobCalibration& c : w.calibrations()) {
      if (!header) {
        std::printf("\n%-16s %-16s %12s  %s\n", "WORKER", "JOB", "TOKENS/S", "MEASURED (UTC)");
        header = true;
      }
      std::printf("%-16s %-16s %12.1f  %s\n", w.worker_id().c_str(), c.job_id().c_str(), c.tokens_per_s(),
                  FormatUnixMs(c.measured_unix_ms()).c_str());
    }
  }
}

std::map<std::string, double> CalibratedTokensPerSecond(const v1::ListWorkersReply& reply, const std::string& job_id) {
  std::map<std::string, double> out;
  for (const v1::WorkerStatus& w : reply.workers())
    for (const v1::JobCalibration& c : w.calibrations())
      if (c.job_id() == job_id) out[w.worker_id()] = c.tokens_per_s();
  return out;
}

}  // namespace tributary::cli
