#include "worker/link_prober.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace tributary {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kIdlePollMs = 50;
constexpr size_t kMaxQueued = 1024;  // a coordinator cannot make a worker hold unbounded work

// HOST of "tcp://HOST:PORT".
std::string EndpointHost(const std::string& endpoint) {
  const size_t scheme = endpoint.find("://");
  std::string host = endpoint.substr(scheme == std::string::npos ? 0 : scheme + 3);
  return host.substr(0, host.rfind(':'));
}

// An IPv4 address for `host` (itself when it is one); "" when it does not resolve.
std::string ResolveIpv4(const std::string& host) {
  in_addr parsed{};
  if (inet_pton(AF_INET, host.c_str(), &parsed) == 1) return host;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) return "";
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr, text, sizeof(text));
  freeaddrinfo(found);
  return text;
}

}  // namespace

LinkProber::LinkProber(std::string worker_id, std::string island_address, std::string coordinator,
                       const StatusBoard* board)
    : worker_id_(std::move(worker_id)),
      island_address_(std::move(island_address)),
      coordinator_host_(EndpointHost(coordinator)),
      board_(board),
      thread_([this] { Run(); }) {}

LinkProber::~LinkProber() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::optional<v1::ProbeReport> LinkProber::OnAssignment(const v1::ProbeAssignment& assignment) {
  const std::string context = "worker '" + worker_id_ + "': job " + assignment.job_id() + ": link probe campaign " +
                              std::to_string(assignment.campaign());
  spdlog::info("{} ({}): serving {} key(s), running {} probe(s)", context, assignment.reason(), assignment.serve_size(),
               assignment.probes_size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const v1::ProbeTask& task : assignment.probes()) {
      if (queue_.size() >= kMaxQueued) break;
      queue_.push_back({assignment.job_id(), assignment.campaign(), task});
    }
  }
  wake_.notify_all();
  if (assignment.serve_size() == 0) return std::nullopt;
  if (!responder_) {
    ProbeServerOptions options;
    options.address = island_address_;
    options.max_bytes = uint64_t{1} << 32;     // the coordinator bounds each probe (coordinator.probe_bytes)
    options.key.assign(kProbeKeyBytes, '\0');  // never issued: only the coordinator's keys are served
    if (sodium_init() >= 0) randombytes_buf(options.key.data(), options.key.size());
    auto started = ProbeServer::Start(options);
    if (!started.ok()) {
      spdlog::warn("{}: no probe responder: {}", context, started.status().message());
      return std::nullopt;
    }
    responder_ = std::move(*started);
  }
  for (const v1::ProbeKey& key : assignment.serve()) {
    Status added = responder_->AddKey(key.key());
    if (!added.ok()) spdlog::warn("{}: pair {}: {}", context, key.pair_id(), added.message());
  }
  v1::ProbeReport report;
  report.set_job_id(assignment.job_id());
  report.set_campaign(assignment.campaign());
  report.set_worker_id(worker_id_);
  report.set_responder_host(island_address_);
  report.set_responder_port(static_cast<uint32_t>(responder_->port()));
  return report;
}

std::vector<v1::ProbeReport> LinkProber::TakeReports() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::ProbeReport> out;
  out.swap(reports_);
  return out;
}

void LinkProber::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Queued next = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    v1::ProbeReport report;
    report.set_job_id(next.job_id);
    report.set_campaign(next.campaign);
    report.set_worker_id(worker_id_);
    *report.add_results() = Probe(next.task);
    lock.lock();
    reports_.push_back(std::move(report));
  }
}

v1::ProbeOutcome LinkProber::Probe(const v1::ProbeTask& task) {
  v1::ProbeOutcome outcome;
  outcome.set_pair_id(task.pair_id());
  outcome.set_target(task.target());
  const int timeout_ms = static_cast<int>(std::clamp<uint32_t>(task.timeout_ms(), 100, 600000));
  // Between rounds only: a probe inside an island's collective would skew both.
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string state = board_->Snapshot().state;
  while (state != "idle" && Clock::now() < deadline && !stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kIdlePollMs));
    state = board_->Snapshot().state;
  }
  if (state != "idle") {
    outcome.set_error("the worker stayed busy (" + state + ") for " + std::to_string(timeout_ms) + " ms");
    return outcome;
  }
  const std::string host = task.host().empty() ? ResolveIpv4(coordinator_host_) : task.host();
  if (host.empty()) {
    outcome.set_error("cannot resolve the coordinator host '" + coordinator_host_ + "' to an IPv4 address");
    return outcome;
  }
  ProbeOptions options;
  options.key = task.key();
  options.max_bytes = task.max_bytes();
  options.io_timeout_ms = std::max(100, timeout_ms / 2);
  options.target_s = std::min(1.0, timeout_ms / 4000.0);  // leaves the deadline room for warm-up and RTT
  auto measured = ProbeLink(host, static_cast<int>(task.port()), options);
  if (!measured.ok()) {
    outcome.set_error(measured.status().message());
    return outcome;
  }
  outcome.set_mbps(measured->mbps);
  outcome.set_rtt_ms(measured->rtt_ms);
  outcome.set_bytes(measured->bytes);
  spdlog::info("worker '{}': probe {}: {:.1f} Mbit/s, RTT {:.3f} ms, {} bytes", worker_id_, task.pair_id(),
               measured->mbps, measured->rtt_ms, measured->bytes);
  return outcome;
}

}  // namespace tributary
