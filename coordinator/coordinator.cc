// The coordinator daemon's socket loop: dispatch to the components (coordinator_internal.h), the worker
// messages (Register, Heartbeat, CatchUpRequest), the tick, and the HTTP view (see coordinator.h).
#include "coordinator/coordinator.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "coordinator/coordinator_internal.h"
#include "coordinator/job_view.h"

namespace tributary {

namespace fs = std::filesystem;
using transport::Envelope;
using transport::Incoming;

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

constexpr int kPollMs = 20;

Status ParseHostPort(const std::string& text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return Status::InvalidArgument("coordinator.http_listen '" + text + "': expected HOST:PORT");
  *host = text.substr(0, colon);
  try {
    size_t used = 0;
    *port = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || *port < 0 || *port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    return Status::InvalidArgument("coordinator.http_listen '" + text + "': port must be 0..65535");
  }
  return Status::OK();
}

Status ValidateOptions(const CoordinatorOptions& options) {
  if (options.data_dir.empty()) return Status::InvalidArgument("coordinator.data_dir: must be set");
  if (options.heartbeat_interval_ms <= 0 || options.heartbeat_misses < 1)
    return Status::InvalidArgument("coordinator.heartbeat_interval_s / heartbeat_misses: must be positive");
  for (const auto& [name, path] : options.eval_data) {
    if (!fs::is_regular_file(path))
      return Status::NotFound("coordinator.eval_data: dataset '" + name + "': " + path + ": no such file");
  }
  if (options.inline_payload_bytes < transport::kMinInlinePayloadBytes ||
      options.inline_payload_bytes > transport::kMaxInlinePayloadBytes)
    return Status::InvalidArgument(
        "coordinator.inline_payload_bytes: must be " + std::to_string(transport::kMinInlinePayloadBytes) + ".." +
        std::to_string(transport::kMaxInlinePayloadBytes) + ", got " + std::to_string(options.inline_payload_bytes));
  if (options.probe_bytes < (1 << 20) || options.probe_bytes > (uint64_t{1} << 32))
    return Status::InvalidArgument("coordinator.probe_bytes: must be 1 MiB..4 GiB, got " +
                                   std::to_string(options.probe_bytes));
  if (options.probe_port < 0 || options.probe_port > 65535)
    return Status::InvalidArgument("coordinator.probe_port: must be 0..65535, got " +
                                   std::to_string(options.probe_port));
  if (options.probe_timeout_ms < 100 || options.probe_timeout_ms > 600000)
    return Status::InvalidArgument("coordinator.probe_timeout_ms: must be 100..600000, got " +
                                   std::to_string(options.probe_timeout_ms));
  return Status::OK();
}

}  // namespace

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Coordinator::~Coordinator() = default;

const std::string& Coordinator::endpoint() const {
  return impl_->server->endpoint();
}

int Coordinator::http_port() const {
  return impl_->http ? impl_->http->port() : 0;
}

Result<std::unique_ptr<Coordinator>> Coordinator::Create(CoordinatorOptions options) {
  TRIB_RETURN_IF_ERROR(ValidateOptions(options));
  if (options.restart_grace_ms < 0) options.restart_grace_ms = options.heartbeat_interval_ms * 3 / 2;
  std::error_code ec;
  fs::create_directories(fs::path(options.data_dir) / "logs", ec);
  if (ec) return Status::IOError(options.data_dir + ": cannot create: " + ec.message());
  fs::create_directories(fs::path(options.data_dir) / "exports", ec);

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  impl->coordinator_id = std::string(host) + ":" + std::to_string(getpid());
  impl->started_ms = UnixMillis();

  checkpoint::StoreOptions store_options;
  store_options.sync_writes = options.sync_writes;
  store_options.reserve_bytes = options.store_reserve_bytes;
  auto store = checkpoint::CheckpointStore::Open((fs::path(options.data_dir) / "store").string(), store_options);
  // A data dir the store cannot write (full, read-only) is the operator's to fix, not a peer's to retry.
  if (!store.ok() && store.status().code() == StatusCode::kUnavailable)
    return Status::FailedPrecondition("coordinator.data_dir: " + store.status().message());
  if (!store.ok()) return store.status().WithContext("coordinator.data_dir");
  impl->store = std::move(*store);

  transport::ServerOptions server_options;
  server_options.name = "coordinator";
  server_options.insecure = options.insecure;
  server_options.keys = options.keys;
  server_options.allow_list = options.allow_list;
  // In cluster mode every byte here crosses the slow links: /metrics counts them by message type.
  CoordinatorMetrics* metrics = &impl->metrics;
  server_options.count_traffic = [metrics](bool received, transport::Envelope::BodyCase body, uint64_t envelope_bytes,
                                           uint64_t bulk_bytes) {
    const char* direction = received ? "in" : "out";
    metrics->OnTransportBytes(direction, transport::BodyName(body), envelope_bytes);
    if (bulk_bytes > 0) metrics->OnTransportBytes(direction, "bulk_chunk", bulk_bytes);
  };
  auto server = transport::Server::Bind(options.listen, server_options);
  if (!server.ok()) return server.status().WithContext("coordinator.listen");
  impl->server = std::move(*server);

  Impl* raw = impl.get();
  impl->rate_limiter = std::make_unique<PeerRateLimiter>(options.rate_limit);
  impl->workers = std::make_unique<WorkerRegistry>(
      impl->store.get(), WorkerRegistryOptions{options.insecure, options.heartbeat_interval_ms,
                                               options.heartbeat_misses, options.forget_workers_after_ms});
  impl->registrations = std::make_unique<RegistrationWriter>(impl->store.get());
  impl->uploads = std::make_unique<UploadIntake>(impl->server.get(), impl->workers.get(), &impl->metrics,
                                                 [raw](const std::string& job_id) { return raw->FindJob(job_id); });
  impl->StartProbeServer();
  TRIB_RETURN_IF_ERROR(impl->StartMultistream());
  TRIB_RETURN_IF_ERROR(impl->LoadJobs());
  impl->PublishView();
  impl->BuildWorkersView(UnixMillis());

  if (!options.http_listen.empty()) TRIB_RETURN_IF_ERROR(impl->StartHttp());
  spdlog::info("coordinator {}: listening on {} ({}), store {}, {} job(s) loaded", impl->coordinator_id,
               impl->server->endpoint(), options.insecure ? "INSECURE" : "CURVE", impl->store->path(),
               impl->jobs.size());
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl)));
}

Status Coordinator::Run(const std::atomic<bool>* stop) {
  Impl& s = *impl_;
  int64_t last_tick_ms = 0;
  while (!stop->load()) {
    Result<Incoming> in = s.server->Receive(kPollMs);
    if (in.ok()) {
      s.Handle(*in);
    } else if (in.status().code() != StatusCode::kTimeout) {
      spdlog::debug("coordinator: {}", in.status().ToString());
    }
    s.registrations->Poll();
    s.submissions.Poll();
    const int64_t now_ms = UnixMillis();
    if (now_ms - last_tick_ms >= kPollMs) {
      last_tick_ms = now_ms;
      s.Tick(now_ms);
    }
    s.PublishViewIfChanged();
    s.ReportStatus();
    s.options.hooks.Alive();
  }
  spdlog::info("coordinator {}: stopping", s.coordinator_id);
  s.options.hooks.Stopping();
  if (s.http) s.http->Stop();
  return Status::OK();
}

Status Coordinator::Impl::StartHttp() {
  std::string http_host;
  int http_port = 0;
  TRIB_RETURN_IF_ERROR(ParseHostPort(options.http_listen, &http_host, &http_port));
  Impl* raw = this;
  HttpCallbacks callbacks;
  callbacks.not_ready = [raw] {
    std::vector<std::string> out;
    {
      std::lock_guard<std::mutex> lock(raw->view_mu);
      out = raw->not_ready;
    }
    // Asked now, not at the last view refresh: a full data dir shows at once (CheckWritable is thread-safe).
    if (raw->store) {
      const Status writable = raw->store->CheckWritable();
      if (!writable.ok()) out.push_back(writable.message());
    }
    return out;
  };
  callbacks.metrics_text = [raw] { return raw->metrics.RenderText(); };
  callbacks.list_jobs = [raw]() -> Result<nlohmann::json> {
    std::lock_guard<std::mutex> lock(raw->view_mu);
    return raw->jobs_view;
  };
  callbacks.get_job = [raw](const std::string& job_id) -> Result<nlohmann::json> {
    std::lock_guard<std::mutex> lock(raw->view_mu);
    auto it = raw->job_details.find(job_id);
    if (it == raw->job_details.end()) return Status::NotFound("job '" + job_id + "' not found");
    return it->second;
  };
  callbacks.list_workers = [raw]() -> Result<nlohmann::json> {
    // The loop builds the view for those who ask (ServeWorkersView); a stopped loop still gets the last one.
    std::unique_lock<std::mutex> lock(raw->view_mu);
    const uint64_t asked = ++raw->workers_view_asked;
    raw->workers_view_ready.wait_for(lock, std::chrono::seconds(2),
                                     [raw, asked] { return raw->workers_view_served >= asked; });
    return raw->workers_view;
  };
  http = std::make_unique<HttpServer>(std::move(callbacks), HttpServerOptions{options.http_token});
  return http->Start(http_host, http_port).WithContext("coordinator.http_listen");
}

JobServices Coordinator::Impl::Services() {
  JobServices services;
  services.options = &options;
  services.store = store.get();
  services.server = server.get();
  services.workers = workers.get();
  services.bulk = &bulk;
  services.metrics = &metrics;
  services.probe_server = probe_server.get();
  return services;
}

Status Coordinator::Impl::LoadJobs() {
  TRIB_ASSIGN_OR_RETURN(std::vector<checkpoint::JobRecord> records, store->ListJobs());
  for (const checkpoint::JobRecord& record : records) {
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<JobRunner> job, JobRunner::Load(Services(), record));
    jobs[record.job_id] = std::move(job);
  }
  return Status::OK();
}

JobRunner* Coordinator::Impl::FindJob(const std::string& job_id) {
  auto it = jobs.find(job_id);
  return it == jobs.end() ? nullptr : it->second.get();
}

void Coordinator::Impl::Tick(int64_t now_ms) {
  // A loop that did not run (a slow request, a stopped process) read no heartbeats: that is not the workers'
  // silence. The slow steps of rounds and exports run on the jobs' task queues, so this is the exception.
  const int64_t gap_ms = last_tick_ms == 0 ? 0 : now_ms - last_tick_ms;
  last_tick_ms = now_ms;
  if (gap_ms > options.heartbeat_interval_ms) {
    spdlog::warn("coordinator: the loop did not run for {} ms; workers' heartbeat deadlines move as much", gap_ms);
    workers->ExcuseStall(gap_ms, now_ms);
  }
  if (now_ms - rate_reports_ms >= 1000) {
    rate_reports_ms = now_ms;
    for (const std::string& line : rate_limiter->TakeReports(now_ms)) spdlog::warn("coordinator: peer {}", line);
  }
  // A peer that does not read what it is sent loses it (the server never waits for it); a worker so slow
  // would miss its RoundStarts, so it counts as dead until its next heartbeat.
  for (const transport::SlowPeer& slow : server->TakeSlowPeers()) {
    const std::string worker = workers->MarkNotReading(slow.routing_id);
    if (!worker.empty())
      spdlog::warn("coordinator: worker '{}' declared dead: it does not read its messages ({} dropped in a row)",
                   worker, slow.dropped_in_row);
  }
  alive_workers = workers->MarkDead(now_ms);
  metrics.SetWorkersAlive(alive_workers);
  // After a start, rounds wait for the workers that were connected before to re-register (coordinator.h).
  const bool may_plan = now_ms >= started_ms + options.restart_grace_ms;
  for (auto& [id, job] : jobs) job->Tick(now_ms, may_plan);
  bulk.Expire(now_ms);
  uploads->Tick(now_ms);
}

void Coordinator::Impl::Handle(Incoming& in) {
  const Envelope::BodyCase body = in.message.envelope.body_case();
  // Bulk chunks are paced by their receiver's window; every other message counts against its peer's rate.
  const bool bulk_traffic = body == Envelope::kBulkRequest || body == Envelope::kBulkChunkHeader;
  const std::string& peer_key = in.peer.public_key.empty() ? in.peer.routing_id : in.peer.public_key;
  if (!bulk_traffic && !rate_limiter->Admit(
                           peer_key, [&in] { return in.peer.Describe(); }, UnixMillis())) {
    metrics.OnRateLimited();
    return;
  }
  switch (body) {
    case Envelope::kRegisterWorker: return HandleRegister(in);
    case Envelope::kHeartbeat: return HandleHeartbeat(in);
    case Envelope::kUploadUpdate: return uploads->OnUpload(in, UnixMillis());
    case Envelope::kCatchUpRequest: return HandleCatchUp(in);
    case Envelope::kSecaggRequest: return HandleSecAgg(in);
    case Envelope::kIslandStoreRequest: return HandleIslandStore(in);
    case Envelope::kProbeReport: return HandleProbeReport(in);
    case Envelope::kMultistreamRequest: return HandleMultistreamRequest(in);
    case Envelope::kBulkRequest: {
      Status served = bulk.Serve(*server, in);
      if (!served.ok()) spdlog::warn("coordinator: bulk request from {}: {}", in.peer.Describe(), served.ToString());
      return;
    }
    case Envelope::kBulkChunkHeader: return uploads->OnBulkChunk(in, UnixMillis());
    case Envelope::kSubmitJob: return HandleSubmit(in);
    case Envelope::kListJobs: return HandleListJobs(in);
    case Envelope::kListWorkers: return HandleListWorkers(in);
    case Envelope::kGetJob: return HandleGetJob(in);
    case Envelope::kStopJob: return HandleStopJob(in);
    case Envelope::kFetchLogs: return HandleFetchLogs(in);
    case Envelope::kExportModel: return HandleExport(in);
    case Envelope::kWorkerLogLines: return HandleWorkerLogLines(in);
    case Envelope::kError:
      spdlog::warn("coordinator: error from {}: {}", in.peer.Describe(), in.message.envelope.error().message());
      return;
    default:
      ReplyError(in, Status::InvalidArgument("message type '" + transport::BodyName(in.message.envelope.body_case()) +
                                             "' is not a request the coordinator serves"));
  }
}

void Coordinator::Impl::Reply(const Incoming& request, Envelope reply) {
  Status sent = server->Reply(request, std::move(reply));
  // A reply over the message limit (InvalidArgument from the encoder) becomes an error the client sees,
  // rather than a silence it would take for an unreachable coordinator.
  if (sent.code() == StatusCode::kInvalidArgument)
    sent = server->Reply(request, transport::ErrorEnvelope("coordinator", request.message.envelope.message_id(),
                                                           Status::Internal("the reply: " + sent.message())));
  if (sent.ok()) return;
  // A full queue (dropped, counted and reported by the Server) or a vanished peer must not flood the log.
  if (sent.code() == StatusCode::kTimeout || sent.code() == StatusCode::kUnavailable) {
    spdlog::debug("coordinator: reply to {}: {}", request.peer.Describe(), sent.ToString());
  } else {
    spdlog::warn("coordinator: reply to {}: {}", request.peer.Describe(), sent.ToString());
  }
}

void Coordinator::Impl::ReplyError(const Incoming& request, const Status& status) {
  Reply(request, transport::ErrorEnvelope("coordinator", request.message.envelope.message_id(), status));
}

void Coordinator::Impl::HandleRegister(const Incoming& in) {
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::RegisterAck* ack = reply.mutable_register_ack();
  ack->set_coordinator_id(coordinator_id);
  ack->set_heartbeat_interval_ms(static_cast<uint32_t>(options.heartbeat_interval_ms));
  ack->set_heartbeat_miss_limit(static_cast<uint32_t>(options.heartbeat_misses));
  const v1::Register& reg = in.message.envelope.register_worker();
  auto record = workers->BeginRegister(reg, in.peer, UnixMillis());
  if (!record.ok()) {
    spdlog::warn("coordinator: registration refused from {}: {}", in.peer.Describe(), record.status().message());
    ack->set_accepted(false);
    ack->set_reason(record.status().message());
    return Reply(in, std::move(reply));
  }
  // Acknowledged once the record is durable; the write goes with the other registrations of the moment.
  auto request = KeepRequest(in);
  registrations->Add(std::move(*record), [this, request, reply = std::move(reply)](const Status& written) mutable {
    const v1::Register& reg = request->message.envelope.register_worker();
    v1::RegisterAck* ack = reply.mutable_register_ack();
    ack->set_accepted(written.ok());
    if (written.ok()) {
      workers->FinishRegister(reg, request->peer, UnixMillis());
    } else {
      workers->AbandonRegister(reg.worker_id());
      spdlog::warn("coordinator: registration of worker '{}' from {}: coordinator store: {}", reg.worker_id(),
                   request->peer.Describe(), written.message());
      ack->set_reason("coordinator store: " + written.message());
    }
    Reply(*request, std::move(reply));
  });
}

void Coordinator::Impl::HandleHeartbeat(const Incoming& in) {
  const v1::Heartbeat& hb = in.message.envelope.heartbeat();
  auto worker = workers->Heartbeat(hb, in.peer, UnixMillis());
  if (!worker.ok()) return ReplyError(in, worker.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  reply.mutable_heartbeat_ack()->set_sequence(hb.sequence());
  reply.mutable_heartbeat_ack()->set_coordinator_time_ms((*worker)->inventory.last_heartbeat_ms);
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleCatchUp(const Incoming& in) {
  const v1::CatchUpRequest& req = in.message.envelope.catch_up_request();
  auto worker = workers->Authorize(req.worker_id(), in.peer);
  if (!worker.ok()) return ReplyError(in, worker.status());
  JobRunner* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("unknown job '" + req.job_id() + "'"));
  // The store reads and a snapshot's load run off the loop; the reply goes when they are done.
  auto request = KeepRequest(in);
  job->CatchUpAsync(req, [this, request](const Result<v1::CatchUpReply>& caught_up) {
    if (!caught_up.ok()) return ReplyError(*request, caught_up.status());
    Envelope reply = transport::NewEnvelope("coordinator");
    *reply.mutable_catch_up_reply() = *caught_up;
    Reply(*request, std::move(reply));
  });
}

void Coordinator::Impl::HandleSecAgg(const Incoming& in) {
  const v1::SecAggRequest& req = in.message.envelope.secagg_request();
  auto worker = workers->Authorize(req.worker_id(), in.peer);
  if (!worker.ok()) {
    // Not (re-)registered yet: the worker's request client retries an Unavailable answer.
    if (worker.status().code() == StatusCode::kNotFound)
      return ReplyError(in, Status::Unavailable(worker.status().message()));
    return ReplyError(in, worker.status());
  }
  JobRunner* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("unknown job '" + req.job_id() + "'"));
  const int64_t now_ms = UnixMillis();
  Envelope reply = transport::NewEnvelope("coordinator");
  *reply.mutable_secagg_reply() = job->OnSecAgg(req, now_ms);
  Reply(in, std::move(reply));
  job->CloseRoundIfComplete(now_ms);  // the last unmask response finishes the session
}

void Coordinator::Impl::HandleIslandStore(const Incoming& in) {
  const v1::IslandStoreRequest& req = in.message.envelope.island_store_request();
  auto worker = workers->Authorize(req.worker_id(), in.peer);
  if (!worker.ok()) {
    if (worker.status().code() == StatusCode::kNotFound)  // not re-registered yet: the member retries
      return ReplyError(in, Status::Unavailable(worker.status().message()));
    return ReplyError(in, worker.status());
  }
  JobRunner* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("unknown job '" + req.job_id() + "'"));
  auto answered = job->OnIslandStore(req);
  if (!answered.ok()) return ReplyError(in, answered.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  *reply.mutable_island_store_reply() = std::move(*answered);
  Reply(in, std::move(reply));
}

void Coordinator::Impl::PublishViewIfChanged() {
  const int64_t now_ms = UnixMillis();
  ServeWorkersView(now_ms);
  uint64_t version = workers->version() + jobs.size();
  for (const auto& [id, job] : jobs) version += job->version();
  if (version == published_version) return;
  // Each registration moves the version, and the view reads every worker's replicas: the next rebuild waits 20
  // times the last one's duration, so a burst of registrations among thousands of workers does not hold the
  // loop (a small coordinator, whose rebuilds take under a millisecond, publishes every change at once).
  if (now_ms - view_ms < 20 * view_build_ms) return;
  const auto started = std::chrono::steady_clock::now();
  published_version = version;
  PublishView();
  view_ms = now_ms;
  view_build_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
}

void Coordinator::Impl::ReportStatus() {
  if (!options.hooks.status || (published_version == status_version && alive_workers == status_alive)) return;
  status_version = published_version;
  status_alive = alive_workers;
  constexpr int kJobsNamed = 3;  // a status line stays one line
  int running = 0;
  std::string rounds;
  for (const auto& [id, job] : jobs) {
    if (!job->running()) continue;
    if (++running > kJobsNamed) continue;
    const v1::JobStatus status = job->Describe();
    rounds += "; job " + id + " round " + std::to_string(status.round()) + "/" + std::to_string(status.total_rounds());
  }
  if (running > kJobsNamed) rounds += "; ...";
  std::string line = (running == 0 ? std::string("no job running")
                                   : std::to_string(running) + (running == 1 ? " job" : " jobs") + " running") +
                     rounds + "; " + std::to_string(alive_workers) + (alive_workers == 1 ? " worker" : " workers") +
                     " alive";
  if (line == status_line) return;
  status_line = line;
  options.hooks.ReportStatus(status_line);
}

void Coordinator::Impl::PublishView() {
  nlohmann::json view = nlohmann::json::array();
  std::map<std::string, nlohmann::json> details;
  JobCounts counts;
  for (const auto& [id, job] : jobs) {
    const v1::GetJobReply detail = job->Detail(workers->ReplicasOf(id));
    // HTTP is not authenticated: a job's submit token (the client's idempotency key) stays off it.
    nlohmann::json summary = JobStatusJson(detail.job());
    summary.erase("submit_token");
    nlohmann::json full = JobDetailJson(detail);
    full["job"].erase("submit_token");
    if (const checkpoint::JobLinksRecord* links = job->links()) full["links"] = JobLinksJson(*links);
    view.push_back(std::move(summary));
    details[id] = std::move(full);
    switch (job->record().state) {
      case checkpoint::JobState::kPending: ++counts.pending; break;
      case checkpoint::JobState::kRunning: ++counts.running; break;
      case checkpoint::JobState::kCompleted: ++counts.completed; break;
      case checkpoint::JobState::kFailed: ++counts.failed; break;
      case checkpoint::JobState::kStopped: ++counts.stopped; break;
    }
  }
  metrics.SetJobCounts(counts);
  std::lock_guard<std::mutex> lock(view_mu);
  jobs_view = std::move(view);
  job_details = std::move(details);
  not_ready.clear();
  if (!store) not_ready.push_back("job store not open");
}

}  // namespace tributary
