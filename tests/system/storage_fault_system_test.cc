// A coordinator whose data dir fills up mid-job (a real tmpfs, root only): it stays up, serves reads,
// says why it is not ready, refuses new jobs with the reason, keeps the running job and its uploads
// retryable, and finishes the job by itself once space is freed, with every replica on the committed hash.
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "base/file_util.h"
#include "tests/common/small_volume.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

// Polls /readyz until its status is `status` (and, for 503, the body names `text`); false on timeout.
bool WaitReadyz(int port, int status, const std::string& text, std::string* body) {
  httplib::Client http("127.0.0.1", port);
  for (int i = 0; i < 150; ++i) {
    auto got = http.Get("/readyz");
    if (got && got->status == status && got->body.find(text) != std::string::npos) {
      *body = got->body;
      return true;
    }
    if (got) *body = got->body;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

TEST(StorageFaultSystemTest, FullDataDirPausesTheJobAndFreeingSpaceFinishesIt) {
  TestDir dir;
  testutil::SmallVolume volume(64, dir.path() + "/store");  // LocalCluster's coordinator --data-dir
  TRIB_SKIP_UNLESS_MOUNTED(volume);
  {
    ClusterOptions options;
    options.coordinator_args = {"--set", "coordinator.store_reserve_mb=16"};
    TestCluster cluster(dir.path(), options);
    const std::string yaml = JobYaml(cluster.base_model(), "ferret", 4, 11);
    const std::string job_id = Submit(cluster.client(), yaml);
    ASSERT_FALSE(job_id.empty());
    ASSERT_TRUE(WaitFor(cluster.client(), job_id, [](const v1::GetJobReply& r) { return r.rounds_size() >= 1; }));

    volume.FillLeaving(8u << 20);  // below the 16 MiB reserve
    std::string body;
    ASSERT_TRUE(WaitReadyz(cluster.cluster().http_port(), 503, "not writable", &body)) << body;
    EXPECT_NE(body.find("the reserve is 16 MiB"), std::string::npos) << body;

    // Reads are served; a new job is refused with the reason; the running job neither fails nor commits.
    auto before = GetJob(cluster.client(), job_id);
    ASSERT_TRUE(before.ok()) << before.status().ToString();
    const std::string spec_file = dir.path() + "/second.yaml";
    std::ofstream(spec_file) << yaml;
    const CliRun second = Cli(dir.path(), cluster.cluster().client_config(), {"submit", spec_file});
    EXPECT_EQ(second.exit_code, 2) << second.err;  // the coordinator cannot take it now: retry later
    EXPECT_NE(second.err.find("not writable"), std::string::npos) << second.err;
    // Every worker's next upload is refused as retryable and sent again (not dropped).
    for (int w = 1; w <= 4; ++w) {
      const std::string log = dir.path() + "/worker-" + std::to_string(w) + ".log";
      bool retrying = false;
      for (int i = 0; i < 300 && !retrying; ++i) {
        retrying = ReadFileToString(log).value_or("").find("cannot take the upload yet") != std::string::npos;
        if (!retrying) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      EXPECT_TRUE(retrying) << log << " never retried an upload";
    }
    auto during = GetJob(cluster.client(), job_id);
    ASSERT_TRUE(during.ok()) << during.status().ToString();
    EXPECT_EQ(during->job().state(), "RUNNING") << during->job().error();
    EXPECT_EQ(during->rounds_size(), before->rounds_size());

    volume.RemoveFiller();  // the operator frees space: nothing else is needed
    ASSERT_TRUE(WaitReadyz(cluster.cluster().http_port(), 200, "ready", &body)) << body;
    const v1::GetJobReply job = WaitFinished(cluster.client(), job_id);
    ASSERT_EQ(job.job().state(), "FINISHED:COMPLETED") << job.job().error();
    ASSERT_EQ(job.rounds_size(), 4);
    ExpectReplicasAtFinalHash(cluster.client(), job_id, 4, job.rounds(3).weights_hash(), 4);
  }
}

}  // namespace
}  // namespace tributary::system_test
