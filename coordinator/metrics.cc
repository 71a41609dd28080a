#include "coordinator/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace tributary {

const std::vector<double>& CoordinatorMetrics::RoundDurationBuckets() {
  // LLM rounds range from seconds (tiny test models) to hours (large local epochs).
  static const std::vector<double> kBuckets = {1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600};
  return kBuckets;
}

const std::vector<double>& CoordinatorMetrics::AggregationBuckets() {
  static const std::vector<double> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5,   1,      2.5,   5,    10,    30,   60};
  return kBuckets;
}

CoordinatorMetrics::CoordinatorMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  jobs_ = &prometheus::BuildGauge()
               .Name("tributary_jobs")
               .Help("Jobs known to the coordinator, by lifecycle state.")
               .Register(*registry_);
  jobs_pending_ = &jobs_->Add({{"state", "pending"}});
  jobs_running_ = &jobs_->Add({{"state", "running"}});
  jobs_completed_ = &jobs_->Add({{"state", "completed"}});
  jobs_failed_ = &jobs_->Add({{"state", "failed"}});
  jobs_stopped_ = &jobs_->Add({{"state", "stopped"}});
  workers_alive_ = &prometheus::BuildGauge()
                        .Name("tributary_workers_alive")
                        .Help("Workers whose heartbeats are current.")
                        .Register(*registry_)
                        .Add({});
  rounds_committed_ = &prometheus::BuildCounter()
                           .Name("tributary_rounds_committed_total")
                           .Help("Rounds committed, by job.")
                           .Register(*registry_);
  bytes_uploaded_ = &prometheus::BuildCounter()
                         .Name("tributary_bytes_uploaded_total")
                         .Help("Payload bytes received from workers in committed rounds, by job.")
                         .Register(*registry_);
  bytes_downloaded_ = &prometheus::BuildCounter()
                           .Name("tributary_bytes_downloaded_total")
                           .Help("Payload bytes sent to workers in committed rounds, by job.")
                           .Register(*registry_);
  island_bytes_ = &prometheus::BuildCounter()
                       .Name("tributary_island_bytes_total")
                       .Help("Cluster mode: bytes island members sent each other in committed rounds, by job.")
                       .Register(*registry_);
  round_duration_ = &prometheus::BuildHistogram()
                         .Name("tributary_round_duration_seconds")
                         .Help("Time from opening a round to committing it, by job.")
                         .Register(*registry_);
  aggregation_ = &prometheus::BuildHistogram()
                      .Name("tributary_aggregation_seconds")
                      .Help("Time spent aggregating a round's updates, by job.")
                      .Register(*registry_);
  dp_epsilon_ = &prometheus::BuildGauge()
                     .Name("tributary_job_dp_epsilon")
                     .Help("Differential privacy spent by a job's committed rounds: epsilon at tributary_job_dp_delta.")
                     .Register(*registry_);
  dp_delta_ = &prometheus::BuildGauge()
                   .Name("tributary_job_dp_delta")
                   .Help("The delta a job's tributary_job_dp_epsilon holds at.")
                   .Register(*registry_);
  rejected_uploads_ = &prometheus::BuildCounter()
                           .Name("tributary_rejected_uploads_total")
                           .Help("Uploads refused by the coordinator, by reason.")
                           .Register(*registry_);
  rate_limited_ = &prometheus::BuildCounter()
                       .Name("tributary_rate_limited_messages_total")
                       .Help("Messages dropped because their peer sent over its rate limit.")
                       .Register(*registry_)
                       .Add({});
  island_members_ = &prometheus::BuildGauge()
                         .Name("tributary_island_members")
                         .Help("Members of a cluster-mode island's current incarnation (0: it sits the round out).")
                         .Register(*registry_);
  island_incarnation_ = &prometheus::BuildGauge()
                             .Name("tributary_island_incarnation")
                             .Help("A cluster-mode island's current incarnation.")
                             .Register(*registry_);
  island_reforms_ = &prometheus::BuildCounter()
                         .Name("tributary_island_reforms_total")
                         .Help("Re-formations of a cluster-mode island after it lost a member.")
                         .Register(*registry_);
  transport_bytes_ = &prometheus::BuildCounter()
                          .Name("tributary_transport_bytes_total")
                          .Help("Bytes the coordinator sent (out) or received (in), by message body type.")
                          .Register(*registry_);
  multistream_transfers_ = &prometheus::BuildCounter()
                                .Name("tributary_multistream_transfers_total")
                                .Help("Served objects offered over parallel TCP streams, by how the offer ended.")
                                .Register(*registry_);
  multistream_streams_ = &prometheus::BuildCounter()
                              .Name("tributary_multistream_streams_total")
                              .Help("TCP streams of the multistream transfers that were sent.")
                              .Register(*registry_);
}

CoordinatorMetrics::~CoordinatorMetrics() = default;

// Family::Add is internally locked and returns the existing series for labels it already holds,
// and Counter/Gauge/Histogram updates are atomic or locked, so no lock is needed here.
void CoordinatorMetrics::OnRoundCommitted(const std::string& job, double round_duration_s, double aggregation_s,
                                          uint64_t bytes_uploaded, uint64_t bytes_downloaded) {
  const prometheus::Labels labels = {{"job", job}};
  rounds_committed_->Add(labels).Increment();
  bytes_uploaded_->Add(labels).Increment(static_cast<double>(bytes_uploaded));
  bytes_downloaded_->Add(labels).Increment(static_cast<double>(bytes_downloaded));
  round_duration_->Add(labels, RoundDurationBuckets()).Observe(round_duration_s);
  aggregation_->Add(labels, AggregationBuckets()).Observe(aggregation_s);
}

void CoordinatorMetrics::OnIslandBytes(const std::string& job, uint64_t bytes) {
  island_bytes_->Add({{"job", job}}).Increment(static_cast<double>(bytes));
}

void CoordinatorMetrics::OnUploadRejected(const std::string& reason) {
  rejected_uploads_->Add({{"reason", reason}}).Increment();
}

void CoordinatorMetrics::OnRateLimited() {
  rate_limited_->Increment();
}

void CoordinatorMetrics::SetJobCounts(const JobCounts& counts) {
  std::lock_guard<std::mutex> lock(job_counts_mutex_);
  jobs_pending_->Set(static_cast<double>(counts.pending));
  jobs_running_->Set(static_cast<double>(counts.running));
  jobs_completed_->Set(static_cast<double>(counts.completed));
  jobs_failed_->Set(static_cast<double>(counts.failed));
  jobs_stopped_->Set(static_cast<double>(counts.stopped));
}

void CoordinatorMetrics::SetPrivacySpent(const std::string& job, double epsilon, double delta) {
  dp_epsilon_->Add({{"job", job}}).Set(epsilon);
  dp_delta_->Add({{"job", job}}).Set(delta);
}

void CoordinatorMetrics::SetWorkersAlive(int64_t workers) {
  workers_alive_->Set(static_cast<double>(workers));
}

void CoordinatorMetrics::SetIsland(const std::string& job, const std::string& island, size_t members,
                                   uint64_t incarnation) {
  const prometheus::Labels labels = {{"job", job}, {"island", island}};
  island_members_->Add(labels).Set(static_cast<double>(members));
  island_incarnation_->Add(labels).Set(static_cast<double>(incarnation));
  island_reforms_->Add(labels);  // the series exists (at 0) before the first re-formation
}

void CoordinatorMetrics::SetIslandMembers(const std::string& job, const std::string& island, size_t members) {
  island_members_->Add({{"job", job}, {"island", island}}).Set(static_cast<double>(members));
}

void CoordinatorMetrics::OnIslandReformed(const std::string& job, const std::string& island) {
  island_reforms_->Add({{"job", job}, {"island", island}}).Increment();
}

void CoordinatorMetrics::OnTransportBytes(const std::string& direction, const std::string& type, uint64_t bytes) {
  transport_bytes_->Add({{"direction", direction}, {"type", type}}).Increment(static_cast<double>(bytes));
}

void CoordinatorMetrics::OnMultistream(const std::string& result, int streams, uint64_t bytes) {
  multistream_transfers_->Add({{"result", result}}).Increment();
  if (result != "sent") return;
  multistream_streams_->Add({}).Increment(streams);
  OnTransportBytes("out", "multistream", bytes);
}

std::string CoordinatorMetrics::RenderText() const {
  std::lock_guard<std::mutex> lock(job_counts_mutex_);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace tributary
