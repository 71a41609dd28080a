// The coordinator daemon's socket loop, worker registry and HTTP view (see coordinator.h).
#include "coordinator/coordinator.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <random>

#include "coordinator/coordinator_internal.h"

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
constexpr int64_t kBulkObjectLifetimeMs = 10 * 60 * 1000;

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

WorkerInventory InventoryFromCapabilities(const std::string& worker_id, const v1::Capabilities& caps) {
  WorkerInventory inv;
  inv.worker_id = worker_id;
  inv.cores = static_cast<int>(caps.cpu_cores());
  inv.memory_bytes = static_cast<int64_t>(caps.memory_bytes());
  inv.gpu_count = caps.gpus_size();
  for (const v1::Gpu& gpu : caps.gpus()) {
    const auto bytes = static_cast<int64_t>(gpu.memory_bytes());
    if (inv.gpu_memory_bytes == 0 || bytes < inv.gpu_memory_bytes) inv.gpu_memory_bytes = bytes;
  }
  for (const v1::Nic& nic : caps.nics()) {
    // Unknown fabrics and links of unknown speed (down, virtual) do not count for placement.
    auto fabric = ParseNicFabric(nic.kind());
    if (!fabric.ok()) continue;
    NicInfo info{nic.name(), *fabric, static_cast<int64_t>(std::min<uint64_t>(nic.speed_mbps(), INT64_MAX)), true,
                 nic.fabric_id()};
    if (IsPlaceable(info)) inv.nics.push_back(std::move(info));
  }
  for (const v1::DatasetInfo& d : caps.datasets()) inv.datasets[d.name()] = static_cast<int64_t>(d.samples());
  return inv;
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
  auto store = checkpoint::CheckpointStore::Open((fs::path(options.data_dir) / "store").string(), store_options);
  if (!store.ok()) return store.status().WithContext("coordinator.data_dir");
  impl->store = std::move(*store);

  transport::ServerOptions server_options;
  server_options.name = "coordinator";
  server_options.insecure = options.insecure;
  server_options.keys = options.keys;
  server_options.allow_list = options.allow_list;
  auto server = transport::Server::Bind(options.listen, server_options);
  if (!server.ok()) return server.status().WithContext("coordinator.listen");
  impl->server = std::move(*server);

  TRIB_RETURN_IF_ERROR(impl->LoadJobs());
  impl->PublishView();

  if (!options.http_listen.empty()) {
    std::string http_host;
    int http_port = 0;
    TRIB_RETURN_IF_ERROR(ParseHostPort(options.http_listen, &http_host, &http_port));
    Impl* raw = impl.get();
    HttpCallbacks callbacks;
    callbacks.not_ready = [raw] {
      std::lock_guard<std::mutex> lock(raw->view_mu);
      return raw->not_ready;
    };
    callbacks.metrics_text = [raw] { return raw->metrics.RenderText(); };
    callbacks.list_jobs = [raw]() -> Result<nlohmann::json> {
      std::lock_guard<std::mutex> lock(raw->view_mu);
      return raw->jobs_view;
    };
    callbacks.get_job = [raw](const std::string& job_id) -> Result<nlohmann::json> {
      std::lock_guard<std::mutex> lock(raw->view_mu);
      for (const auto& job : raw->jobs_view) {
        if (job.value("job_id", "") == job_id) return job;
      }
      return Status::NotFound("job '" + job_id + "' not found");
    };
    impl->http = std::make_unique<HttpServer>(std::move(callbacks));
    TRIB_RETURN_IF_ERROR(impl->http->Start(http_host, http_port).WithContext("coordinator.http_listen"));
  }
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
    const int64_t now_ms = UnixMillis();
    if (now_ms - last_tick_ms >= kPollMs) {
      last_tick_ms = now_ms;
      s.MarkDeadWorkers(now_ms);
      s.TickJobs(now_ms);
      s.ExpireBulkObjects(now_ms);
      s.TickPulls(now_ms);
    }
  }
  spdlog::info("coordinator {}: stopping", s.coordinator_id);
  if (s.http) s.http->Stop();
  return Status::OK();
}

void Coordinator::Impl::Handle(Incoming& in) {
  switch (in.message.envelope.body_case()) {
    case Envelope::kRegisterWorker: return HandleRegister(in);
    case Envelope::kHeartbeat: return HandleHeartbeat(in);
    case Envelope::kUploadUpdate: return HandleUpload(in);
    case Envelope::kCatchUpRequest: return HandleCatchUp(in);
    case Envelope::kBulkRequest: {
      Status served = bulk.Serve(*server, in);
      if (!served.ok()) spdlog::warn("coordinator: bulk request from {}: {}", in.peer.Describe(), served.ToString());
      return;
    }
    case Envelope::kBulkChunkHeader: return HandleBulkChunk(in);
    case Envelope::kSubmitJob: return HandleSubmit(in);
    case Envelope::kListJobs: return HandleListJobs(in);
    case Envelope::kGetJob: return HandleGetJob(in);
    case Envelope::kStopJob: return HandleStopJob(in);
    case Envelope::kFetchLogs: return HandleFetchLogs(in);
    case Envelope::kExportModel: return HandleExport(in);
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
  if (!sent.ok()) spdlog::warn("coordinator: reply to {}: {}", request.peer.Describe(), sent.ToString());
}

void Coordinator::Impl::ReplyError(const Incoming& request, const Status& status) {
  Reply(request, transport::ErrorEnvelope("coordinator", request.message.envelope.message_id(), status));
}

void Coordinator::Impl::HandleRegister(const Incoming& in) {
  const v1::Register& reg = in.message.envelope.register_worker();
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::RegisterAck* ack = reply.mutable_register_ack();
  ack->set_coordinator_id(coordinator_id);
  ack->set_heartbeat_interval_ms(static_cast<uint32_t>(options.heartbeat_interval_ms));
  ack->set_heartbeat_miss_limit(static_cast<uint32_t>(options.heartbeat_misses));
  auto refuse = [&](const std::string& reason) {
    spdlog::warn("coordinator: registration refused from {}: {}", in.peer.Describe(), reason);
    ack->set_accepted(false);
    ack->set_reason(reason);
    Reply(in, std::move(reply));
  };
  const std::string& id = reg.worker_id();
  if (id.empty() || id.size() > checkpoint::kMaxIdBytes || id.find('\0') != std::string::npos)
    return refuse("worker_id must be 1.." + std::to_string(checkpoint::kMaxIdBytes) + " bytes without NUL");
  // A worker id belongs to the key that first registered it (unless the coordinator is insecure).
  if (!options.insecure) {
    auto stored = store->GetWorker(id);
    if (stored.ok() && !stored->public_key.empty() && stored->public_key != in.peer.public_key)
      return refuse("worker id '" + id + "' is registered with another key");
  }
  WorkerInventory inventory = InventoryFromCapabilities(id, reg.capabilities());
  Status valid = ValidateInventory(inventory);
  if (!valid.ok()) return refuse(valid.message());

  checkpoint::WorkerRecord record;
  record.worker_id = id;
  record.public_key = in.peer.public_key;
  record.capabilities = reg.capabilities().SerializeAsString();
  record.last_seen_unix_ms = UnixMillis();
  Status put = store->PutWorker(record);
  if (!put.ok()) return refuse("coordinator store: " + put.message());

  WorkerEntry& worker = workers[id];
  const bool known = !worker.worker_id.empty();
  worker.worker_id = id;
  worker.routing_id = in.peer.routing_id;
  worker.public_key = in.peer.public_key;
  worker.hostname = reg.hostname();
  worker.peer = in.peer.Describe();
  inventory.alive = true;
  inventory.last_heartbeat_ms = record.last_seen_unix_ms;
  worker.inventory = inventory;
  worker.declared_dead = false;
  std::string datasets;
  for (const auto& [name, samples] : inventory.datasets)
    datasets += (datasets.empty() ? "" : ", ") + name + "=" + std::to_string(samples);
  spdlog::info("coordinator: worker '{}' {} from {} ({} cores, {:.1f} GiB, datasets: {})", id,
               known ? "re-registered" : "registered", in.peer.Describe(), inventory.cores,
               static_cast<double>(inventory.memory_bytes) / (1 << 30), datasets.empty() ? "none" : datasets);
  ack->set_accepted(true);
  Reply(in, std::move(reply));
  PublishView();
}

Result<WorkerEntry*> Coordinator::Impl::AuthorizedWorker(const std::string& worker_id,
                                                         const transport::PeerInfo& peer) {
  auto it = workers.find(worker_id);
  if (it == workers.end()) return Status::NotFound("worker '" + worker_id + "' is not registered");
  if (!options.insecure && it->second.public_key != peer.public_key)
    return Status::PermissionDenied("worker '" + worker_id + "' is registered with another key than " +
                                    peer.Describe());
  return &it->second;
}

void Coordinator::Impl::HandleHeartbeat(const Incoming& in) {
  const v1::Heartbeat& hb = in.message.envelope.heartbeat();
  auto worker = AuthorizedWorker(hb.worker_id(), in.peer);
  if (!worker.ok()) return ReplyError(in, worker.status());
  WorkerEntry& w = **worker;
  if (w.declared_dead) spdlog::info("coordinator: worker '{}' is alive again", w.worker_id);
  w.declared_dead = false;
  w.inventory.alive = true;
  w.inventory.last_heartbeat_ms = UnixMillis();
  w.routing_id = in.peer.routing_id;
  w.state = hb.state();
  w.replicas.assign(hb.replicas().begin(), hb.replicas().end());
  Envelope reply = transport::NewEnvelope("coordinator");
  reply.mutable_heartbeat_ack()->set_sequence(hb.sequence());
  reply.mutable_heartbeat_ack()->set_coordinator_time_ms(w.inventory.last_heartbeat_ms);
  Reply(in, std::move(reply));
}

void Coordinator::Impl::MarkDeadWorkers(int64_t now_ms) {
  const int64_t timeout = options.heartbeat_interval_ms * options.heartbeat_misses;
  int64_t alive = 0;
  for (auto& [id, w] : workers) {
    if (w.inventory.alive && now_ms - w.inventory.last_heartbeat_ms > timeout) {
      w.inventory.alive = false;
      w.declared_dead = true;
      spdlog::warn("coordinator: worker '{}' declared dead: no heartbeat for {} ms ({} missed)", id,
                   now_ms - w.inventory.last_heartbeat_ms, options.heartbeat_misses);
    }
    if (w.inventory.alive) ++alive;
  }
  metrics.SetWorkersAlive(alive);
}

std::vector<WorkerInventory> Coordinator::Impl::AliveInventory() const {
  std::vector<WorkerInventory> out;
  for (const auto& [id, w] : workers) {
    if (w.inventory.alive) out.push_back(w.inventory);
  }
  return out;
}

void Coordinator::Impl::ExpireBulkObjects(int64_t now_ms) {
  for (auto it = bulk_expiry_ms.begin(); it != bulk_expiry_ms.end();) {
    if (it->second <= now_ms) {
      bulk.RemoveObject(it->first);
      it = bulk_expiry_ms.erase(it);
    } else {
      ++it;
    }
  }
}

void Coordinator::Impl::PublishView() {
  nlohmann::json view = nlohmann::json::array();
  JobCounts counts;
  for (const auto& [id, job] : jobs) {
    const v1::JobStatus st = StatusOf(*job);
    view.push_back(
        {{"job_id", st.job_id()},
         {"name", st.name()},
         {"mode", st.mode()},
         {"state", st.state()},
         {"round", st.round()},
         {"total_rounds", st.total_rounds()},
         {"participants", st.participants()},
         {"train_loss", st.loss()},
         {"heldout_loss", std::isnan(st.heldout_loss()) ? nlohmann::json() : nlohmann::json(st.heldout_loss())},
         {"bytes_up", st.bytes_up()},
         {"bytes_down", st.bytes_down()},
         {"created_unix_ms", st.created_unix_ms()},
         {"updated_unix_ms", st.updated_unix_ms()},
         {"error", st.error()}});
    switch (job->record.state) {
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
  not_ready.clear();
  if (!store) not_ready.push_back("job store not open");
}

}  // namespace tributary
