// Many connected workers (issue 15 item 7): the real `tributary coordinator` (a subprocess, CURVE on by default) and
// N fake workers, raw ZeroMQ DEALER sockets that register and heartbeat every H seconds (spread uniformly). Reports
// the heartbeat round trip (HeartbeatAck by sequence) p50/p95/p99/max, heartbeats sent/acked, the coordinator's
// alive-worker count (/metrics), its false deaths ("declared dead" lines while every fake worker heartbeats), its
// RSS (VmRSS/VmHWM) and CPU. --flood adds one admitted hostile peer sending random and mutated frames as fast as it
// can; --job runs a small Ferret job on 2 real worker daemons meanwhile.
//
// The fake workers live in child processes of at most --per-process sockets each: every ZeroMQ socket holds a
// mailbox eventfd besides its TCP connection, so 10,000 sockets in one process pass a 20,000 descriptor limit. Each
// child drives its sockets from one thread with epoll on their ZMQ_FDs (zmq_poll over thousands of sockets would
// cost the shared cores more than the coordinator does).
//
//   many_workers_bench --workers 10000 --heartbeat-s 5 --seconds 60 [--flood] [--job] [--insecure] [--json F]
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <queue>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "base/file_util.h"
#include "cli/demo_data.h"
#include "cli/local_cluster.h"
#include "engine/model/model_init.h"
#include "federation/job_spec.h"
#include "transport/message.h"
#include "transport/security.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;

struct Args {
  std::string binary = TRIBUTARY_BINARY;
  int workers = 10000;
  double heartbeat_s = 5;
  double seconds = 60;
  bool flood = false;
  bool job = false;
  bool insecure = false;
  int per_process = 4000;
  int io_threads = 2;
  std::string json;
  std::string dir;
  bool keep = false;
};

[[noreturn]] void Usage(const std::string& problem) {
  std::fprintf(stderr,
               "many_workers_bench: %s\nflags: --workers N --heartbeat-s S --seconds S --flood --job --insecure "
               "--per-process N --io-threads N --json FILE --dir DIR --keep --binary PATH\n",
               problem.c_str());
  std::exit(2);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--workers")
      a.workers = std::stoi(value());
    else if (flag == "--heartbeat-s")
      a.heartbeat_s = std::stod(value());
    else if (flag == "--seconds")
      a.seconds = std::stod(value());
    else if (flag == "--flood")
      a.flood = true;
    else if (flag == "--job")
      a.job = true;
    else if (flag == "--insecure")
      a.insecure = true;
    else if (flag == "--per-process")
      a.per_process = std::stoi(value());
    else if (flag == "--io-threads")
      a.io_threads = std::stoi(value());
    else if (flag == "--json")
      a.json = value();
    else if (flag == "--dir")
      a.dir = value();
    else if (flag == "--keep")
      a.keep = true;
    else if (flag == "--binary")
      a.binary = value();
    else
      Usage("unknown flag " + flag);
  }
  if (a.workers < 1 || a.heartbeat_s <= 0 || a.seconds <= 0 || a.per_process < 1 || a.io_threads < 1)
    Usage("--workers, --heartbeat-s, --seconds, --per-process and --io-threads must be positive");
  return a;
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string FakeName(int i) {
  return "fake-" + std::to_string(i);
}

// One heartbeat: when it was sent and when its ack came (0: never).
struct Sample {
  int64_t sent_us = 0;
  int64_t acked_us = 0;
};

struct FakeWorker {
  std::unique_ptr<zmq::socket_t> socket;
  int fd = -1;
  bool registered = false;
  uint64_t sequence = 0;
  std::vector<size_t> samples;  // index into the child's samples, by sequence - 1
};

struct Fleet {
  int first = 0;
  int count = 0;
  std::string endpoint;
  std::string server_key;
  std::vector<transport::KeyPair> keys;  // empty when insecure
  double heartbeat_s = 5;
  int io_threads = 2;
};

volatile sig_atomic_t g_stop = 0;
void OnStop(int) {
  g_stop = 1;
}

void SendEnvelope(zmq::socket_t& socket, const transport::Envelope& envelope) {
  auto frame = transport::EncodeControlFrame(envelope, 0, transport::Limits{});
  if (!frame.ok()) return;
  (void)socket.send(*frame, zmq::send_flags::dontwait);
}

// Drains one socket; RegisterAcks mark it registered, HeartbeatAcks complete their sample.
void Drain(FakeWorker& w, std::vector<Sample>& samples, int* registered) {
  while (w.socket->get(zmq::sockopt::events) & ZMQ_POLLIN) {
    std::vector<zmq::message_t> frames;
    while (true) {
      zmq::message_t part;
      if (!w.socket->recv(part, zmq::recv_flags::dontwait)) break;
      const bool more = part.more();
      frames.push_back(std::move(part));
      if (!more) break;
    }
    if (frames.empty()) return;
    transport::Message message;
    if (!transport::DecodeFrames(frames, transport::Limits{}, transport::Direction::kToClient, "coordinator", &message)
             .ok())
      continue;

    const transport::Envelope& env = message.envelope;
    if (env.has_register_ack() && env.register_ack().accepted() && !w.registered) {
      w.registered = true;
      ++*registered;
    } else if (env.has_heartbeat_ack()) {
      const uint64_t seq = env.heartbeat_ack().sequence();
      if (seq >= 1 && seq <= w.samples.size() && samples[w.samples[seq - 1]].acked_us == 0)
        samples[w.samples[seq - 1]].acked_us = NowUs();
    }
  }
}

transport::Envelope RegisterEnvelope(const std::string& id) {
  transport::Envelope env = transport::NewEnvelope(id);
  v1::Register* reg = env.mutable_register_worker();
  reg->set_worker_id(id);
  reg->set_hostname("bench");
  reg->mutable_capabilities()->set_cpu_cores(1);
  reg->mutable_capabilities()->set_memory_bytes(uint64_t{1} << 30);
  v1::DatasetInfo* data = reg->mutable_capabilities()->add_datasets();
  data->set_name("fake");
  data->set_samples(100);
  return env;
}

// The body of one fake-worker child: register every socket, then heartbeat until SIGTERM. Writes
// "<sent_us> <acked_us>" lines (and a "registered_us N" first line) to `out`.
int RunFleet(const Fleet& f, const std::string& out) {
  signal(SIGTERM, OnStop);
  zmq::context_t ctx(f.io_threads, f.count + 64);
  std::vector<FakeWorker> workers(static_cast<size_t>(f.count));
  const int ep = epoll_create1(0);
  for (int i = 0; i < f.count; ++i) {
    FakeWorker& w = workers[static_cast<size_t>(i)];
    w.socket = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
    w.socket->set(zmq::sockopt::linger, 0);
    if (!f.keys.empty()) {
      w.socket->set(zmq::sockopt::curve_serverkey, f.server_key);
      w.socket->set(zmq::sockopt::curve_publickey, f.keys[static_cast<size_t>(i)].public_key);
      w.socket->set(zmq::sockopt::curve_secretkey, f.keys[static_cast<size_t>(i)].secret_key);
    }
    w.socket->connect(f.endpoint);
    w.fd = w.socket->get(zmq::sockopt::fd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, w.fd, &ev);
    SendEnvelope(*w.socket, RegisterEnvelope(FakeName(f.first + i)));
  }
  std::vector<Sample> samples;
  samples.reserve(static_cast<size_t>(f.count) * 64);
  int registered = 0;
  int64_t registered_us = 0;
  std::mt19937_64 rng(static_cast<uint64_t>(f.first) + 1);
  using Due = std::pair<int64_t, int>;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due;
  const auto period_us = static_cast<int64_t>(f.heartbeat_s * 1e6);
  std::vector<epoll_event> events(256);
  // Not registered yet; heartbeats start at a uniform offset within the period once they are.
  std::vector<int> pending(static_cast<size_t>(f.count));
  for (int i = 0; i < f.count; ++i) pending[static_cast<size_t>(i)] = i;
  while (!g_stop) {
    int64_t now = NowUs();
    while (!due.empty() && due.top().first <= now) {
      const int i = due.top().second;
      due.pop();
      FakeWorker& w = workers[static_cast<size_t>(i)];
      transport::Envelope env = transport::NewEnvelope(FakeName(f.first + i));
      env.mutable_heartbeat()->set_worker_id(FakeName(f.first + i));
      env.mutable_heartbeat()->set_state("idle");
      env.mutable_heartbeat()->set_sequence(++w.sequence);
      w.samples.push_back(samples.size());
      samples.push_back({NowUs(), 0});
      SendEnvelope(*w.socket, env);
      Drain(w, samples, &registered);  // a send may consume the socket's wake-up
      due.push({now + period_us, i});
    }
    // ZMQ_FD only signals a reader that has found its pipe empty once: until a socket's RegisterAck came, read it
    // on every pass (its pipe appears when the connection is made, after the first reads).
    for (size_t k = 0; k < pending.size();) {
      FakeWorker& w = workers[static_cast<size_t>(pending[k])];
      Drain(w, samples, &registered);
      if (!w.registered) {
        ++k;
        continue;
      }
      due.push({NowUs() + static_cast<int64_t>(rng() % static_cast<uint64_t>(period_us)), pending[k]});
      pending[k] = pending.back();
      pending.pop_back();
    }
    const int wait_ms = due.empty() ? 20 : static_cast<int>(std::clamp<int64_t>((due.top().first - now) / 1000, 0, 20));
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), wait_ms);
    for (int k = 0; k < n; ++k) {
      FakeWorker& w = workers[events[static_cast<size_t>(k)].data.u32];
      if (w.registered) Drain(w, samples, &registered);
    }
    if (registered == f.count && registered_us == 0) registered_us = NowUs();
  }
  std::ofstream file(out);
  file << "registered_us " << registered_us << " " << registered << "\n";
  for (const Sample& s : samples) file << s.sent_us << " " << s.acked_us << "\n";
  file.close();
  for (FakeWorker& w : workers) w.socket->close();
  close(ep);
  return 0;
}

// One admitted hostile peer: random frames and valid envelopes with flipped bytes, as fast as it can send.
int RunFlood(const Fleet& f, const std::string& out) {
  signal(SIGTERM, OnStop);
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndhwm, 10000);
  if (!f.keys.empty()) {
    s.set(zmq::sockopt::curve_serverkey, f.server_key);
    s.set(zmq::sockopt::curve_publickey, f.keys[0].public_key);
    s.set(zmq::sockopt::curve_secretkey, f.keys[0].secret_key);
  }
  s.connect(f.endpoint);
  std::mt19937_64 rng(99);
  uint64_t sent = 0;
  auto valid = transport::EncodeControlFrame(RegisterEnvelope("hostile"), 0, transport::Limits{});
  const std::string base(static_cast<const char*>(valid->data()), valid->size());
  while (!g_stop) {
    std::string bytes;
    if (rng() % 2 == 0) {
      bytes.resize(rng() % 512);
      for (char& c : bytes) c = static_cast<char>(rng());
    } else {
      bytes = base;
      for (int k = 0; k < 3; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    zmq::message_t frame(bytes.data(), bytes.size());
    if (s.send(frame, zmq::send_flags::dontwait)) {
      ++sent;
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    zmq::message_t reply;  // drop whatever comes back
    while (s.recv(reply, zmq::recv_flags::dontwait)) {
    }
  }
  std::ofstream(out) << sent << "\n";
  return 0;
}

// Forks a child running `body`; returns its pid.
pid_t Fork(const std::function<int()>& body) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  return pid;
}

double ProcessCpuSeconds(pid_t pid) {
  auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return 0;
  const size_t close = text->rfind(')');
  std::istringstream in(text->substr(close + 2));
  std::vector<std::string> fields((std::istream_iterator<std::string>(in)), std::istream_iterator<std::string>());
  if (fields.size() < 13) return 0;
  return (std::strtod(fields[11].c_str(), nullptr) + std::strtod(fields[12].c_str(), nullptr)) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmRSS or VmHWM in MiB.
double StatusMiB(pid_t pid, const std::string& field) {
  auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/status");
  if (!text.ok()) return 0;
  const size_t at = text->find(field + ":");
  if (at == std::string::npos) return 0;
  return std::strtod(text->c_str() + at + field.size() + 1, nullptr) / 1024.0;
}

// tributary_workers_alive from the coordinator's /metrics; -1 when it does not answer within 2 s.
int64_t WorkersAlive(int http_port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(http_port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string body;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[65536];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) body.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  std::smatch m;
  if (!std::regex_search(body, m, std::regex(R"(\ntributary_workers_alive(\{[^}]*\})? (\d+))"))) return -1;
  return std::stoll(m[2].str());
}

int CountLines(const std::string& path, const std::regex& pattern) {
  std::ifstream in(path);
  int count = 0;
  for (std::string line; std::getline(in, line);) count += std::regex_search(line, pattern) ? 1 : 0;
  return count;
}

// Deaths of the bench's own workers (fake-N, worker-N), all heartbeating: the hostile peer's mutated Registers
// can register workers under random ids, and those do die.
const std::regex kFalseDeath(R"(worker '(fake|worker)-\d+' declared dead)");

// The demo's data on 2 real workers and a long Ferret job (it keeps running through the window).
Result<std::string> PrepareJob(const std::string& dir, cli::LocalClusterOptions* cluster) {
  const std::string model_dir = (fs::path(dir) / "base-model").string();
  TRIB_RETURN_IF_ERROR(WriteRandomModelDir(model_dir, cli::DemoModelConfig(), /*seed=*/0));
  fs::create_directories(fs::path(dir) / "data");
  const std::vector<Example> examples = cli::DemoExamples();
  std::vector<Example> shards[2];
  for (size_t i = 0; i < examples.size(); ++i) shards[(i / 4) % 2].push_back(examples[i]);
  for (int w = 0; w < 2; ++w) {
    const std::string path = (fs::path(dir) / "data" / (cli::LocalCluster::WorkerName(w) + ".jsonl")).string();
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(path, cli::ExamplesToDollyJsonl(shards[w])));
    cluster->worker_data[w] = {"words=" + path};
  }
  const std::string yaml = "name: many workers bench\nmodel:\n  base: " + model_dir +
                           "\ndata:\n  dataset: words\n  seq_len: 128\nfederation:\n  mode: ferret\n  rounds: 1000\n"
                           "  client_fraction: 1.0\n  min_clients: 2\n  quorum: 1.0\n  seed: 7\n"
                           "train:\n  local_steps: 2\n  batch_size: 2\n  lr: 0.3\n  optimizer: sgd\n"
                           "ferret:\n  k: 256\ncheckpoint:\n  snapshot_every: 1000\n";
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(yaml, "many workers bench spec"));
  return EffectiveJobSpecYaml(spec);
}

double Percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1, static_cast<size_t>(std::ceil(p * sorted.size())) - (p > 0 ? 1 : 0));
  return sorted[i];
}

Status Run(const Args& a) {
  cli::LocalClusterOptions options;
  options.binary = a.binary;
  options.dir = a.dir;
  options.num_workers = a.job ? 2 : 0;
  options.insecure = a.insecure;
  options.heartbeat_interval_s = a.heartbeat_s;
  options.log_level = "info";
  // Registrations are synced RocksDB writes; the bench measures the loop, not the disk.
  std::string job_yaml;
  if (a.job) {
    TRIB_ASSIGN_OR_RETURN(job_yaml, PrepareJob(a.dir, &options));
  }
  cli::LocalCluster cluster(options);
  TRIB_RETURN_IF_ERROR(cluster.Prepare());

  Fleet base;
  base.heartbeat_s = a.heartbeat_s;
  base.io_threads = a.io_threads;
  std::vector<transport::KeyPair> keys;
  const fs::path key_dir = fs::path(a.dir) / "keys";
  if (!a.insecure) {
    std::string allowed = *ReadFileToString((key_dir / "allowed_keys").string());
    for (int i = 0; i <= a.workers; ++i) {  // the last one is the hostile peer's
      char pub[41], sec[41];
      if (zmq_curve_keypair(pub, sec) != 0) return Status::Internal("zmq_curve_keypair failed (libzmq without CURVE?)");
      keys.push_back({pub, sec});
      allowed += std::string(pub) + " " + (i < a.workers ? FakeName(i) : std::string("hostile")) + "\n";
    }
    TRIB_RETURN_IF_ERROR(WriteFileAtomic((key_dir / "allowed_keys").string(), allowed));
    TRIB_ASSIGN_OR_RETURN(base.server_key, transport::LoadPublicKey((key_dir / "coordinator.pub").string()));
  }
  TRIB_RETURN_IF_ERROR(cluster.StartCoordinator());
  base.endpoint = cluster.endpoint();
  const pid_t coordinator = cluster.coordinator()->pid();
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf(
      "many workers: %d fake workers, heartbeat %.1f s, CURVE %s, flood %s, job %s; %ld CPUs, load %.2f %.2f "
      "%.2f; dir %s\n",
      a.workers, a.heartbeat_s, a.insecure ? "off" : "on", a.flood ? "on" : "off", a.job ? "on" : "off",
      sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2], a.dir.c_str());
  std::fflush(stdout);

  const int64_t start_us = NowUs();
  std::vector<pid_t> children;
  std::vector<std::string> outs;
  for (int first = 0; first < a.workers; first += a.per_process) {
    Fleet f = base;
    f.first = first;
    f.count = std::min(a.per_process, a.workers - first);
    if (!keys.empty()) f.keys.assign(keys.begin() + first, keys.begin() + first + f.count);
    outs.push_back((fs::path(a.dir) / ("fleet-" + std::to_string(first) + ".txt")).string());
    const std::string out = outs.back();
    children.push_back(Fork([f, out] { return RunFleet(f, out); }));
  }
  if (a.job) {
    TRIB_RETURN_IF_ERROR(cluster.StartWorker(0));
    TRIB_RETURN_IF_ERROR(cluster.StartWorker(1));
  }
  // Wait for every fake worker to register (the alive count reaches N).
  const int64_t want = a.workers + (a.job ? 2 : 0);
  int64_t alive = 0;
  while ((alive = WorkersAlive(cluster.http_port())) < want) {
    if (NowUs() - start_us > 600e6)
      return Status::Timeout("only " + std::to_string(alive) + " workers alive after 600 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  const double register_s = (NowUs() - start_us) / 1e6;
  std::printf("all %lld workers alive after %.1f s; measuring for %.0f s\n", static_cast<long long>(want), register_s,
              a.seconds);
  std::fflush(stdout);

  std::string job_state = "none";
  std::unique_ptr<transport::Client> client;
  if (a.job) {
    TRIB_ASSIGN_OR_RETURN(client, cluster.Connect());
    transport::Envelope submit = transport::NewEnvelope("bench");
    submit.mutable_submit_job()->set_spec_yaml(job_yaml);
    submit.mutable_submit_job()->set_submit_token("many-workers-bench");
    TRIB_ASSIGN_OR_RETURN(transport::Message submitted, client->Request(submit, 30000));
    if (!submitted.envelope.submit_job_reply().accepted())
      return Status::InvalidArgument("the coordinator refused the job: " +
                                     submitted.envelope.submit_job_reply().error());
    job_state = submitted.envelope.submit_job_reply().job_id();
  }
  pid_t flood = -1;
  const std::string flood_out = (fs::path(a.dir) / "flood.txt").string();
  if (a.flood) {
    Fleet f = base;
    if (!keys.empty()) f.keys = {keys.back()};
    flood = Fork([f, flood_out] { return RunFlood(f, flood_out); });
  }
  const std::string log = cluster.coordinator()->log_path();
  const int dead_before = CountLines(log, kFalseDeath);
  const int64_t window_us = NowUs();
  const double cpu_before = ProcessCpuSeconds(coordinator);
  int64_t alive_min = want, alive_max = 0;
  std::string alive_series;
  while (NowUs() - window_us < a.seconds * 1e6) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const int64_t n = WorkersAlive(cluster.http_port());
    alive_series += (alive_series.empty() ? "" : " ") + std::to_string(n);
    if (n >= 0) alive_min = std::min(alive_min, n), alive_max = std::max(alive_max, n);
  }
  const int64_t window_end_us = NowUs();
  const double cpu = ProcessCpuSeconds(coordinator) - cpu_before;
  const double rss = StatusMiB(coordinator, "VmRSS"), hwm = StatusMiB(coordinator, "VmHWM");
  const int false_deaths = CountLines(log, kFalseDeath) - dead_before;
  int rounds = 0;
  if (a.job) rounds = CountLines(log, std::regex("round \\d+ committed"));

  if (flood > 0) kill(flood, SIGTERM), waitpid(flood, nullptr, 0);
  for (pid_t c : children) kill(c, SIGTERM);
  for (pid_t c : children) waitpid(c, nullptr, 0);
  std::vector<double> rtt_ms;
  uint64_t sent = 0, acked = 0;
  for (const std::string& out : outs) {
    std::ifstream in(out);
    std::string tag;
    int64_t reg_us = 0, reg = 0;
    in >> tag >> reg_us >> reg;
    for (int64_t s = 0, r = 0; in >> s >> r;) {
      if (s < window_us || s > window_end_us - 2000000) continue;  // the window, less the last 2 s of flight
      ++sent;
      if (r > 0) ++acked, rtt_ms.push_back((r - s) / 1000.0);
    }
  }
  std::sort(rtt_ms.begin(), rtt_ms.end());
  uint64_t flood_sent = 0;
  if (a.flood) std::ifstream(flood_out) >> flood_sent;
  getloadavg(load, 3);

  nlohmann::json j = {{"workers", a.workers},
                      {"heartbeat_s", a.heartbeat_s},
                      {"curve", !a.insecure},
                      {"flood", a.flood},
                      {"job", a.job},
                      {"seconds", a.seconds},
                      {"register_s", register_s},
                      {"heartbeats_sent", sent},
                      {"heartbeats_acked", acked},
                      {"rtt_p50_ms", Percentile(rtt_ms, 0.5)},
                      {"rtt_p95_ms", Percentile(rtt_ms, 0.95)},
                      {"rtt_p99_ms", Percentile(rtt_ms, 0.99)},
                      {"rtt_max_ms", rtt_ms.empty() ? 0 : rtt_ms.back()},
                      {"false_deaths", false_deaths},
                      {"alive_min", alive_min},
                      {"alive_max", alive_max},
                      {"coordinator_rss_mib", rss},
                      {"coordinator_hwm_mib", hwm},
                      {"coordinator_cpu_pct", 100.0 * cpu / ((window_end_us - window_us) / 1e6)},
                      {"flood_frames_sent", flood_sent},
                      {"job_rounds_committed", rounds},
                      {"load_end", {load[0], load[1], load[2]}}};
  std::printf(
      "workers %d  heartbeat %.1f s  flood %s  job %s\n  heartbeats sent %llu acked %llu\n"
      "  RTT ms: p50 %.1f  p95 %.1f  p99 %.1f  max %.1f\n  false deaths %d  alive min %lld max %lld\n"
      "  coordinator RSS %.0f MiB (peak %.0f MiB), CPU %.0f%% of one core\n  flood frames sent %llu  job rounds "
      "committed %d\n  alive per second: %s\n  load at end %.2f %.2f %.2f\n",
      a.workers, a.heartbeat_s, a.flood ? "on" : "off", a.job ? "on" : "off", static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(acked), j["rtt_p50_ms"].get<double>(), j["rtt_p95_ms"].get<double>(),
      j["rtt_p99_ms"].get<double>(), j["rtt_max_ms"].get<double>(), false_deaths, static_cast<long long>(alive_min),
      static_cast<long long>(alive_max), rss, hwm, j["coordinator_cpu_pct"].get<double>(),
      static_cast<unsigned long long>(flood_sent), rounds, alive_series.c_str(), load[0], load[1], load[2]);
  if (!a.json.empty()) TRIB_RETURN_IF_ERROR(WriteFileAtomic(a.json, j.dump(2) + "\n"));
  cluster.StopAll();
  return Status::OK();
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  tributary::Args a = tributary::ParseArgs(argc, argv);
  const bool temp = a.dir.empty();
  if (temp)
    a.dir = (std::filesystem::temp_directory_path() / ("many_workers_bench." + std::to_string(getpid()))).string();
  const tributary::Status status = tributary::Run(a);
  if (temp && !a.keep) std::filesystem::remove_all(a.dir);
  if (!status.ok()) {
    std::fprintf(stderr, "many_workers_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
