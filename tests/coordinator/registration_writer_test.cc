// Registration in two steps (coordinator/worker_registry.h BeginRegister / FinishRegister / AbandonRegister) and
// its group-committed writes (coordinator/registration_writer.h) on a real store: an id being registered is
// claimed by its key, the records of a burst are durable in a few writes and survive reopening the store, and a
// refused write leaves nothing registered.
#include "coordinator/registration_writer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/worker_registry.h"
#include "tests/common/temp_dir.h"

namespace tributary {
namespace {

transport::PeerInfo Peer(const std::string& key) {
  return transport::PeerInfo{"route-" + key, key, "", "127.0.0.1"};
}

v1::Register MakeRegister(const std::string& id) {
  v1::Register reg;
  reg.set_worker_id(id);
  reg.mutable_capabilities()->set_cpu_cores(4);
  return reg;
}

class RegistrationTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open() {
    auto store = checkpoint::CheckpointStore::Open(dir_.path() + "/store");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    registry_ =
        std::make_unique<WorkerRegistry>(store_.get(), WorkerRegistryOptions{/*insecure=*/false, 1000, 3, 60000});
  }
  // Polls `writer` until nothing is pending (the writes run on its own thread).
  static void Drain(RegistrationWriter& writer) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (writer.pending() > 0 && std::chrono::steady_clock::now() < deadline) {
      writer.Poll();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(writer.pending(), 0u);
  }

  testutil::TempDir dir_;
  std::unique_ptr<checkpoint::CheckpointStore> store_;
  std::unique_ptr<WorkerRegistry> registry_;
};

TEST_F(RegistrationTest, AnIdBeingRegisteredBelongsToItsKeyUntilFinishedOrAbandoned) {
  auto first = registry_->BeginRegister(MakeRegister("w1"), Peer("key-a"), 1000);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->public_key, "key-a");
  // Not registered yet: heartbeats are refused, another key is refused, the same key may retry.
  EXPECT_EQ(registry_->Find("w1"), nullptr);
  auto other = registry_->BeginRegister(MakeRegister("w1"), Peer("key-b"), 1001);
  EXPECT_EQ(other.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(other.status().message().find("being registered with another key"), std::string::npos);
  ASSERT_TRUE(registry_->BeginRegister(MakeRegister("w1"), Peer("key-a"), 1002).ok());

  // Both of key-a's attempts end (one abandoned): the claim is gone, and since nothing was stored key-b may take it.
  registry_->AbandonRegister("w1");
  EXPECT_EQ(registry_->BeginRegister(MakeRegister("w1"), Peer("key-b"), 1003).status().code(),
            StatusCode::kPermissionDenied);
  registry_->AbandonRegister("w1");
  auto taken = registry_->BeginRegister(MakeRegister("w1"), Peer("key-b"), 1004);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_TRUE(store_->PutWorker(*taken).ok());
  const WorkerEntry* entry = registry_->FinishRegister(MakeRegister("w1"), Peer("key-b"), 1004);
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->public_key, "key-b");
  EXPECT_TRUE(entry->inventory.alive);
  // Now the store binds it: key-a is refused although no registration is in progress.
  EXPECT_EQ(registry_->BeginRegister(MakeRegister("w1"), Peer("key-a"), 1005).status().code(),
            StatusCode::kPermissionDenied);
  // An invalid registration claims nothing.
  EXPECT_EQ(registry_->BeginRegister(MakeRegister(""), Peer("key-a"), 1006).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(RegistrationTest, ABurstIsWrittenInFewWritesAndIsDurable) {
  constexpr int kWorkers = 300;
  RegistrationWriter writer(store_.get());
  int acknowledged = 0;
  for (int i = 0; i < kWorkers; ++i) {
    const std::string id = "w" + std::to_string(i);
    auto record = registry_->BeginRegister(MakeRegister(id), Peer("key-" + id), 1000);
    ASSERT_TRUE(record.ok()) << record.status().ToString();
    writer.Add(std::move(*record), [this, id, &acknowledged](const Status& written) {
      ASSERT_TRUE(written.ok()) << written.ToString();
      ASSERT_NE(registry_->FinishRegister(MakeRegister(id), Peer("key-" + id), 2000), nullptr);
      ++acknowledged;
    });
    if (i == 0) writer.Poll();  // the first goes alone; the rest gather behind it
  }
  EXPECT_EQ(writer.pending(), static_cast<size_t>(kWorkers));
  Drain(writer);
  EXPECT_EQ(acknowledged, kWorkers);
  EXPECT_EQ(registry_->Alive().size(), static_cast<size_t>(kWorkers));

  // Every acknowledged record is in the store after reopening it, bound to its key.
  registry_.reset();
  store_.reset();
  Open();
  auto stored = store_->ListWorkers();
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_EQ(stored->size(), static_cast<size_t>(kWorkers));
  for (const checkpoint::WorkerRecord& record : *stored) EXPECT_EQ(record.public_key, "key-" + record.worker_id);
  EXPECT_EQ(registry_->BeginRegister(MakeRegister("w7"), Peer("key-w8"), 3000).status().code(),
            StatusCode::kPermissionDenied);
}

TEST_F(RegistrationTest, ABatchTheStoreRefusesRegistersNobody) {
  RegistrationWriter writer(store_.get());
  checkpoint::WorkerRecord bad;  // an empty id: the whole batch is refused (all or none)
  Status bad_status, good_status;
  auto good = registry_->BeginRegister(MakeRegister("w1"), Peer("key-a"), 1000);
  ASSERT_TRUE(good.ok());
  writer.Add(std::move(*good), [&good_status](const Status& s) { good_status = s; });
  writer.Add(bad, [&bad_status](const Status& s) { bad_status = s; });
  Drain(writer);
  EXPECT_FALSE(bad_status.ok());
  EXPECT_EQ(good_status.ToString(), bad_status.ToString());
  EXPECT_EQ(store_->GetWorker("w1").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace tributary
