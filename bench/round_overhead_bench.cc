// Round overhead of a federated job: a coordinator and N worker processes (`tributary`, CURVE on) on
// loopback run one Ferret job in which every worker takes part in every round; per round,
//
//   wall     = committed - opened_unix_ms                (coordinator clock, RoundSummary)
//   overhead = wall - slowest_train_seconds              (the longest local work an accepted upload reported)
//
// i.e. what coordination adds to the slowest client's local work: dispatch (RoundStart), each worker's
// sync to the last committed round, upload, validation and logging to RocksDB, aggregation, commit and
// broadcast. Round 1 (model loading, first catch-up) is left out of the medians. "committed" is the later
// of RoundSummary.committed_unix_ms and the coordinator's "round N committed" log line (the summary's
// stamp is taken before the close). The daemons' logs also split the slowest worker's round into
// dispatch / sync / tail, and /proc gives the CPU time of the coordinator and the workers per round.
//
//   round_overhead_bench [--workers 16] [--rounds 6] [--local-steps 4] [--batch-size 4] [--k 256]
//                        [--eval] [--dir DIR] [--keep] [--timeout 170] [--binary PATH]
//
// Run from anywhere; the work directory is a new temp dir (removed afterwards unless --keep).
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "cli/demo_data.h"
#include "cli/local_cluster.h"
#include "engine/model/model_init.h"
#include "federation/job_spec.h"
#include "transport/message.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;

struct Args {
  std::string binary = TRIBUTARY_BINARY;
  int workers = 16;
  int rounds = 6;
  int local_steps = 4;
  int batch_size = 4;
  int k = 256;
  bool eval = false;
  std::string dir;
  bool keep = false;
  double timeout_s = 170;
};

[[noreturn]] void Usage(const std::string& problem) {
  std::fprintf(stderr,
               "round_overhead_bench: %s\nflags: --workers N --rounds R --local-steps S --batch-size B --k K --eval "
               "--dir DIR --keep --timeout SECONDS --binary PATH\n",
               problem.c_str());
  std::exit(2);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--eval") {
      a.eval = true;
      continue;
    }
    if (f == "--keep") {
      a.keep = true;
      continue;
    }
    if (i + 1 >= argc) Usage(f + " needs a value");
    const std::string v = argv[++i];
    if (f == "--binary") {
      a.binary = v;
    } else if (f == "--workers") {
      a.workers = std::atoi(v.c_str());
    } else if (f == "--rounds") {
      a.rounds = std::atoi(v.c_str());
    } else if (f == "--local-steps") {
      a.local_steps = std::atoi(v.c_str());
    } else if (f == "--batch-size") {
      a.batch_size = std::atoi(v.c_str());
    } else if (f == "--k") {
      a.k = std::atoi(v.c_str());
    } else if (f == "--dir") {
      a.dir = v;
    } else if (f == "--timeout") {
      a.timeout_s = std::atof(v.c_str());
    } else {
      Usage("unknown flag " + f);
    }
  }
  if (a.workers < 1 || a.workers > 64) Usage("--workers must be in [1, 64]");
  if (a.rounds < 2) Usage("--rounds must be >= 2 (round 1 is not counted)");
  if (a.local_steps < 1 || a.batch_size < 1) Usage("--local-steps and --batch-size must be >= 1");
  if (a.k < 2 || a.k > 65535) Usage("--k must be in [2, 65535]");
  if (a.timeout_s <= 0) Usage("--timeout must be > 0");
  return a;
}

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// User + system CPU seconds of a process so far (0 when it is gone).
double ProcessCpuSeconds(pid_t pid) {
  auto stat = ReadFileToString("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return 0;
  // Fields after the parenthesised command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields;
  size_t pos = close + 2;
  while (pos < stat->size() && fields.size() < 13) {
    const size_t space = stat->find(' ', pos);
    fields.push_back(stat->substr(pos, space - pos));
    if (space == std::string::npos) break;
    pos = space + 1;
  }
  if (fields.size() < 13) return 0;
  const double ticks = std::strtod(fields[11].c_str(), nullptr) + std::strtod(fields[12].c_str(), nullptr);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// 128 (the demo model's context) rather than the demo's 96: at 96 the longest prompts of the word tasks are cut
// before their response, so those rows train on no tokens and upload near-empty coefficients.
constexpr int kSeqLen = 128;
constexpr size_t kTasksPerWord = 4;  // cli::DemoExamples() emits four consecutive examples per word

// Writes the base model and the workers' data (the demo's examples, each word's four tasks to one worker,
// words dealt round-robin: the split does not matter for the overhead), and fills the cluster's data
// options. Returns the job spec YAML.
Result<std::string> PrepareFiles(const Args& a, cli::LocalClusterOptions* cluster) {
  const fs::path dir(a.dir);
  const std::string model_dir = (dir / "base-model").string();
  TRIB_RETURN_IF_ERROR(WriteRandomModelDir(model_dir, cli::DemoModelConfig(), /*seed=*/0));
  std::error_code ec;
  fs::create_directories(dir / "data", ec);
  if (ec) return Status::IOError((dir / "data").string() + ": cannot create: " + ec.message());
  const std::vector<Example> examples = cli::DemoExamples();
  std::vector<std::vector<Example>> shards(static_cast<size_t>(a.workers));
  std::vector<Example> held_out;
  for (size_t i = 0; i < examples.size(); ++i) {
    if (a.eval && i % 10 == 9) {
      held_out.push_back(examples[i]);
    } else {
      shards[(i / kTasksPerWord) % shards.size()].push_back(examples[i]);
    }
  }
  for (int w = 0; w < a.workers; ++w) {
    const std::string path = (dir / "data" / (cli::LocalCluster::WorkerName(w) + ".jsonl")).string();
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(path, cli::ExamplesToDollyJsonl(shards[static_cast<size_t>(w)])));
    cluster->worker_data[w] = {"words=" + path};
  }
  if (a.eval) {
    const std::string path = (dir / "data" / "heldout.jsonl").string();
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(path, cli::ExamplesToDollyJsonl(held_out)));
    cluster->eval_data = {"words-heldout=" + path};
  }
  const std::string n = std::to_string(a.workers);
  std::string yaml = "name: round overhead bench\nmodel:\n  base: " + model_dir +
                     "\ndata:\n  dataset: words\n  seq_len: " + std::to_string(kSeqLen) +
                     "\n"
                     "federation:\n  mode: ferret\n  rounds: " +
                     std::to_string(a.rounds) + "\n  client_fraction: 1.0\n  min_clients: " + n +
                     "\n  quorum: 1.0\n  deadline_floor_s: 120\n  deadline_ceiling_s: 600\n  seed: 7\n"
                     "train:\n  local_steps: " +
                     std::to_string(a.local_steps) + "\n  batch_size: " + std::to_string(a.batch_size) +
                     "\n  lr: 0.3\n  optimizer: sgd\n  max_grad_norm: 1.0\n"
                     "ferret:\n  k: " +
                     std::to_string(a.k) + "\ncheckpoint:\n  snapshot_every: 1000\n";
  if (a.eval) yaml += "eval:\n  dataset: words-heldout\n  every: 1\n";
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(yaml, "round overhead bench spec"));
  return EffectiveJobSpecYaml(spec);
}

struct RoundRow {
  v1::RoundSummary summary;
  double coordinator_cpu_s = 0;  // the coordinator's CPU time between this commit and the previous one (sampled)
  double workers_cpu_s = 0;      // all workers' CPU time over the same span
  double observed_wall_s = 0;    // that span on the bench's clock
};

// "aggregation+commit N ms" of each committed round, from the coordinator's job log.
std::map<uint64_t, int64_t> CloseMillisFromLog(transport::Client& client, const std::string& job_id) {
  std::map<uint64_t, int64_t> out;
  transport::Envelope request = transport::NewEnvelope("bench");
  request.mutable_fetch_logs()->set_job_id(job_id);
  auto reply = client.Request(request, 10000);
  if (!reply.ok()) return out;
  const std::regex committed(R"(round (\d+) committed: .* aggregation\+commit (\d+) ms)");
  for (const std::string& line : reply->envelope.fetch_logs_reply().lines()) {
    std::smatch m;
    if (std::regex_search(line, m, committed)) out[std::stoull(m[1].str())] = std::stoll(m[2].str());
  }
  return out;
}

// One worker's round as its log tells it (spdlog's local-time stamps, millisecond resolution).
struct WorkerRound {
  int64_t round_start_ms = 0;  // RoundStart received
  int64_t trained_ms = 0;      // local work done
  double train_s = 0;          // as logged (10 ms resolution)
};

int64_t LocalStampToUnixMs(const std::string& stamp) {
  std::tm tm{};
  int millis = 0;
  if (std::sscanf(stamp.c_str(), "%d-%d-%d %d:%d:%d.%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec, &millis) != 7)
    return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_isdst = -1;
  return static_cast<int64_t>(std::mktime(&tm)) * 1000 + millis;
}

// Round -> worker -> its timeline, from the workers' log files.
std::map<uint64_t, std::map<int, WorkerRound>> WorkerTimelines(const cli::LocalCluster& cluster, int workers) {
  std::map<uint64_t, std::map<int, WorkerRound>> out;
  const std::regex round_start(R"(^(\S+ \S+) .* round (\d+): RoundStart from)");
  const std::regex trained(R"(^(\S+ \S+) .* round (\d+): trained \d+ steps on \d+ rows in ([0-9.]+) s)");
  for (int w = 0; w < workers; ++w) {
    auto text =
        ReadFileToString((fs::path(cluster.options().dir) / (cli::LocalCluster::WorkerName(w) + ".log")).string());
    if (!text.ok()) continue;
    size_t pos = 0;
    while (pos < text->size()) {
      size_t end = text->find('\n', pos);
      if (end == std::string::npos) end = text->size();
      const std::string line = text->substr(pos, end - pos);
      pos = end + 1;
      std::smatch m;
      if (std::regex_search(line, m, round_start)) {
        // A repeated RoundStart (re-sent after a reconnect) does not move the first one.
        WorkerRound& r = out[std::stoull(m[2].str())][w];
        if (r.round_start_ms == 0) r.round_start_ms = LocalStampToUnixMs(m[1].str());
      } else if (std::regex_search(line, m, trained)) {
        WorkerRound& r = out[std::stoull(m[2].str())][w];
        r.trained_ms = LocalStampToUnixMs(m[1].str());
        r.train_s = std::stod(m[3].str());
      }
    }
  }
  return out;
}

// Round -> when the coordinator logged "round N committed" (after the store commit and the broadcast).
std::map<uint64_t, int64_t> CommitLogTimes(const cli::LocalCluster& cluster) {
  std::map<uint64_t, int64_t> out;
  auto text = ReadFileToString((fs::path(cluster.options().dir) / "coordinator.log").string());
  if (!text.ok()) return out;
  const std::regex committed(R"(^(\S+ \S+) .*: round (\d+) committed: )");
  size_t pos = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    const std::string line = text->substr(pos, end - pos);
    pos = end + 1;
    std::smatch m;
    if (std::regex_search(line, m, committed)) out[std::stoull(m[2].str())] = LocalStampToUnixMs(m[1].str());
  }
  return out;
}

Status Run(Args a) {
  if (!fs::exists(a.binary)) return Status::NotFound("--binary " + a.binary + ": no such file");
  const bool made_dir = a.dir.empty();
  if (made_dir) {
    std::string tmpl = (fs::temp_directory_path() / "tributary-round-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return Status::IOError("cannot create a temporary directory");
    a.dir = tmpl;
  } else if (fs::exists(fs::path(a.dir) / "store")) {
    return Status::AlreadyExists("--dir " + a.dir + ": holds a previous run's store; pass a new directory");
  }
  const auto started = std::chrono::steady_clock::now();
  auto elapsed_s = [&started] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };

  cli::LocalClusterOptions options;
  options.binary = a.binary;
  options.dir = a.dir;
  options.num_workers = a.workers;
  options.insecure = false;
  options.heartbeat_interval_s = 1.0;
  options.worker_threads = 1;
  TRIB_ASSIGN_OR_RETURN(std::string job_yaml, PrepareFiles(a, &options));

  std::printf(
      "round overhead: Ferret job, %d workers (worker_threads 1, CURVE on, heartbeat 1 s), %d rounds, "
      "%d local steps x batch %d x seq %d, K = %d, eval %s; %ld CPUs; dir %s\n",
      a.workers, a.rounds, a.local_steps, a.batch_size, kSeqLen, a.k, a.eval ? "every round" : "off",
      sysconf(_SC_NPROCESSORS_ONLN), a.dir.c_str());
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) std::printf("load average at start: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  std::fflush(stdout);

  cli::LocalCluster cluster(options);
  TRIB_RETURN_IF_ERROR(cluster.StartAll());
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<transport::Client> client, cluster.Connect());
  transport::Envelope submit = transport::NewEnvelope("bench");
  submit.mutable_submit_job()->set_spec_yaml(job_yaml);
  submit.mutable_submit_job()->set_submit_token("round-overhead-bench");
  TRIB_ASSIGN_OR_RETURN(transport::Message submitted, client->Request(submit, 30000));
  const v1::SubmitJobReply& accepted = submitted.envelope.submit_job_reply();
  if (!accepted.accepted()) return Status::InvalidArgument("the coordinator refused the job: " + accepted.error());
  const std::string job_id = accepted.job_id();

  auto workers_cpu = [&cluster, &a] {
    double total = 0;
    for (int w = 0; w < a.workers; ++w) total += ProcessCpuSeconds(cluster.worker(w)->pid());
    return total;
  };
  std::vector<RoundRow> rows;
  double last_coordinator_cpu = ProcessCpuSeconds(cluster.coordinator()->pid());
  double last_workers_cpu = workers_cpu();
  double last_seen_s = elapsed_s();
  std::string state;
  while (true) {
    transport::Envelope get = transport::NewEnvelope("bench");
    get.mutable_get_job()->set_job_id(job_id);
    TRIB_ASSIGN_OR_RETURN(transport::Message reply, client->Request(get, 10000));
    const v1::GetJobReply& job = reply.envelope.get_job_reply();
    if (static_cast<size_t>(job.rounds_size()) > rows.size()) {
      const double coordinator_cpu = ProcessCpuSeconds(cluster.coordinator()->pid());
      const double all_workers_cpu = workers_cpu();
      const double now_s = elapsed_s();
      // Several rounds seen in one poll share the span (only possible with very short rounds).
      const size_t fresh = static_cast<size_t>(job.rounds_size()) - rows.size();
      for (size_t i = rows.size(); i < static_cast<size_t>(job.rounds_size()); ++i) {
        RoundRow row;
        row.summary = job.rounds(static_cast<int>(i));
        row.coordinator_cpu_s = (coordinator_cpu - last_coordinator_cpu) / static_cast<double>(fresh);
        row.workers_cpu_s = (all_workers_cpu - last_workers_cpu) / static_cast<double>(fresh);
        row.observed_wall_s = (now_s - last_seen_s) / static_cast<double>(fresh);
        rows.push_back(row);
      }
      last_coordinator_cpu = coordinator_cpu;
      last_workers_cpu = all_workers_cpu;
      last_seen_s = now_s;
    }
    state = job.job().state();
    if (state.rfind("FINISHED", 0) == 0) break;
    if (elapsed_s() > a.timeout_s)
      return Status::Timeout("the job did not finish within " + std::to_string(static_cast<int>(a.timeout_s)) +
                             " s (state " + state + ", round " + std::to_string(job.job().round()) + "); logs in " +
                             a.dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (state != "FINISHED:COMPLETED") return Status::Internal("the job ended " + state + "; logs in " + a.dir);
  const std::map<uint64_t, int64_t> close_ms = CloseMillisFromLog(*client, job_id);
  client.reset();
  cluster.StopAll();

  const auto timelines = WorkerTimelines(cluster, a.workers);
  const auto commit_log_ms = CommitLogTimes(cluster);
  const double cores = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));

  std::printf(
      "\nwall = committed - opened (coordinator; committed = its log line after commit + broadcast); slowest = "
      "longest local work reported; overhead = wall - slowest.\n"
      "The slowest worker's split: dispatch = opened -> its RoundStart, sync = RoundStart -> training starts "
      "(catch-up: applying the last aggregate), tail = training done -> committed (upload, waiting for the other\n"
      "uploads, validation, close); close = aggregation+commit (coordinator job log). coordC / wrkC = CPU s of the "
      "coordinator / all workers since the previous commit; CPU/wl = their CPU s per wall s; busy = CPU/wl / cores.\n");
  std::printf("\n%5s %7s %8s %8s %9s %6s | %8s %6s %6s %6s | %6s %6s %7s %5s\n", "round", "clients", "wall ms",
              "slowest", "overhead", "%", "dispatch", "sync", "tail", "close", "coordC", "wrkC", "CPU/wl", "busy");
  std::vector<double> overhead_ms, overhead_pct, wall_ms_all, dispatch_all, sync_all, tail_all, close_all, cpu_all;
  for (const RoundRow& row : rows) {
    const v1::RoundSummary& r = row.summary;
    if (r.opened_unix_ms() <= 0) return Status::Internal("round " + std::to_string(r.round()) + ": no opened_unix_ms");
    // RoundSummary.committed_unix_ms is the coordinator's tick time when the close began, so it leaves out
    // aggregation, the store commit and the broadcast; the job log line written after them bounds the round.
    int64_t committed_ms = r.committed_unix_ms();
    auto logged = commit_log_ms.find(r.round());
    if (logged != commit_log_ms.end()) committed_ms = std::max(committed_ms, logged->second);
    const double wall = static_cast<double>(committed_ms - r.opened_unix_ms());
    const double slowest = r.slowest_train_seconds() * 1000.0;
    const double overhead = wall - slowest;
    const double pct = wall > 0 ? 100.0 * overhead / wall : std::nan("");
    auto c = close_ms.find(r.round());
    const double close = c == close_ms.end() ? std::nan("") : static_cast<double>(c->second);
    // The slowest worker's round, split: RoundStart delivery, sync to the committed round, and everything
    // from the end of its local work to the commit (upload, the other uploads, validation, close).
    double dispatch = std::nan(""), sync = std::nan(""), tail = std::nan("");
    auto timeline = timelines.find(r.round());
    if (timeline != timelines.end()) {
      const WorkerRound* slowest_worker = nullptr;
      for (const auto& [w, wr] : timeline->second) {
        if (wr.trained_ms > 0 && (slowest_worker == nullptr || wr.train_s > slowest_worker->train_s))
          slowest_worker = &wr;
      }
      if (slowest_worker != nullptr && slowest_worker->round_start_ms > 0) {
        dispatch = static_cast<double>(slowest_worker->round_start_ms - r.opened_unix_ms());
        sync = static_cast<double>(slowest_worker->trained_ms) - slowest_worker->train_s * 1000.0 -
               static_cast<double>(slowest_worker->round_start_ms);
        tail = static_cast<double>(committed_ms - slowest_worker->trained_ms);
      }
    }
    // CPU seconds of all daemons per wall second between two observed commits, and that over the cores.
    const double cpu =
        row.observed_wall_s > 0 ? (row.workers_cpu_s + row.coordinator_cpu_s) / row.observed_wall_s : std::nan("");
    std::printf("%5llu %3u/%-3d %8.0f %8.0f %9.0f %5.1f%% | %8.0f %6.0f %6.0f %6.0f | %6.2f %6.2f %7.2f %4.0f%%\n",
                static_cast<unsigned long long>(r.round()), r.participants(), a.workers, wall, slowest, overhead, pct,
                dispatch, sync, tail, close, row.coordinator_cpu_s, row.workers_cpu_s, cpu, 100.0 * cpu / cores);
    if (r.round() == 1) continue;
    overhead_ms.push_back(overhead);
    overhead_pct.push_back(pct);
    wall_ms_all.push_back(wall);
    for (auto [value, all] : {std::pair{dispatch, &dispatch_all}, std::pair{sync, &sync_all},
                              std::pair{tail, &tail_all}, std::pair{close, &close_all}, std::pair{cpu, &cpu_all}}) {
      if (!std::isnan(value)) all->push_back(value);
    }
  }
  if (getloadavg(load, 3) == 3) std::printf("load average at end: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  std::printf(
      "\nrounds 2..%d (%zu rounds): median wall %.0f ms, median overhead %.0f ms = %.1f%% of the median round; "
      "per-round overhead %%: median %.1f%%, min %.1f%%, max %.1f%%; target <= 5%%: %s\n"
      "medians of the slowest worker's split: dispatch %.0f ms, sync %.0f ms, tail %.0f ms (of which "
      "aggregation+commit %.0f ms); daemons used %.2f CPUs of %.0f\n",
      a.rounds, overhead_ms.size(), Median(wall_ms_all), Median(overhead_ms),
      100.0 * Median(overhead_ms) / Median(wall_ms_all), Median(overhead_pct),
      *std::min_element(overhead_pct.begin(), overhead_pct.end()),
      *std::max_element(overhead_pct.begin(), overhead_pct.end()), Median(overhead_pct) <= 5.0 ? "met" : "NOT met",
      Median(dispatch_all), Median(sync_all), Median(tail_all), Median(close_all), Median(cpu_all), cores);
  std::printf("total %.0f s\n", elapsed_s());
  if (made_dir && !a.keep) {
    std::error_code ec;
    fs::remove_all(a.dir, ec);
  }
  return Status::OK();
}

}  // namespace
}  // namespace tributary

int main(int argc, char** argv) {
  const tributary::Args args = tributary::ParseArgs(argc, argv);
  tributary::Status status = tributary::Run(args);
  if (!status.ok()) {
    std::fprintf(stderr, "round_overhead_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
