#include "controller/southbound/ovsdb/message.h"

#include <boost/json/serialize.hpp>

namespace steward::ovsdb {
namespace {

json::parse_options parse_options() {
  json::parse_options options;
  // OVSDB values nest a handful of levels (a condition inside a monitor request is the
  // deepest); the bound only stops pathological input from recursing.
  options.max_depth = 64;
  return options;
}

std::optional<uint64_t> numeric(const json::value& id) {
  if (const uint64_t* value = id.if_uint64()) return *value;
  if (const int64_t* value = id.if_int64()) {
    if (*value >= 0) return static_cast<uint64_t>(*value);
  }
  return std::nullopt;
}

Error not_a_message(std::string_view why) {
  return Error::make(ErrorCode::kInternal, "not a json-rpc message: {}", why);
}

Result<Message> classify_call(json::object& object, json::value& method) {
  const json::string* name = method.if_string();
  if (name == nullptr) return not_a_message("method is not a string");
  json::value* params = object.if_contains("params");
  if (params == nullptr || !params->is_array()) return not_a_message("params is not an array");
  Message message;
  message.method = *name;
  message.params = params;
  const json::value* id = object.if_contains("id");
  if (id == nullptr || id->is_null()) {
    message.kind = Message::Kind::kNotification;
    return message;
  }
  message.kind = Message::Kind::kRequest;
  message.id = id;
  return message;
}

Result<Message> classify_reply(json::object& object) {
  const json::value* id = object.if_contains("id");
  if (id == nullptr || id->is_null()) return not_a_message("reply without id");
  Message message;
  message.kind = Message::Kind::kReply;
  message.id = id;
  message.numeric_id = numeric(*id);
  json::value* error = object.if_contains("error");
  if (error != nullptr && !error->is_null()) {
    message.error = error;
    return message;
  }
  json::value* result = object.if_contains("result");
  if (result == nullptr) return not_a_message("reply without result or error");
  message.result = result;
  return message;
}

}  // namespace

MessageReader::MessageReader(std::size_t max_message_bytes)
    : parser_(json::storage_ptr(), parse_options()), max_message_bytes_(max_message_bytes) {}

void MessageReader::reset() {
  parser_.reset();
  current_bytes_ = 0;
}

Error MessageReader::malformed(const boost::system::error_code& error) const {
  return Error::make(ErrorCode::kInternal, "malformed json from peer: {}", error.message());
}

Error MessageReader::too_large() const {
  return Error::make(ErrorCode::kInternal, "message from peer exceeds {} bytes",
                     max_message_bytes_);
}

Result<Message> classify(json::value& value) {
  json::object* object = value.if_object();
  if (object == nullptr) return not_a_message("not an object");
  if (json::value* method = object->if_contains("method")) return classify_call(*object, *method);
  return classify_reply(*object);
}

std::string serialize_request(uint64_t id, std::string_view method, const json::array& params) {
  std::string text = fmt::format(R"({{"id":{},"method":)", id);
  text += json::serialize(json::string_view(method));
  text += R"(,"params":)";
  text += json::serialize(params);
  text += '}';
  return text;
}

std::string serialize_reply(const json::value& id, const json::value& result) {
  std::string text = R"({"id":)";
  text += json::serialize(id);
  text += R"(,"result":)";
  text += json::serialize(result);
  text += R"(,"error":null})";
  return text;
}

}  // namespace steward::ovsdb
