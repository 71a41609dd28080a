// A socket-level fuzzing storm against a real transport::Server running in a forked child process,
// so that an abort inside libzmq ends the child, not the test binary.
//
// The child binds a CURVE Server with the given options and runs a coordinator-like loop: receive
// (20 ms), answer heartbeats, push a RoundCommitted to every peer it has heard from every 20 ms.
// A second child runs `peers` threads; each one connects raw ZeroMQ DEALERs with the allowed key, floods
// random, mutated and malformed frames (dontwait), sometimes reads a few replies, and closes the
// socket abruptly (linger 0) while replies are still unread, again and again. Then a well-behaved
// Client in the parent asks for a heartbeat ack, and the server's child is stopped.
#pragma once

#include <cstdint>
#include <string>

#include "transport/channel.h"

namespace tributary::transport::testing {

struct StormOptions {
  SocketOptions server_socket;          // the Server's options under test
  bool server_zmtp_heartbeats = false;  // ServerOptions::zmtp_heartbeats
  int peers = 12;                       // flooding threads
  int duration_ms = 3000;               // of the storm
  int peer_heartbeat_ivl_ms = 0;        // ZMTP PINGs from the fuzzing peers (0: none)
  uint32_t seed = 1;
};

struct StormOutcome {
  bool child_exited_cleanly = false;  // exit status 0 (not killed by a signal, e.g. SIGABRT)
  int term_signal = 0;                // the signal that ended the child, 0 when none
  bool answered_good_client = false;  // the well-behaved client got its heartbeat ack after the storm
  uint64_t messages_sent = 0;         // by all fuzzing peers
  uint64_t connections = 0;           // opened (and abruptly closed) by the fuzzing peers
  bool peers_crashed = false;         // the fuzzing peers' own process died (their libzmq, not ours)
  std::string child_stderr_tail;      // last lines the child wrote (the libzmq assertion, if any)
  std::string Describe() const;
};

StormOutcome RunStorm(const StormOptions& options);

}  // namespace tributary::transport::testing
