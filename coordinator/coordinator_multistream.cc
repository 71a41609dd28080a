// Multistream offers of served objects (docs/multistream.md, "In the daemons"): a worker about to fetch a large
// aggregate or snapshot asks for it over parallel TCP streams; the coordinator picks the stream count (it holds
// the job's measured links), listens on a port of coordinator.multistream_ports and sends the object's bytes
// from memory. Every refusal is an Error the worker answers by pulling the object on the bulk path.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "coordinator/coordinator_internal.h"

namespace tributary {

using transport::Envelope;
using transport::Incoming;

namespace {

// Streams when the worker's uplink was not measured (not a cluster job, or no campaign yet): enough for a
// moderate bandwidth-delay product; extra streams on a short path cost a few sockets, not throughput.
constexpr int kUnmeasuredStreams = 4;

// The host workers reach the coordinator on, from "tcp://HOST:PORT" ("*": every interface).
std::string ListenHost(const std::string& listen) {
  const size_t scheme = listen.find("://");
  std::string host = listen.substr(scheme == std::string::npos ? 0 : scheme + 3);
  host = host.substr(0, host.rfind(':'));
  return host == "*" || host.empty() ? "0.0.0.0" : host;
}

}  // namespace

Status Coordinator::Impl::StartMultistream() {
  if (options.multistream_min_bytes == 0) {
    spdlog::info("coordinator: multistream transfers off (coordinator.multistream_min_bytes = 0)");
    return Status::OK();
  }
  if (options.multistream_streams < 0 || options.multistream_streams > transport::kMaxMultistreamStreams)
    return Status::InvalidArgument("coordinator.multistream_streams: must be 0..16, got " +
                                   std::to_string(options.multistream_streams));
  if (options.multistream_max_transfers < 1 || options.multistream_max_transfers > 1024)
    return Status::InvalidArgument("coordinator.multistream_max_transfers: must be 1..1024, got " +
                                   std::to_string(options.multistream_max_transfers));
  if (options.multistream_window_bytes < 4096)
    return Status::InvalidArgument("coordinator.multistream_window_bytes: must be at least 4096, got " +
                                   std::to_string(options.multistream_window_bytes));
  transport::MultistreamServeOptions serve;
  serve.name = "coordinator multistream";
  serve.host = ListenHost(options.listen);
  serve.max_transfers = options.multistream_max_transfers;
  TRIB_RETURN_IF_ERROR(transport::ParsePortRange(options.multistream_ports, "coordinator.multistream_ports", &serve));
  CoordinatorMetrics* m = &metrics;
  multistream = std::make_unique<transport::MultistreamServer>(serve, [m](const transport::MultistreamServeReport& r) {
    const std::string what = "transfer " + std::to_string(r.transfer_id) + " of '" + r.object_id + "' to " + r.peer;
    if (r.status.ok()) {
      const double mbps = r.stats.seconds > 0 ? r.stats.payload_bytes * 8e-6 / r.stats.seconds : 0;
      spdlog::info("coordinator: multistream {}: {} bytes over {} streams in {:.3f} s ({:.1f} Mbit/s, {} resent)", what,
                   r.stats.payload_bytes, r.streams, r.stats.seconds, mbps, r.stats.chunks_resent);
      m->OnMultistream("sent", r.streams, r.stats.payload_bytes);
    } else {
      spdlog::warn("coordinator: multistream {}: {}", what, r.status.message());
      m->OnMultistream(r.claimed ? "failed" : "unclaimed", r.streams, 0);
    }
  });
  spdlog::info("coordinator: multistream transfers of objects of {}+ bytes, listening on {} port {}",
               options.multistream_min_bytes, serve.host,
               options.multistream_ports.empty() ? std::string("any") : options.multistream_ports);
  return Status::OK();
}

void Coordinator::Impl::HandleMultistreamRequest(const Incoming& in) {
  const v1::MultistreamRequest& req = in.message.envelope.multistream_request();
  if (!multistream)
    return ReplyError(in, Status::FailedPrecondition("multistream transfers are off on this coordinator "
                                                     "(coordinator.multistream_min_bytes = 0)"));
  auto worker = workers->Authorize(req.worker_id(), in.peer);
  if (!worker.ok()) return ReplyError(in, worker.status());
  std::shared_ptr<const std::string> bytes = bulk.BytesOf(req.object_id());
  if (!bytes) return ReplyError(in, Status::NotFound("no served in-memory object '" + req.object_id() + "'"));
  if (bytes->size() < options.multistream_min_bytes)
    return ReplyError(
        in, Status::FailedPrecondition("object '" + req.object_id() + "' has " + std::to_string(bytes->size()) +
                                       " bytes, below coordinator.multistream_min_bytes"));
  // The coordinator decides N: it holds the job's measured uplink of the worker (a worker knows at most its own
  // probe), and it is the side that binds the ports.
  int streams = kUnmeasuredStreams;
  std::string reason = "no measured uplink: default " + std::to_string(kUnmeasuredStreams);
  if (options.multistream_streams > 0) {
    streams = options.multistream_streams;
    reason = "coordinator.multistream_streams";
  } else if (JobRunner* job = FindJob(req.job_id()); job != nullptr && job->links() != nullptr) {
    for (const checkpoint::LinkRecord& up : job->links()->uplinks) {
      if (up.a != req.worker_id()) continue;
      streams = transport::StreamsForPath(up.mbps * 1e6, up.rtt_ms / 1000.0, options.multistream_window_bytes);
      reason = fmt::format("measured uplink {:.1f} Mbit/s, {:.1f} ms RTT, {} B window", up.mbps, up.rtt_ms,
                           options.multistream_window_bytes);
    }
  }
  if (req.max_streams() > 0) streams = std::min(streams, static_cast<int>(req.max_streams()));
  auto offer = multistream->Offer(req.object_id(), bytes, bulk.ChecksumOf(req.object_id()), streams,
                                  "worker '" + req.worker_id() + "'");
  if (!offer.ok()) return ReplyError(in, offer.status());
  offer->set_reason(reason);
  spdlog::info("coordinator: multistream transfer {} of '{}' ({} bytes) to worker '{}': {} streams on port {} ({})",
               offer->transfer_id(), req.object_id(), bytes->size(), req.worker_id(), offer->streams(), offer->port(),
               reason);
  Envelope reply = transport::NewEnvelope("coordinator");
  *reply.mutable_multistream_offer() = std::move(*offer);
  Reply(in, std::move(reply));
}

}  // namespace tributary
