// A cluster job's probe campaign through the coordinator daemon in-process (a real RocksDB store in a temp
// dir, loopback sockets) against two workers played by hand: the coordinator pushes the per-pair keys
// and the probe tasks, refuses bad reports naming the worker (absurd numbers, an unknown pair, a stale
// campaign, an unknown job), takes real probes (transport/link_probe.h, the target's responder and the
// coordinator's own), and shows the stored matrix in /api/jobs/<id> before the first round opens.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include <nlohmann/json.hpp>

#include "coordinator/coordinator.h"
#include "federation/job_spec.h"
#include "tests/common/daemon_world.h"
#include "tests/common/temp_dir.h"
#include "transport/channel.h"
#include "transport/link_probe.h"

namespace tributary {
namespace {

using transport::Envelope;
using transport::Message;

constexpr int kWaitMs = 30000;  // generous: a failure, not a timing assertion

struct Peer {
  std::string id;
  std::unique_ptr<transport::Client> client;
  std::vector<Message> pushed;  // unsolicited messages, in order

  // Sends `request`; the reply answering it (pushed messages are kept).
  Message Call(const Envelope& request) {
    EXPECT_TRUE(client->Send(request).ok());
    Message m;
    EXPECT_TRUE(Receive([&](const Message& in) { return in.envelope.in_reply_to() == request.message_id(); }, &m))
        << id << ": no reply";
    return m;
  }
  // The next pushed ProbeAssignment.
  v1::ProbeAssignment NextAssignment() {
    Message m;
    EXPECT_TRUE(Receive([](const Message& in) { return in.envelope.has_probe_assignment(); }, &m))
        << id << ": no ProbeAssignment";
    return m.envelope.probe_assignment();
  }
  v1::ProbeAssignment Report(const v1::ProbeReport& report) {
    Envelope env = transport::NewEnvelope(id);
    *env.mutable_probe_report() = report;
    return Call(env).envelope.probe_assignment();
  }

 private:
  bool Receive(const std::function<bool(const Message&)>& match, Message* out) {
    for (auto it = pushed.begin(); it != pushed.end(); ++it) {
      if (!match(*it)) continue;
      *out = std::move(*it);
      pushed.erase(it);
      return true;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
    while (std::chrono::steady_clock::now() < deadline) {
      auto in = client->Receive(50);
      if (!in.ok()) continue;
      if (match(*in)) {
        *out = std::move(*in);
        return true;
      }
      pushed.push_back(std::move(*in));
    }
    return false;
  }
};

void ConnectAndRegister(const std::string& endpoint, Peer& p) {
  transport::ClientOptions options;
  options.insecure = true;
  options.name = p.id;
  auto client = transport::Client::Connect(endpoint, options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  p.client = std::move(*client);
  Envelope reg = transport::NewEnvelope(p.id);
  v1::Register* r = reg.mutable_register_worker();
  r->set_worker_id(p.id);
  r->mutable_capabilities()->set_memory_bytes(uint64_t{8} << 30);
  v1::DatasetInfo* d = r->mutable_capabilities()->add_datasets();
  d->set_name("letters");
  d->set_samples(20);
  v1::Nic* nic = r->mutable_capabilities()->add_nics();  // one fabric: the pair is a candidate
  nic->set_name("eth0");
  nic->set_kind("ethernet");
  nic->set_speed_mbps(10000);
  nic->set_fabric_id("lan-a");
  ASSERT_TRUE(p.Call(reg).envelope.register_ack().accepted());
}

v1::ProbeReport Outcome(const std::string& job, uint64_t campaign, const std::string& worker, const std::string& pair,
                        double mbps, double rtt_ms, uint64_t bytes) {
  v1::ProbeReport report;
  report.set_job_id(job);
  report.set_campaign(campaign);
  report.set_worker_id(worker);
  v1::ProbeOutcome* o = report.add_results();
  o->set_pair_id(pair);
  o->set_mbps(mbps);
  o->set_rtt_ms(rtt_ms);
  o->set_bytes(bytes);
  return report;
}

// Runs the task for real and reports what it measured.
v1::ProbeReport RunTask(const std::string& job, uint64_t campaign, const std::string& worker,
                        const v1::ProbeTask& task) {
  ProbeOptions options;
  options.key = task.key();
  options.max_bytes = task.max_bytes();
  options.target_s = 0.05;
  options.io_timeout_ms = static_cast<int>(task.timeout_ms());
  auto measured = ProbeLink(task.host().empty() ? "127.0.0.1" : task.host(), static_cast<int>(task.port()), options);
  EXPECT_TRUE(measured.ok()) << task.pair_id() << ": " << measured.status().ToString();
  if (!measured.ok()) return {};
  return Outcome(job, campaign, worker, task.pair_id(), measured->mbps, measured->rtt_ms, measured->bytes);
}

TEST(ProbeDaemonTest, CoordinatorIssuesKeysAndTasksRefusesBadReportsAndStoresTheMatrix) {
  testutil::DaemonWorld world(64);
  testutil::TempDir data;
  CoordinatorOptions options;
  options.listen = "tcp://127.0.0.1:*";
  options.http_listen = "127.0.0.1:0";
  options.data_dir = data.path();
  options.insecure = true;
  options.heartbeat_interval_ms = 1000;
  options.heartbeat_misses = 600;  // the peers do not heartbeat
  options.restart_grace_ms = 0;
  options.probe_bytes = 2 << 20;
  auto created = Coordinator::Create(options);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Coordinator> coordinator = std::move(*created);
  std::atomic<bool> stop{false};
  std::thread loop([&] { coordinator->Run(&stop).IgnoreError(); });

  Peer w1, w2;
  w1.id = "w1";
  w2.id = "w2";
  ConnectAndRegister(coordinator->endpoint(), w1);
  ConnectAndRegister(coordinator->endpoint(), w2);
  const std::string yaml = "name: probe daemon test\nmodel:\n  base: " + world.model_dir +
                           "\ndata:\n  dataset: letters\n  seq_len: 64\n"
                           "federation:\n  mode: cluster\n  rounds: 1\n  seed: 9\n  min_clients: 2\n"
                           "  deadline_floor_s: 300\n  deadline_ceiling_s: 600\n"
                           "train:\n  local_steps: 1\n  batch_size: 4\n  lr: 0.1\n";
  Envelope submit = transport::NewEnvelope("cli");
  submit.mutable_submit_job()->set_spec_yaml(yaml);
  const std::string job = w1.Call(submit).envelope.submit_job_reply().job_id();
  ASSERT_FALSE(job.empty());

  // w2 is the target of w1>w2: it gets the pair's key. w1's uplink probe goes out at once (the coordinator
  // serves it); w2's uplink waits, since the coordinator's end is busy.
  const v1::ProbeAssignment serve = w2.NextAssignment();
  EXPECT_EQ(serve.job_id(), job);
  EXPECT_EQ(serve.campaign(), 1u);
  EXPECT_EQ(serve.reason(), "job start: 1 pair(s) and 2 uplink(s) among 2 eligible worker(s)");
  ASSERT_EQ(serve.serve_size(), 1);
  EXPECT_EQ(serve.serve(0).pair_id(), "w1>w2");
  EXPECT_EQ(serve.serve(0).key().size(), kProbeKeyBytes);
  const v1::ProbeAssignment uplink = w1.NextAssignment();
  ASSERT_EQ(uplink.probes_size(), 1);
  EXPECT_EQ(uplink.probes(0).pair_id(), "w1>coordinator");
  EXPECT_EQ(uplink.probes(0).target(), "");
  EXPECT_EQ(uplink.probes(0).max_bytes(), 2u << 20);
  EXPECT_NE(uplink.probes(0).key(), serve.serve(0).key()) << "a fresh key per pair";

  // Bad reports are refused, naming the worker.
  v1::ProbeAssignment answer = w1.Report(Outcome(job, 1, "w1", "w1>w9", 900, 0.1, 1 << 20));
  EXPECT_FALSE(answer.report_accepted());
  EXPECT_EQ(answer.report_error(), "worker 'w1': unknown probe pair 'w1>w9' in campaign 1");
  answer = w2.Report(Outcome(job, 1, "w2", "w1>coordinator", 900, 0.1, 1 << 20));
  EXPECT_EQ(answer.report_error(), "worker 'w2': unknown probe pair 'w1>coordinator' in campaign 1")
      << "another worker's probe";
  answer = w2.Report(Outcome(job, 7, "w2", "w1>w2", 900, 0.1, 1 << 20));
  EXPECT_EQ(answer.report_error(),
            "worker 'w2': probe report for campaign 7 of job '" + job + "', which is not running (running: 1)");
  Envelope unknown_job = transport::NewEnvelope("w2");
  *unknown_job.mutable_probe_report() = Outcome("job-nope", 1, "w2", "w1>w2", 900, 0.1, 1);
  const Message error = w2.Call(unknown_job);
  ASSERT_TRUE(error.envelope.has_error());
  EXPECT_EQ(error.envelope.error().message(), "probe report of worker 'w2' for unknown job 'job-nope'");
  answer = w1.Report(Outcome(job, 1, "w1", "w1>coordinator", 5e12, 0.1, 1 << 20));
  EXPECT_FALSE(answer.report_accepted());
  EXPECT_NE(answer.report_error().find("probe report of worker 'w1' for pair w1>coordinator: goodput"),
            std::string::npos)
      << answer.report_error();

  // w2 starts a real responder with the issued key; w1 measures the pair and w2 its uplink, for real.
  ProbeServerOptions responder_options;
  responder_options.key = serve.serve(0).key();
  auto responder = ProbeServer::Start(responder_options);
  ASSERT_TRUE(responder.ok()) << responder.status().ToString();
  v1::ProbeReport listening;
  listening.set_job_id(job);
  listening.set_campaign(1);
  listening.set_worker_id("w2");
  listening.set_responder_host("127.0.0.1");
  listening.set_responder_port(static_cast<uint32_t>((*responder)->port()));
  EXPECT_TRUE(w2.Report(listening).report_accepted());
  const v1::ProbeAssignment pair = w1.NextAssignment();
  ASSERT_EQ(pair.probes_size(), 1);
  EXPECT_EQ(pair.probes(0).pair_id(), "w1>w2");
  EXPECT_EQ(pair.probes(0).port(), listening.responder_port());
  EXPECT_TRUE(w1.Report(RunTask(job, 1, "w1", pair.probes(0))).report_accepted());
  const v1::ProbeAssignment w2_uplink = w2.NextAssignment();
  ASSERT_EQ(w2_uplink.probes_size(), 1);
  EXPECT_EQ(w2_uplink.probes(0).pair_id(), "w2>coordinator");
  EXPECT_TRUE(w2.Report(RunTask(job, 1, "w2", w2_uplink.probes(0))).report_accepted());

  // The campaign is done before the first round opens: the job shows the stored matrix, w1's refused
  // uplink left out.
  httplib::Client http("127.0.0.1", coordinator->http_port());
  nlohmann::json links;
  for (int i = 0; i < kWaitMs / 50 && !links.is_object(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto api = http.Get("/api/jobs/" + job);
    if (api && api->status == 200) {
      const nlohmann::json detail = nlohmann::json::parse(api->body);
      if (detail.contains("links")) links = detail["links"];
    }
  }
  ASSERT_TRUE(links.is_object());
  EXPECT_EQ(links["campaign"], 1);
  ASSERT_EQ(links["pairs"].size(), 1u) << links;
  EXPECT_EQ(links["pairs"][0]["a"], "w1");
  EXPECT_EQ(links["pairs"][0]["b"], "w2");
  EXPECT_GT(links["pairs"][0]["mbps"].get<double>(), 0);
  ASSERT_EQ(links["uplinks"].size(), 1u) << links;
  EXPECT_EQ(links["uplinks"][0]["worker"], "w2");
  EXPECT_GE((*responder)->probes_served(), 1u);

  std::string all;  // the job log, once the first round opened
  for (int i = 0; i < kWaitMs / 50 && all.find("round 1 opened") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Envelope fetch = transport::NewEnvelope("cli");
    fetch.mutable_fetch_logs()->set_job_id(job);
    all.clear();
    const Message reply = w1.Call(fetch);
    for (const std::string& line : reply.envelope.fetch_logs_reply().lines()) all += line + "\n";
  }
  ASSERT_NE(all.find("round 1 opened"), std::string::npos) << all;
  EXPECT_NE(all.find("links: campaign 1 probes (job start: 1 pair(s) and 2 uplink(s) among 2 eligible worker(s))"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("links: campaign 1: probe w1>coordinator failed: probe report of worker 'w1'"), std::string::npos)
      << all;
  EXPECT_NE(all.find("links: campaign 1 done"), std::string::npos) << all;
  EXPECT_LT(all.find("links: campaign 1 done"), all.find("round 1 opened")) << all;

  stop = true;
  loop.join();
}

}  // namespace
}  // namespace tributary
