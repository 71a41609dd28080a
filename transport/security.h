// CURVE keys, allow-lists and the ZAP handler that admits only allow-listed peers.
//
// Security is ON by default: a Server is a CURVE server with a ZAP handler that admits a client only
// when its long-term public key is in the allow-list; a Client must know the server's public key.
// Adding a worker = generate its key pair (`tributary keygen`, WriteKeyPairFiles) and append its
// .pub line to the coordinator's allow-list; nothing else is re-issued.
//
// Key files (Z85 text, 40 characters per key):
//   <prefix>.key  mode 0600:  "public-key = <z85>" and "secret-key = <z85>" lines, '#' comments
//   <prefix>.pub             "<z85 public key> <name>" (one allow-list line; name = prefix basename)
// Allow-list file: one Z85 public key per line, optionally followed by whitespace and a name;
// '#' at the start of a line or after whitespace starts a comment ('#' is also a Z85 character);
// blank lines are ignored.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "base/status.h"

namespace tributary::transport {

inline constexpr size_t kZ85KeyChars = 40;

struct KeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// Whether `key` is a syntactically valid Z85-encoded 32-byte CURVE key.
bool IsValidZ85Key(std::string_view key);

// A fresh CURVE key pair (zmq_curve_keypair). Unavailable if libzmq lacks CURVE.
Result<KeyPair> GenerateKeyPair();
// The public key belonging to a Z85 secret key.
Result<std::string> PublicKeyFromSecret(const std::string& secret_z85);

// Writes <prefix>.key (secret, mode 0600) and <prefix>.pub. Refuses to overwrite either file unless
// `force`; creates no directories.
Status WriteKeyPair(const KeyPair& keys, const std::string& out_prefix, bool force);
// Generates a key pair and writes it as WriteKeyPair does; returns the public key (CLI `keygen`).
Status WriteKeyPairFiles(const std::string& out_prefix, bool force, std::string* public_key_z85);
// Loads <prefix>.key (`path` may be the prefix or the .key file itself). Checks the key file is not
// readable by group/others and that the public key matches the secret key.
Result<KeyPair> LoadKeyPair(const std::string& path);
// The key on the first non-comment line of a .pub file (or any allow-list style file).
Result<std::string> LoadPublicKey(const std::string& path);

class AllowList {
 public:
  // Parses allow-list text; `source` names the file in errors ("workers.allow:3: ...").
  static Result<AllowList> Parse(std::string_view text, const std::string& source);

  // Adds a key (replacing its name). InvalidArgument for a malformed key.
  Status Add(const std::string& public_key_z85, const std::string& name);
  bool Contains(const std::string& public_key_z85) const { return names_.count(public_key_z85) != 0; }
  // The name given for the key; empty if none or unknown.
  std::string NameOf(const std::string& public_key_z85) const;
  size_t size() const { return names_.size(); }

 private:
  std::map<std::string, std::string> names_;  // Z85 public key -> name
};

// Loads an allow-list file; malformed lines give an error naming file:line.
Result<AllowList> LoadAllowList(const std::string& path);

// ZAP 1.0 handler (RFC 27) on inproc://zeromq.zap.01 of one context: admits CURVE clients whose
// public key is allow-listed (User-Id = the Z85 key), refuses and logs everyone else. Runs one
// thread until destroyed. Bind it before any socket of the context accepts connections.
class ZapHandler {
 public:
  static Result<std::unique_ptr<ZapHandler>> Start(zmq::context_t& context, AllowList allow_list, std::string log_name);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // Replaces the allow-list (adding a worker needs no restart); affects new connections only.
  void SetAllowList(AllowList allow_list);
  // The allow-list name of a key (empty when unknown or unnamed).
  std::string NameOf(const std::string& public_key_z85) const;
  // Z85 keys refused so far (each refusal once, in order; bounded to the last 1000).
  std::vector<std::string> RefusedKeys() const;
  uint64_t admitted_count() const { return admitted_.load(); }

 private:
  ZapHandler(AllowList allow_list, std::string log_name);
  void Run(zmq::socket_t socket);
  void HandleRequest(zmq::socket_t& socket, std::vector<zmq::message_t>& request);

  AllowList allow_list_;  // guarded by mutex_
  std::string log_name_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> admitted_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> refused_;
  std::thread thread_;
};

}  // namespace tributary::transport
