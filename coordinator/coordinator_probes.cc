// The coordinator's side of link probes that is not one job's (docs/placement.md, "Measured links"):
// the responder that workers' uplink probes target, and the dispatch of ProbeReports to their job.
#include <sodium.h>
#include <spdlog/spdlog.h>

#include "coordinator/coordinator_internal.h"

namespace tributary {

using transport::Envelope;
using transport::Incoming;

void Coordinator::Impl::StartProbeServer() {
  // "tcp://HOST:PORT": the probe port listens where workers already reach the coordinator.
  std::string host =
      options.listen.substr(options.listen.find("://") == std::string::npos ? 0 : options.listen.find("://") + 3);
  host = host.substr(0, host.rfind(':'));
  if (host == "*" || host.empty()) host = "0.0.0.0";
  ProbeServerOptions probe_options;
  probe_options.address = host;
  probe_options.port = options.probe_port;
  probe_options.max_bytes = options.probe_bytes;
  probe_options.io_timeout_ms = static_cast<int>(options.probe_timeout_ms);
  probe_options.key.assign(kProbeKeyBytes, '\0');  // never issued: every probe uses a key a job adds
  if (sodium_init() >= 0) randombytes_buf(probe_options.key.data(), probe_options.key.size());
  auto server = ProbeServer::Start(probe_options);
  if (!server.ok()) {
    spdlog::warn("coordinator: no uplink probes: {}", server.status().message());
    return;
  }
  probe_server = std::move(*server);
  spdlog::info("coordinator: link probe responder on {}:{}", host, probe_server->port());
}

void Coordinator::Impl::HandleProbeReport(const Incoming& in) {
  const v1::ProbeReport& report = in.message.envelope.probe_report();
  auto worker = workers->Authorize(report.worker_id(), in.peer);
  if (!worker.ok()) return ReplyError(in, worker.status());
  JobRunner* job = FindJob(report.job_id());
  if (job == nullptr)
    return ReplyError(in, Status::NotFound("probe report of worker '" + report.worker_id() + "' for unknown job '" +
                                           report.job_id() + "'"));
  Envelope reply = transport::NewEnvelope("coordinator");
  *reply.mutable_probe_assignment() = job->OnProbeReport(report, UnixMillis());
  if (!reply.probe_assignment().report_accepted())
    spdlog::warn("job {}: {}", report.job_id(), reply.probe_assignment().report_error());
  Reply(in, std::move(reply));
}

}  // namespace tributary
