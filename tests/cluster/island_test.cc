// The island group over real gloo TCP on loopback: N members as threads of this process (as gloo's own
// tests run them), rendezvousing through a LocalRendezvousStore. Sums exact on integer-valued floats,
// bit-identical results across members on random ones, buckets, broadcast, hash checks, and failures
// (a member that never comes, one that leaves, a stale incarnation) that end in a Status, never a hang.
// No timing assertions: the short timeouts only bound the waits.
#include "cluster/island.h"

#include <gtest/gtest.h>

#include <barrier>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/tensor_table.h"
#include "cluster/island_reducer.h"
#include "engine/arena.h"

namespace tributary {
namespace {

IslandOptions Options(const std::string& id, int size, uint64_t incarnation = 1) {
  IslandOptions o;
  o.island_id = id;
  o.incarnation = incarnation;
  o.size = size;
  o.bind_address = "127.0.0.1";
  o.timeout_ms = 5000;
  return o;
}

// Joins all `base.size` members, one thread each, and runs fn(rank, group) on each; Join must succeed.
// A member's group is destroyed when its fn returns (it leaves the island).
void RunIsland(RendezvousStore& store, const IslandOptions& base, const std::function<void(int, IslandGroup&)>& fn) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(base.size));
  for (int rank = 0; rank < base.size; ++rank) {
    threads.emplace_back([&, rank] {
      IslandOptions o = base;
      o.rank = rank;
      Result<std::unique_ptr<IslandGroup>> group = IslandGroup::Join(o, &store);
      ASSERT_TRUE(group.ok()) << group.status().ToString();
      fn(rank, **group);
    });
  }
  for (auto& t : threads) t.join();
}

class IslandSizeTest : public testing::TestWithParam<int> {};

TEST_P(IslandSizeTest, SumAndMeanOfIntegerValuesAreExact) {
  const int n = GetParam();
  for (int64_t bucket : {int64_t{1} << 20, int64_t{64}, int64_t{7}}) {
    LocalRendezvousStore store;
    IslandOptions base = Options("exact", n);
    base.bucket_elems = bucket;  // 1000 elements: one bucket, whole buckets + a remainder
    RunIsland(store, base, [&](int rank, IslandGroup& group) {
      std::vector<float> sum(1000), mean(1000);
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = mean[i] = static_cast<float>(rank * 1000 + int(i));
      ASSERT_TRUE(group.AllReduceSum(sum).ok());
      ASSERT_TRUE(group.AllReduceMean(mean).ok());
      for (size_t i = 0; i < sum.size(); ++i) {
        const int pairs = n * (n - 1) / 2;  // sum of the ranks: an integer
        const float expected = static_cast<float>(1000 * pairs + n * int(i));
        ASSERT_EQ(sum[i], expected) << "rank " << rank << " element " << i << " bucket " << bucket;
        ASSERT_EQ(mean[i], expected / static_cast<float>(n)) << "rank " << rank << " element " << i;
      }
    });
  }
}

TEST_P(IslandSizeTest, RandomSumsAreBitIdenticalAcrossMembers) {
  const int n = GetParam();
  LocalRendezvousStore store;
  IslandOptions base = Options("random", n);
  base.bucket_elems = 1000;  // 10007 elements: ten buckets and a remainder of 7
  std::vector<std::vector<float>> inputs(n), results(n);
  for (int r = 0; r < n; ++r) {
    std::mt19937 rng(1234 + r);
    std::normal_distribution<float> dist(0.f, 3.f);
    inputs[r].resize(10007);
    for (float& v : inputs[r]) v = dist(rng);
  }
  RunIsland(store, base, [&](int rank, IslandGroup& group) {
    results[rank] = inputs[rank];
    ASSERT_TRUE(group.AllReduceSum(results[rank]).ok());
  });
  for (int r = 1; r < n; ++r) {
    ASSERT_EQ(std::memcmp(results[r].data(), results[0].data(), results[0].size() * sizeof(float)), 0)
        << "rank " << r << " differs from rank 0";
  }
  for (size_t i = 0; i < results[0].size(); ++i) {
    double expected = 0;
    for (int r = 0; r < n; ++r) expected += inputs[r][i];
    ASSERT_NEAR(results[0][i], expected, 1e-4) << "element " << i;
  }
}

TEST_P(IslandSizeTest, BroadcastCopiesTheRootsValues) {
  const int n = GetParam();
  LocalRendezvousStore store;
  IslandOptions base = Options("broadcast", n);
  base.bucket_elems = 100;
  RunIsland(store, base, [&](int rank, IslandGroup& group) {
    std::vector<float> values(1001);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(rank) + 0.25f * float(i);
    ASSERT_TRUE(group.Broadcast(values, n - 1).ok());
    for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(values[i], static_cast<float>(n - 1) + 0.25f * float(i));
    EXPECT_TRUE(group.Broadcast(values, n).IsInvalidArgument());
    EXPECT_TRUE(group.usable());
  });
}

TEST_P(IslandSizeTest, CheckIdenticalNamesTheRanksThatDiffer) {
  const int n = GetParam();
  LocalRendezvousStore store;
  RunIsland(store, Options("hash", n), [&](int rank, IslandGroup& group) {
    EXPECT_TRUE(group.CheckIdentical(0xfeedULL).ok());
    const Status differ = group.CheckIdentical(rank % 2 == 1 ? 0xbadULL : 0xfeedULL);
    ASSERT_EQ(differ.code(), StatusCode::kFailedPrecondition) << differ.ToString();
    EXPECT_NE(differ.message().find("island 'hash'"), std::string::npos) << differ.message();
    const std::string ranks = n == 4 ? "rank(s) 1, 3" : "rank(s) 1";
    EXPECT_NE(differ.message().find(ranks), std::string::npos) << differ.message();
    // A mismatch is an answer, not a failure: the group goes on.
    Result<uint64_t> sum = group.AllReduceSumU64((uint64_t{1} << 40) + static_cast<uint64_t>(rank));
    ASSERT_TRUE(sum.ok()) << sum.status().ToString();
    EXPECT_EQ(*sum, (uint64_t{1} << 40) * n + static_cast<uint64_t>(n * (n - 1) / 2));
  });
}

TEST_P(IslandSizeTest, BytesSentFollowTheRingFormula) {
  const int n = GetParam();
  LocalRendezvousStore store;
  RunIsland(store, Options("bytes", n), [&](int, IslandGroup& group) {
    std::vector<float> values(1200, 1.f);
    ASSERT_TRUE(group.AllReduceSum(values).ok());
    EXPECT_EQ(group.bytes_sent(), uint64_t{2} * (n - 1) * 1200 * 4 / n);
  });
}

TEST_P(IslandSizeTest, MemberThatLeavesBreaksTheNextCollective) {
  const int n = GetParam();
  LocalRendezvousStore store;
  IslandOptions base = Options("leaving", n);
  base.timeout_ms = 1000;
  std::barrier sync(n);
  RunIsland(store, base, [&](int rank, IslandGroup& group) {
    std::vector<float> values(5000, 1.f);
    ASSERT_TRUE(group.AllReduceSum(values).ok());
    sync.arrive_and_wait();     // everyone finished the first collective before the last member leaves
    if (rank == n - 1) return;  // RunIsland's thread ends, destroying this member's group
    const Status failed = group.AllReduceSum(values);
    ASSERT_FALSE(failed.ok()) << "rank " << rank;
    EXPECT_TRUE(failed.code() == StatusCode::kUnavailable || failed.code() == StatusCode::kTimeout)
        << failed.ToString();
    EXPECT_NE(failed.message().find("island 'leaving' incarnation 1 rank " + std::to_string(rank)), std::string::npos)
        << failed.message();
    EXPECT_FALSE(group.usable());
    EXPECT_EQ(group.CheckIdentical(1).code(), StatusCode::kFailedPrecondition);
  });
}

TEST_P(IslandSizeTest, MemberThatStallsTimesOutTheCollective) {
  const int n = GetParam();
  LocalRendezvousStore store;
  IslandOptions base = Options("stalled", n);
  base.timeout_ms = 300;
  std::barrier sync(n);
  RunIsland(store, base, [&](int rank, IslandGroup& group) {
    std::vector<float> values(100, 1.f);
    if (rank != 0) {  // rank 0 stays connected but skips the collective until the others gave up
      const Status failed = group.AllReduceSum(values);
      // With two members only the timeout can end it; with more, a member that timed out first may close
      // its pairs, and its neighbours then see the closed connection.
      if (n == 2) {
        EXPECT_EQ(failed.code(), StatusCode::kTimeout) << failed.ToString();
      }
      EXPECT_TRUE(failed.code() == StatusCode::kTimeout || failed.code() == StatusCode::kUnavailable)
          << failed.ToString();
      EXPECT_NE(failed.message().find("island 'stalled'"), std::string::npos) << failed.message();
      EXPECT_FALSE(group.usable());
    }
    sync.arrive_and_wait();
  });
}

INSTANTIATE_TEST_SUITE_P(Members, IslandSizeTest, testing::Values(2, 3, 4));

TEST(IslandTest, MissingMemberFailsJoinWithinTheTimeout) {
  LocalRendezvousStore store;
  IslandOptions base = Options("lonely", 3);
  base.timeout_ms = 500;
  std::vector<Status> joined(2);
  std::vector<std::thread> threads;
  threads.reserve(2);
  for (int r = 0; r < 2; ++r) {  // rank 2 never comes
    threads.emplace_back([&, r] {
      IslandOptions o = base;
      o.rank = r;
      joined[r] = IslandGroup::Join(o, &store).status();
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : joined) {
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.ToString();
    EXPECT_NE(s.message().find("island 'lonely' incarnation 1"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("island/lonely/1/2"), std::string::npos) << s.message();  // the missing key
  }
}

TEST(IslandTest, IncarnationsDoNotMix) {
  LocalRendezvousStore store;
  std::vector<std::thread> islands;
  for (uint64_t inc : {7, 8}) {  // two incarnations of one island at once, on one store
    islands.emplace_back([&, inc] {
      RunIsland(store, Options("twice", 2, inc), [&](int rank, IslandGroup& group) {
        std::vector<float> values(300, static_cast<float>(inc * 10 + rank));
        ASSERT_TRUE(group.AllReduceSum(values).ok());
        for (float v : values) ASSERT_EQ(v, static_cast<float>(inc * 20 + 1));
      });
    });
  }
  for (auto& t : islands) t.join();
  // A stale member of incarnation 7 cannot join incarnation 9 (whose members are both present): it reads
  // incarnation 7's keys, whose members are gone, and fails to connect (Unavailable) or to find a key.
  IslandOptions stale = Options("twice", 2, 7);
  stale.rank = 1;
  stale.timeout_ms = 300;
  RunIsland(store, Options("twice", 2, 9),
            [&](int rank, IslandGroup& group) { EXPECT_TRUE(group.CheckIdentical(9).ok()) << rank; });
  const Status late = IslandGroup::Join(stale, &store).status();
  EXPECT_TRUE(late.code() == StatusCode::kUnavailable || late.code() == StatusCode::kTimeout) << late.ToString();
  EXPECT_NE(late.message().find("island 'twice' incarnation 7 rank 1/2"), std::string::npos) << late.message();
}

TEST(IslandTest, ReducerReplacesGradientsByTheIslandMean) {
  auto table = std::make_shared<TensorTable>();
  table->Add("a", {3, 5});
  table->Add("b", {7});
  LocalRendezvousStore store;
  RunIsland(store, Options("reducer", 3), [&](int rank, IslandGroup& group) {
    Arena grads(table);
    for (size_t t = 0; t < table->size(); ++t) {
      std::span<float> g = grads.span(t);
      for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(3 * (rank + int(i)));
    }
    IslandReducer reducer(&group);
    ASSERT_TRUE(reducer.Reduce(grads, 1).ok());
    for (size_t t = 0; t < table->size(); ++t) {
      std::span<float> g = grads.span(t);
      for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], static_cast<float>(3 * (1 + int(i)))) << t << ":" << i;
    }
    const float* pad = grads.data() + table->entries()[0].numel;  // padding after "a" stays zero
    for (int64_t i = table->entries()[0].numel; i < table->entries()[1].offset; ++i) ASSERT_EQ(*pad++, 0.f);
  });
}

TEST(IslandTest, LoneMemberAndBadOptions) {
  LocalRendezvousStore store;
  Result<std::unique_ptr<IslandGroup>> lone = IslandGroup::Join(Options("solo", 1), &store);
  ASSERT_TRUE(lone.ok()) << lone.status().ToString();
  std::vector<float> values = {1.f, 2.f};
  ASSERT_TRUE((*lone)->AllReduceMean(values).ok());
  EXPECT_EQ(values, (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(*(*lone)->AllReduceSumU64(5), 5u);
  EXPECT_EQ((*lone)->bytes_sent(), 0u);

  IslandOptions bad = Options("bad", 2);
  bad.rank = 2;
  EXPECT_TRUE(IslandGroup::Join(bad, &store).status().IsInvalidArgument());
  bad = Options("", 2);
  EXPECT_TRUE(IslandGroup::Join(bad, &store).status().IsInvalidArgument());
  EXPECT_TRUE(IslandGroup::Join(Options("bad", 2), nullptr).status().IsInvalidArgument());
}

TEST(IslandTest, LocalStoreGetTimesOutNamingTheKey) {
  LocalRendezvousStore store;
  Result<std::vector<uint8_t>> missing = store.Get("k1", 10);
  EXPECT_EQ(missing.status().code(), StatusCode::kTimeout);
  EXPECT_NE(missing.status().message().find("'k1'"), std::string::npos);
  ASSERT_TRUE(store.Set("k1", {1, 2}).ok());
  EXPECT_EQ(*store.Get("k1", 10), (std::vector<uint8_t>{1, 2}));
}

}  // namespace
}  // namespace tributary
