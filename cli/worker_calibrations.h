// The workers' calibrated compute rates (docs/placement.md, "Compute calibration") as `tributary workers`
// shows them and `tributary plan --job-id` uses them.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "transport/message.h"

namespace tributary::cli {

// A table WORKER, JOB, TOKENS/S, MEASURED (UTC) after the workers table; nothing when no worker has one.
void PrintCalibrations(const v1::ListWorkersReply& reply);
// worker -> tokens/s of `job_id`, for the workers that calibrated it.
std::map<std::string, double> CalibratedTokensPerSecond(const v1::ListWorkersReply& reply, const std::string& job_id);

}  // namespace tributary::cli
