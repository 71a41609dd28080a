// Status and Result<T>: tributary's error convention (docs/architecture.md, "Errors").
//
// Every fallible operation in a library returns a must-check Status or Result<T>; libraries do not
// throw across their public API. The message is one line a user can act on, naming the file, field,
// key or peer and what is wrong ("job.yaml:12: key 'rounds': expected an integer, got 'ten'").
// Programmer errors (broken invariants) abort via TRIB_CHECK instead.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tributary {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // bad input from a user or peer: CLI flag, config, spec, model file, message
  kNotFound = 2,
  kAlreadyExists = 3,
  kIOError = 4,      // file system or socket failure
  kCorruption = 5,   // stored or received data fails a checksum or structural check
  kUnavailable = 6,  // a peer that is not reachable or not ready yet (retry later)
  kTimeout = 7,
  kPermissionDenied = 8,  // authentication / authorization
  kFailedPrecondition = 9,
  kInternal = 10,       // a bug
  kUnimplemented = 11,  // a command, mode or capability this build lacks (the CLI exits 69)
};

// Human-readable name of a code ("InvalidArgument").
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {StatusCode::kAlreadyExists, std::move(msg)}; }
  static Status IOError(std::string msg) { return {StatusCode::kIOError, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {StatusCode::kCorruption, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
  static Status Timeout(std::string msg) { return {StatusCode::kTimeout, std::move(msg)}; }
  static Status PermissionDenied(std::string msg) { return {StatusCode::kPermissionDenied, std::move(msg)}; }
  static Status FailedPrecondition(std::string msg) { return {StatusCode::kFailedPrecondition, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }
  static Status Unimplemented(std::string msg) { return {StatusCode::kUnimplemented, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsInvalidArgument() const { return code_ == StatusCode::kInvalidArgument; }
  bool IsNotFound() const { return code_ == StatusCode::kNotFound; }
  bool IsIOError() const { return code_ == StatusCode::kIOError; }
  bool IsCorruption() const { return code_ == StatusCode::kCorruption; }
  bool IsUnavailable() const { return code_ == StatusCode::kUnavailable; }

  // "InvalidArgument: job.yaml:3: key 'rounds': ..."; "OK" for success.
  std::string ToString() const;

  // Prefix the message with context, keeping the code: "loading model dir: " + message.
  Status WithContext(std::string_view context) const;

  // Explicitly ignore a status whose failure does not matter (e.g. best-effort cleanup).
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Result<T> holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.ok()) status_ = Status::Internal("Result constructed from an OK status without a value");
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & {
    CheckOk();
    return *value_;
  }
  const T& value() const& {
    CheckOk();
    return *value_;
  }
  T&& value() && {
    CheckOk();
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }

 private:
  void CheckOk() const {
    if (!ok()) {
      std::fprintf(stderr, "tributary: value() on a failed Result: %s\n", status_.ToString().c_str());
      std::abort();
    }
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace tributary

// Return early from the enclosing function when a Status is not OK.
#define TRIB_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::tributary::Status _trib_status = (expr);   \
    if (!_trib_status.ok()) return _trib_status; \
  } while (0)

#define TRIB_CONCAT_INNER(a, b) a##b
#define TRIB_CONCAT(a, b) TRIB_CONCAT_INNER(a, b)

// TRIB_ASSIGN_OR_RETURN(auto x, MaybeX()); declares x from a Result or returns its Status.
#define TRIB_ASSIGN_OR_RETURN(lhs, expr) TRIB_ASSIGN_OR_RETURN_IMPL(TRIB_CONCAT(_trib_result_, __LINE__), lhs, expr)
#define TRIB_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

// Invariant check for programmer errors: prints file:line and aborts (never for user input).
#define TRIB_CHECK(cond)                                                                         \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      std::fprintf(stderr, "tributary: check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)
