// The coordinator daemon in-process (Coordinator::Create + Run on a thread, CURVE on loopback, a real
// RocksDB store in a temp dir) against workers played by hand with transport::Clients: registration
// with NICs, heartbeats with replicas, a real round whose uploads are computed in-process with the
// federation tasklet (one inline, one pulled as a bulk object), the committed aggregate and weights
// hash checked against an in-process replica, and the uploads the coordinator must refuse.
#include "coordinator/coordinator.h"
#include "coordinator/store_export.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "coordinator/worker_registry.h"
#include "engine/io/model_dir.h"
#include "engine/text/tokenizer.h"
#include "federation/replica_state.h"
#include "tests/common/tiny_llama.h"
#include "tests/coordinator/daemon_test_util.h"

namespace tributary {
namespace daemontest {
namespace {

TEST_F(CoordinatorDaemonTest, RunsRoundsWithScriptedWorkersAndRefusesBadUploads) {
  World world;
  TempDir data;
  const JobSpec spec = world.Spec();
  RunningCoordinator coordinator(Options(world, data));
  ASSERT_TRUE(coordinator.ok());

  // Registration: the NIC's fabric_id reaches the inventory (the registration log line shows the
  // placeable NICs of the inventory; docker0 is not one).
  ScriptedWorker w1(coordinator.endpoint(), keys_, keys_.w1, "w1");
  ScriptedWorker w2(coordinator.endpoint(), keys_, keys_.w2, "w2");
  v1::RegisterAck ack1 = w1.Register(WorkerCapabilities(world.num_examples, "rack-7"));
  ASSERT_TRUE(ack1.accepted()) << ack1.reason();
  EXPECT_EQ(ack1.heartbeat_interval_ms(), 1000u);
  EXPECT_EQ(ack1.heartbeat_miss_limit(), 10u);
  ASSERT_TRUE(w2.Register(WorkerCapabilities(world.num_examples, "rack-8")).accepted());
  EXPECT_TRUE(sink_->Contains("worker 'w1' registered"));
  EXPECT_TRUE(sink_->Contains("NICs: eth0 ethernet 10000 Mb/s fabric rack-7)"));
  EXPECT_TRUE(sink_->Contains("NICs: eth0 ethernet 10000 Mb/s fabric rack-8)"));
  // The stranger's key may not take w1's id.
  ScriptedWorker impostor(coordinator.endpoint(), keys_, keys_.stranger, "w1");
  v1::RegisterAck refused = impostor.Register(WorkerCapabilities(world.num_examples, ""));
  EXPECT_FALSE(refused.accepted());
  EXPECT_NE(refused.reason().find("registered with another key"), std::string::npos) << refused.reason();

  // A CLI client submits the job; both workers get RoundStart for round 1 at the base model's hash.
  auto cli = Connect(coordinator.endpoint(), keys_, keys_.cli);
  Envelope submit = transport::NewEnvelope("cli");
  submit.mutable_submit_job()->set_spec_yaml(EffectiveJobSpecYaml(spec));
  auto submitted = Ask(*cli, submit);
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  const std::string job_id = submitted->envelope.submit_job_reply().job_id();
  ASSERT_FALSE(job_id.empty());
  auto replica = world.Replica();
  const std::string base_hash = HashHex(WeightsHash(replica->params()));
  for (ScriptedWorker* w : {&w1, &w2}) {
    auto start = w->WaitForBody(Envelope::kRoundStart);
    ASSERT_TRUE(start.has_value());
    const v1::RoundStart& s = start->envelope.round_start();
    EXPECT_EQ(s.job_id(), job_id);
    EXPECT_EQ(s.round(), 1u);
    EXPECT_EQ(s.committed_round(), 0u);
    EXPECT_EQ(s.mode(), "ferret");
    EXPECT_EQ(s.weights_hash(), base_hash) << w->worker_id();
  }

  // Round 1, computed in-process from the same replica and rows as the workers would.
  const TaskletResult r1 = Train(spec, 1, "w1", world, *replica);
  const TaskletResult r2 = Train(spec, 1, "w2", world, *replica);
  ASSERT_FALSE(r1.payload.empty());
  const v1::UploadUpdate u1 = InlineUpload(job_id, 1, "w1", r1);
  const v1::UploadUpdate u2 = InlineUpload(job_id, 1, "w2", r2);

  // Refused, each with a reason: an unregistered worker (retry: it may not have re-registered yet),
  // a worker id claimed with another key, a round that is not open, an unknown job, a bulk payload
  // larger than any ferret upload (refused before anything is pulled).
  v1::UploadUpdate ghost = u1;
  ghost.set_worker_id("ghost");
  v1::UploadAck a = w1.Upload(ghost);
  EXPECT_FALSE(a.accepted());
  EXPECT_TRUE(a.retry());
  EXPECT_NE(a.reason().find("worker 'ghost' is not registered"), std::string::npos) << a.reason();
  a = impostor.Upload(u1);
  EXPECT_FALSE(a.accepted());
  EXPECT_FALSE(a.retry());
  EXPECT_NE(a.reason().find("registered with another key"), std::string::npos) << a.reason();
  v1::UploadUpdate wrong_round = u1;
  wrong_round.set_round(2);
  a = w1.Upload(wrong_round);
  EXPECT_FALSE(a.accepted());
  EXPECT_FALSE(a.retry());
  EXPECT_NE(a.reason().find("wrong round (open round: 1)"), std::string::npos) << a.reason();
  v1::UploadUpdate other_job = u1;
  other_job.set_job_id("job-nope");
  a = w1.Upload(other_job);
  EXPECT_FALSE(a.accepted());
  EXPECT_NE(a.reason().find("unknown job 'job-nope'"), std::string::npos) << a.reason();
  v1::UploadUpdate oversized = BulkUpload(w2, u2);
  const uint64_t max_bytes = (*CreateMethod(spec, replica->params().table_ptr()))->MaxPayloadBytes();
  oversized.set_payload_size(max_bytes + 1);
  a = w2.Upload(oversized);
  EXPECT_FALSE(a.accepted());
  EXPECT_FALSE(a.retry());
  EXPECT_NE(a.reason().find("more than the " + std::to_string(max_bytes) + " bytes"), std::string::npos) << a.reason();
  EXPECT_EQ(w2.bulk_requests_served, 0) << "the precheck refuses before pulling";

  // w1 inline: accepted; again: a duplicate. w2 as a bulk object: pulled, accepted; that closes the round.
  a = w1.Upload(u1);
  EXPECT_TRUE(a.accepted()) << a.reason();
  EXPECT_EQ(a.round(), 1u);
  a = w1.Upload(u1);
  EXPECT_FALSE(a.accepted());
  EXPECT_TRUE(a.duplicate());
  EXPECT_EQ(a.reason(), "duplicate");
  a = w2.Upload(BulkUpload(w2, u2));
  EXPECT_TRUE(a.accepted()) << a.reason();
  EXPECT_GT(w2.bulk_requests_served, 0) << "the payload was pulled";

  // RoundCommitted to both: the weighted mean of the two uploads, and the hash an in-process replica
  // reaches by applying it.
  const std::vector<uint8_t> aggregate1 = ExpectedRound(spec, 1, {{"w1", r1}, {"w2", r2}}, *replica);
  const std::string hash1 = HashHex(WeightsHash(replica->params()));
  ASSERT_NE(hash1, base_hash);
  for (ScriptedWorker* w : {&w1, &w2}) {
    auto committed = w->WaitForBody(Envelope::kRoundCommitted);
    ASSERT_TRUE(committed.has_value());
    const v1::RoundCommitted& rc = committed->envelope.round_committed();
    EXPECT_EQ(rc.job_id(), job_id);
    EXPECT_EQ(rc.round(), 1u);
    EXPECT_EQ(rc.participants(), 2u);
    EXPECT_EQ(rc.aggregate(), Bytes(aggregate1));
    EXPECT_EQ(rc.weights_hash(), hash1) << w->worker_id();
    EXPECT_FALSE(rc.job_finished());
    w->replicas = {};
    v1::ReplicaState state;
    state.set_job_id(job_id);
    state.set_round(1);
    state.set_weights_hash(rc.weights_hash());
    w->replicas.push_back(state);
  }
  // Round 1 is committed: its upload is late now.
  a = w1.Upload(u1);
  EXPECT_FALSE(a.accepted());
  EXPECT_TRUE(a.late());
  EXPECT_EQ(a.reason(), "late");

  // Round 2 finishes the job.
  for (ScriptedWorker* w : {&w1, &w2}) {
    auto start = w->WaitFor(
        [](const Message& m) { return m.envelope.has_round_start() && m.envelope.round_start().round() == 2; });
    ASSERT_TRUE(start.has_value());
    EXPECT_EQ(start->envelope.round_start().weights_hash(), hash1);
  }
  const TaskletResult s1 = Train(spec, 2, "w1", world, *replica);
  const TaskletResult s2 = Train(spec, 2, "w2", world, *replica);
  EXPECT_TRUE(w1.Upload(InlineUpload(job_id, 2, "w1", s1)).accepted());
  EXPECT_TRUE(w2.Upload(InlineUpload(job_id, 2, "w2", s2)).accepted());
  ExpectedRound(spec, 2, {{"w1", s1}, {"w2", s2}}, *replica);
  const std::string hash2 = HashHex(WeightsHash(replica->params()));
  auto committed2 = w1.WaitFor(
      [](const Message& m) { return m.envelope.has_round_committed() && m.envelope.round_committed().round() == 2; });
  ASSERT_TRUE(committed2.has_value());
  EXPECT_EQ(committed2->envelope.round_committed().weights_hash(), hash2);
  EXPECT_TRUE(committed2->envelope.round_committed().job_finished());
  // An upload for a finished job is late, naming the job's state.
  a = w2.Upload(InlineUpload(job_id, 3, "w2", s2));
  EXPECT_FALSE(a.accepted());
  EXPECT_TRUE(a.late());
  EXPECT_NE(a.reason().find("FINISHED:COMPLETED"), std::string::npos) << a.reason();

  // GetJob: both rounds with their hashes, and the replicas the workers reported in heartbeats.
  v1::GetJobReply job;
  for (int i = 0; i < 100; ++i) {
    Envelope get = transport::NewEnvelope("cli");
    get.mutable_get_job()->set_job_id(job_id);
    auto reply = Ask(*cli, get);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    job = reply->envelope.get_job_reply();
    if (job.replicas_size() == 2) break;
    w1.Idle(100);  // heartbeats go on
    w2.Idle(100);
  }
  EXPECT_EQ(job.job().state(), "FINISHED:COMPLETED");
  ASSERT_EQ(job.rounds_size(), 2);
  EXPECT_EQ(job.rounds(0).weights_hash(), hash1);
  EXPECT_EQ(job.rounds(1).weights_hash(), hash2);
  EXPECT_DOUBLE_EQ(job.rounds(0).train_loss(), (r1.train_loss + r2.train_loss) / 2);
  ASSERT_EQ(job.replicas_size(), 2);
  EXPECT_EQ(job.replicas(0).worker_id(), "w1");
  EXPECT_EQ(job.replicas(0).weights_hash(), hash1);

  // The HTTP view renders the same job with the same keys as the CLI's --format json (JobView).
  httplib::Client http("127.0.0.1", coordinator.http_port());
  auto list = http.Get("/api/jobs");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->status, 200);
  const auto jobs = nlohmann::json::parse(list->body);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["job_id"], job_id);
  EXPECT_EQ(jobs[0]["state"], "FINISHED:COMPLETED");
  EXPECT_TRUE(jobs[0]["train_loss"].is_number());
  EXPECT_FALSE(jobs[0].contains("loss"));
  EXPECT_FALSE(jobs[0].contains("submit_token")) << "HTTP is not authenticated";
  nlohmann::json d;
  for (int i = 0; i < 100 && d["replicas"].size() != 2; ++i) {  // the view follows the loop closely
    auto detail = http.Get("/api/jobs/" + job_id);
    ASSERT_TRUE(detail);
    ASSERT_EQ(detail->status, 200);
    d = nlohmann::json::parse(detail->body);
    if (d["replicas"].size() != 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(d["job"]["round"], 2);
  EXPECT_EQ(d["job"]["train_loss"], jobs[0]["train_loss"]);
  ASSERT_EQ(d["rounds"].size(), 2u);
  EXPECT_EQ(d["rounds"][1]["weights_hash"], hash2);
  EXPECT_EQ(d["replicas"].size(), 2u);
  EXPECT_FALSE(d["job"].contains("submit_token"));

  // Offline export of a committed round (generate/eval/merge --store): refused while the coordinator
  // holds the store, then the exported weights are the round's.
  Status busy = ExportFromStore(data.path(), {job_id, 1}, data.path() + "/busy");
  EXPECT_EQ(busy.code(), StatusCode::kFailedPrecondition) << busy.ToString();
  EXPECT_TRUE(coordinator.Close().ok());
  for (const auto& [round, hash] : {std::pair{1u, hash1}, std::pair{0u, hash2}}) {
    const std::string out = data.path() + "/export-" + std::to_string(round);
    const Status exported_ok = ExportFromStore(data.path(), {job_id, round}, out);
    ASSERT_TRUE(exported_ok.ok()) << exported_ok.ToString();
    auto exported = LoadModelDir(out);
    ASSERT_TRUE(exported.ok()) << exported.status().ToString();
    EXPECT_EQ(HashHex(WeightsHash(exported->params)), hash) << "round " << round << " (0: the last)";
  }
  EXPECT_TRUE(ExportFromStore(data.path(), {job_id, 3}, data.path() + "/x").IsInvalidArgument());
  EXPECT_TRUE(ExportFromStore(data.path(), {"job-nope", 0}, data.path() + "/x").IsNotFound());
  EXPECT_EQ(ParseStoreModelRef("job:abc@7").value().round, 7u);
  EXPECT_TRUE(ParseStoreModelRef("job:abc@x").status().IsInvalidArgument());
}

// Central DP end to end: the coordinator noises each round (the committed aggregate is not the plain
// mean of the uploads), and status, the job log and /metrics report the epsilon the accountant gives.
TEST_F(CoordinatorDaemonTest, CentralPrivacyNoisesRoundsAndReportsEpsilon) {
  World world;
  TempDir data;
  auto parsed = ParseJobSpec(
      EffectiveJobSpecYaml(world.Spec()), "dp spec",
      {"federation.aggregation_weights=equal", "ferret.allocation=uniform", "aggregation.clip_norm=1",
       "privacy.mechanism=central", "privacy.noise_multiplier=2", "privacy.delta=1e-5", "privacy.epsilon_budget=50"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const JobSpec spec = *parsed;
  RunningCoordinator coordinator(Options(world, data));
  ASSERT_TRUE(coordinator.ok());
  ScriptedWorker w1(coordinator.endpoint(), keys_, keys_.w1, "w1");
  ScriptedWorker w2(coordinator.endpoint(), keys_, keys_.w2, "w2");
  ASSERT_TRUE(w1.Register(WorkerCapabilities(world.num_examples, "")).accepted());
  ASSERT_TRUE(w2.Register(WorkerCapabilities(world.num_examples, "")).accepted());
  auto cli = Connect(coordinator.endpoint(), keys_, keys_.cli);
  auto submitted = SubmitYaml(*cli, EffectiveJobSpecYaml(spec));
  ASSERT_TRUE(submitted.ok() && !submitted->empty()) << submitted.status().ToString();
  const std::string job_id = *submitted;

  auto replica = world.Replica();
  ASSERT_TRUE(w1.WaitForBody(Envelope::kRoundStart).has_value());
  const TaskletResult r1 = Train(spec, 1, "w1", world, *replica);
  const TaskletResult r2 = Train(spec, 1, "w2", world, *replica);
  EXPECT_TRUE(w1.Upload(InlineUpload(job_id, 1, "w1", r1)).accepted());
  EXPECT_TRUE(w2.Upload(InlineUpload(job_id, 1, "w2", r2)).accepted());
  const std::vector<uint8_t> plain = ExpectedRound(spec, 1, {{"w1", r1}, {"w2", r2}}, *replica);
  auto committed = w1.WaitForBody(Envelope::kRoundCommitted);
  ASSERT_TRUE(committed.has_value());
  const std::string& noised = committed->envelope.round_committed().aggregate();
  ASSERT_EQ(noised.size(), plain.size()) << "the same payload format";
  EXPECT_NE(noised, Bytes(plain)) << "central noise on the committed aggregate";

  v1::GetJobReply job;
  for (int i = 0; i < 100 && job.job().round() < 1; ++i) {
    auto reply = GetJobReply(*cli, job_id);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    job = *reply;
  }
  ASSERT_TRUE(job.job().has_privacy());
  const v1::PrivacyStatus& privacy = job.job().privacy();
  EXPECT_EQ(privacy.mechanism(), "central");
  EXPECT_DOUBLE_EQ(privacy.epsilon(), JobPrivacyGuarantee(spec.privacy, 1).epsilon);
  EXPECT_DOUBLE_EQ(privacy.epsilon_at_end(), JobPrivacyGuarantee(spec.privacy, 2).epsilon);
  EXPECT_DOUBLE_EQ(privacy.delta(), 1e-5);
  EXPECT_TRUE(sink_->Contains("privacy central: epsilon ")) << "the job log line";
  httplib::Client http("127.0.0.1", coordinator.http_port());
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("tributary_job_dp_epsilon{job=\"" + job_id + "\"}"), std::string::npos) << metrics->body;
  EXPECT_TRUE(coordinator.Stop().ok());
}

// A job whose dataset no worker holds: accepted while no worker is registered (as after a restart), and
// then it waits, status saying why; refused at submit once workers are registered and none holds it.
TEST_F(CoordinatorDaemonTest, AJobNoWorkerCanRunShowsWhyItWaits) {
  World world;
  TempDir data;
  RunningCoordinator coordinator(Options(world, data));
  ASSERT_TRUE(coordinator.ok());
  auto cli = Connect(coordinator.endpoint(), keys_, keys_.cli);
  auto spec = ParseJobSpec(EffectiveJobSpecYaml(world.Spec()), "spec", {"data.dataset=nobody-has-this"});
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto submitted = SubmitYaml(*cli, EffectiveJobSpecYaml(*spec));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  ScriptedWorker w1(coordinator.endpoint(), keys_, keys_.w1, "w1");
  ASSERT_TRUE(w1.Register(WorkerCapabilities(world.num_examples, "")).accepted());
  auto refused = SubmitYaml(*cli, EffectiveJobSpecYaml(*spec));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("no registered worker holds dataset 'nobody-has-this'"), std::string::npos)
      << refused.status().ToString();
  std::string waiting;  // until the job was re-planned with w1 (it first waited with no worker at all)
  for (int i = 0; i < 100 && waiting.find("w1: ") == std::string::npos; ++i) {
    auto reply = GetJobReply(*cli, *submitted);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    waiting = reply->job().waiting();
    if (waiting.find("w1: ") == std::string::npos) w1.Idle(50);
  }
  EXPECT_NE(waiting.find("0 of 1 workers are eligible"), std::string::npos) << waiting;
  EXPECT_NE(waiting.find("w1: "), std::string::npos) << waiting;
  EXPECT_NE(waiting.find("nobody-has-this"), std::string::npos) << waiting;
  EXPECT_TRUE(coordinator.Stop().ok());
}

// Jobs are built off the loop, one at a time: two clients that submit the same spec with the same token at
// the same moment get one job (the second reply says it existed), and the same token with another spec is
// refused rather than making a second job.
TEST_F(CoordinatorDaemonTest, ConcurrentSubmitsWithOneTokenMakeOneJob) {
  World world;
  TempDir data;
  RunningCoordinator coordinator(Options(world, data));
  ASSERT_TRUE(coordinator.ok());
  const std::string yaml = EffectiveJobSpecYaml(world.Spec());
  auto submit = [&](const std::string& spec_yaml, const transport::KeyPair& key) -> Result<Message> {
    auto cli = Connect(coordinator.endpoint(), keys_, key);
    Envelope request = transport::NewEnvelope("cli");
    request.mutable_submit_job()->set_spec_yaml(spec_yaml);
    request.mutable_submit_job()->set_submit_token("nightly-1");
    return Ask(*cli, request);
  };
  Result<Message> replies[2] = {Status::Internal("not run"), Status::Internal("not run")};
  std::thread first([&] { replies[0] = submit(yaml, keys_.cli); });
  std::thread second([&] { replies[1] = submit(yaml, keys_.stranger); });
  first.join();
  second.join();
  for (const auto& reply : replies) ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  const v1::SubmitJobReply& a = replies[0]->envelope.submit_job_reply();
  const v1::SubmitJobReply& b = replies[1]->envelope.submit_job_reply();
  EXPECT_TRUE(a.accepted() && b.accepted());
  EXPECT_FALSE(a.job_id().empty());
  EXPECT_EQ(a.job_id(), b.job_id());
  EXPECT_NE(a.existing(), b.existing()) << "exactly one of them made the job";

  auto other = ParseJobSpec(yaml, "spec", {"federation.rounds=7"});
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  auto conflict = submit(EffectiveJobSpecYaml(*other), keys_.cli);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), StatusCode::kAlreadyExists) << conflict.status().ToString();
  auto cli = Connect(coordinator.endpoint(), keys_, keys_.cli);
  Envelope list = transport::NewEnvelope("cli");
  list.mutable_list_jobs();
  auto listed = Ask(*cli, list);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(listed->envelope.list_jobs_reply().jobs_size(), 1);
  EXPECT_TRUE(coordinator.Stop().ok());
}

// A worker whose heartbeats say it cannot train the job is left out of the job's next round (the job log
// says why), and is selected again once its heartbeats no longer list the problem. When every eligible
// worker reports one, the round is planned with them as before (each tries again when sent the round).
TEST_F(CoordinatorDaemonTest, AWorkerThatCannotTrainIsLeftOutOfRoundsUntilItsProblemClears) {
  World world;
  TempDir data;
  RunningCoordinator coordinator(Options(world, data));
  ASSERT_TRUE(coordinator.ok());
  auto spec =
      ParseJobSpec(EffectiveJobSpecYaml(world.Spec()), "spec", {"federation.rounds=4", "federation.min_clients=1"});
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ScriptedWorker w1(coordinator.endpoint(), keys_, keys_.w1, "w1");
  ScriptedWorker w2(coordinator.endpoint(), keys_, keys_.w2, "w2");
  ASSERT_TRUE(w1.Register(WorkerCapabilities(world.num_examples, "")).accepted());
  ASSERT_TRUE(w2.Register(WorkerCapabilities(world.num_examples, "")).accepted());
  auto cli = Connect(coordinator.endpoint(), keys_, keys_.cli);
  auto submitted = SubmitYaml(*cli, EffectiveJobSpecYaml(*spec));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  const std::string job_id = *submitted;
  auto replica = world.Replica();

  auto round_start = [](ScriptedWorker& w, uint64_t round) {
    return w
        .WaitFor([round](const Message& m) {
          return m.envelope.has_round_start() && m.envelope.round_start().round() == round;
        })
        .has_value();
  };
  auto problem = [&](uint64_t round) {
    v1::JobProblem p;
    p.set_job_id(job_id);
    p.set_round(round);
    p.set_reason("RoundStart: out of memory while training job " + job_id + " round " + std::to_string(round) +
                 " (std::bad_alloc)");
    return p;
  };
  // Heartbeats until the coordinator shows `count` problems for the job.
  auto await_problems = [&](int count) {
    for (int i = 0; i < 200; ++i) {
      auto reply = GetJobReply(*cli, job_id);
      if (reply.ok() && reply->worker_problems_size() == count) return true;
      w1.Idle(50);
      w2.Idle(50);
    }
    return false;
  };
  auto open_round_workers = [&] {
    auto reply = GetJobReply(*cli, job_id);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    return reply.ok() ? std::vector<std::string>(reply->workers().begin(), reply->workers().end())
                      : std::vector<std::string>{};
  };
  // Both upload `round` (a worker reporting a problem uploads too: the plan of the next round is what
  // this test checks, not a round waiting for its deadline).
  auto upload_round = [&](uint32_t round, const std::vector<ScriptedWorker*>& workers) {
    std::vector<std::pair<std::string, TaskletResult>> results;
    for (ScriptedWorker* w : workers)
      results.emplace_back(w->worker_id(), Train(*spec, round, w->worker_id(), world, *replica));
    for (size_t i = 0; i < workers.size(); ++i)
      EXPECT_TRUE(workers[i]->Upload(InlineUpload(job_id, round, results[i].first, results[i].second)).accepted());
    ExpectedRound(*spec, round, results, *replica);
  };

  // Round 1 with both; w1 then reports it cannot train the job.
  ASSERT_TRUE(round_start(w1, 1) && round_start(w2, 1));
  w1.problems = {problem(1)};
  ASSERT_TRUE(await_problems(1));
  upload_round(1, {&w1, &w2});

  // Round 2 is planned without w1, and the job log says why.
  ASSERT_TRUE(round_start(w2, 2));
  EXPECT_EQ(open_round_workers(), std::vector<std::string>{"w2"});
  EXPECT_TRUE(
      sink_->Contains("worker 'w1' left out of round 2: cannot train: RoundStart: out of memory while "
                      "training job " +
                      job_id + " round 1 (std::bad_alloc)"));

  // w1's heartbeats no longer list the problem: round 3 selects it again.
  w1.problems.clear();
  ASSERT_TRUE(await_problems(0));
  upload_round(2, {&w2});
  ASSERT_TRUE(round_start(w1, 3) && round_start(w2, 3));
  EXPECT_EQ(open_round_workers(), (std::vector<std::string>{"w1", "w2"}));

  // Every eligible worker reports a problem: round 4 is planned with them, as before.
  w1.problems = {problem(3)};
  w2.problems = {problem(3)};
  ASSERT_TRUE(await_problems(2));
  upload_round(3, {&w1, &w2});
  ASSERT_TRUE(round_start(w1, 4) && round_start(w2, 4));
  EXPECT_EQ(open_round_workers(), (std::vector<std::string>{"w1", "w2"}));
  EXPECT_TRUE(
      sink_->Contains("round 4: planned with the 2 worker(s) that report they cannot train the job (w1, "
                      "w2), since without them: "));
  EXPECT_FALSE(sink_->Contains("left out of round 4"));
  EXPECT_TRUE(coordinator.Stop().ok());
}

// A spec over its privacy budget is refused at submit, naming the field.
TEST_F(CoordinatorDaemonTest, SubmitRefusesAJobOverItsPrivacyBudget) {
  World world;
  TempDir data;
  RunningCoordinator coordinator(Options(world, data));
  ASSERT_TRUE(coordinator.ok());
  auto cli = Connect(coordinator.endpoint(), keys_, keys_.cli);
  std::string yaml = EffectiveJobSpecYaml(world.Spec());
  const std::string none = "privacy:\n  mechanism: \"none\"\n";
  ASSERT_NE(yaml.find(none), std::string::npos) << yaml;
  yaml.replace(yaml.find(none), none.size(),
               "privacy:\n  mechanism: local\n  noise_multiplier: 0.5\n  delta: 1e-5\n  epsilon_budget: 1\n");
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"aggregation_weights: \"samples\"", "aggregation_weights: equal"},
           {"allocation: \"norm_ratio\"", "allocation: uniform"},
           {"clip_norm: 0\n", "clip_norm: 1\n"}}) {
    ASSERT_NE(yaml.find(from), std::string::npos) << from << " in " << yaml;
    yaml.replace(yaml.find(from), from.size(), to);
  }
  auto reply = SubmitYaml(*cli, yaml);
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(
      reply.status().message().find("field 'privacy.epsilon_budget': federation.rounds 2 at noise multiplier 0.5"),
      std::string::npos)
      << reply.status().ToString();
  EXPECT_TRUE(coordinator.Stop().ok());
}

// The registry on its own: the inventory a Register makes, key binding, liveness and replicas.
TEST(WorkerRegistryTest, CarriesFabricIdsBindsIdsToKeysAndTracksLiveness) {
  TempDir dir;
  auto store = checkpoint::CheckpointStore::Open(dir.path() + "/store");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  WorkerRegistry registry(store->get(), WorkerRegistryOptions{/*insecure=*/false, 1000, 3});
  transport::PeerInfo alice{"route-a", "KEY-A", "alice", "10.0.0.1"};
  transport::PeerInfo mallory{"route-m", "KEY-M", "mallory", "10.0.0.2"};

  v1::Register reg;
  reg.set_worker_id("w1");
  *reg.mutable_capabilities() = WorkerCapabilities(18, "rack-7");
  v1::Nic* ib = reg.mutable_capabilities()->add_nics();
  ib->set_name("mlx5_0/1");
  ib->set_kind("infiniband");
  ib->set_speed_mbps(200000);
  ib->set_fabric_id("ib-island-2");
  auto entry = registry.Register(reg, alice, 1000);
  ASSERT_TRUE(entry.ok()) << entry.status().ToString();
  const WorkerInventory& inv = (*entry)->inventory;
  ASSERT_EQ(inv.nics.size(), 2u) << "docker0 (fabric 'other') is not placeable";
  EXPECT_EQ(inv.nics[0].name, "eth0");
  EXPECT_EQ(inv.nics[0].fabric, NicFabric::kEthernet);
  EXPECT_EQ(inv.nics[0].fabric_id, "rack-7");
  EXPECT_EQ(inv.nics[1].fabric, NicFabric::kInfiniband);
  EXPECT_EQ(inv.nics[1].fabric_id, "ib-island-2");
  EXPECT_EQ(inv.datasets.at(kDataset), 18);
  EXPECT_TRUE(inv.alive);
  ASSERT_EQ(registry.AliveInventory().size(), 1u);
  EXPECT_EQ(registry.AliveInventory()[0].nics[0].fabric_id, "rack-7");

  // The id belongs to alice's key, also for a registry built later on the same store.
  EXPECT_EQ(registry.Register(reg, mallory, 1100).status().code(), StatusCode::kPermissionDenied);
  WorkerRegistry restarted(store->get(), WorkerRegistryOptions{/*insecure=*/false, 1000, 3});
  EXPECT_EQ(restarted.Register(reg, mallory, 1100).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.Authorize("w1", mallory).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.Authorize("w9", alice).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(registry.Authorize("w1", alice).ok());
  v1::Register bad = reg;
  bad.set_worker_id("");
  EXPECT_EQ(registry.Register(bad, alice, 1100).status().code(), StatusCode::kInvalidArgument);

  // Heartbeats carry replicas; silence for heartbeat_misses intervals is death, a heartbeat revives.
  v1::Heartbeat hb;
  hb.set_worker_id("w1");
  v1::ReplicaState* replica = hb.add_replicas();
  replica->set_job_id("job-1");
  replica->set_round(4);
  replica->set_weights_hash("00000000000000ab");
  const uint64_t version = registry.version();
  ASSERT_TRUE(registry.Heartbeat(hb, alice, 2000).ok());
  EXPECT_GT(registry.version(), version);
  ASSERT_EQ(registry.ReplicasOf("job-1").size(), 1u);
  EXPECT_EQ(registry.ReplicasOf("job-1")[0].worker_id(), "w1");
  EXPECT_TRUE(registry.ReplicasOf("job-2").empty());
  EXPECT_EQ(registry.Heartbeat(hb, mallory, 2100).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.MarkDead(4000), 1);
  EXPECT_EQ(registry.MarkDead(5001), 0);
  EXPECT_TRUE(registry.AliveInventory().empty());
  EXPECT_TRUE(registry.ReplicasOf("job-1").empty()) << "a dead worker's replicas are dropped with it";
  ASSERT_TRUE(registry.Heartbeat(hb, alice, 5100).ok());
  EXPECT_EQ(registry.MarkDead(5200), 1);
  EXPECT_EQ(registry.ReplicasOf("job-1").size(), 1u);

  // A heartbeat stays small: too many replicas or oversized fields are refused naming the worker.
  v1::Heartbeat flood = hb;
  for (int i = 0; i < WorkerRegistry::kMaxHeartbeatReplicas; ++i) *flood.add_replicas() = *replica;
  Status refused = registry.Heartbeat(flood, alice, 5300).status();
  EXPECT_TRUE(refused.IsInvalidArgument()) << refused.ToString();
  EXPECT_NE(refused.message().find("heartbeat from worker 'w1': 65 replicas, at most 64"), std::string::npos)
      << refused.ToString();
  v1::Heartbeat big = hb;
  big.mutable_replicas(0)->set_job_id(std::string(100000, 'j'));
  EXPECT_TRUE(registry.Heartbeat(big, alice, 5400).status().IsInvalidArgument());
  EXPECT_EQ(registry.ReplicasOf("job-1").size(), 1u) << "a refused heartbeat changes nothing";
}

}  // namespace
}  // namespace daemontest
}  // namespace tributary
