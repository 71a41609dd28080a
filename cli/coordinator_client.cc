#include "cli/coordinator_client.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <set>

#include "cli/exit_codes.h"
#include "transport/message.h"

namespace tributary::cli {
namespace {

namespace fs = std::filesystem;
using transport::Envelope;
using transport::Message;

constexpr const char* kSender = "cli";
// How every connection failure of this client begins (IsConnectionFailure); errors the coordinator
// answered begin with "peer '...' answered:" (transport::StatusFromError).
constexpr const char* kCannotReach = "cannot reach coordinator ";

// "%g" without trailing noise: 10 -> "10", 0.5 -> "0.5".
std::string FormatSeconds(double seconds) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", seconds);
  return buffer;
}

// The file a config value came from, when its origin is "FILE:LINE" (else "").
std::string OriginFile(const Config& config, const std::string& key) {
  const std::string origin = config.Origin(key);
  const size_t colon = origin.rfind(':');
  if (colon == std::string::npos || colon == 0) return "";
  const std::string file = origin.substr(0, colon);
  std::error_code ec;
  return fs::is_regular_file(file, ec) ? file : "";
}

// Expands "~/" and makes a path from a config file relative to that file's directory.
std::string ResolvePath(const std::string& path, const std::string& relative_to_file) {
  if (path.empty()) return path;
  if (path.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    if (home != nullptr && *home != '\0') return std::string(home) + path.substr(1);
    return path;
  }
  if (fs::path(path).is_absolute() || relative_to_file.empty()) return path;
  return (fs::path(relative_to_file).parent_path() / path).lexically_normal().string();
}

// A flag value, or the config key's value resolved against its file. *origin names where it came from.
std::string FlagOrConfigPath(const std::string& flag_value, const std::string& flag_name, const Config& config,
                             const std::string& key, std::string* origin) {
  if (!flag_value.empty()) {
    *origin = flag_name;
    return ResolvePath(flag_value, "");
  }
  *origin = key + " (" + config.Origin(key) + ")";
  return ResolvePath(config.GetString(key), OriginFile(config, key));
}

std::string UpperSnake(const std::string& camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    const char c = camel[i];
    if (std::isupper(static_cast<unsigned char>(c)) && i > 0) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::string DefaultConfigFileFor(const std::string& command) {
  static const std::set<std::string> kJobCommands = {"submit", "jobs", "status", "wait", "logs", "stop", "download"};
  if (kJobCommands.count(command) == 0) return "";
  fs::path dir;
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  if (xdg != nullptr && *xdg == '/') {
    dir = xdg;
  } else if (home != nullptr && *home != '\0') {
    dir = fs::path(home) / ".config";
  } else {
    return "";
  }
  const fs::path file = dir / "tributary" / "client.yaml";
  std::error_code ec;
  return fs::is_regular_file(file, ec) ? file.string() : "";
}

void AddConnectionFlags(CLI::App* command, ConnectionFlags& flags) {
  command->add_option("--coordinator", flags.coordinator, "Coordinator endpoint, e.g. tcp://10.0.0.1:7400")
      ->group("Connection (default: client.* config keys)");
  command->add_option("--key", flags.key, "This client's CURVE key file (PREFIX.key from 'tributary keygen')")
      ->group("Connection (default: client.* config keys)");
  command->add_option("--coordinator-key", flags.coordinator_key, "The coordinator's public key file (.pub)")
      ->group("Connection (default: client.* config keys)");
  command->add_flag("--insecure", flags.insecure, "No CURVE (only for a coordinator started with --insecure)")
      ->group("Connection (default: client.* config keys)");
}

Result<ConnectionProfile> ResolveConnectionProfile(const Config& config, const ConnectionFlags& flags) {
  ConnectionProfile profile;
  profile.endpoint = flags.coordinator.empty() ? config.GetString("client.coordinator") : flags.coordinator;
  if (profile.endpoint.empty()) {
    return Status::InvalidArgument(
        "no coordinator endpoint: pass --coordinator tcp://HOST:PORT or set client.coordinator in a config file "
        "(default " +
        std::string("$XDG_CONFIG_HOME/tributary/client.yaml)"));
  }
  if (profile.endpoint.find("://") == std::string::npos) {
    return Status::InvalidArgument("coordinator endpoint '" + profile.endpoint + "': expected tcp://HOST:PORT");
  }
  profile.insecure = flags.insecure || config.GetBool("client.insecure");
  profile.request_timeout_s = config.GetFloat("client.request_timeout_s");
  if (profile.insecure) return profile;

  std::string key_origin, coordinator_key_origin;
  const std::string key_file = FlagOrConfigPath(flags.key, "--key", config, "client.secret_key", &key_origin);
  const std::string coordinator_key_file = FlagOrConfigPath(flags.coordinator_key, "--coordinator-key", config,
                                                            "client.coordinator_key", &coordinator_key_origin);
  if (key_file.empty()) {
    return Status::InvalidArgument(
        "no client key: pass --key FILE or set client.secret_key (create one with 'tributary keygen -o PREFIX' and "
        "add PREFIX.pub to the coordinator's allowed_keys), or --insecure for an insecure coordinator");
  }
  if (coordinator_key_file.empty()) {
    return Status::InvalidArgument(
        "no coordinator public key: pass --coordinator-key FILE or set client.coordinator_key (the coordinator's "
        ".pub file)");
  }
  Result<transport::KeyPair> keys = transport::LoadKeyPair(key_file);
  if (!keys.ok()) return Status::InvalidArgument("client key from " + key_origin + ": " + keys.status().message());
  profile.keys = std::move(keys).value();
  Result<std::string> server_key = transport::LoadPublicKey(coordinator_key_file);
  if (!server_key.ok()) {
    return Status::InvalidArgument("coordinator key from " + coordinator_key_origin + ": " +
                                   server_key.status().message());
  }
  profile.coordinator_public_key = std::move(server_key).value();
  return profile;
}

Result<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Connect(const ConnectionProfile& profile) {
  std::unique_ptr<CoordinatorClient> client(new CoordinatorClient(profile));
  transport::ClientOptions options;
  options.name = "cli";
  options.insecure = profile.insecure;
  options.keys = profile.keys;
  options.server_public_key = profile.coordinator_public_key;
  // A CLI run is short: a refused key is reported at once rather than retried.
  options.reconnect_interval_ms = 100;
  options.reconnect_interval_max_ms = 1000;
  Result<std::unique_ptr<transport::Client>> connected = transport::Client::Connect(profile.endpoint, options);
  if (!connected.ok()) return Status::InvalidArgument(connected.status().message());
  client->client_ = std::move(connected).value();
  return client;
}

Status CoordinatorClient::ConnectionFailure(const std::string& detail) const {
  std::string hint;
  if (!answered_ && client_->handshake_failures() > 0) {
    hint = "the coordinator refused the CURVE handshake: is this client's public key " + profile_.keys.public_key +
           " in its allowed_keys, and is client.coordinator_key the coordinator's public key?";
    return Status::PermissionDenied(kCannotReach + profile_.endpoint + ": " + hint);
  }
  hint = profile_.insecure ? "is it running, and started with --insecure?"
                           : "is it running? is this client's public key in its allowed_keys?";
  return Status::Unavailable(kCannotReach + profile_.endpoint + ": " + detail + " (" + hint + ")");
}

Result<Message> CoordinatorClient::Call(Envelope request, Envelope::BodyCase expected) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(profile_.request_timeout_s * 1000));
  const std::string no_reply = "no reply within " + FormatSeconds(profile_.request_timeout_s) + " s";
  Status sent = client_->Send(request);
  if (!sent.ok()) return ConnectionFailure(no_reply);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string peer = "coordinator " + profile_.endpoint;
  while (true) {
    // A refused first handshake is a misconfiguration: say so at once instead of waiting out the
    // timeout. Once the coordinator has answered, a failure (e.g. during its restart) may be transient.
    if (!answered_ && client_->handshake_failures() > 0) return ConnectionFailure("");
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return ConnectionFailure(no_reply);
    Result<Message> reply = client_->Receive(static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (!reply.ok()) {
      if (reply.status().code() == StatusCode::kTimeout) continue;
      if (reply.status().code() == StatusCode::kIOError) return ConnectionFailure(reply.status().message());
      return reply.status();
    }
    answered_ = true;
    const Envelope& envelope = reply->envelope;
    if (envelope.body_case() == Envelope::kError &&
        (envelope.in_reply_to() == request.message_id() || envelope.in_reply_to() == 0)) {
      return transport::StatusFromError(envelope.error(), peer);
    }
    if (envelope.in_reply_to() != request.message_id()) continue;  // a late reply to an earlier request
    TRIB_RETURN_IF_ERROR(transport::ExpectBody(envelope, expected, peer));
    return reply;
  }
}

Result<v1::SubmitJobReply> CoordinatorClient::SubmitJob(const std::string& spec_yaml, const std::string& submit_token,
                                                        bool dry_run) {
  Envelope request = transport::NewEnvelope(kSender);
  v1::SubmitJob* body = request.mutable_submit_job();
  body->set_spec_yaml(spec_yaml);
  body->set_submit_token(submit_token);
  body->set_dry_run(dry_run);
  TRIB_ASSIGN_OR_RETURN(Message reply, Call(std::move(request), Envelope::kSubmitJobReply));
  return reply.envelope.submit_job_reply();
}

Result<v1::ListWorkersReply> CoordinatorClient::ListWorkers() {
  Envelope request = transport::NewEnvelope(kSender);
  request.mutable_list_workers();
  TRIB_ASSIGN_OR_RETURN(Message reply, Call(std::move(request), Envelope::kListWorkersReply));
  return reply.envelope.list_workers_reply();
}

Result<v1::ListJobsReply> CoordinatorClient::ListJobs(const std::string& state_filter, uint32_t limit,
                                                      const std::string& submit_token) {
  Envelope request = transport::NewEnvelope(kSender);
  v1::ListJobs* body = request.mutable_list_jobs();
  body->set_state_filter(state_filter);
  body->set_limit(limit);
  body->set_submit_token(submit_token);
  TRIB_ASSIGN_OR_RETURN(Message reply, Call(std::move(request), Envelope::kListJobsReply));
  return reply.envelope.list_jobs_reply();
}

Result<v1::GetJobReply> CoordinatorClient::GetJob(const std::string& job_id) {
  Envelope request = transport::NewEnvelope(kSender);
  request.mutable_get_job()->set_job_id(job_id);
  TRIB_ASSIGN_OR_RETURN(Message reply, Call(std::move(request), Envelope::kGetJobReply));
  return reply.envelope.get_job_reply();
}

Result<v1::StopJobReply> CoordinatorClient::StopJob(const std::string& job_id, const std::string& reason) {
  Envelope request = transport::NewEnvelope(kSender);
  request.mutable_stop_job()->set_job_id(job_id);
  request.mutable_stop_job()->set_reason(reason);
  TRIB_ASSIGN_OR_RETURN(Message reply, Call(std::move(request), Envelope::kStopJobReply));
  return reply.envelope.stop_job_reply();
}

Result<v1::FetchLogsReply> CoordinatorClient::FetchLogs(const std::string& job_id, uint64_t from_line,
                                                        uint32_t max_lines, const std::string& worker_id) {
  Envelope request = transport::NewEnvelope(kSender);
  v1::FetchLogs* body = request.mutable_fetch_logs();
  body->set_job_id(job_id);
  body->set_worker_id(worker_id);
  body->set_from_line(from_line);
  body->set_max_lines(max_lines);
  TRIB_ASSIGN_OR_RETURN(Message reply, Call(std::move(request), Envelope::kFetchLogsReply));
  return reply.envelope.fetch_logs_reply();
}

Result<v1::ExportModelReply> CoordinatorClient::ExportModel(const std::string& job_id, uint64_t round,
                                                            const std::string& format) {
  Envelope request = transport::NewEnvelope(kSender);
  v1::ExportModel* body = request.mutable_export_model();
  body->set_job_id(job_id);
  body->set_round(round);
  body->set_format(format);
  TRIB_ASSIGN_OR_RETURN(Message reply, Call(std::move(request), Envelope::kExportModelReply));
  return reply.envelope.export_model_reply();
}

Status CoordinatorClient::FetchFile(const std::string& object_id, const std::string& path,
                                    const std::string& expected_checksum) {
  transport::FileSink sink(path);
  transport::FetchOptions options;
  options.sender = kSender;
  options.expected_checksum = expected_checksum;
  options.chunk_timeout_ms = static_cast<int>(profile_.request_timeout_s * 1000);
  options.max_attempts = 3;
  Status status = transport::FetchObject(*client_, object_id, &sink, options);
  if (status.code() == StatusCode::kTimeout) {
    return ConnectionFailure("fetching " + path + ": " + status.message());
  }
  return status;
}

JobOutcome OutcomeOfState(const std::string& state) {
  std::string upper;
  for (char c : state) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  // The protocol's names, plus the bare words older coordinators may send.
  if (upper == "FINISHED:COMPLETED" || upper == "COMPLETED" || upper == "FINISHED") return JobOutcome::kCompleted;
  if (upper == "FINISHED:STOPPED" || upper == "STOPPED") return JobOutcome::kStopped;
  if (upper.rfind("FINISHED:", 0) == 0 || upper == "FAILED") return JobOutcome::kFailed;
  return JobOutcome::kRunning;
}

bool IsConnectionFailure(const Status& status) {
  return (status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kPermissionDenied) &&
         status.message().rfind(kCannotReach, 0) == 0;
}

std::string JsonErrorCode(const Status& status) {
  if (IsConnectionFailure(status) || status.code() == StatusCode::kPermissionDenied) return "CONNECTION_FAILED";
  return UpperSnake(StatusCodeName(status.code()));
}

void PrintJsonOk(const std::string& command, const nlohmann::json& data) {
  nlohmann::json envelope = {
      {"schema_version", "1"}, {"ok", true}, {"command", command}, {"exit_code", kExitOk}, {"data", data}};
  // Invalid UTF-8 (a log line cut mid-character) is replaced rather than thrown on.
  std::printf("%s\n", envelope.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  std::fflush(stdout);
}

void PrintJsonError(const std::string& command, int exit_code, const std::string& error_code,
                    const std::string& message, const nlohmann::json& data) {
  nlohmann::json envelope = {{"schema_version", "1"},
                             {"ok", false},
                             {"command", command},
                             {"exit_code", exit_code},
                             {"error", {{"code", error_code}, {"message", message}}}};
  if (!data.is_null()) envelope["data"] = data;
  // Invalid UTF-8 (a log line cut mid-character) is replaced rather than thrown on.
  std::printf("%s\n", envelope.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  std::fflush(stdout);
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 5) {
    value /= 1000;
    ++unit;
  }
  char buffer[32];
  if (unit == 0) {
    std::snprintf(buffer, sizeof(buffer), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.1f %s", value, kUnits[unit]);
  }
  return buffer;
}

std::string FormatUnixMs(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M:%S", &tm);
  return buffer;
}

std::string ProgressBar(uint64_t done, uint64_t total, int width) {
  const double fraction = total == 0 ? 0.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const int filled = static_cast<int>(fraction * width);
  char percent[16];
  std::snprintf(percent, sizeof(percent), "%4d%%", static_cast<int>(fraction * 100));
  return "[" + std::string(filled, '#') + std::string(width - filled, '-') + "]" + percent;
}

bool StdoutIsTerminal() {
  return ::isatty(STDOUT_FILENO) == 1;
}

int TerminalWidth() {
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

}  // namespace tributary::cli
