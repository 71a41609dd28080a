#include "tests/transport/loopback_util.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <google/protobuf/util/message_differencer.h>

namespace tributary::transport::testing {
namespace {

using google::protobuf::FieldDescriptor;
using PbMessage = google::protobuf::Message;
using google::protobuf::Reflection;

// Sets every field of `message` to a value derived from `seed` and the field number.
void FillMessage(PbMessage* message, int seed, int depth) {
  const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
  const Reflection* reflection = message->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->containing_oneof() != nullptr) continue;  // Envelope.body is chosen by the caller
    const int value = seed * 100 + field->number();
    const int repeats = field->is_repeated() ? 2 : 1;
    for (int r = 0; r < repeats; ++r) {
      const int v = value + r;
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          field->is_repeated() ? reflection->AddInt32(message, field, -v) : reflection->SetInt32(message, field, -v);
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          field->is_repeated() ? reflection->AddInt64(message, field, -int64_t{v} * 1000000007)
                               : reflection->SetInt64(message, field, -int64_t{v} * 1000000007);
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          field->is_repeated() ? reflection->AddUInt32(message, field, v) : reflection->SetUInt32(message, field, v);
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          field->is_repeated() ? reflection->AddUInt64(message, field, uint64_t{1} << 40 | v)
                               : reflection->SetUInt64(message, field, uint64_t{1} << 40 | v);
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          field->is_repeated() ? reflection->AddDouble(message, field, v + 0.25)
                               : reflection->SetDouble(message, field, v + 0.25);
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          field->is_repeated() ? reflection->AddFloat(message, field, v + 0.5f)
                               : reflection->SetFloat(message, field, v + 0.5f);
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          field->is_repeated() ? reflection->AddBool(message, field, true) : reflection->SetBool(message, field, true);
          break;
        case FieldDescriptor::CPPTYPE_ENUM:
          field->is_repeated() ? reflection->AddEnumValue(message, field, 1)
                               : reflection->SetEnumValue(message, field, 1);
          break;
        case FieldDescriptor::CPPTYPE_STRING: {
          std::string text = field->name() + "-" + std::to_string(v);
          if (field->type() == FieldDescriptor::TYPE_BYTES) text += std::string("\0\xff\x01", 3);
          field->is_repeated() ? reflection->AddString(message, field, text)
                               : reflection->SetString(message, field, text);
          break;
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
          if (depth < 4) {
            PbMessage* child = field->is_repeated() ? reflection->AddMessage(message, field)
                                                    : reflection->MutableMessage(message, field);
            FillMessage(child, v, depth + 1);
          }
          break;
      }
    }
  }
}

}  // namespace

CurveSetup MakeCurveSetup() {
  CurveSetup setup;
  setup.server = GenerateKeyPair().value();
  setup.client = GenerateKeyPair().value();
  setup.allow_list.Add(setup.client.public_key, "worker-a").IgnoreError();
  return setup;
}

ServerOptions SecureServerOptions(const CurveSetup& setup) {
  ServerOptions options;
  options.name = "test-server";
  options.keys = setup.server;
  options.allow_list = setup.allow_list;
  return options;
}

ClientOptions SecureClientOptions(const CurveSetup& setup, const KeyPair& client_keys) {
  ClientOptions options;
  options.name = "test-client";
  options.keys = client_keys;
  options.server_public_key = setup.server.public_key;
  options.reconnect_interval_ms = 20;
  options.reconnect_interval_max_ms = 200;
  return options;
}

ServerOptions InsecureServerOptions() {
  ServerOptions options;
  options.name = "test-server";
  options.insecure = true;
  return options;
}

ClientOptions InsecureClientOptions() {
  ClientOptions options;
  options.name = "test-client";
  options.insecure = true;
  options.reconnect_interval_ms = 20;
  options.reconnect_interval_max_ms = 200;
  return options;
}

Envelope SampleEnvelope(Envelope::BodyCase body) {
  Envelope envelope = NewEnvelope("sample-sender");
  envelope.set_in_reply_to(12345);
  const FieldDescriptor* field = Envelope::descriptor()->FindFieldByNumber(static_cast<int>(body));
  if (field == nullptr) return envelope;
  PbMessage* child = envelope.GetReflection()->MutableMessage(&envelope, field);
  FillMessage(child, static_cast<int>(body), 0);
  return envelope;
}

std::vector<Envelope::BodyCase> AllBodyCases() {
  std::vector<Envelope::BodyCase> cases;
  const google::protobuf::OneofDescriptor* oneof = Envelope::descriptor()->FindOneofByName("body");
  for (int i = 0; oneof != nullptr && i < oneof->field_count(); ++i) {
    cases.push_back(static_cast<Envelope::BodyCase>(oneof->field(i)->number()));
  }
  return cases;
}

bool SameEnvelope(const Envelope& a, const Envelope& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

Result<Message> RequestWithRetries(Client& client, const Envelope& request, int attempt_ms, int total_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(total_ms);
  Status last = Status::Timeout("no attempt made");
  while (std::chrono::steady_clock::now() < deadline) {
    Envelope attempt = request;
    attempt.set_message_id(NewEnvelope("").message_id());
    Result<Message> reply = client.Request(attempt, attempt_ms);
    if (reply.ok()) return reply;
    last = reply.status();
  }
  return last;
}

LogCapture::LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096)) {
  previous_ = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("capture", sink_);
  logger->set_level(spdlog::level::debug);
  spdlog::set_default_logger(logger);
}

LogCapture::~LogCapture() {
  spdlog::set_default_logger(previous_);
}

bool LogCapture::Contains(const std::string& text) const {
  for (const std::string& line : sink_->last_formatted()) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

bool LogCapture::WaitFor(const std::string& text, int timeout_ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!Contains(text)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace tributary::transport::testing
