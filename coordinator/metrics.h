// Prometheus metrics of the coordinator, rendered in the text exposition format (0.0.4) for the
// /metrics route of HttpServer. The coordinator daemon reports events (a round committed, an
// upload rejected) and state (job counts, live workers); this class turns them into series.
//
// Families:
//   tributary_jobs{state}                      gauge; state = pending|running|completed|failed|stopped
//   tributary_workers_alive                    gauge
//   tributary_rounds_committed_total{job}      counter
//   tributary_bytes_uploaded_total{job}        counter (worker -> coordinator payload bytes)
//   tributary_bytes_downloaded_total{job}      counter (coordinator -> worker payload bytes)
//   tributary_island_bytes_total{job}          counter; cluster mode: bytes inside islands (all-reduce), as
//                                              the island leaders reported them
//   tributary_round_duration_seconds{job}      histogram, buckets 1 s .. 6 h
//   tributary_aggregation_seconds{job}         histogram, buckets 1 ms .. 60 s
//   tributary_rejected_uploads_total{reason}   counter
//   tributary_rate_limited_messages_total      counter; messages dropped over a peer's rate limit
//                                              (coordinator/rate_limit.h)
//   tributary_island_members{job,island}       gauge; cluster mode: members of the island's current
//                                              incarnation (0 while it sits the round out)
//   tributary_island_incarnation{job,island}   gauge; the current incarnation (a double: exact to 2^53)
//   tributary_island_reforms_total{job,island} counter; re-formations after a lost member
//   tributary_transport_bytes_total{direction,type}  counter; bytes the coordinator's server sent (out) or
//                                              received (in), by body type (transport::BodyName), the bulk
//                                              frames of chunks as type bulk_chunk, multistream transfers'
//                                              payload as type multistream (direction out)
//   tributary_multistream_transfers_total{result}  counter; offers of a served object over parallel TCP
//                                              streams: result = sent|failed|unclaimed
//   tributary_multistream_streams_total        counter; TCP streams of the sent transfers
//
// Every method is safe to call from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace tributary {

// Number of jobs in each lifecycle state, as the coordinator's job table reports them.
struct JobCounts {
  int64_t pending = 0;
  int64_t running = 0;
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t stopped = 0;
};

class CoordinatorMetrics {
 public:
  CoordinatorMetrics();
  ~CoordinatorMetrics();
  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  // Bucket upper bounds (seconds) of the two histograms.
  static const std::vector<double>& RoundDurationBuckets();
  static const std::vector<double>& AggregationBuckets();

  // A round of `job` was committed: it took `round_duration_s` from open to commit, of which
  // `aggregation_s` was spent aggregating; `bytes_uploaded` / `bytes_downloaded` are the payload
  // bytes received from / sent to workers for that round.
  void OnRoundCommitted(const std::string& job, double round_duration_s, double aggregation_s, uint64_t bytes_uploaded,
                        uint64_t bytes_downloaded);
  // Cluster mode: a committed round's islands sent `bytes` inside themselves (their leaders' reports).
  void OnIslandBytes(const std::string& job, uint64_t bytes);

  // An upload was refused; `reason` is a short fixed token ("late", "duplicate", "checksum",
  // "unauthorized", ...), never free text, to keep the label's cardinality bounded.
  void OnUploadRejected(const std::string& reason);
  void OnRateLimited();

  void SetJobCounts(const JobCounts& counts);
  // A differentially private job has spent `epsilon` at `delta` (its committed rounds so far).
  void SetPrivacySpent(const std::string& job, double epsilon, double delta);
  void SetWorkersAlive(int64_t workers);

  // Cluster mode: `island` of `job` trains with `members` under `incarnation` (members 0: it sits the
  // round out, incarnation unchanged). Creates the island's reforms series at 0.
  void SetIsland(const std::string& job, const std::string& island, size_t members, uint64_t incarnation);
  void SetIslandMembers(const std::string& job, const std::string& island, size_t members);
  // `island` of `job` re-formed after losing a member.
  void OnIslandReformed(const std::string& job, const std::string& island);

  // `bytes` crossed the coordinator's server: `direction` "in" or "out", `type` a body name or bulk_chunk.
  void OnTransportBytes(const std::string& direction, const std::string& type, uint64_t bytes);
  // A multistream offer ended: `result` sent|failed|unclaimed; a sent one carried `bytes` over `streams`.
  void OnMultistream(const std::string& result, int streams, uint64_t bytes);

  // All families in the Prometheus text format 0.0.4.
  std::string RenderText() const;

 private:
  // Held while setting the job gauges and while rendering, so a scrape never sees half an update.
  mutable std::mutex job_counts_mutex_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* jobs_ = nullptr;
  prometheus::Gauge* jobs_pending_ = nullptr;
  prometheus::Gauge* jobs_running_ = nullptr;
  prometheus::Gauge* jobs_completed_ = nullptr;
  prometheus::Gauge* jobs_failed_ = nullptr;
  prometheus::Gauge* jobs_stopped_ = nullptr;
  prometheus::Gauge* workers_alive_ = nullptr;
  prometheus::Family<prometheus::Gauge>* dp_epsilon_ = nullptr;
  prometheus::Family<prometheus::Gauge>* dp_delta_ = nullptr;
  prometheus::Family<prometheus::Counter>* rounds_committed_ = nullptr;
  prometheus::Family<prometheus::Counter>* bytes_uploaded_ = nullptr;
  prometheus::Family<prometheus::Counter>* bytes_downloaded_ = nullptr;
  prometheus::Family<prometheus::Counter>* island_bytes_ = nullptr;
  prometheus::Family<prometheus::Histogram>* round_duration_ = nullptr;
  prometheus::Family<prometheus::Histogram>* aggregation_ = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_uploads_ = nullptr;
  prometheus::Counter* rate_limited_ = nullptr;
  prometheus::Family<prometheus::Gauge>* island_members_ = nullptr;
  prometheus::Family<prometheus::Gauge>* island_incarnation_ = nullptr;
  prometheus::Family<prometheus::Counter>* island_reforms_ = nullptr;
  prometheus::Family<prometheus::Counter>* transport_bytes_ = nullptr;
  prometheus::Family<prometheus::Counter>* multistream_transfers_ = nullptr;
  prometheus::Family<prometheus::Counter>* multistream_streams_ = nullptr;
};

// The Content-Type of RenderText()'s output.
inline constexpr const char* kPrometheusTextContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace tributary
