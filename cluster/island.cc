#include "cluster/island.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <utility>

namespace tributary {

Status LocalRendezvousStore::Set(const std::string& key, const std::vector<uint8_t>& value) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    values_[key] = value;
  }
  changed_.notify_all();
  return Status::OK();
}

Result<std::vector<uint8_t>> LocalRendezvousStore::Get(const std::string& key, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  if (!changed_.wait_until(lock, deadline, [&] { return values_.count(key) > 0; })) {
    return Status::Timeout("rendezvous key '" + key + "' not set within " + std::to_string(timeout_ms) + " ms");
  }
  return values_.at(key);
}

namespace {

using Clock = std::chrono::steady_clock;

// gloo's TCP pairs write with plain write(2)/writev(2), so a write to a peer that closed its socket
// raises SIGPIPE, whose default action kills the process. Rather than ignoring SIGPIPE process-wide, the
// library blocks it in the threads that write: the calling thread for the duration of Join and of each
// collective, and gloo's event-loop thread, which Join creates while SIGPIPE is blocked and which
// inherits that mask. The write then fails with EPIPE (a gloo IoException, a Status here); a SIGPIPE
// left pending on the calling thread is consumed before its mask is restored. When the caller already
// blocks SIGPIPE, the guard leaves everything to it.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    already_blocked_ = sigismember(&old_, SIGPIPE) == 1;
  }
  ~SigpipeBlock() {
    if (already_blocked_) return;
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool already_blocked_ = false;
};

// gloo's view of a RendezvousStore. gloo reports store failures only by exception, so the adapter keeps
// the first Status it saw (Join returns it, with its code, instead of gloo's rethrown text).
class GlooStoreAdapter final : public gloo::rendezvous::Store {
 public:
  GlooStoreAdapter(RendezvousStore* store, int timeout_ms) : store_(store), timeout_ms_(timeout_ms) {}

  const Status& error() const { return error_; }

  void set(const std::string& key, const std::vector<char>& data) override {
    Check(store_->Set(key, std::vector<uint8_t>(data.begin(), data.end())));
  }

  std::vector<char> get(const std::string& key) override {
    Result<std::vector<uint8_t>> value = store_->Get(key, timeout_ms_);
    Check(value.status());
    return std::vector<char>(value->begin(), value->end());
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, std::chrono::milliseconds(timeout_ms_)); }

  // Waits for the keys one after another within one overall deadline (Get returns the value, which
  // gloo then reads again with get(): the store is local or cached by its implementation).
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    const auto budget = timeout.count() > 0 ? timeout : std::chrono::milliseconds(timeout_ms_);
    const auto deadline = Clock::now() + budget;
    for (const std::string& key : keys) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      Check(store_->Get(key, static_cast<int>(std::max<int64_t>(left.count(), 0))).status());
    }
  }

 private:
  void Check(const Status& status) {
    if (status.ok()) return;
    if (error_.ok()) error_ = status;
    throw gloo::IoException(status.ToString());
  }

  RendezvousStore* store_;
  int timeout_ms_;
  Status error_;
};

Status ValidateOptions(const IslandOptions& o, const RendezvousStore* store) {
  const std::string name = "island '" + o.island_id + "'";
  if (o.island_id.empty()) return Status::InvalidArgument("island: empty island_id");
  if (o.size < 1) return Status::InvalidArgument(name + ": size " + std::to_string(o.size) + " < 1");
  if (o.rank < 0 || o.rank >= o.size) {
    return Status::InvalidArgument(name + ": rank " + std::to_string(o.rank) + " outside [0, " +
                                   std::to_string(o.size) + ")");
  }
  if (o.bind_address.empty()) return Status::InvalidArgument(name + ": empty bind_address");
  if (o.timeout_ms <= 0) return Status::InvalidArgument(name + ": timeout_ms must be positive");
  if (o.bucket_elems <= 0) return Status::InvalidArgument(name + ": bucket_elems must be positive");
  if (store == nullptr) return Status::InvalidArgument(name + ": no rendezvous store");
  return Status::OK();
}

std::string MemberName(const IslandOptions& o) {
  return "island '" + o.island_id + "' incarnation " + std::to_string(o.incarnation) + " rank " +
         std::to_string(o.rank) + "/" + std::to_string(o.size);
}

// gloo's reduction signature; the templates in gloo/math.h are overloaded, so name the one we mean.
using ReduceFn = void (*)(void*, const void*, const void*, size_t);
constexpr ReduceFn kSumFloat = &gloo::sum<float>;
constexpr ReduceFn kSumU64 = &gloo::sum<uint64_t>;

}  // namespace

struct IslandGroup::Impl {
  IslandOptions options;
  std::shared_ptr<gloo::rendezvous::Context> context;
  bool usable = true;
  std::string broken_by;  // the failure that made the group unusable
  uint64_t bytes_sent = 0;

  std::string name() const { return MemberName(options); }

  // Runs one collective, turning any gloo exception into a Status and breaking the group: after a
  // failed collective gloo's pairs are in an unknown state (docs/errors.md of gloo).
  Status Run(const char* what, const std::function<void()>& fn) {
    if (!usable) {
      return Status::FailedPrecondition(name() + ": " + what + ": the group is unusable after '" + broken_by +
                                        "'; re-form the island under a new incarnation");
    }
    std::string error;
    SigpipeBlock no_sigpipe;
    try {
      fn();
      return Status::OK();
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    std::replace(error.begin(), error.end(), '\n', ' ');
    usable = false;
    broken_by = std::string(what) + " failed";
    const bool timed_out = error.find("imed out") != std::string::npos || error.find("imeout") != std::string::npos;
    const std::string message = name() + ": " + what + " failed (the group is now unusable): " + error;
    return timed_out ? Status::Timeout(message) : Status::Unavailable(message);
  }

  // Calls fn(begin, n) for each bucket of `total` elements inside one Run.
  Status ForEachBucket(size_t total, const char* what, const std::function<void(size_t, size_t)>& fn) {
    const size_t bucket = static_cast<size_t>(options.bucket_elems);
    return Run(what, [&] {
      for (size_t begin = 0; begin < total; begin += bucket) fn(begin, std::min(bucket, total - begin));
    });
  }

  // Formula payload (see bytes_sent() in the header): share = numerator/P of `bytes`.
  void Count(uint64_t bytes, uint64_t numerator) {
    bytes_sent += bytes * numerator / static_cast<uint64_t>(options.size);
  }
};

IslandGroup::IslandGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

IslandGroup::~IslandGroup() = default;

Result<std::unique_ptr<IslandGroup>> IslandGroup::Join(const IslandOptions& options, RendezvousStore* store) {
  TRIB_RETURN_IF_ERROR(ValidateOptions(options, store));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  const int join_timeout_ms = options.join_timeout_ms > 0 ? options.join_timeout_ms : options.timeout_ms;
  GlooStoreAdapter adapter(store, join_timeout_ms);
  SigpipeBlock no_sigpipe;  // also the mask gloo's event-loop thread inherits
  try {
    // Keys are "island/<id>/<incarnation>/<rank>": a member of another incarnation never reads them.
    gloo::rendezvous::PrefixStore scoped("island/" + options.island_id + "/" + std::to_string(options.incarnation),
                                         adapter);
    gloo::transport::tcp::attr attr;
    attr.hostname = options.bind_address;  // listen on the fabric interface only
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.size);
    context->setTimeout(std::chrono::milliseconds(join_timeout_ms));
    context->connectFullMesh(scoped, device);
    context->setTimeout(std::chrono::milliseconds(options.timeout_ms));
    impl->context = std::move(context);
  } catch (const std::exception& e) {
    if (!adapter.error().ok()) return adapter.error().WithContext(MemberName(options) + ": join");
    std::string error = e.what();
    std::replace(error.begin(), error.end(), '\n', ' ');
    return Status::Unavailable(MemberName(options) + ": join: " + error);
  }
  return std::unique_ptr<IslandGroup>(new IslandGroup(std::move(impl)));
}

Status IslandGroup::AllReduceSum(std::span<float> values) {
  if (size() == 1 || values.empty()) return impl_->Run("all-reduce", [] {});
  return impl_->ForEachBucket(values.size(), "all-reduce", [&](size_t begin, size_t n) {
    gloo::AllreduceOptions opts(impl_->context);
    opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    opts.setOutput(values.data() + begin, n);
    opts.setReduceFunction(kSumFloat);
    gloo::allreduce(opts);
    impl_->Count(n * sizeof(float), 2 * static_cast<uint64_t>(size() - 1));
  });
}

Status IslandGroup::AllReduceMean(std::span<float> values) {
  TRIB_RETURN_IF_ERROR(AllReduceSum(values));
  const float n = static_cast<float>(size());
  for (float& v : values) v /= n;
  return Status::OK();
}

Status IslandGroup::Broadcast(std::span<float> values, int root) {
  if (root < 0 || root >= size()) {
    return Status::InvalidArgument(impl_->name() + ": broadcast root " + std::to_string(root) + " is not a rank");
  }
  if (size() == 1 || values.empty()) return impl_->Run("broadcast", [] {});
  return impl_->ForEachBucket(values.size(), "broadcast", [&](size_t begin, size_t n) {
    gloo::BroadcastOptions opts(impl_->context);
    opts.setOutput(values.data() + begin, n);
    opts.setRoot(root);
    gloo::broadcast(opts);
    impl_->Count(n * sizeof(float), static_cast<uint64_t>(size() - 1));
  });
}

Status IslandGroup::CheckIdentical(uint64_t hash) {
  std::vector<uint64_t> all(static_cast<size_t>(size()), hash);
  if (size() > 1) {
    TRIB_RETURN_IF_ERROR(impl_->Run("hash check", [&] {
      gloo::AllgatherOptions opts(impl_->context);
      opts.setInput(&hash, 1);
      opts.setOutput(all.data(), all.size());
      gloo::allgather(opts);
      impl_->bytes_sent += static_cast<uint64_t>(size() - 1) * sizeof(uint64_t);
    }));
  }
  std::string differ;
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  }
  if (differ.empty()) return Status::OK();
  char leader[32];
  std::snprintf(leader, sizeof(leader), "%016llx", static_cast<unsigned long long>(all[0]));
  return Status::FailedPrecondition(impl_->name() + ": replica hash differs from rank 0's (" + leader +
                                    ") on rank(s) " + differ);
}

Result<uint64_t> IslandGroup::AllReduceSumU64(uint64_t value) {
  if (size() == 1) {
    TRIB_RETURN_IF_ERROR(impl_->Run("u64 all-reduce", [] {}));
    return value;
  }
  TRIB_RETURN_IF_ERROR(impl_->Run("u64 all-reduce", [&] {
    gloo::AllreduceOptions opts(impl_->context);
    opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    opts.setOutput(&value, 1);
    opts.setReduceFunction(kSumU64);
    gloo::allreduce(opts);
    impl_->Count(sizeof(uint64_t), 2 * static_cast<uint64_t>(size() - 1));
  }));
  return value;
}

const IslandOptions& IslandGroup::options() const {
  return impl_->options;
}

bool IslandGroup::usable() const {
  return impl_->usable;
}

uint64_t IslandGroup::bytes_sent() const {
  return impl_->bytes_sent;
}

}  // namespace tributary
