#include "coordinator/job_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "coordinator/cluster_plan.h"

namespace tributary {
namespace {

nlohmann::json LossJson(double loss) {
  return std::isfinite(loss) ? nlohmann::json(loss) : nlohmann::json();
}

}  // namespace

std::string FormatLoss(double loss) {
  if (!std::isfinite(loss)) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.4f", loss);
  return buffer;
}

v1::PrivacyStatus PrivacyStatusOf(const JobSpec& spec, uint64_t committed_rounds) {
  v1::PrivacyStatus out;
  out.set_mechanism(DpMechanismName(spec.privacy.mechanism));
  out.set_noise_multiplier(spec.privacy.noise_multiplier);
  out.set_epsilon(JobPrivacyGuarantee(spec.privacy, static_cast<int64_t>(committed_rounds)).epsilon);
  out.set_delta(spec.privacy.delta);
  out.set_epsilon_budget(spec.privacy.epsilon_budget);
  out.set_epsilon_at_end(JobPrivacyGuarantee(spec.privacy, spec.rounds).epsilon);
  return out;
}

std::string PrivacyText(const v1::PrivacyStatus& p, uint64_t round, uint64_t total_rounds) {
  char budget[64] = "";
  if (p.epsilon_budget() > 0) std::snprintf(budget, sizeof(budget), "budget %.4g, ", p.epsilon_budget());
  char text[256];
  std::snprintf(text, sizeof(text), "%s: epsilon %.4g at delta %.3g after %llu of %llu rounds (%s%.4g at the end)",
                p.mechanism().c_str(), p.epsilon(), p.delta(), static_cast<unsigned long long>(round),
                static_cast<unsigned long long>(total_rounds), budget, p.epsilon_at_end());
  return text;
}

nlohmann::json PrivacyJson(const v1::JobStatus& job) {
  if (!job.has_privacy()) return nullptr;
  const v1::PrivacyStatus& p = job.privacy();
  return {
      {"mechanism", p.mechanism()}, {"noise_multiplier", p.noise_multiplier()}, {"epsilon", p.epsilon()},
      {"delta", p.delta()},         {"epsilon_budget", p.epsilon_budget()},     {"epsilon_at_end", p.epsilon_at_end()}};
}

nlohmann::json JobStatusJson(const v1::JobStatus& job) {
  return {{"job_id", job.job_id()},
          {"name", job.name()},
          {"state", job.state()},
          {"mode", job.mode()},
          {"round", job.round()},
          {"total_rounds", job.total_rounds()},
          {"participants", job.participants()},
          {"train_loss", LossJson(job.loss())},
          {"heldout_loss", LossJson(job.heldout_loss())},
          {"bytes_up", job.bytes_up()},
          {"bytes_down", job.bytes_down()},
          {"last_round_bytes_up", job.last_round_bytes_up()},
          {"last_round_bytes_down", job.last_round_bytes_down()},
          {"island_bytes", job.island_bytes()},
          {"last_round_island_bytes", job.last_round_island_bytes()},
          {"dense_state_bytes", job.dense_state_bytes()},
          {"created_unix_ms", job.created_unix_ms()},
          {"updated_unix_ms", job.updated_unix_ms()},
          {"error", job.error()},
          {"submit_token", job.submit_token()},
          {"waiting", job.waiting()},
          {"privacy", PrivacyJson(job)},
          {"islands", job.islands()},
          {"island_reforms", job.island_reforms()}};
}

nlohmann::json IslandStatusJson(const v1::IslandStatus& island) {
  nlohmann::json members = nlohmann::json::array();
  for (const std::string& m : island.members()) members.push_back(m);
  return {{"island_id", island.island_id()}, {"incarnation", island.incarnation()}, {"members", std::move(members)},
          {"leader", island.leader()},       {"reported", island.reported()},       {"reforms", island.reforms()},
          {"reason", island.reason()}};
}

std::string IslandStatusText(const v1::IslandStatus& island) {
  std::string members;
  for (const std::string& m : island.members()) members += (members.empty() ? "" : ",") + m;
  return "island " + island.island_id() + "  incarnation " + std::to_string(island.incarnation()) + "  leader " +
         (island.leader().empty() ? "-" : island.leader()) + "  members " + (members.empty() ? "-" : members) +
         "  reported " + (island.reported() ? "yes" : "no") + "  reforms " + std::to_string(island.reforms());
}

nlohmann::json RoundSummaryJson(const v1::RoundSummary& round) {
  nlohmann::json clients = nlohmann::json::array();
  for (const v1::ClientReport& c : round.clients())
    clients.push_back({{"worker_id", c.worker_id()},
                       {"weight", c.weight()},
                       {"anomaly_score", LossJson(c.anomaly_score())},
                       {"clip_scale", c.clip_scale()},
                       {"excluded", c.excluded()}});
  return {{"round", round.round()},
          {"participants", round.participants()},
          {"train_loss", LossJson(round.train_loss())},
          {"heldout_loss", LossJson(round.heldout_loss())},
          {"bytes_up", round.bytes_up()},
          {"bytes_down", round.bytes_down()},
          {"island_bytes", round.island_bytes()},
          {"opened_unix_ms", round.opened_unix_ms()},
          {"committed_unix_ms", round.committed_unix_ms()},
          {"slowest_train_seconds", round.slowest_train_seconds()},
          {"weights_hash", round.weights_hash()},
          {"clients", std::move(clients)}};
}

void AddClientReports(const std::vector<checkpoint::RoundParticipant>& participants, v1::RoundSummary* summary) {
  for (const checkpoint::RoundParticipant& p : participants) {
    v1::ClientReport* c = summary->add_clients();
    c->set_worker_id(p.worker_id);
    c->set_weight(p.weight);
    c->set_anomaly_score(p.anomaly_score);
    c->set_clip_scale(p.clip_scale);
    c->set_excluded(p.excluded);
  }
}

std::string ClientReportsText(const v1::RoundSummary& round) {
  std::string out;
  for (const v1::ClientReport& c : round.clients()) {
    char score[32];
    std::snprintf(score, sizeof(score), std::isfinite(c.anomaly_score()) ? "%.3g" : "-", c.anomaly_score());
    out += (out.empty() ? "" : ", ") + c.worker_id() + " " + score;
    if (c.clip_scale() < 1.0) {
      char clip[32];
      std::snprintf(clip, sizeof(clip), " clipped x%.3g", c.clip_scale());
      out += clip;
    }
    if (c.excluded()) out += " excluded";
  }
  return out;
}

void BoundJobDetail(size_t max_bytes, v1::GetJobReply* reply) {
  size_t bytes = reply->ByteSizeLong();
  int rounds = 0;  // the oldest, left out
  // Each repeated element costs its size, a tag byte and its length's varint (at most 5 bytes here).
  while (bytes > max_bytes && rounds < reply->rounds_size()) bytes -= reply->rounds(rounds++).ByteSizeLong() + 1;
  int replicas = 0;  // the last, left out
  while (bytes > max_bytes && replicas < reply->replicas_size())
    bytes -= reply->replicas(reply->replicas_size() - 1 - replicas++).ByteSizeLong() + 1;
  if (rounds > 0) reply->mutable_rounds()->DeleteSubrange(0, rounds);
  if (replicas > 0) reply->mutable_replicas()->DeleteSubrange(reply->replicas_size() - replicas, replicas);
  reply->set_rounds_omitted(reply->rounds_omitted() + static_cast<uint64_t>(rounds));
  reply->set_replicas_omitted(reply->replicas_omitted() + static_cast<uint64_t>(replicas));
}

nlohmann::json JobDetailJson(const v1::GetJobReply& reply) {
  nlohmann::json rounds = nlohmann::json::array();
  for (const v1::RoundSummary& r : reply.rounds()) rounds.push_back(RoundSummaryJson(r));
  nlohmann::json replicas = nlohmann::json::array();
  for (const v1::ReplicaState& r : reply.replicas()) {
    replicas.push_back({{"worker_id", r.worker_id()},
                        {"job_id", r.job_id()},
                        {"round", r.round()},
                        {"weights_hash", r.weights_hash()}});
  }
  nlohmann::json workers = nlohmann::json::array();
  for (const std::string& w : reply.workers()) workers.push_back(w);
  nlohmann::json islands = nlohmann::json::array();
  for (const v1::IslandStatus& island : reply.islands()) islands.push_back(IslandStatusJson(island));
  nlohmann::json out = {{"job", JobStatusJson(reply.job())},
                        {"workers", workers},
                        {"islands", islands},
                        {"rounds", rounds},
                        {"replicas", replicas},
                        {"spec_yaml", reply.spec_yaml()}};
  if (reply.has_plan()) out["plan"] = ClusterPlanJson(reply.plan());
  if (!reply.plan_error().empty()) out["plan_error"] = reply.plan_error();
  nlohmann::json problems = nlohmann::json::array();
  for (const v1::JobProblem& p : reply.worker_problems())
    problems.push_back({{"worker_id", p.worker_id()},
                        {"round", p.round()},
                        {"reason", p.reason()},
                        {"since_unix_ms", p.since_unix_ms()}});
  out["worker_problems"] = std::move(problems);
  if (reply.rounds_omitted() > 0) out["rounds_omitted"] = reply.rounds_omitted();
  if (reply.replicas_omitted() > 0) out["replicas_omitted"] = reply.replicas_omitted();
  return out;
}

namespace {

nlohmann::json CapabilitiesJson(const v1::Capabilities& caps) {
  nlohmann::json gpus = nlohmann::json::array(), nics = nlohmann::json::array(), datasets = nlohmann::json::array();
  for (const v1::Gpu& g : caps.gpus())
    gpus.push_back(
        {{"name", g.name()}, {"memory_bytes", g.memory_bytes()}, {"compute_capability", g.compute_capability()}});
  for (const v1::Nic& n : caps.nics())
    nics.push_back(
        {{"name", n.name()}, {"kind", n.kind()}, {"speed_mbps", n.speed_mbps()}, {"fabric_id", n.fabric_id()}});
  for (const v1::DatasetInfo& d : caps.datasets()) datasets.push_back({{"name", d.name()}, {"samples", d.samples()}});
  return {{"cpu_cores", caps.cpu_cores()},
          {"memory_bytes", caps.memory_bytes()},
          {"software_version", caps.software_version()},
          {"modes", std::vector<std::string>(caps.modes().begin(), caps.modes().end())},
          {"gpus", std::move(gpus)},
          {"nics", std::move(nics)},
          {"datasets", std::move(datasets)}};
}

}  // namespace

v1::ListWorkersReply ListWorkersOf(const WorkerRegistry& registry, int64_t now_ms) {
  v1::ListWorkersReply reply;
  for (const WorkerEntry* w : registry.All()) {
    v1::WorkerStatus* out = reply.add_workers();
    out->set_worker_id(w->worker_id);
    out->set_hostname(w->hostname);
    out->set_state(w->state);
    out->set_job_id(w->job_id);
    out->set_round(w->round);
    out->set_alive(w->inventory.alive);
    out->set_last_heartbeat_unix_ms(w->inventory.last_heartbeat_ms);
    *out->mutable_capabilities() = w->capabilities;
    for (const auto& [job_id, calibration] : w->calibrations) *out->add_calibrations() = calibration;  // by job id
  }
  reply.set_now_unix_ms(now_ms);
  reply.set_heartbeat_interval_ms(registry.options().heartbeat_interval_ms);
  reply.set_heartbeat_misses(static_cast<uint32_t>(registry.options().heartbeat_misses));
  return reply;
}

// The worker's calibrated compute per job (docs/placement.md, "Compute calibration").
nlohmann::json CalibrationsJson(const v1::WorkerStatus& w) {
  nlohmann::json out = nlohmann::json::array();
  for (const v1::JobCalibration& c : w.calibrations())
    out.push_back(
        {{"job_id", c.job_id()}, {"tokens_per_s", c.tokens_per_s()}, {"measured_unix_ms", c.measured_unix_ms()}});
  return out;
}

nlohmann::json WorkerStatusJson(const v1::WorkerStatus& w, int64_t now_ms, int64_t heartbeat_interval_ms) {
  const int64_t last = w.last_heartbeat_unix_ms();
  // A heartbeat counts as missed once it is half an interval overdue, so scheduling jitter is not "late".
  const int64_t interval = std::max<int64_t>(1, heartbeat_interval_ms);
  const int64_t missed = std::max<int64_t>(0, (now_ms - last + interval / 2) / interval - 1);
  const char* liveness = !w.alive() ? "dead" : missed >= 1 ? "late" : "alive";
  return {{"worker_id", w.worker_id()},
          {"hostname", w.hostname()},
          {"state", w.state()},  // as last reported; liveness says whether it is current
          {"job_id", w.job_id().empty() ? nlohmann::json() : nlohmann::json(w.job_id())},
          {"round", w.round()},
          {"liveness", liveness},
          {"missed_heartbeats", missed},
          {"last_seen_unix_ms", last},
          {"capabilities", CapabilitiesJson(w.capabilities())},
          {"calibrations", CalibrationsJson(w)}};
}

nlohmann::json WorkersViewJson(const v1::ListWorkersReply& reply) {
  nlohmann::json workers = nlohmann::json::array();
  for (const v1::WorkerStatus& w : reply.workers())
    workers.push_back(WorkerStatusJson(w, reply.now_unix_ms(), reply.heartbeat_interval_ms()));
  return {{"now_unix_ms", reply.now_unix_ms()},
          {"heartbeat_interval_ms", reply.heartbeat_interval_ms()},
          {"heartbeat_misses", reply.heartbeat_misses()},
          {"workers", std::move(workers)}};
}

nlohmann::json WorkersViewJson(const WorkerRegistry& registry, int64_t now_ms) {
  return WorkersViewJson(ListWorkersOf(registry, now_ms));
}

nlohmann::json JobLinksJson(const checkpoint::JobLinksRecord& links) {
  nlohmann::json pairs = nlohmann::json::array(), uplinks = nlohmann::json::array();
  for (const checkpoint::LinkRecord& l : links.pairs)
    pairs.push_back(
        {{"a", l.a}, {"b", l.b}, {"mbps", l.mbps}, {"rtt_ms", l.rtt_ms}, {"measured_unix_ms", l.measured_unix_ms}});
  for (const checkpoint::LinkRecord& l : links.uplinks)
    uplinks.push_back(
        {{"worker", l.a}, {"mbps", l.mbps}, {"rtt_ms", l.rtt_ms}, {"measured_unix_ms", l.measured_unix_ms}});
  return {{"campaign", links.campaign}, {"reason", links.reason}, {"updated_unix_ms", links.updated_unix_ms},
          {"members", links.members},   {"pairs", pairs},         {"uplinks", uplinks}};
}

}  // namespace tributary
