// Framing of back-to-back JSON-RPC messages, their classification, and endpoint parsing.
#include "controller/southbound/ovsdb/connection.h"
#include "controller/southbound/ovsdb/message.h"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include <vector>

namespace steward::ovsdb {
namespace {

std::vector<json::value> read_all(MessageReader& reader, const std::vector<std::string>& chunks,
                                  Status* status = nullptr) {
  std::vector<json::value> messages;
  for (const std::string& chunk : chunks) {
    Status fed = reader.feed(chunk, [&](json::value&& value) {
      messages.push_back(std::move(value));
      return true;
    });
    if (status != nullptr) *status = fed;
    if (!fed) break;
  }
  return messages;
}

TEST(OvsdbMessageReader, SplitsBackToBackValuesWithoutDelimiters) {
  MessageReader reader(1024);
  auto messages = read_all(reader, {R"({"id":1,"result":[]}{"id":2,"result":{}} {"a":[1,2]})"});
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[1], json::parse(R"({"id":2,"result":{}})"));
}

TEST(OvsdbMessageReader, JoinsAValueSplitAcrossReads) {
  MessageReader reader(1024);
  std::string text = R"({"method":"update2","params":["m",{"Port":{}}],"id":null})";
  std::vector<std::string> bytes;
  for (char c : text)
    bytes.emplace_back(1, c);
  auto messages = read_all(reader, bytes);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0], json::parse(text));
}

TEST(OvsdbMessageReader, StopsWhenTheHandlerSaysSo) {
  MessageReader reader(1024);
  int seen = 0;
  Status status = reader.feed(R"({}{}{})", [&](json::value&&) { return ++seen < 2; });
  EXPECT_TRUE(status);
  EXPECT_EQ(seen, 2);
}

TEST(OvsdbMessageReader, GarbageIsAnError) {
  MessageReader reader(1024);
  Status status;
  read_all(reader, {R"({"id":1,)", "]garbage"}, &status);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("malformed json"), std::string::npos);
}

TEST(OvsdbMessageReader, AMessageOverTheBoundIsAnError) {
  MessageReader reader(64);
  Status status;
  read_all(reader, {R"({"id":1,"result":")", std::string(100, 'x')}, &status);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("exceeds 64 bytes"), std::string::npos);
}

TEST(OvsdbMessageReader, TheBoundIsPerMessage) {
  MessageReader reader(64);
  std::string small = R"({"id":1,"result":"0123456789"})";
  Status status;
  auto messages = read_all(reader, {small + small + small + small}, &status);
  EXPECT_TRUE(status);
  EXPECT_EQ(messages.size(), 4u);
}

TEST(OvsdbClassify, RequestsNotificationsAndReplies) {
  json::value request = json::parse(R"({"method":"echo","params":[],"id":"echo"})");
  auto classified = classify(request);
  ASSERT_TRUE(classified);
  EXPECT_EQ(classified->kind, Message::Kind::kRequest);
  EXPECT_EQ(classified->method, "echo");

  json::value notification = json::parse(R"({"method":"update2","params":["m",{}],"id":null})");
  classified = classify(notification);
  ASSERT_TRUE(classified);
  EXPECT_EQ(classified->kind, Message::Kind::kNotification);

  json::value reply = json::parse(R"({"id":7,"result":[{"count":1}],"error":null})");
  classified = classify(reply);
  ASSERT_TRUE(classified);
  EXPECT_EQ(classified->kind, Message::Kind::kReply);
  EXPECT_EQ(classified->numeric_id, 7u);
  ASSERT_NE(classified->result, nullptr);
  EXPECT_EQ(classified->error, nullptr);

  json::value failure = json::parse(R"({"id":8,"result":null,"error":{"error":"unknown method"}})");
  classified = classify(failure);
  ASSERT_TRUE(classified);
  EXPECT_NE(classified->error, nullptr);
}

TEST(OvsdbClassify, NonMessagesAreRefused) {
  for (const char* text : {R"([1,2])", R"({"method":5,"params":[]})",
                           R"({"method":"x","params":{}})", R"({"result":1})", R"({"id":1})"}) {
    json::value value = json::parse(text);
    EXPECT_FALSE(classify(value)) << text;
  }
}

TEST(OvsdbSerialize, RequestsAndRepliesAreJsonRpc) {
  json::array params{"Open_vSwitch", json::object{{"op", "comment"}}};
  EXPECT_EQ(
      json::parse(serialize_request(3, "transact", params)),
      json::parse(R"({"id":3,"method":"transact","params":["Open_vSwitch",{"op":"comment"}]})"));
  EXPECT_EQ(json::parse(serialize_reply("echo", json::array{"x"})),
            json::parse(R"({"id":"echo","result":["x"],"error":null})"));
}

TEST(OvsdbEndpoint, ParsesTheThreeConnectionMethods) {
  auto unix_endpoint = Endpoint::parse("unix:/run/openvswitch/db.sock");
  ASSERT_TRUE(unix_endpoint);
  EXPECT_EQ(unix_endpoint->kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(unix_endpoint->path, "/run/openvswitch/db.sock");

  auto tcp = Endpoint::parse("tcp:127.0.0.1:6640");
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->kind, Endpoint::Kind::kTcp);
  EXPECT_EQ(tcp->host, "127.0.0.1");
  EXPECT_EQ(tcp->port, "6640");

  auto ssl = Endpoint::parse("ssl:[::1]:6640");
  ASSERT_TRUE(ssl);
  EXPECT_EQ(ssl->kind, Endpoint::Kind::kSsl);
  EXPECT_EQ(ssl->host, "::1");

  for (const char* bad : {"", "unix:", "tcp:127.0.0.1", "tcp::6640", "tcp:host:", "udp:x:1"}) {
    auto parsed = Endpoint::parse(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace steward::ovsdb
