// The CLI's side of the coordinator job API (docs/protocol.md, "CLI <-> coordinator"): the
// connection profile (endpoint + CURVE keys from flags over config), one request/reply client, the
// `--format json` envelope shared by every job command, and text renderings of job messages (the JSON
// rendering of a job and FormatLoss are the coordinator's, coordinator/job_view.h).
//
// Profiles: a profile IS a config file holding `client.*` keys (`tributary --config prod.yaml status
// J`); without --config, job commands load $XDG_CONFIG_HOME/tributary/client.yaml (or
// ~/.config/tributary/client.yaml) when it exists. Relative key paths in a config file are relative
// to that file's directory. Flags (--coordinator, --key, --coordinator-key, --insecure) win.
//
// Failures to reach the coordinator are "cannot reach coordinator ..." statuses: Unavailable when it
// does not answer within client.request_timeout_s, PermissionDenied when it refused this client's
// CURVE handshake (IsConnectionFailure tells them from errors the coordinator answered). Job commands
// exit 2 for both (docs/cli.md, "Exit codes").
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/config.h"
#include "base/status.h"
#include "cli/exit_codes.h"
#include "coordinator/job_view.h"
#include "transport/bulk.h"
#include "transport/channel.h"

namespace tributary::cli {

// The config file job commands load when no --config is given: "" when there is none.
// `command` is the subcommand name; only job commands (submit, jobs, status, wait, logs, stop,
// download) use the default client profile.
std::string DefaultConfigFileFor(const std::string& command);

// Connection flags every job command accepts; empty/false means "take the config key".
struct ConnectionFlags {
  std::string coordinator;
  std::string key;
  std::string coordinator_key;
  bool insecure = false;
};
void AddConnectionFlags(CLI::App* command, ConnectionFlags& flags);

struct ConnectionProfile {
  std::string endpoint;
  bool insecure = false;
  transport::KeyPair keys;             // empty when insecure
  std::string coordinator_public_key;  // Z85; empty when insecure
  double request_timeout_s = 10;
};

// Resolves flags over config keys and loads the key files. InvalidArgument naming the flag/key or
// the file when something is missing or unreadable.
Result<ConnectionProfile> ResolveConnectionProfile(const Config& config, const ConnectionFlags& flags);

// One request at a time to the coordinator; every call returns the expected reply body or a Status
// (server errors keep their code; connection failures are Unavailable or PermissionDenied, see above).
class CoordinatorClient {
 public:
  static Result<std::unique_ptr<CoordinatorClient>> Connect(const ConnectionProfile& profile);

  Result<v1::SubmitJobReply> SubmitJob(const std::string& spec_yaml, const std::string& submit_token, bool dry_run);
  // The registered workers (ListWorkers).
  Result<v1::ListWorkersReply> ListWorkers();
  Result<v1::ListJobsReply> ListJobs(const std::string& state_filter, uint32_t limit, const std::string& submit_token);
  Result<v1::GetJobReply> GetJob(const std::string& job_id);
  Result<v1::StopJobReply> StopJob(const std::string& job_id, const std::string& reason);
  // The coordinator's log of the job, or with a worker_id the lines that worker shipped for it.
  Result<v1::FetchLogsReply> FetchLogs(const std::string& job_id, uint64_t from_line, uint32_t max_lines,
                                       const std::string& worker_id = "");
  Result<v1::ExportModelReply> ExportModel(const std::string& job_id, uint64_t round, const std::string& format);
  // Fetches a bulk object into `path` (written as path.partial, renamed when verified).
  Status FetchFile(const std::string& object_id, const std::string& path, const std::string& expected_checksum);

  const std::string& endpoint() const { return profile_.endpoint; }

 private:
  explicit CoordinatorClient(ConnectionProfile profile) : profile_(std::move(profile)) {}
  Result<transport::Message> Call(transport::Envelope request, transport::Envelope::BodyCase expected);
  // The one-line "cannot reach coordinator ..." status.
  Status ConnectionFailure(const std::string& detail) const;

  ConnectionProfile profile_;
  std::unique_ptr<transport::Client> client_;
  bool answered_ = false;  // the coordinator answered a request of this client
};

// Whether `status` is this client's failure to reach the coordinator (no reply, refused handshake)
// rather than an error the coordinator answered.
bool IsConnectionFailure(const Status& status);

// Job states (docs/protocol.md): PENDING, RUNNING, FINISHED:COMPLETED|FAILED|STOPPED.
enum class JobOutcome { kRunning, kCompleted, kFailed, kStopped };
JobOutcome OutcomeOfState(const std::string& state);

// The `--format json` envelope: {"schema_version":"1","ok":true,"command":C,"exit_code":0,"data":D}
// or {"schema_version":"1","ok":false,"command":C,"exit_code":N,"error":{"code":K,"message":M},
// "data":D?}. Printed as one line on stdout.
void PrintJsonOk(const std::string& command, const nlohmann::json& data);
void PrintJsonError(const std::string& command, int exit_code, const std::string& error_code,
                    const std::string& message, const nlohmann::json& data = nullptr);
// Error code names for a Status: CONNECTION_FAILED, NOT_FOUND, INVALID_ARGUMENT, ...
std::string JsonErrorCode(const Status& status);

// "1.5 MB", "312 B" (decimal units).
std::string FormatBytes(uint64_t bytes);
// "2026-11-28 18:00:05" (UTC) or "-" for 0.
std::string FormatUnixMs(int64_t unix_ms);
// "[########------------]  40%".
std::string ProgressBar(uint64_t done, uint64_t total, int width);
// Whether stdout is a terminal (live progress is drawn only then).
bool StdoutIsTerminal();
// The terminal's width in columns (TIOCGWINSZ on stdout), else 80.
int TerminalWidth();

}  // namespace tributary::cli
