// Helpers for transport tests: CURVE setups on loopback, sample envelopes, log capture.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "tests/common/temp_dir.h"
#include "transport/channel.h"
#include "transport/message.h"
#include "transport/security.h"

namespace tributary::transport::testing {

inline constexpr const char* kLoopbackAny = "tcp://127.0.0.1:*";

// A server key pair, one allowed client key pair ("worker-a") and the allow-list holding it.
struct CurveSetup {
  KeyPair server;
  KeyPair client;
  AllowList allow_list;
};
CurveSetup MakeCurveSetup();

ServerOptions SecureServerOptions(const CurveSetup& setup);
ClientOptions SecureClientOptions(const CurveSetup& setup, const KeyPair& client_keys);
ServerOptions InsecureServerOptions();
ClientOptions InsecureClientOptions();

// An envelope of the given body type with every field of the body set to a non-default value.
Envelope SampleEnvelope(Envelope::BodyCase body);
// Every body case of Envelope's oneof, from the descriptor (so a new message type is not missed).
std::vector<Envelope::BodyCase> AllBodyCases();

bool SameEnvelope(const Envelope& a, const Envelope& b);

// Sends to the server and receives its answer, retrying the whole exchange until `total_ms`
// passes (for tests that expect a reconnect in between).
Result<Message> RequestWithRetries(Client& client, const Envelope& request, int attempt_ms, int total_ms);

// Replaces the default spdlog logger with one writing to a ring buffer for its lifetime. Create it
// before any server/client whose threads may log, so it outlives them.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  bool Contains(const std::string& text) const;
  // Waits (bounded) for a line containing `text` (log lines may come from other threads).
  bool WaitFor(const std::string& text, int timeout_ms) const;

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

// A unique temporary directory, removed with its content at destruction.

using testutil::TempDir;

}  // namespace tributary::transport::testing
