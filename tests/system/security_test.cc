// The coordinator daemon against unauthorized and malformed peers, and submit-token idempotency.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "base/file_util.h"
#include "tests/system/system_util.h"
#include "transport/message.h"
#include "transport/security.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

transport::Envelope ListJobsRequest() {
  transport::Envelope request = transport::NewEnvelope("test");
  request.mutable_list_jobs();
  return request;
}

TEST(SecuritySystemTest, ClientWithUnknownKeyIsRefused) {
  TestDir dir;
  TestCluster cluster(dir.path(), {.num_workers = 1});
  // The admitted client works.
  ASSERT_TRUE(cluster.client().Request(ListJobsRequest(), 10000).ok());

  auto stranger = transport::GenerateKeyPair();
  ASSERT_TRUE(stranger.ok());
  transport::ClientOptions options;
  options.keys = *stranger;
  auto coordinator_key = transport::LoadPublicKey((fs::path(dir.path()) / "keys" / "coordinator.pub").string());
  ASSERT_TRUE(coordinator_key.ok());
  options.server_public_key = *coordinator_key;
  auto client = transport::Client::Connect(cluster.cluster().endpoint(), options);
  ASSERT_TRUE(client.ok());
  auto reply = (*client)->Request(ListJobsRequest(), 2000);
  EXPECT_FALSE(reply.ok()) << "a key missing from allowed_keys must get no answer";
  EXPECT_GT((*client)->handshake_failures(), 0u);

  // A worker process with an unknown key never registers; the coordinator logs the refused key.
  ASSERT_TRUE(transport::WriteKeyPairFiles((fs::path(dir.path()) / "keys" / "rogue").string(), false, nullptr).ok());
  auto rogue =
      cli::ChildProcess::Spawn(TRIBUTARY_BINARY,
                               {"worker", "--coordinator", cluster.cluster().endpoint(), "--name", "rogue", "--key",
                                (fs::path(dir.path()) / "keys" / "rogue.key").string(), "--coordinator-key",
                                (fs::path(dir.path()) / "keys" / "coordinator.pub").string(), "--data",
                                "words=" + (fs::path(dir.path()) / "data" / "shard-0.jsonl").string()},
                               (fs::path(dir.path()) / "rogue.log").string());
  ASSERT_TRUE(rogue.ok());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  (*rogue)->Signal(SIGTERM);
  (*rogue)->Wait(10000);
  auto log = ReadFileToString((fs::path(dir.path()) / "coordinator.log").string());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->find("worker 'rogue' registered"), std::string::npos);
  EXPECT_NE(log->find("handshake failed"), std::string::npos) << *log;
}

TEST(SecuritySystemTest, MalformedFramesAreRejectedWithoutACrash) {
  TestDir dir;
  TestCluster cluster(dir.path(), {.num_workers = 1});
  transport::Client& client = cluster.client();
  const transport::Limits limits;
  auto frame = [](const std::string& bytes) { return zmq::message_t(bytes.data(), bytes.size()); };
  auto header = [](uint32_t length, uint32_t bulk_frames) {
    std::string h(transport::kFrameMagic, 4);
    for (int i = 0; i < 4; ++i) h.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
    for (int i = 0; i < 4; ++i) h.push_back(static_cast<char>((bulk_frames >> (8 * i)) & 0xff));
    return h;
  };
  std::vector<std::vector<zmq::message_t>> attacks;
  // Truncated header, wrong magic, a length past the frame, an oversized claim, garbage protobuf.
  attacks.emplace_back();
  attacks.back().push_back(frame("TRB"));
  attacks.emplace_back();
  attacks.back().push_back(frame("XXXX" + std::string(20, '\0')));
  attacks.emplace_back();
  attacks.back().push_back(frame(header(100, 0) + "short"));
  attacks.emplace_back();
  attacks.back().push_back(frame(header(1u << 31, 0) + "x"));
  attacks.emplace_back();
  attacks.back().push_back(
      frame(header(16, 0) + std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x02\x03\x04\x05\x06", 16)));
  // A well-formed envelope of a type the coordinator never accepts (a reply type).
  transport::Envelope wrong = transport::NewEnvelope("test");
  wrong.mutable_register_ack()->set_accepted(true);
  auto wrong_frame = transport::EncodeControlFrame(wrong, 0, limits);
  ASSERT_TRUE(wrong_frame.ok());
  attacks.emplace_back();
  attacks.back().push_back(std::move(*wrong_frame));
  // A header announcing a bulk frame that is not there.
  transport::Envelope list = ListJobsRequest();
  auto list_frame = transport::EncodeControlFrame(list, 1, limits);
  ASSERT_TRUE(list_frame.ok());
  attacks.emplace_back();
  attacks.back().push_back(std::move(*list_frame));
  const size_t num_attacks = attacks.size();
  for (auto& attack : attacks) ASSERT_TRUE(client.SendRawFramesForTesting(std::move(attack)).ok());
  // Each rejected message is answered with an Error naming what is wrong (none is silently taken).
  size_t errors = 0;
  while (true) {
    auto answer = client.Receive(1000);
    if (!answer.ok()) break;
    if (answer->envelope.has_error()) ++errors;
  }
  EXPECT_EQ(errors, num_attacks);

  // Still serving, and the process is alive.
  auto reply = client.Request(ListJobsRequest(), 10000);
  EXPECT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_TRUE(cluster.cluster().coordinator()->running());
}

TEST(SecuritySystemTest, DuplicateSubmitTokenYieldsOneJob) {
  TestDir dir;
  TestCluster cluster(dir.path(), {.num_workers = 1});
  const std::string yaml = JobYaml(cluster.base_model(), "ferret", 1, 4, {"federation.min_clients=1"});
  const std::string first = Submit(cluster.client(), yaml, "nightly-2026-11-28");
  const std::string second = Submit(cluster.client(), yaml, "nightly-2026-11-28");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, second);
  // The same token with a different spec is a conflict, not a second job.
  transport::Envelope conflict = transport::NewEnvelope("test");
  conflict.mutable_submit_job()->set_spec_yaml(
      JobYaml(cluster.base_model(), "ferret", 2, 4, {"federation.min_clients=1"}));
  conflict.mutable_submit_job()->set_submit_token("nightly-2026-11-28");
  auto refused = cluster.client().Request(conflict, 10000);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kAlreadyExists) << refused.status().ToString();
  auto jobs = cluster.client().Request(ListJobsRequest(), 10000);
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->envelope.list_jobs_reply().jobs_size(), 1);
  // And after a coordinator restart the token still maps to the same job.
  cluster.cluster().KillCoordinator(SIGKILL);
  ASSERT_TRUE(cluster.cluster().StartCoordinator().ok());
  cluster.Reconnect();
  EXPECT_EQ(Submit(cluster.client(), yaml, "nightly-2026-11-28"), first);
}

}  // namespace
}  // namespace tributary::system_test
