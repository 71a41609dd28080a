// CURVE keys and allow-lists; admission and refusal of peers by the ZAP handler.
#include "transport/security.h"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "base/file_util.h"
#include "tests/transport/loopback_util.h"
#include "transport/channel.h"

namespace tributary::transport {
namespace {

using testing::CurveSetup;
using testing::LogCapture;
using testing::MakeCurveSetup;
using testing::TempDir;

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

Envelope Hello() {
  Envelope envelope = NewEnvelope("someone");
  envelope.mutable_heartbeat()->set_worker_id("someone");
  return envelope;
}

// Serves (drops) messages until the server's monitor reported a failed handshake; bounded.
bool WaitForHandshakeFailure(Server& server) {
  for (int i = 0; i < 60 && server.handshake_failures() == 0; ++i) (void)server.Receive(50).ok();
  return server.handshake_failures() > 0;
}

TEST(SecurityTest, GeneratedKeysAreValidAndDistinct) {
  const KeyPair a = GenerateKeyPair().value();
  const KeyPair b = GenerateKeyPair().value();
  EXPECT_TRUE(IsValidZ85Key(a.public_key));
  EXPECT_TRUE(IsValidZ85Key(a.secret_key));
  EXPECT_NE(a.public_key, b.public_key);
  EXPECT_EQ(PublicKeyFromSecret(a.secret_key).value(), a.public_key);
  EXPECT_FALSE(IsValidZ85Key("short"));
  EXPECT_FALSE(IsValidZ85Key(std::string(40, '"')));  // '"' is not in the Z85 alphabet
}

TEST(SecurityTest, WriteKeyPairFilesWritesPrivateSecretAndRefusesOverwrite) {
  TempDir dir;
  const std::string prefix = dir.path() + "/worker-7";
  std::string public_key;
  ASSERT_TRUE(WriteKeyPairFiles(prefix, /*force=*/false, &public_key).ok());
  EXPECT_TRUE(IsValidZ85Key(public_key));

  struct stat st;
  ASSERT_EQ(::stat((prefix + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const KeyPair loaded = LoadKeyPair(prefix).value();
  EXPECT_EQ(loaded.public_key, public_key);
  EXPECT_EQ(LoadKeyPair(prefix + ".key").value().secret_key, loaded.secret_key);
  EXPECT_EQ(LoadPublicKey(prefix + ".pub").value(), public_key);
  // The .pub file is a ready allow-list line named after the prefix.
  const AllowList from_pub = LoadAllowList(prefix + ".pub").value();
  EXPECT_EQ(from_pub.NameOf(public_key), "worker-7");

  std::string second;
  const Status refused = WriteKeyPairFiles(prefix, /*force=*/false, &second);
  EXPECT_EQ(refused.code(), StatusCode::kAlreadyExists) << refused.ToString();
  EXPECT_NE(refused.message().find("worker-7.key"), std::string::npos) << refused.message();
  EXPECT_EQ(LoadKeyPair(prefix).value().public_key, public_key);  // untouched

  // With force, a loose-permission old file is replaced by a fresh 0600 one holding a new key.
  ASSERT_EQ(::chmod((prefix + ".key").c_str(), 0644), 0);
  ASSERT_TRUE(WriteKeyPairFiles(prefix, /*force=*/true, &second).ok());
  EXPECT_NE(second, public_key);
  ASSERT_EQ(::stat((prefix + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(LoadKeyPair(prefix).value().public_key, second);

  EXPECT_FALSE(WriteKeyPairFiles(dir.path() + "/no-such-dir/k", false, nullptr).ok());
}

TEST(SecurityTest, LoadKeyPairRejectsBrokenFiles) {
  TempDir dir;
  const KeyPair a = GenerateKeyPair().value();
  const KeyPair b = GenerateKeyPair().value();
  const std::string mismatched = dir.path() + "/mismatched.key";
  WriteText(mismatched, "public-key = " + b.public_key + "\nsecret-key = " + a.secret_key + "\n");
  Status status = LoadKeyPair(mismatched).status();
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("does not belong"), std::string::npos) << status.message();

  const std::string garbage = dir.path() + "/garbage.key";
  WriteText(garbage, "# comment\nsecret-key = not-a-key\n");
  status = LoadKeyPair(garbage).status();
  EXPECT_NE(status.message().find("garbage.key:2"), std::string::npos) << status.message();

  EXPECT_TRUE(LoadKeyPair(dir.path() + "/missing").status().IsNotFound());
}

TEST(SecurityTest, AllowListParsesNamesCommentsAndReportsBadLines) {
  const KeyPair a = GenerateKeyPair().value();
  const KeyPair b = GenerateKeyPair().value();
  const std::string text = "# workers of site A\n\n" + a.public_key + "   worker-a   # lab 3\n\t" + b.public_key + "\n";
  const AllowList list = AllowList::Parse(text, "workers.allow").value();
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list.NameOf(a.public_key), "worker-a");
  EXPECT_TRUE(list.Contains(b.public_key));
  EXPECT_EQ(list.NameOf(b.public_key), "");
  EXPECT_FALSE(list.Contains(GenerateKeyPair().value().public_key));

  // '#' is a Z85 character: inside a key it is not a comment.
  KeyPair hashed = GenerateKeyPair().value();
  for (int i = 0; i < 500 && hashed.public_key.find('#') == std::string::npos; ++i) hashed = GenerateKeyPair().value();
  ASSERT_NE(hashed.public_key.find('#'), std::string::npos);
  const AllowList with_hash = AllowList::Parse(hashed.public_key + " w#1 # note\n", "x.allow").value();
  EXPECT_EQ(with_hash.NameOf(hashed.public_key), "w#1");

  TempDir dir;
  const std::string path = dir.path() + "/workers.allow";
  WriteText(path, a.public_key + " ok\n# fine\n" + a.public_key.substr(0, 39) + " broken\n");
  const Status status = LoadAllowList(path).status();
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("workers.allow:3:"), std::string::npos) << status.message();
}

TEST(SecurityTest, AllowListedClientIsAdmittedWithItsIdentity) {
  const CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, testing::SecureServerOptions(setup)).value();
  std::unique_ptr<Client> client =
      Client::Connect(server->endpoint(), testing::SecureClientOptions(setup, setup.client)).value();
  ASSERT_TRUE(client->Send(Hello()).ok());
  Result<Incoming> got = server->Receive(3000);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->peer.public_key, setup.client.public_key);
  EXPECT_EQ(got->peer.name, "worker-a");
  EXPECT_EQ(got->peer.address, "127.0.0.1");
  EXPECT_NE(got->peer.Describe().find("worker-a"), std::string::npos);
  EXPECT_TRUE(server->RefusedKeys().empty());
}

TEST(SecurityTest, UnknownKeyIsRefusedAndLogged) {
  LogCapture log;
  const CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, testing::SecureServerOptions(setup)).value();
  const KeyPair stranger = GenerateKeyPair().value();
  std::unique_ptr<Client> client =
      Client::Connect(server->endpoint(), testing::SecureClientOptions(setup, stranger)).value();
  Result<Message> reply = client->Request(Hello(), 500);
  EXPECT_EQ(reply.status().code(), StatusCode::kTimeout) << reply.status().ToString();
  EXPECT_EQ(server->Receive(100).status().code(), StatusCode::kTimeout);  // nothing got through
  EXPECT_TRUE(log.WaitFor("refused CURVE client " + stranger.public_key, 3000));
  EXPECT_TRUE(WaitForHandshakeFailure(*server));
  const std::vector<std::string> refused = server->RefusedKeys();
  ASSERT_FALSE(refused.empty());
  EXPECT_EQ(refused[0], stranger.public_key);
}

TEST(SecurityTest, KeyAddedToTheAllowListIsAdmittedWithoutRestart) {
  const CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, testing::SecureServerOptions(setup)).value();
  const KeyPair newcomer = GenerateKeyPair().value();
  std::unique_ptr<Client> client =
      Client::Connect(server->endpoint(), testing::SecureClientOptions(setup, newcomer)).value();
  ASSERT_TRUE(client->Send(Hello()).ok());
  EXPECT_EQ(server->Receive(300).status().code(), StatusCode::kTimeout);

  AllowList updated = setup.allow_list;
  ASSERT_TRUE(updated.Add(newcomer.public_key, "worker-new").ok());
  ASSERT_TRUE(server->SetAllowList(updated).ok());
  // libzmq stops reconnecting after a refusal; the Client rebuilds its socket by itself (while it
  // is used) and gets through once its key is listed.
  Result<Incoming> got = Status::Timeout("not yet");
  for (int i = 0; i < 50 && !got.ok(); ++i) {
    (void)client->Receive(50).ok();
    ASSERT_TRUE(client->Send(Hello()).ok());
    got = server->Receive(100);
  }
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->peer.name, "worker-new");
  EXPECT_GT(client->handshake_failures(), 0u);
}

TEST(SecurityTest, ClientWithoutCurveIsRefused) {
  LogCapture log;
  const CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, testing::SecureServerOptions(setup)).value();
  std::unique_ptr<Client> plain = Client::Connect(server->endpoint(), testing::InsecureClientOptions()).value();
  ASSERT_TRUE(plain->Send(Hello()).ok());
  EXPECT_EQ(server->Receive(500).status().code(), StatusCode::kTimeout);
  EXPECT_EQ(plain->Receive(100).status().code(), StatusCode::kTimeout);
  // The refusal is visible to the operator.
  EXPECT_TRUE(WaitForHandshakeFailure(*server));
  EXPECT_TRUE(log.Contains("security mechanism mismatch"));
}

TEST(SecurityTest, ClientWithTheWrongServerKeyGetsNothing) {
  const CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, testing::SecureServerOptions(setup)).value();
  ClientOptions options = testing::SecureClientOptions(setup, setup.client);
  options.server_public_key = GenerateKeyPair().value().public_key;  // an impostor's key
  std::unique_ptr<Client> client = Client::Connect(server->endpoint(), options).value();
  ASSERT_TRUE(client->Send(Hello()).ok());
  EXPECT_EQ(server->Receive(500).status().code(), StatusCode::kTimeout);
  EXPECT_TRUE(WaitForHandshakeFailure(*server));
}

TEST(SecurityTest, InsecureModeWorksAndWarnsAtEveryStart) {
  LogCapture log;
  std::unique_ptr<Server> server = Server::Bind(testing::kLoopbackAny, testing::InsecureServerOptions()).value();
  EXPECT_TRUE(log.Contains("INSECURE mode on " + std::string(testing::kLoopbackAny)));
  std::unique_ptr<Client> client = Client::Connect(server->endpoint(), testing::InsecureClientOptions()).value();
  EXPECT_TRUE(log.Contains("INSECURE mode to " + server->endpoint()));
  ASSERT_TRUE(client->Send(Hello()).ok());
  Result<Incoming> got = server->Receive(3000);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->peer.public_key.empty());
  EXPECT_NE(got->peer.Describe().find("insecure"), std::string::npos);

  // A CURVE client cannot talk to an insecure server either (no silent downgrade).
  const CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Client> secure =
      Client::Connect(server->endpoint(), testing::SecureClientOptions(setup, setup.client)).value();
  ASSERT_TRUE(secure->Send(Hello()).ok());
  EXPECT_EQ(server->Receive(500).status().code(), StatusCode::kTimeout);
}

}  // namespace
}  // namespace tributary::transport
