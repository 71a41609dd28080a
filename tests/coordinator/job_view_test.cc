// The JSON and text rendering of jobs (coordinator/job_view.h) that /api/jobs, `status --format json`
// and `tributary status` share: here the cluster-mode island fields.
#include "coordinator/job_view.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tributary {
namespace {

v1::GetJobReply ClusterJob() {
  v1::GetJobReply reply;
  v1::JobStatus* job = reply.mutable_job();
  job->set_job_id("j1");
  job->set_mode("cluster");
  job->set_state("RUNNING");
  job->set_loss(std::nan(""));
  job->set_heldout_loss(std::nan(""));
  job->set_islands(2);
  job->set_island_reforms(3);
  v1::IslandStatus* a = reply.add_islands();
  a->set_island_id("a");
  a->set_incarnation(1796611270871);
  a->add_members("worker-1");
  a->add_members("worker-2");
  a->set_leader("worker-1");
  a->set_reported(false);
  a->set_reforms(1);
  a->set_reason("2 of 2 configured members eligible");
  v1::IslandStatus* b = reply.add_islands();
  b->set_island_id("b");
  b->set_incarnation(1796611270872);
  b->add_members("worker-3");
  b->set_leader("worker-3");
  b->set_reported(true);
  return reply;
}

TEST(JobViewTest, JobStatusJsonCountsIslandsAndReforms) {
  const nlohmann::json job = JobStatusJson(ClusterJob().job());
  EXPECT_EQ(job["islands"], 2);
  EXPECT_EQ(job["island_reforms"], 3);
  const nlohmann::json plain = JobStatusJson(v1::JobStatus());
  EXPECT_EQ(plain["islands"], 0) << "0 when not cluster mode";
  EXPECT_EQ(plain["island_reforms"], 0);
}

TEST(JobViewTest, JobDetailJsonListsTheOpenRoundsIslands) {
  const nlohmann::json detail = JobDetailJson(ClusterJob());
  ASSERT_TRUE(detail["islands"].is_array());
  ASSERT_EQ(detail["islands"].size(), 2u);
  const nlohmann::json& a = detail["islands"][0];
  EXPECT_EQ(a["island_id"], "a");
  EXPECT_EQ(a["incarnation"].get<uint64_t>(), 1796611270871u) << "a number, exact";
  EXPECT_EQ(a["members"], nlohmann::json::array({"worker-1", "worker-2"}));
  EXPECT_EQ(a["leader"], "worker-1");
  EXPECT_EQ(a["reported"], false);
  EXPECT_EQ(a["reforms"], 1);
  EXPECT_EQ(a["reason"], "2 of 2 configured members eligible");
  EXPECT_EQ(detail["islands"][1]["reported"], true);
  EXPECT_EQ(detail["job"]["islands"], 2);

  const nlohmann::json federated = JobDetailJson(v1::GetJobReply());
  ASSERT_TRUE(federated["islands"].is_array());
  EXPECT_TRUE(federated["islands"].empty());
}

TEST(JobViewTest, IslandStatusTextIsOneLine) {
  const v1::GetJobReply reply = ClusterJob();
  EXPECT_EQ(IslandStatusText(reply.islands(0)),
            "island a  incarnation 1796611270871  leader worker-1  members worker-1,worker-2  reported no  reforms 1");
  EXPECT_EQ(IslandStatusText(reply.islands(1)),
            "island b  incarnation 1796611270872  leader worker-3  members worker-3  reported yes  reforms 0");
}

}  // namespace
}  // namespace tributary
