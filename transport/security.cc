#include "transport/security.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include <spdlog/spdlog.h>
#include <zmq.h>

#include "base/file_util.h"

namespace tributary::transport {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr size_t kMaxRefusedRemembered = 1000;

std::string Trim(std::string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && (text[begin] == ' ' || text[begin] == '\t' || text[begin] == '\r')) ++begin;
  while (end > begin && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r')) --end;
  return std::string(text.substr(begin, end - begin));
}

// Strips a comment and surrounding whitespace. '#' is in the Z85 alphabet, so it starts a comment
// only at the beginning of a line or after whitespace.
std::string StripComment(std::string_view line) {
  size_t hash = std::string_view::npos;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
      hash = i;
      break;
    }
  }
  return Trim(hash == std::string_view::npos ? line : line.substr(0, hash));
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = text.find('\n', start);
    if (end == std::string_view::npos) {
      if (start < text.size()) lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string Errno(const std::string& path, const char* action) {
  return path + ": cannot " + action + ": " + std::strerror(errno);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Creates `path` with exactly `mode` (fresh inode, so an old file's wider mode is not inherited).
Status WriteNewFile(const std::string& path, const std::string& contents, mode_t mode, bool force) {
  if (force && ::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::IOError(Errno(path, "replace"));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return Status::AlreadyExists(path + ": already exists (use --force to overwrite)");
    return Status::IOError(Errno(path, "create"));
  }
  Status status;
  if (::fchmod(fd, mode) != 0) status = Status::IOError(Errno(path, "chmod"));
  size_t written = 0;
  while (status.ok() && written < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = Status::IOError(Errno(path, "write"));
      break;
    }
    written += static_cast<size_t>(n);
  }
  if (status.ok() && ::fsync(fd) != 0) status = Status::IOError(Errno(path, "sync"));
  if (::close(fd) != 0 && status.ok()) status = Status::IOError(Errno(path, "close"));
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

std::string KeyFilePath(const std::string& path) {
  const std::string suffix = ".key";
  if (path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return path;
  }
  return path + suffix;
}

}  // namespace

bool IsValidZ85Key(std::string_view key) {
  if (key.size() != kZ85KeyChars) return false;
  uint8_t decoded[32];
  const std::string copy(key);
  return zmq_z85_decode(decoded, copy.c_str()) != nullptr;
}

Result<KeyPair> GenerateKeyPair() {
  if (!zmq_has("curve")) return Status::Unimplemented("libzmq was built without CURVE support");
  char public_key[kZ85KeyChars + 1];
  char secret_key[kZ85KeyChars + 1];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status::Internal(std::string("zmq_curve_keypair failed: ") + zmq_strerror(zmq_errno()));
  }
  return KeyPair{public_key, secret_key};
}

Result<std::string> PublicKeyFromSecret(const std::string& secret_z85) {
  if (!IsValidZ85Key(secret_z85)) return Status::InvalidArgument("secret key is not a 40-character Z85 key");
  char public_key[kZ85KeyChars + 1];
  if (zmq_curve_public(public_key, secret_z85.c_str()) != 0) {
    return Status::Internal(std::string("zmq_curve_public failed: ") + zmq_strerror(zmq_errno()));
  }
  return std::string(public_key);
}

Status WriteKeyPair(const KeyPair& keys, const std::string& out_prefix, bool force) {
  if (out_prefix.empty()) return Status::InvalidArgument("key output prefix is empty");
  if (!IsValidZ85Key(keys.public_key) || !IsValidZ85Key(keys.secret_key)) {
    return Status::InvalidArgument("refusing to write malformed CURVE keys to " + out_prefix + ".key");
  }
  const std::string key_path = out_prefix + ".key";
  const std::string pub_path = out_prefix + ".pub";
  if (!force) {
    for (const std::string& path : {key_path, pub_path}) {
      if (FileExists(path)) return Status::AlreadyExists(path + ": already exists (use --force to overwrite)");
    }
  }
  std::string name = BaseName(out_prefix);
  const std::string secret_text =
      "# tributary CURVE key pair. Keep this file private (mode 0600).\n"
      "public-key = " +
      keys.public_key + "\nsecret-key = " + keys.secret_key + "\n";
  const std::string public_text = "# tributary CURVE public key; append this line to the coordinator's allow-list.\n" +
                                  keys.public_key + " " + name + "\n";
  TRIB_RETURN_IF_ERROR(WriteNewFile(key_path, secret_text, 0600, force));
  return WriteNewFile(pub_path, public_text, 0644, force);
}

Status WriteKeyPairFiles(const std::string& out_prefix, bool force, std::string* public_key_z85) {
  TRIB_ASSIGN_OR_RETURN(KeyPair keys, GenerateKeyPair());
  TRIB_RETURN_IF_ERROR(WriteKeyPair(keys, out_prefix, force));
  if (public_key_z85 != nullptr) *public_key_z85 = keys.public_key;
  return Status::OK();
}

Result<KeyPair> LoadKeyPair(const std::string& path) {
  const std::string key_path = KeyFilePath(path);
  struct stat st;
  if (::stat(key_path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    spdlog::warn("{}: secret key file is accessible by group/others (mode {:o}); run chmod 600", key_path,
                 st.st_mode & 0777);
  }
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(key_path));
  KeyPair keys;
  const std::vector<std::string_view> lines = SplitLines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string line = StripComment(lines[i]);
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    const std::string where = key_path + ":" + std::to_string(i + 1);
    if (eq == std::string::npos)
      return Status::InvalidArgument(where + ": expected 'public-key = ...' or 'secret-key = ...'");
    const std::string name = Trim(std::string_view(line).substr(0, eq));
    const std::string value = Trim(std::string_view(line).substr(eq + 1));
    if (name != "public-key" && name != "secret-key") {
      return Status::InvalidArgument(where + ": unknown key '" + name + "'");
    }
    if (!IsValidZ85Key(value)) return Status::InvalidArgument(where + ": " + name + " is not a 40-character Z85 key");
    (name == "public-key" ? keys.public_key : keys.secret_key) = value;
  }
  if (keys.secret_key.empty()) return Status::InvalidArgument(key_path + ": no 'secret-key' line");
  TRIB_ASSIGN_OR_RETURN(std::string derived, PublicKeyFromSecret(keys.secret_key));
  if (!keys.public_key.empty() && keys.public_key != derived) {
    return Status::InvalidArgument(key_path + ": public-key does not belong to secret-key");
  }
  keys.public_key = derived;
  return keys;
}

Result<std::string> LoadPublicKey(const std::string& path) {
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  TRIB_ASSIGN_OR_RETURN(AllowList list, AllowList::Parse(text, path));
  const std::vector<std::string_view> lines = SplitLines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string line = StripComment(lines[i]);
    if (!line.empty()) return line.substr(0, kZ85KeyChars);
  }
  return Status::InvalidArgument(path + ": no public key found");
}

Result<AllowList> AllowList::Parse(std::string_view text, const std::string& source) {
  AllowList list;
  const std::vector<std::string_view> lines = SplitLines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string line = StripComment(lines[i]);
    if (line.empty()) continue;
    const size_t space = line.find_first_of(" \t");
    const std::string key = line.substr(0, space);
    const std::string name = space == std::string::npos ? "" : Trim(std::string_view(line).substr(space));
    if (!IsValidZ85Key(key)) {
      return Status::InvalidArgument(source + ":" + std::to_string(i + 1) + ": '" + key.substr(0, 48) +
                                     "' is not a 40-character Z85 CURVE public key");
    }
    list.names_[key] = name;
  }
  return list;
}

Status AllowList::Add(const std::string& public_key_z85, const std::string& name) {
  if (!IsValidZ85Key(public_key_z85)) {
    return Status::InvalidArgument("allow-list entry '" + name + "': not a 40-character Z85 CURVE public key");
  }
  names_[public_key_z85] = name;
  return Status::OK();
}

std::string AllowList::NameOf(const std::string& public_key_z85) const {
  auto it = names_.find(public_key_z85);
  return it == names_.end() ? std::string() : it->second;
}

Result<AllowList> LoadAllowList(const std::string& path) {
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return AllowList::Parse(text, path);
}

// ---------------------------------------------------------------------------------------------

ZapHandler::ZapHandler(AllowList allow_list, std::string log_name)
    : allow_list_(std::move(allow_list)), log_name_(std::move(log_name)) {}

Result<std::unique_ptr<ZapHandler>> ZapHandler::Start(zmq::context_t& context, AllowList allow_list,
                                                      std::string log_name) {
  std::unique_ptr<ZapHandler> handler(new ZapHandler(std::move(allow_list), std::move(log_name)));
  try {
    zmq::socket_t socket(context, zmq::socket_type::rep);
    socket.set(zmq::sockopt::linger, 0);
    socket.bind(kZapEndpoint);
    // The thread creation orders the bind before the socket's use in the thread.
    handler->thread_ = std::thread(&ZapHandler::Run, handler.get(), std::move(socket));
  } catch (const zmq::error_t& e) {
    return Status::Internal(handler->log_name_ + ": cannot start the ZAP handler on " + kZapEndpoint + ": " + e.what());
  }
  return handler;
}

ZapHandler::~ZapHandler() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::SetAllowList(AllowList allow_list) {
  std::lock_guard<std::mutex> lock(mutex_);
  allow_list_ = std::move(allow_list);
}

std::string ZapHandler::NameOf(const std::string& public_key_z85) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return allow_list_.NameOf(public_key_z85);
}

std::vector<std::string> ZapHandler::RefusedKeys() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return refused_;
}

void ZapHandler::Run(zmq::socket_t socket) {
  // Polls with a short timeout so destruction is noticed without a second control socket.
  constexpr int kPollMs = 50;
  while (!stop_.load()) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    try {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(kPollMs)) <= 0) continue;
      std::vector<zmq::message_t> request;
      while (true) {
        zmq::message_t part;
        if (!socket.recv(part, zmq::recv_flags::dontwait)) break;
        const bool more = part.more();
        request.push_back(std::move(part));
        if (!more) break;
      }
      HandleRequest(socket, request);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      spdlog::error("{}: ZAP handler: {}", log_name_, e.what());
    }
  }
}

void ZapHandler::HandleRequest(zmq::socket_t& socket, std::vector<zmq::message_t>& request) {
  // RFC 27: version, request id, domain, address, routing id, mechanism, credentials...
  const std::string version = request.size() > 0 ? request[0].to_string() : "";
  const std::string request_id = request.size() > 1 ? request[1].to_string() : "";
  const std::string address = request.size() > 3 ? request[3].to_string() : "?";
  const std::string mechanism = request.size() > 5 ? request[5].to_string() : "";

  std::string status_code = "400";
  std::string status_text;
  std::string user_id;
  if (version != "1.0") {
    status_code = "500";
    status_text = "unsupported ZAP version";
  } else if (mechanism != "CURVE") {
    status_text = "mechanism " + mechanism + " not allowed";
    spdlog::warn("{}: refused a {} connection from {}: only CURVE clients are admitted", log_name_, mechanism, address);
  } else if (request.size() < 7 || request[6].size() != 32) {
    status_text = "malformed CURVE credentials";
    spdlog::warn("{}: refused a connection from {}: malformed CURVE credentials", log_name_, address);
  } else {
    char key[kZ85KeyChars + 1];
    zmq_z85_encode(key, static_cast<const uint8_t*>(request[6].data()), 32);
    bool allowed = false;
    std::string name;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      allowed = allow_list_.Contains(key);
      name = allow_list_.NameOf(key);
    }
    if (allowed) {
      status_code = "200";
      status_text = "OK";
      user_id = key;
      admitted_.fetch_add(1);
      spdlog::debug("{}: admitted {} ({}) from {}", log_name_, key, name, address);
    } else {
      status_text = "public key not in allow-list";
      bool first_time = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        first_time = std::find(refused_.begin(), refused_.end(), key) == refused_.end();
        if (first_time) {
          if (refused_.size() >= kMaxRefusedRemembered) refused_.erase(refused_.begin());
          refused_.push_back(key);
        }
      }
      // A refused client keeps reconnecting: log its first refusal loudly, repeats quietly.
      if (first_time) {
        spdlog::warn("{}: refused CURVE client {} from {}: public key not in the allow-list", log_name_, key, address);
      } else {
        spdlog::debug("{}: refused CURVE client {} from {} again", log_name_, key, address);
      }
    }
  }
  const std::string parts[] = {"1.0", request_id, status_code, status_text, user_id, ""};
  for (size_t i = 0; i < 6; ++i) {
    socket.send(zmq::buffer(parts[i]), i + 1 < 6 ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

}  // namespace tributary::transport
