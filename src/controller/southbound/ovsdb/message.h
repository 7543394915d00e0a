// OVSDB's wire format (RFC 7047 §4, JSON-RPC 1.0): a byte stream carries back-to-back JSON objects
// with no delimiter between them. MessageReader cuts the stream into values; classify() says
// whether a value is a request, a notification or a reply. Neither needs a socket, so the fuzz
// target drives them with arbitrary bytes. Single-threaded; no function throws.
#pragma once

#include "core/result.h"

#include <boost/json/array.hpp>
#include <boost/json/stream_parser.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace steward::ovsdb {

namespace json = boost::json;

// Incremental reader of back-to-back JSON values, with a bound on the size of one value.
class MessageReader {
 public:
  explicit MessageReader(std::size_t max_message_bytes);

  // Parses `bytes`, calling `on_message(json::value&&) -> bool` for each complete value; when it
  // returns false the rest of `bytes` is dropped (the caller is closing the stream). Fails with
  // kInternal on malformed JSON or on a value larger than the bound; call reset() before reuse.
  template <typename OnMessage>
  Status feed(std::string_view bytes, OnMessage&& on_message);

  // Forgets any partial value (after an error or a reconnect).
  void reset();

 private:
  Error malformed(const boost::system::error_code& error) const;
  Error too_large() const;

  json::stream_parser parser_;
  std::size_t max_message_bytes_;
  std::size_t current_bytes_ = 0;
};

// One JSON-RPC message. Pointers refer into the classified value, which must outlive this.
struct Message {
  enum class Kind { kRequest, kNotification, kReply };
  Kind kind = Kind::kReply;
  std::string_view method;             // requests and notifications
  json::value* params = nullptr;       // requests and notifications: always an array
  const json::value* id = nullptr;     // requests and replies
  std::optional<uint64_t> numeric_id;  // replies whose id is a non-negative integer (ours)
  json::value* result = nullptr;       // replies: the result, or nullptr when `error` is set
  const json::value* error = nullptr;  // replies: the server's error, or nullptr
};

// Classifies a parsed value; kInternal when it is not a JSON-RPC 1.0 message.
Result<Message> classify(json::value& value);

// {"id": <id>, "method": <method>, "params": <params>} as text.
std::string serialize_request(uint64_t id, std::string_view method, const json::array& params);
// {"id": <id>, "result": <result>, "error": null} as text.
std::string serialize_reply(const json::value& id, const json::value& result);

template <typename OnMessage>
Status MessageReader::feed(std::string_view bytes, OnMessage&& on_message) {
  while (!bytes.empty()) {
    boost::system::error_code error;
    std::size_t used = parser_.write_some(bytes.data(), bytes.size(), error);
    current_bytes_ += used;
    if (error) return malformed(error);
    if (current_bytes_ > max_message_bytes_) return too_large();
    bytes.remove_prefix(used);
    if (!parser_.done()) {
      if (used == 0) break;
      continue;
    }
    json::value message = parser_.release();
    parser_.reset();
    current_bytes_ = 0;
    if (!on_message(std::move(message))) break;
  }
  return ok();
}

}  // namespace steward::ovsdb
