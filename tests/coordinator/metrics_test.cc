#include "coordinator/metrics.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tributary {
namespace {

// One sample line of the text format: name{label="value",...} number
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct ParsedText {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // "# TYPE name kind"
  std::map<std::string, std::string> helps;  // "# HELP name text"
};

// A small, strict parser for the subset of the format prometheus-cpp writes (no escapes in our
// label values). A malformed line fails the test rather than being skipped.
ParsedText Parse(const std::string& text) {
  ParsedText parsed;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0 || line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const size_t space = rest.find(' ');
      EXPECT_NE(space, std::string::npos) << line;
      if (space == std::string::npos) continue;
      (line[2] == 'T' ? parsed.types : parsed.helps)[rest.substr(0, space)] = rest.substr(space + 1);
      continue;
    }
    EXPECT_NE(line[0], '#') << "unexpected comment: " << line;
    Sample sample;
    const size_t value_at = line.rfind(' ');
    EXPECT_NE(value_at, std::string::npos) << line;
    if (value_at == std::string::npos) continue;
    std::string key = line.substr(0, value_at);
    const std::string value_text = line.substr(value_at + 1);
    char* end = nullptr;
    sample.value = std::strtod(value_text.c_str(), &end);
    EXPECT_EQ(*end, '\0') << "bad value in: " << line;
    const size_t brace = key.find('{');
    sample.name = key.substr(0, brace);
    if (brace != std::string::npos) {
      EXPECT_EQ(key.back(), '}') << line;
      std::string body = key.substr(brace + 1, key.size() - brace - 2);
      size_t pos = 0;
      while (pos < body.size()) {
        const size_t eq = body.find("=\"", pos);
        const size_t close = body.find('"', eq + 2);
        EXPECT_TRUE(eq != std::string::npos && close != std::string::npos) << line;
        if (eq == std::string::npos || close == std::string::npos) break;
        sample.labels[body.substr(pos, eq - pos)] = body.substr(eq + 2, close - eq - 2);
        pos = close + 1;
        if (pos < body.size() && body[pos] == ',') ++pos;
      }
    }
    parsed.samples.push_back(std::move(sample));
  }
  return parsed;
}

std::optional<double> Find(const ParsedText& parsed, const std::string& name,
                           const std::map<std::string, std::string>& labels) {
  std::optional<double> found;
  for (const Sample& sample : parsed.samples) {
    if (sample.name != name || sample.labels != labels) continue;
    EXPECT_FALSE(found.has_value()) << "duplicate series " << name;
    found = sample.value;
  }
  return found;
}

int CountSeries(const ParsedText& parsed, const std::string& name) {
  int count = 0;
  for (const Sample& sample : parsed.samples) count += sample.name == name ? 1 : 0;
  return count;
}

// The bucket of `family` for `job` whose `le` label parses to `bound` (compared as numbers, so the
// test does not depend on how the serializer formats doubles).
std::optional<double> FindBucket(const ParsedText& parsed, const std::string& family, const std::string& job,
                                 double bound) {
  std::optional<double> found;
  for (const Sample& sample : parsed.samples) {
    if (sample.name != family + "_bucket" || sample.labels.size() != 2) continue;
    if (!sample.labels.count("job") || sample.labels.at("job") != job || !sample.labels.count("le")) continue;
    if (std::strtod(sample.labels.at("le").c_str(), nullptr) != bound) continue;
    EXPECT_FALSE(found.has_value()) << "duplicate bucket " << family << " le=" << bound;
    found = sample.value;
  }
  return found;
}

TEST(CoordinatorMetricsTest, DeclaresEveryFamilyWithItsType) {
  CoordinatorMetrics metrics;
  metrics.OnRoundCommitted("job-a", 10, 0.01, 1, 1);
  metrics.OnUploadRejected("late");
  const ParsedText parsed = Parse(metrics.RenderText());
  const std::map<std::string, std::string> expected = {
      {"tributary_jobs", "gauge"},
      {"tributary_workers_alive", "gauge"},
      {"tributary_rounds_committed_total", "counter"},
      {"tributary_bytes_uploaded_total", "counter"},
      {"tributary_bytes_downloaded_total", "counter"},
      {"tributary_round_duration_seconds", "histogram"},
      {"tributary_aggregation_seconds", "histogram"},
      {"tributary_rejected_uploads_total", "counter"},
  };
  for (const auto& [name, type] : expected) {
    ASSERT_TRUE(parsed.types.count(name)) << name << " has no TYPE line";
    EXPECT_EQ(parsed.types.at(name), type) << name;
    ASSERT_TRUE(parsed.helps.count(name)) << name << " has no HELP line";
    EXPECT_FALSE(parsed.helps.at(name).empty()) << name;
  }
}

TEST(CoordinatorMetricsTest, JobGaugesStartAtZeroForEveryState) {
  CoordinatorMetrics metrics;
  const ParsedText parsed = Parse(metrics.RenderText());
  for (const char* state : {"pending", "running", "completed", "failed", "stopped"}) {
    EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", state}}), 0.0) << state;
  }
  EXPECT_EQ(CountSeries(parsed, "tributary_jobs"), 5);
  EXPECT_EQ(Find(parsed, "tributary_workers_alive", {}), 0.0);
  // No job has committed a round yet, so the per-job families have no series.
  EXPECT_EQ(CountSeries(parsed, "tributary_rounds_committed_total"), 0);
}

TEST(CoordinatorMetricsTest, SetJobCountsAndWorkersAlive) {
  CoordinatorMetrics metrics;
  metrics.SetJobCounts({.pending = 3, .running = 2, .completed = 7, .failed = 1, .stopped = 4});
  metrics.SetWorkersAlive(12);
  ParsedText parsed = Parse(metrics.RenderText());
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "pending"}}), 3.0);
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "running"}}), 2.0);
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "completed"}}), 7.0);
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "failed"}}), 1.0);
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "stopped"}}), 4.0);
  EXPECT_EQ(Find(parsed, "tributary_workers_alive", {}), 12.0);

  // Gauges are set, not accumulated.
  metrics.SetJobCounts({.pending = 0, .running = 1, .completed = 8, .failed = 1, .stopped = 4});
  metrics.SetWorkersAlive(5);
  parsed = Parse(metrics.RenderText());
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "pending"}}), 0.0);
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "running"}}), 1.0);
  EXPECT_EQ(Find(parsed, "tributary_jobs", {{"state", "completed"}}), 8.0);
  EXPECT_EQ(Find(parsed, "tributary_workers_alive", {}), 5.0);
}

TEST(CoordinatorMetricsTest, RoundCommittedUpdatesCountersAndHistogramsPerJob) {
  CoordinatorMetrics metrics;
  const double durations[] = {45.0, 90.0, 7200.0};
  const double aggregations[] = {0.003, 0.2, 12.0};
  const uint64_t up[] = {1000, 2000, 5'000'000'000ULL};  // > 4 GiB must not wrap
  const uint64_t down[] = {300, 400, 500};
  for (int i = 0; i < 3; ++i) metrics.OnRoundCommitted("job-a", durations[i], aggregations[i], up[i], down[i]);
  metrics.OnRoundCommitted("job-b", 2.0, 0.0005, 10, 20);
  metrics.OnIslandBytes("job-a", 7'000'000'000ULL);
  metrics.OnIslandBytes("job-a", 5);

  const ParsedText parsed = Parse(metrics.RenderText());
  EXPECT_EQ(Find(parsed, "tributary_rounds_committed_total", {{"job", "job-a"}}), 3.0);
  EXPECT_EQ(Find(parsed, "tributary_rounds_committed_total", {{"job", "job-b"}}), 1.0);
  EXPECT_EQ(Find(parsed, "tributary_bytes_uploaded_total", {{"job", "job-a"}}), double(up[0] + up[1] + up[2]));
  EXPECT_EQ(Find(parsed, "tributary_bytes_downloaded_total", {{"job", "job-a"}}), double(down[0] + down[1] + down[2]));
  EXPECT_EQ(Find(parsed, "tributary_bytes_uploaded_total", {{"job", "job-b"}}), 10.0);
  EXPECT_EQ(Find(parsed, "tributary_bytes_downloaded_total", {{"job", "job-b"}}), 20.0);
  EXPECT_EQ(Find(parsed, "tributary_island_bytes_total", {{"job", "job-a"}}), 7'000'000'005.0);
  EXPECT_FALSE(Find(parsed, "tributary_island_bytes_total", {{"job", "job-b"}}).has_value());  // not a cluster job

  EXPECT_EQ(Find(parsed, "tributary_round_duration_seconds_count", {{"job", "job-a"}}), 3.0);
  EXPECT_DOUBLE_EQ(*Find(parsed, "tributary_round_duration_seconds_sum", {{"job", "job-a"}}),
                   durations[0] + durations[1] + durations[2]);
  EXPECT_EQ(Find(parsed, "tributary_aggregation_seconds_count", {{"job", "job-a"}}), 3.0);
  EXPECT_DOUBLE_EQ(*Find(parsed, "tributary_aggregation_seconds_sum", {{"job", "job-a"}}),
                   aggregations[0] + aggregations[1] + aggregations[2]);

  // Every bucket holds the number of observations <= its bound (cumulative), +Inf holds all.
  auto check_buckets = [&](const std::string& family, const std::vector<double>& bounds, const double* observed) {
    for (double bound : bounds) {
      int expected = 0;
      for (int i = 0; i < 3; ++i) expected += observed[i] <= bound ? 1 : 0;
      EXPECT_EQ(FindBucket(parsed, family, "job-a", bound), double(expected)) << family << " le=" << bound;
    }
    EXPECT_EQ(Find(parsed, family + "_bucket", {{"job", "job-a"}, {"le", "+Inf"}}), 3.0) << family;
  };
  check_buckets("tributary_round_duration_seconds", CoordinatorMetrics::RoundDurationBuckets(), durations);
  check_buckets("tributary_aggregation_seconds", CoordinatorMetrics::AggregationBuckets(), aggregations);
}

TEST(CoordinatorMetricsTest, HistogramBucketsSpanTheDocumentedRanges) {
  const std::vector<double>& round = CoordinatorMetrics::RoundDurationBuckets();
  ASSERT_FALSE(round.empty());
  EXPECT_EQ(round.front(), 1.0);
  EXPECT_EQ(round.back(), 6 * 3600.0);
  const std::vector<double>& aggregation = CoordinatorMetrics::AggregationBuckets();
  ASSERT_FALSE(aggregation.empty());
  EXPECT_EQ(aggregation.front(), 0.001);
  EXPECT_EQ(aggregation.back(), 60.0);
  for (const auto* bounds : {&round, &aggregation}) {
    for (size_t i = 1; i < bounds->size(); ++i) EXPECT_LT((*bounds)[i - 1], (*bounds)[i]);
  }
}

TEST(CoordinatorMetricsTest, RejectedUploadsByReason) {
  CoordinatorMetrics metrics;
  metrics.OnUploadRejected("late");
  metrics.OnUploadRejected("late");
  metrics.OnUploadRejected("checksum");
  const ParsedText parsed = Parse(metrics.RenderText());
  EXPECT_EQ(Find(parsed, "tributary_rejected_uploads_total", {{"reason", "late"}}), 2.0);
  EXPECT_EQ(Find(parsed, "tributary_rejected_uploads_total", {{"reason", "checksum"}}), 1.0);
  EXPECT_EQ(Find(parsed, "tributary_rejected_uploads_total", {{"reason", "duplicate"}}), std::nullopt);
}

TEST(CoordinatorMetricsTest, IslandGaugesAndReformsPerJobAndIsland) {
  CoordinatorMetrics metrics;
  const uint64_t incarnation = 1796611270871;  // clock-based: well inside a double's exact range
  metrics.SetIsland("job-a", "a", 2, incarnation);
  metrics.SetIsland("job-a", "b", 2, incarnation + 1);
  ParsedText parsed = Parse(metrics.RenderText());
  EXPECT_EQ(parsed.types["tributary_island_members"], "gauge");
  EXPECT_EQ(parsed.types["tributary_island_incarnation"], "gauge");
  EXPECT_EQ(parsed.types["tributary_island_reforms_total"], "counter");
  EXPECT_EQ(Find(parsed, "tributary_island_members", {{"job", "job-a"}, {"island", "a"}}), 2.0);
  EXPECT_EQ(Find(parsed, "tributary_island_incarnation", {{"job", "job-a"}, {"island", "b"}}),
            static_cast<double>(incarnation + 1));
  EXPECT_EQ(Find(parsed, "tributary_island_reforms_total", {{"job", "job-a"}, {"island", "a"}}), 0.0)
      << "the series exists before the first re-formation";

  // Island a loses a member and re-forms; island b then sits a round out.
  metrics.OnIslandReformed("job-a", "a");
  metrics.SetIsland("job-a", "a", 1, incarnation + 2);
  metrics.SetIslandMembers("job-a", "b", 0);
  parsed = Parse(metrics.RenderText());
  EXPECT_EQ(Find(parsed, "tributary_island_members", {{"job", "job-a"}, {"island", "a"}}), 1.0);
  EXPECT_EQ(Find(parsed, "tributary_island_incarnation", {{"job", "job-a"}, {"island", "a"}}),
            static_cast<double>(incarnation + 2));
  EXPECT_EQ(Find(parsed, "tributary_island_reforms_total", {{"job", "job-a"}, {"island", "a"}}), 1.0);
  EXPECT_EQ(Find(parsed, "tributary_island_members", {{"job", "job-a"}, {"island", "b"}}), 0.0);
  EXPECT_EQ(Find(parsed, "tributary_island_incarnation", {{"job", "job-a"}, {"island", "b"}}),
            static_cast<double>(incarnation + 1));
}

TEST(CoordinatorMetricsTest, TransportBytesByDirectionAndType) {
  CoordinatorMetrics metrics;
  metrics.OnTransportBytes("in", "heartbeat", 100);
  metrics.OnTransportBytes("in", "heartbeat", 50);
  metrics.OnTransportBytes("out", "round_start", 700);
  metrics.OnTransportBytes("in", "bulk_chunk", 5'000'000'000ULL);
  const ParsedText parsed = Parse(metrics.RenderText());
  EXPECT_EQ(parsed.types.at("tributary_transport_bytes_total"), "counter");
  EXPECT_EQ(Find(parsed, "tributary_transport_bytes_total", {{"direction", "in"}, {"type", "heartbeat"}}), 150.0);
  EXPECT_EQ(Find(parsed, "tributary_transport_bytes_total", {{"direction", "out"}, {"type", "round_start"}}), 700.0);
  EXPECT_EQ(Find(parsed, "tributary_transport_bytes_total", {{"direction", "in"}, {"type", "bulk_chunk"}}), 5e9);
  EXPECT_EQ(Find(parsed, "tributary_transport_bytes_total", {{"direction", "out"}, {"type", "heartbeat"}}),
            std::nullopt);
}

TEST(CoordinatorMetricsTest, MultistreamTransfersAndTheirBytes) {
  CoordinatorMetrics metrics;
  metrics.OnMultistream("sent", 3, 1000);
  metrics.OnMultistream("sent", 4, 500);
  metrics.OnMultistream("unclaimed", 2, 0);
  const ParsedText parsed = Parse(metrics.RenderText());
  EXPECT_EQ(Find(parsed, "tributary_multistream_transfers_total", {{"result", "sent"}}), 2.0);
  EXPECT_EQ(Find(parsed, "tributary_multistream_transfers_total", {{"result", "unclaimed"}}), 1.0);
  EXPECT_EQ(Find(parsed, "tributary_multistream_streams_total", {}), 7.0);
  // Sent payload counts with the bytes the coordinator sent, as its own type (not through the ZeroMQ server).
  EXPECT_EQ(Find(parsed, "tributary_transport_bytes_total", {{"direction", "out"}, {"type", "multistream"}}), 1500.0);
}

TEST(CoordinatorMetricsTest, ConcurrentUpdatesAndRendersLoseNothing) {
  CoordinatorMetrics metrics;
  constexpr int kThreads = 4;
  constexpr int kEventsPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      const std::string job = t % 2 == 0 ? "even" : "odd";
      for (int i = 0; i < kEventsPerThread; ++i) {
        metrics.OnRoundCommitted(job, 1.5, 0.01, 3, 5);
        metrics.OnUploadRejected("duplicate");
        metrics.SetWorkersAlive(t);
        if (i % 100 == 0) {
          EXPECT_FALSE(metrics.RenderText().empty());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const ParsedText parsed = Parse(metrics.RenderText());
  const double per_job = 2.0 * kEventsPerThread;  // two threads per job label
  for (const char* job : {"even", "odd"}) {
    EXPECT_EQ(Find(parsed, "tributary_rounds_committed_total", {{"job", job}}), per_job) << job;
    EXPECT_EQ(Find(parsed, "tributary_bytes_uploaded_total", {{"job", job}}), 3 * per_job) << job;
    EXPECT_EQ(Find(parsed, "tributary_bytes_downloaded_total", {{"job", job}}), 5 * per_job) << job;
    EXPECT_EQ(Find(parsed, "tributary_round_duration_seconds_count", {{"job", job}}), per_job) << job;
  }
  EXPECT_EQ(Find(parsed, "tributary_rejected_uploads_total", {{"reason", "duplicate"}}),
            double(kThreads * kEventsPerThread));
}

}  // namespace
}  // namespace tributary
