// The coordinator's dashboard (docs/dashboard.md) in a real browser: a coordinator with a bearer token
// and 4 workers (separate processes, CURVE on) run a small Ferret job, then headless Chromium loads the
// page with the token in the URL fragment and the test reads the DOM it rendered: a loss curve with a
// point per committed round, byte bars per round, one row per worker. Skips when chromium is absent.
//
// TRIBUTARY_DASHBOARD_SCREENSHOT=PATH copies the screenshot there (docs/dashboard.png is made so).
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <vector>

#include "base/file_util.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kToken = "dashboard-test-token-0123";
constexpr int kRounds = 6;

std::string FindChromium() {
  for (const char* name : {"chromium", "chromium-browser"}) {
    const std::string probe = std::string("command -v ") + name + " >/dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return name;
  }
  return "";
}

// Runs headless Chromium on `url` with `extra` flags (its own profile under dir, its log in dir/chromium.log).
int RunChromium(const std::string& chromium, const std::string& dir, const std::string& url, const std::string& extra) {
  const std::string command = "timeout 120 " + chromium +
                              " --headless --no-sandbox --disable-gpu --no-first-run --window-size=1400,1000"
                              " --virtual-time-budget=8000 --user-data-dir='" +
                              dir + "/chromium-profile' " + extra + " '" + url + "' 2>>'" + dir + "/chromium.log'";
  return std::system(command.c_str());
}

// The opening tags `<tag ...>` in html.
std::vector<std::string> OpenTags(const std::string& html, const std::string& tag) {
  std::vector<std::string> out;
  const std::regex pattern("<" + tag + R"((\s[^>]*)?>)");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), pattern); it != std::sregex_iterator(); ++it)
    out.push_back(it->str());
  return out;
}

// The value of attribute `name` in an opening tag; "" when absent.
std::string Attr(const std::string& tag, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(tag, m, std::regex("\\s" + name + R"re(="([^"]*)")re"))) return "";
  return m[1].str();
}

std::vector<std::string> WithClass(const std::vector<std::string>& tags, const std::string& cls) {
  std::vector<std::string> out;
  for (const std::string& tag : tags) {
    std::istringstream classes(Attr(tag, "class"));
    for (std::string c; classes >> c;) {
      if (c == cls) out.push_back(tag);
    }
  }
  return out;
}

// Width and height from a PNG's IHDR chunk; {0, 0} when the file is not a PNG.
std::pair<uint32_t, uint32_t> PngSize(const std::string& bytes) {
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return {0, 0};
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[at + i]);
    return v;
  };
  return {be32(16), be32(20)};
}

void ExpectApiNeedsTheToken(int port) {
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(10);
  auto refused = http.Get("/api/workers");
  ASSERT_TRUE(refused) << httplib::to_string(refused.error());
  EXPECT_EQ(refused->status, 401);
  EXPECT_EQ(refused->get_header_value("WWW-Authenticate"), R"(Bearer realm="tributary")");
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << "probes need no token";

  auto workers = http.Get("/api/workers", {{"Authorization", std::string("Bearer ") + kToken}});
  ASSERT_TRUE(workers);
  ASSERT_EQ(workers->status, 200) << workers->body;
  const nlohmann::json view = nlohmann::json::parse(workers->body);
  ASSERT_EQ(view["workers"].size(), 4u) << view.dump();
  for (const nlohmann::json& w : view["workers"]) {
    EXPECT_NE(w["liveness"], "dead") << w.dump();
    EXPECT_GT(w["capabilities"]["cpu_cores"].get<int>(), 0) << w.dump();
    EXPECT_GT(w["capabilities"]["memory_bytes"].get<uint64_t>(), 0u) << w.dump();
    EXPECT_EQ(w["capabilities"]["datasets"][0]["name"], "words") << w.dump();
  }
}

TEST(DashboardSystemTest, ChromiumDrawsTheLossCurvesBytesAndOneRowPerWorker) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "SKIP: chromium is not installed (scripts/setup.sh installs it)";
  TestDir dir;
  const std::string token_file = dir.path() + "/http-token";
  ASSERT_TRUE(WriteFileAtomic(token_file, std::string(kToken) + "\n").ok());
  chmod(token_file.c_str(), 0600);
  ClusterOptions options;
  options.coordinator_args = {"--set", "coordinator.http_token_file=" + token_file};
  TestCluster cluster(dir.path(), options);
  const std::string job_id = Submit(cluster.client(), JobYaml(cluster.base_model(), "ferret", kRounds, 11));
  ASSERT_FALSE(job_id.empty());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  ASSERT_EQ(job.rounds_size(), kRounds);
  const int port = cluster.cluster().http_port();
  ExpectApiNeedsTheToken(port);

  const std::string base = "http://127.0.0.1:" + std::to_string(port) + "/";
  const std::string dom_path = dir.path() + "/dashboard.html";
  const std::string png_path = dir.path() + "/dashboard.png";
  ASSERT_EQ(RunChromium(chromium, dir.path(), base + "#token=" + kToken, "--dump-dom > '" + dom_path + "'"), 0)
      << "see " << dir.path() << "/chromium.log";
  ASSERT_EQ(RunChromium(chromium, dir.path(), base + "#token=" + kToken, "--screenshot='" + png_path + "'"), 0);
  auto dom = ReadFileToString(dom_path);
  ASSERT_TRUE(dom.ok()) << dom.status().ToString();

  // The job's row, and the detail of that job.
  std::vector<std::string> job_rows = WithClass(OpenTags(*dom, "tr"), "job-row");
  ASSERT_EQ(job_rows.size(), 1u) << *dom;
  EXPECT_EQ(Attr(job_rows[0], "data-job-id"), job_id);
  EXPECT_EQ(Attr(job_rows[0], "data-state"), "FINISHED:COMPLETED");
  // A loss curve per series with a point per committed round.
  std::map<std::string, std::string> paths;
  for (const std::string& tag : OpenTags(*dom, "path")) paths[Attr(tag, "id")] = tag;
  ASSERT_TRUE(paths.count("loss-heldout")) << *dom;
  ASSERT_TRUE(paths.count("loss-train")) << *dom;
  EXPECT_EQ(Attr(paths["loss-heldout"], "data-points"), std::to_string(kRounds));
  EXPECT_EQ(Attr(paths["loss-train"], "data-points"), std::to_string(kRounds));
  const std::string heldout_d = Attr(paths["loss-heldout"], "d");
  EXPECT_EQ(std::count(heldout_d.begin(), heldout_d.end(), 'L'), kRounds - 1) << heldout_d;
  const std::vector<std::string> points = WithClass(OpenTags(*dom, "circle"), "heldout");
  ASSERT_EQ(points.size(), static_cast<size_t>(kRounds));
  for (int r = 0; r < kRounds; ++r) {
    const std::string& point = points[static_cast<size_t>(r)];
    EXPECT_EQ(Attr(point, "data-round"), std::to_string(r + 1));
    EXPECT_NEAR(std::stod(Attr(point, "data-loss")), job.rounds(r).heldout_loss(), 1e-9);
  }
  // Bytes per round: an upload bar per round with the round's bytes.
  const std::vector<std::string> up_bars = WithClass(OpenTags(*dom, "rect"), "up");
  ASSERT_EQ(up_bars.size(), static_cast<size_t>(kRounds));
  EXPECT_EQ(Attr(up_bars[0], "data-bytes"), std::to_string(job.rounds(0).bytes_up()));
  // One row per worker.
  const std::vector<std::string> worker_rows = WithClass(OpenTags(*dom, "tr"), "worker-row");
  ASSERT_EQ(worker_rows.size(), 4u) << *dom;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(Attr(worker_rows[static_cast<size_t>(i)], "data-worker-id"), cli::LocalCluster::WorkerName(i));
    EXPECT_NE(Attr(worker_rows[static_cast<size_t>(i)], "data-liveness"), "dead");
  }
  EXPECT_NE(dom->find(R"(<form id="token-form" hidden="")"), std::string::npos) << "the token was accepted";

  auto png = ReadFileToString(png_path);
  ASSERT_TRUE(png.ok()) << png.status().ToString();
  EXPECT_GT(png->size(), 20000u) << "a blank page compresses to a few KB";
  EXPECT_EQ(PngSize(*png), std::make_pair(1400u, 1000u));
  if (const char* copy = std::getenv("TRIBUTARY_DASHBOARD_SCREENSHOT"))
    fs::copy_file(png_path, copy, fs::copy_options::overwrite_existing);

  // Without the token the page shell loads, asks for one and shows no data.
  ASSERT_EQ(RunChromium(chromium, dir.path(), base, "--dump-dom > '" + dom_path + "'"), 0);
  dom = ReadFileToString(dom_path);
  ASSERT_TRUE(dom.ok());
  EXPECT_NE(dom->find(R"(<form id="token-form">)"), std::string::npos) << *dom;
  EXPECT_NE(dom->find(R"(data-state="auth")"), std::string::npos) << *dom;
  EXPECT_TRUE(WithClass(OpenTags(*dom, "tr"), "worker-row").empty());
  EXPECT_TRUE(WithClass(OpenTags(*dom, "tr"), "job-row").empty());
}

// A cluster-mode job: the bytes chart adds a bar per round for the bytes inside the islands, with the
// round's island_bytes, next to the cross-island up and down bars, and its legend key shows.
TEST(DashboardSystemTest, ClusterJobShowsBytesInsideAndAcrossIslands) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "SKIP: chromium is not installed (scripts/setup.sh installs it)";
  constexpr int kClusterRounds = 2;
  TestDir dir;
  TestCluster cluster(dir.path());
  const std::string job_id =
      Submit(cluster.client(), JobYaml(cluster.base_model(), "cluster", kClusterRounds, 5,
                                       {"cluster.islands=['a=worker-1,worker-2', 'b=worker-3,worker-4']"}));
  ASSERT_FALSE(job_id.empty());
  const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
  ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
  ASSERT_EQ(job.rounds_size(), kClusterRounds);

  const std::string dom_path = dir.path() + "/dashboard.html";
  const std::string url = "http://127.0.0.1:" + std::to_string(cluster.cluster().http_port()) + "/";
  ASSERT_EQ(RunChromium(chromium, dir.path(), url, "--dump-dom > '" + dom_path + "'"), 0);
  auto dom = ReadFileToString(dom_path);
  ASSERT_TRUE(dom.ok()) << dom.status().ToString();
  const std::vector<std::string> rects = OpenTags(*dom, "rect");
  const std::vector<std::string> inside = WithClass(rects, "island");
  ASSERT_EQ(inside.size(), static_cast<size_t>(kClusterRounds)) << *dom;
  ASSERT_EQ(WithClass(rects, "up").size(), static_cast<size_t>(kClusterRounds));
  for (int r = 0; r < kClusterRounds; ++r) {
    const uint64_t bytes = job.rounds(r).island_bytes();
    EXPECT_GT(bytes, job.rounds(r).bytes_up()) << "round " << r + 1;
    EXPECT_EQ(Attr(inside[static_cast<size_t>(r)], "data-bytes"), std::to_string(bytes));
  }
  EXPECT_NE(dom->find(R"(<span id="bytes-key-island">)"), std::string::npos) << "the legend key is shown";
  EXPECT_NE(dom->find("stays inside them"), std::string::npos) << "the note gives both totals";
}

}  // namespace
}  // namespace tributary::system_test
