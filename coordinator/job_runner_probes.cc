// Cluster mode's link probes (docs/placement.md, "Measured links"): before a round opens, the runner
// decides whether the job's link matrix needs measuring (DecideProbes: job start, membership change,
// drift), asks the target workers to serve fresh per-pair keys, sends each probe to its sending worker
// when neither end is busy, takes the reports, and stores the merged matrix with the job before any
// round plans with it. No round is open meanwhile, so no probe runs inside an island's collective.
#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "coordinator/job_runner.h"
#include "coordinator/job_view.h"

namespace tributary {
namespace {

using transport::Envelope;
using State = ProbeCampaign::State;

std::string RandomKey() {
  std::string key(kProbeKeyBytes, '\0');
  randombytes_buf(key.data(), key.size());
  return key;
}

std::string Fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

ProbeCampaign::Probe* FindProbe(ProbeCampaign& campaign, const std::string& pair_id) {
  for (ProbeCampaign::Probe& p : campaign.probes)
    if (p.pair.id() == pair_id) return &p;
  return nullptr;
}

}  // namespace

std::vector<WorkerInventory> JobRunner::EligibleInventory() const {
  JobRequirements requirements;
  requirements.dataset = spec_.dataset;
  if (model_) requirements.min_memory_bytes = model_->MinWorkerMemoryBytes();
  const std::vector<WorkerInventory> alive = services_.workers->AliveInventory();
  const Eligibility eligibility = FilterWorkers(alive, requirements);
  std::vector<WorkerInventory> eligible;
  for (const WorkerInventory& w : alive)
    if (std::binary_search(eligibility.eligible.begin(), eligibility.eligible.end(), w.worker_id))
      eligible.push_back(w);
  return eligible;
}

void JobRunner::LoadLinks() {
  if (spec_.mode != "cluster") return;
  auto stored = services_.store->GetJobLinks(job_id_);
  if (stored.ok()) {
    links_ = std::move(*stored);
    ApplyLinks();
    Log("links: loaded the stored matrix of campaign " + std::to_string(links_->campaign) + " (" +
        std::to_string(links_->pairs.size()) + " pair(s), " + std::to_string(links_->uplinks.size()) + " uplink(s))");
  } else if (!stored.status().IsNotFound()) {
    Log("links: " + stored.status().message() + "; measuring again", /*warn=*/true);
  }
}

void JobRunner::ApplyLinks() {
  if (!driver_ || !links_) return;
  PlanMeasurements measured = driver_->measurements();  // tokens_per_s is filled elsewhere: keep it
  measured.links = ToLinkMatrix(*links_);
  driver_->SetMeasurements(std::move(measured));
}

bool JobRunner::TickProbes(int64_t now_ms) {
  if (spec_.mode != "cluster") return true;
  if (!campaign_) {
    const std::vector<WorkerInventory> eligible = EligibleInventory();
    ProbeDecision decision = DecideProbes(links(), spec_, eligible, drifted_);
    if (decision.trigger == ProbeTrigger::kNone) return true;
    std::vector<std::string> members;
    for (const WorkerInventory& w : eligible) members.push_back(w.worker_id);
    StartProbeCampaign(std::move(decision), std::move(members), now_ms);
  }
  if (!AdvanceProbeCampaign(now_ms)) return false;
  FinishProbeCampaign(now_ms);
  return true;
}

void JobRunner::StartProbeCampaign(ProbeDecision decision, std::vector<std::string> members, int64_t now_ms) {
  campaign_ = std::make_unique<ProbeCampaign>();
  ProbeCampaign& c = *campaign_;
  c.id = (links_ ? links_->campaign : 0) + 1;
  c.members = std::move(members);
  c.started_ms = now_ms;
  c.decision = std::move(decision);
  Log("links: campaign " + std::to_string(c.id) + " probes (" + c.decision.reason + ")");
  std::map<std::string, v1::ProbeAssignment> serve;  // target worker -> its keys
  for (const ProbePair& pair : c.decision.probes) {
    c.probes.push_back({pair, RandomKey()});
    ProbeCampaign::Probe& probe = c.probes.back();
    if (pair.to.empty()) {
      if (services_.probe_server == nullptr) {
        FailProbe(probe, "the coordinator runs no probe responder", now_ms);
      } else if (Status added = services_.probe_server->AddKey(probe.key); !added.ok()) {
        FailProbe(probe, added.message(), now_ms);
      }
      continue;
    }
    v1::ProbeKey* key = serve[pair.to].add_serve();
    key->set_pair_id(pair.id());
    key->set_key(probe.key);
    c.responders[pair.to];
  }
  for (auto& [target, assignment] : serve) {
    assignment.set_job_id(job_id_);
    assignment.set_campaign(c.id);
    assignment.set_reason(c.decision.reason);
    const WorkerEntry* worker = services_.workers->Find(target);
    Envelope env = transport::NewEnvelope("coordinator");
    *env.mutable_probe_assignment() = std::move(assignment);
    Status sent =
        worker == nullptr ? Status::NotFound("not registered") : services_.server->Send(worker->routing_id, env);
    if (!sent.ok()) Log("links: asking worker '" + target + "' to serve probes: " + sent.message(), /*warn=*/true);
  }
}

bool JobRunner::AdvanceProbeCampaign(int64_t now_ms) {
  ProbeCampaign& c = *campaign_;
  const int64_t timeout = services_.options->probe_timeout_ms;
  std::set<std::string> busy, alive;
  for (const WorkerInventory& w : services_.workers->AliveInventory()) alive.insert(w.worker_id);
  std::vector<ProbePair> ready;
  for (ProbeCampaign::Probe& p : c.probes) {
    for (const std::string& end : {p.pair.from, p.pair.to}) {  // a lost worker's probes fail now, not at the deadline
      if (p.state != State::kDone && !end.empty() && alive.count(end) == 0)
        FailProbe(p, "worker '" + end + "' is no longer alive", now_ms);
    }
    if (p.state == State::kRunning && now_ms - p.started_ms > 2 * timeout)
      FailProbe(p, "no report from worker '" + p.pair.from + "' within " + std::to_string(2 * timeout) + " ms", now_ms);
    if (p.state == State::kWaiting && !p.pair.to.empty() && c.responders[p.pair.to].port == 0 &&
        now_ms - c.started_ms > timeout)
      FailProbe(
          p, "worker '" + p.pair.to + "' did not start its probe responder within " + std::to_string(timeout) + " ms",
          now_ms);
    if (p.state == State::kRunning) busy.insert({p.pair.from, p.pair.to});
    if (p.state == State::kWaiting && (p.pair.to.empty() || c.responders[p.pair.to].port != 0)) ready.push_back(p.pair);
  }
  for (const ProbePair& pair : NextProbes(ready, busy)) {
    ProbeCampaign::Probe& p = *FindProbe(c, pair.id());
    Envelope env = transport::NewEnvelope("coordinator");
    v1::ProbeAssignment* a = env.mutable_probe_assignment();
    a->set_job_id(job_id_);
    a->set_campaign(c.id);
    a->set_reason(c.decision.reason);
    v1::ProbeTask* task = a->add_probes();
    task->set_pair_id(pair.id());
    task->set_target(pair.to);
    if (!pair.to.empty()) task->set_host(c.responders[pair.to].host);
    task->set_port(pair.to.empty() ? static_cast<uint32_t>(services_.probe_server->port())
                                   : c.responders[pair.to].port);
    task->set_key(p.key);
    task->set_max_bytes(services_.options->probe_bytes);
    task->set_timeout_ms(static_cast<uint32_t>(timeout));
    const WorkerEntry* worker = services_.workers->Find(pair.from);
    Status sent = worker == nullptr ? Status::NotFound("worker '" + pair.from + "' is not registered")
                                    : services_.server->Send(worker->routing_id, env);
    if (!sent.ok()) {
      FailProbe(p, sent.message(), now_ms);
      continue;
    }
    p.state = State::kRunning;
    p.started_ms = now_ms;
  }
  return std::all_of(c.probes.begin(), c.probes.end(), [](const auto& p) { return p.state == State::kDone; });
}

void JobRunner::FailProbe(ProbeCampaign::Probe& probe, const std::string& error, int64_t now_ms) {
  probe.state = State::kDone;
  campaign_->outcomes.push_back({probe.pair, false, {}, now_ms, error});
  Log("links: campaign " + std::to_string(campaign_->id) + ": probe " + probe.pair.id() + " failed: " + error,
      /*warn=*/true);
}

void JobRunner::FinishProbeCampaign(int64_t now_ms) {
  ProbeCampaign& c = *campaign_;
  size_t pairs_ok = 0, pairs = 0, uplinks_ok = 0, uplinks = 0;
  for (const MeasuredProbe& o : c.outcomes) {
    (o.pair.to.empty() ? uplinks : pairs) += 1;
    (o.pair.to.empty() ? uplinks_ok : pairs_ok) += o.ok ? 1 : 0;
    if (o.ok && o.pair.to.empty()) drift_.Reset(o.pair.from);
    if (o.pair.to.empty()) drifted_.erase(o.pair.from);  // re-probed (or tried): drift starts over
  }
  checkpoint::JobLinksRecord merged =
      MergeProbeOutcomes(links(), job_id_, c.members, c.outcomes, c.id, c.decision.reason, now_ms);
  Status stored = services_.store->PutJobLinks(merged);
  std::string line = "links: campaign " + std::to_string(c.id) + " done in " +
                     Fixed(static_cast<double>(now_ms - c.started_ms) / 1000.0, 1) + " s: " + std::to_string(pairs_ok) +
                     " of " + std::to_string(pairs) + " pair(s), " + std::to_string(uplinks_ok) + " of " +
                     std::to_string(uplinks) + " uplink(s) measured; the matrix holds " +
                     std::to_string(merged.pairs.size()) + " pair(s) and " + std::to_string(merged.uplinks.size()) +
                     " uplink(s)";
  if (!stored.ok()) {
    Log(line + "; NOT stored: " + stored.message(), /*warn=*/true);
  } else {
    Log(line + ", stored with the job");
  }
  links_ = std::move(merged);  // planned with even when the store failed; measured again after a restart
  ApplyLinks();
  campaign_.reset();
  ++version_;
}

v1::ProbeAssignment JobRunner::OnProbeReport(const v1::ProbeReport& report, int64_t now_ms) {
  v1::ProbeAssignment answer;
  answer.set_job_id(job_id_);
  answer.set_campaign(report.campaign());
  const std::string who = "worker '" + report.worker_id() + "'";
  auto refuse = [&answer](const std::string& error) {
    answer.set_report_error(error);
    return answer;
  };
  if (!campaign_ || campaign_->id != report.campaign())
    return refuse(who + ": probe report for campaign " + std::to_string(report.campaign()) + " of job '" + job_id_ +
                  "', which is not running" +
                  (campaign_ ? " (running: " + std::to_string(campaign_->id) + ")" : std::string(" (none is)")));
  ProbeCampaign& c = *campaign_;
  if (report.responder_port() > 0) {
    auto it = c.responders.find(report.worker_id());
    in_addr parsed{};
    if (it == c.responders.end()) return refuse(who + " is no probe target of campaign " + std::to_string(c.id));
    if (report.responder_port() > 65535 || inet_pton(AF_INET, report.responder_host().c_str(), &parsed) != 1)
      return refuse(who + ": probe responder address '" + report.responder_host() + ":" +
                    std::to_string(report.responder_port()) + "' is not an IPv4 address and port");
    it->second = {report.responder_host(), report.responder_port()};
  }
  for (const v1::ProbeOutcome& r : report.results()) {  // check all before taking any
    ProbeCampaign::Probe* p = FindProbe(c, r.pair_id());
    if (p == nullptr || p->pair.from != report.worker_id() || p->state != State::kRunning)
      return refuse(who + ": unknown probe pair '" + r.pair_id() + "' in campaign " + std::to_string(c.id));
  }
  for (const v1::ProbeOutcome& r : report.results()) {
    ProbeCampaign::Probe& p = *FindProbe(c, r.pair_id());
    if (!r.error().empty()) {
      FailProbe(p, who + ": " + r.error(), now_ms);
      continue;
    }
    Status plausible = CheckProbeNumbers(report.worker_id(), r.pair_id(), r.mbps(), r.rtt_ms(), r.bytes(),
                                         services_.options->probe_bytes);
    if (!plausible.ok()) {
      FailProbe(p, plausible.message(), now_ms);
      return refuse(plausible.message());
    }
    p.state = State::kDone;
    c.outcomes.push_back({p.pair, true, {r.mbps(), r.rtt_ms()}, now_ms, ""});
  }
  answer.set_report_accepted(true);
  return answer;
}

void JobRunner::ObserveUploadGoodput(const std::string& worker_id, uint64_t bytes, double seconds) {
  if (spec_.mode != "cluster" || !links_) return;
  double stored = 0;
  for (const checkpoint::LinkRecord& l : links_->uplinks)
    if (l.a == worker_id) stored = l.mbps;
  const std::string line = drift_.Observe(worker_id, bytes, seconds, stored);
  if (line.empty() || drifted_.count(worker_id)) return;
  drifted_[worker_id] = line;
  Log("links: " + line + "; re-probing before the next round");
}

}  // namespace tributary
