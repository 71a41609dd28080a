#include "tests/transport/storm_util.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "tests/transport/loopback_util.h"

namespace tributary::transport::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kLoopPollMs = 20;       // the coordinator's Receive timeout
constexpr size_t kMaxPushPeers = 64;  // peers the child pushes to (the most recent ones)

Envelope HeartbeatEnvelope(uint64_t sequence) {
  Envelope envelope = NewEnvelope("worker-a");
  envelope.mutable_heartbeat()->set_worker_id("worker-a");
  envelope.mutable_heartbeat()->set_sequence(sequence);
  return envelope;
}

// The child: a coordinator-like loop until `stop_fd` becomes readable. Never returns.
[[noreturn]] void ServeInChild(const CurveSetup& setup, const StormOptions& options, int endpoint_fd, int stop_fd) {
  spdlog::set_level(spdlog::level::off);  // a storm of rejections would flood the test log
  ServerOptions server_options = SecureServerOptions(setup);
  server_options.socket = options.server_socket;
  server_options.zmtp_heartbeats = options.server_zmtp_heartbeats;
  auto server = Server::Bind(kLoopbackAny, server_options);
  if (!server.ok()) _exit(3);
  const std::string endpoint = (*server)->endpoint() + "\n";
  if (write(endpoint_fd, endpoint.data(), endpoint.size()) != static_cast<ssize_t>(endpoint.size())) _exit(4);
  std::vector<std::string> recent;  // routing ids, most recent last
  auto next_push = Clock::now();
  uint64_t round = 0;
  while (true) {
    pollfd stop = {stop_fd, POLLIN, 0};
    if (poll(&stop, 1, 0) > 0) _exit(0);
    Result<Incoming> in = (*server)->Receive(kLoopPollMs);
    if (in.ok()) {
      const std::string& id = in->peer.routing_id;
      if (recent.empty() || recent.back() != id) recent.push_back(id);
      if (recent.size() > kMaxPushPeers) recent.erase(recent.begin());
      if (in->message.envelope.body_case() == Envelope::kHeartbeat) {
        Envelope ack = NewEnvelope("coordinator");
        ack.mutable_heartbeat_ack()->set_sequence(in->message.envelope.heartbeat().sequence());
        (*server)->Reply(*in, ack).IgnoreError();
      }
    }
    if (Clock::now() >= next_push) {
      Envelope committed = NewEnvelope("coordinator");
      committed.mutable_round_committed()->set_job_id("storm");
      committed.mutable_round_committed()->set_round(++round);
      for (const std::string& id : recent) (*server)->Send(id, committed).IgnoreError();
      next_push = Clock::now() + std::chrono::milliseconds(kLoopPollMs);
    }
  }
}

// One fuzzed multipart message: random bytes, a mutated or truncated valid frame, extra frames.
std::vector<zmq::message_t> FuzzedMessage(std::mt19937& rng, const std::string& valid) {
  std::vector<zmq::message_t> frames;
  std::string head = valid;
  switch (rng() % 6) {
    case 0: {  // random bytes
      head.resize(rng() % 200);
      for (char& c : head) c = static_cast<char>(rng());
      break;
    }
    case 1:  // mutated valid frame
      for (int i = 0; i < 3; ++i) head[rng() % head.size()] = static_cast<char>(rng());
      break;
    case 2: head.resize(rng() % head.size()); break;            // truncated
    case 3: break;                                              // valid (answered with an ack)
    case 4: head[8] = static_cast<char>(1 + rng() % 8); break;  // declares bulk frames it lacks
    default: head[4] = static_cast<char>(0xff); break;          // declares an oversized envelope
  }
  frames.emplace_back(head.data(), head.size());
  const int extra = rng() % 4 == 0 ? static_cast<int>(rng() % 8) : 0;
  for (int i = 0; i < extra; ++i) frames.emplace_back(static_cast<size_t>(rng() % 64));
  return frames;
}

// One fuzzing peer: connect, flood, maybe read a little, vanish; repeat until `deadline`.
void FuzzingPeer(const std::string& endpoint, const CurveSetup& setup, const StormOptions& options, uint32_t seed,
                 Clock::time_point deadline, std::atomic<uint64_t>* sent, std::atomic<uint64_t>* connections) {
  std::mt19937 rng(seed);
  zmq::context_t context;
  const std::string valid = EncodeControlFrame(HeartbeatEnvelope(seed), 0, Limits()).value().to_string();
  while (Clock::now() < deadline) {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndhwm, 0);
    socket.set(zmq::sockopt::rcvhwm, 10);
    if (options.peer_heartbeat_ivl_ms > 0) {  // PINGs that the server answers with PONGs
      socket.set(zmq::sockopt::heartbeat_ivl, options.peer_heartbeat_ivl_ms);
      socket.set(zmq::sockopt::heartbeat_timeout, 60000);
    }
    socket.set(zmq::sockopt::curve_serverkey, setup.server.public_key);
    socket.set(zmq::sockopt::curve_publickey, setup.client.public_key);
    socket.set(zmq::sockopt::curve_secretkey, setup.client.secret_key);
    socket.connect(endpoint);
    connections->fetch_add(1);
    const int burst = 200 + static_cast<int>(rng() % 3000);
    for (int m = 0; m < burst; ++m) {
      std::vector<zmq::message_t> frames = FuzzedMessage(rng, valid);
      for (size_t i = 0; i < frames.size(); ++i) {
        const auto flags =
            i + 1 < frames.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait : zmq::send_flags::dontwait;
        (void)socket.send(frames[i], flags);
      }
      sent->fetch_add(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
    for (int r = static_cast<int>(rng() % 3); r > 0; --r) {
      zmq::message_t reply;
      (void)socket.recv(reply, zmq::recv_flags::dontwait);
    }
    socket.close();  // abruptly: replies still unread, queued messages dropped
  }
}

// Runs the fuzzing peers in a second child: the attackers' own libzmq may abort under this storm
// (seen once: `Resource temporarily unavailable (src/session_base.cpp:260)` in a DEALER with 5 ms
// heartbeats), which must not end the test binary. Their counts come back through a pipe.
void RunPeersInChild(const std::string& endpoint, const CurveSetup& setup, const StormOptions& options,
                     StormOutcome* outcome) {
  int counts_pipe[2];
  if (pipe(counts_pipe) != 0) return;
  const pid_t child = fork();
  if (child == 0) {
    close(counts_pipe[0]);
    std::atomic<uint64_t> sent{0};
    std::atomic<uint64_t> connections{0};
    const auto deadline = Clock::now() + std::chrono::milliseconds(options.duration_ms);
    std::vector<std::thread> peers;
    peers.reserve(static_cast<size_t>(options.peers));
    for (int p = 0; p < options.peers; ++p) {
      peers.emplace_back(FuzzingPeer, endpoint, std::cref(setup), std::cref(options), options.seed * 1000 + p, deadline,
                         &sent, &connections);
    }
    for (std::thread& peer : peers) peer.join();
    const uint64_t counts[2] = {sent.load(), connections.load()};
    (void)!write(counts_pipe[1], counts, sizeof(counts));
    _exit(0);
  }
  close(counts_pipe[1]);
  uint64_t counts[2] = {0, 0};
  const bool got_counts = read(counts_pipe[0], counts, sizeof(counts)) == static_cast<ssize_t>(sizeof(counts));
  close(counts_pipe[0]);
  int status = 0;
  waitpid(child, &status, 0);
  outcome->messages_sent = counts[0];
  outcome->connections = counts[1];
  outcome->peers_crashed = !got_counts;
}

std::string ReadTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  return all.size() > max_bytes ? all.substr(all.size() - max_bytes) : all;
}

// The well-behaved client: one heartbeat answered within a bounded retry window.
bool GoodClientAnswered(const std::string& endpoint, const CurveSetup& setup) {
  auto client = Client::Connect(endpoint, SecureClientOptions(setup, setup.client));
  if (!client.ok()) return false;
  Result<Message> reply = RequestWithRetries(**client, HeartbeatEnvelope(424242), 1000, 8000);
  return reply.ok() && reply->envelope.body_case() == Envelope::kHeartbeatAck &&
         reply->envelope.heartbeat_ack().sequence() == 424242;
}

}  // namespace

std::string StormOutcome::Describe() const {
  return "child " + std::string(child_exited_cleanly ? "exited cleanly" : "did not exit cleanly") +
         (term_signal != 0 ? " (signal " + std::to_string(term_signal) + ")" : "") + ", good client " +
         (answered_good_client ? "answered" : "NOT answered") + ", " + std::to_string(messages_sent) +
         " fuzzed messages on " + std::to_string(connections) + " connections" +
         (peers_crashed ? " (the fuzzing peers' process crashed)" : "") + "; child stderr: " + child_stderr_tail;
}

StormOutcome RunStorm(const StormOptions& options) {
  StormOutcome outcome;
  const CurveSetup setup = MakeCurveSetup();
  char stderr_path[] = "/tmp/tributary-storm-XXXXXX";
  const int stderr_fd = mkstemp(stderr_path);
  int endpoint_pipe[2];
  int stop_pipe[2];
  if (stderr_fd < 0 || pipe(endpoint_pipe) != 0 || pipe(stop_pipe) != 0) return outcome;
  const pid_t child = fork();
  if (child == 0) {
    dup2(stderr_fd, STDERR_FILENO);
    close(endpoint_pipe[0]);
    close(stop_pipe[1]);
    ServeInChild(setup, options, endpoint_pipe[1], stop_pipe[0]);
  }
  close(endpoint_pipe[1]);
  close(stop_pipe[0]);
  std::string endpoint;
  char c = 0;
  while (read(endpoint_pipe[0], &c, 1) == 1 && c != '\n') endpoint += c;
  close(endpoint_pipe[0]);
  if (!endpoint.empty()) {
    RunPeersInChild(endpoint, setup, options, &outcome);
    outcome.answered_good_client = GoodClientAnswered(endpoint, setup);
  }
  std::signal(SIGPIPE, SIG_IGN);  // the child may be gone already
  (void)!write(stop_pipe[1], "x", 1);
  close(stop_pipe[1]);
  int status = 0;
  // The child polls the stop pipe every loop; kill it if it hangs instead.
  const auto kill_at = Clock::now() + std::chrono::seconds(20);
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (Clock::now() >= kill_at) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  outcome.child_exited_cleanly = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  outcome.term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  outcome.child_stderr_tail = ReadTail(stderr_path, 400);
  close(stderr_fd);
  unlink(stderr_path);
  return outcome;
}

}  // namespace tributary::transport::testing
