// Connection against a scripted peer on a unix socket: pipelining, echo both ways, liveness,
// protocol errors, size bound, and what pending requests see when the session ends.
#include "controller/southbound/ovsdb/connection.h"

#include "controller/southbound/ovsdb/message.h"
#include "support/ovs_sandbox.h"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <stdlib.h>

#include <filesystem>
#include <optional>

namespace steward::ovsdb {
namespace {

namespace asio = boost::asio;
using steward::testing::run_io_until;
using steward::testing::ScriptedOvsdbPeer;

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path().string() + "/steward-conn-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    peer_ = std::make_unique<ScriptedOvsdbPeer>(io_, dir_ + "/peer.sock");
    options_.backoff_initial = std::chrono::milliseconds(10);
    options_.backoff_max = std::chrono::milliseconds(50);
    options_.echo_interval = std::chrono::milliseconds(0);
  }
  void TearDown() override {
    connection_.reset();
    peer_.reset();
    std::filesystem::remove_all(dir_);
  }

  void open() {
    Connection::Handlers handlers{
        .connected = [this] { connects_++; },
        .disconnected = [this](const Error& reason) { reasons_.push_back(reason.message); },
        .notification = [this](std::string_view method,
                               json::value&) { notifications_.emplace_back(method); },
    };
    connection_ = std::make_unique<Connection>(io_, "s1", "unix:" + dir_ + "/peer.sock",
                                               controller::TlsFiles{}, options_, handlers);
    connection_->start();
    ASSERT_TRUE(run_io_until(io_, [&] { return connection_->connected() && peer_->connected(); }));
  }

  // Sends a request and returns where its result will land.
  std::shared_ptr<std::optional<Result<json::value>>> call(std::string_view method) {
    auto slot = std::make_shared<std::optional<Result<json::value>>>();
    connection_->call(method, json::array{"x"},
                      [slot](Result<json::value> reply) { *slot = std::move(reply); });
    return slot;
  }

  bool saw_reason(std::string_view text) {
    for (const std::string& reason : reasons_) {
      if (reason.find(text) != std::string::npos) return true;
    }
    return false;
  }

  asio::io_context io_;
  std::string dir_;
  std::unique_ptr<ScriptedOvsdbPeer> peer_;
  ConnectionOptions options_;
  std::unique_ptr<Connection> connection_;
  int connects_ = 0;
  std::vector<std::string> reasons_;
  std::vector<std::string> notifications_;
};

TEST_F(ConnectionTest, PipelinedRepliesAreMatchedById) {
  open();
  auto first = call("first");
  auto second = call("second");
  ASSERT_TRUE(run_io_until(io_, [&] { return peer_->received().size() == 2; }));
  auto requests = peer_->received();
  EXPECT_EQ(requests[0].at("method"), "first");
  EXPECT_EQ(requests[1].at("params"), json::parse(R"(["x"])"));

  // Answered out of order, in one write.
  peer_->send(fmt::format(R"({{"id":{},"result":"two","error":null}}{{"id":{},"result":"one"}})",
                          json::serialize(requests[1].at("id")),
                          json::serialize(requests[0].at("id"))));

  ASSERT_TRUE(run_io_until(io_, [&] { return first->has_value() && second->has_value(); }));
  EXPECT_EQ(first->value().value(), "one");
  EXPECT_EQ(second->value().value(), "two");
}

TEST_F(ConnectionTest, NotificationsReachTheHandler) {
  open();
  peer_->send(R"({"method":"update2","params":["m",{}],"id":null})");
  ASSERT_TRUE(run_io_until(io_, [&] { return !notifications_.empty(); }));
  EXPECT_EQ(notifications_[0], "update2");
}

TEST_F(ConnectionTest, TheServersEchoIsAnswered) {
  open();
  peer_->send(R"({"method":"echo","params":["ping"],"id":"echo-1"})");
  ASSERT_TRUE(run_io_until(io_, [&] { return !peer_->received().empty(); }));
  EXPECT_EQ(peer_->received()[0], json::parse(R"({"id":"echo-1","result":["ping"],"error":null})"));
}

TEST_F(ConnectionTest, AnIdleConnectionIsProbedAndKeptWhileTheServerAnswers) {
  options_.echo_interval = std::chrono::milliseconds(40);
  open();
  // Answer every echo for a while: the connection stays up.
  std::size_t answered = 0;
  ASSERT_TRUE(run_io_until(io_, [&] {
    auto requests = peer_->received();
    for (; answered < requests.size(); ++answered) {
      EXPECT_EQ(requests[answered].at("method"), "echo");
      peer_->send(fmt::format(R"({{"id":{},"result":[],"error":null}})",
                              json::serialize(requests[answered].at("id"))));
    }
    return answered >= 4;
  }));
  EXPECT_EQ(peer_->accepted(), 1);
  EXPECT_TRUE(reasons_.empty());
}

TEST_F(ConnectionTest, NoReplyToEchoWithinTwoIntervalsDropsAndReconnects) {
  options_.echo_interval = std::chrono::milliseconds(30);
  open();
  auto pending = call("never-answered");

  ASSERT_TRUE(run_io_until(io_, [&] { return peer_->accepted() == 2; }));
  EXPECT_TRUE(saw_reason("no reply to echo within 60 ms"));
  ASSERT_TRUE(pending->has_value());
  EXPECT_EQ(pending->value().error().code, ErrorCode::kUnavailable);
}

TEST_F(ConnectionTest, GarbageIsAProtocolErrorAndTheConnectionIsReopened) {
  open();
  peer_->send("{\"id\":1,]");
  ASSERT_TRUE(run_io_until(io_, [&] { return connects_ == 2; }));
  EXPECT_TRUE(saw_reason("protocol error: malformed json"));
}

TEST_F(ConnectionTest, AMessageThatIsNotJsonRpcIsAProtocolError) {
  open();
  peer_->send("[1,2,3]");
  ASSERT_TRUE(run_io_until(io_, [&] { return connects_ == 2; }));
  EXPECT_TRUE(saw_reason("not a json-rpc message"));
}

TEST_F(ConnectionTest, AReplyToNothingIsAProtocolError) {
  open();
  peer_->send(R"({"id":999,"result":[],"error":null})");
  ASSERT_TRUE(run_io_until(io_, [&] { return connects_ == 2; }));
  EXPECT_TRUE(saw_reason("reply to unknown request 999"));
}

TEST_F(ConnectionTest, AnOversizeMessageIsAProtocolError) {
  options_.max_message_bytes = 1024;
  open();
  peer_->send(R"({"method":"update2","params":[")" + std::string(4096, 'x') + "\"]}");
  ASSERT_TRUE(run_io_until(io_, [&] { return connects_ == 2; }));
  EXPECT_TRUE(saw_reason("exceeds 1024 bytes"));
  EXPECT_TRUE(notifications_.empty());
}

TEST_F(ConnectionTest, AServerErrorFailsOnlyThatRequest) {
  open();
  auto failing = call("bogus");
  ASSERT_TRUE(run_io_until(io_, [&] { return !peer_->received().empty(); }));
  peer_->send(fmt::format(R"({{"id":{},"result":null,"error":"unknown method"}})",
                          json::serialize(peer_->received()[0].at("id"))));
  ASSERT_TRUE(run_io_until(io_, [&] { return failing->has_value(); }));
  EXPECT_EQ(failing->value().error().code, ErrorCode::kInternal);
  EXPECT_NE(failing->value().error().message.find("unknown method"), std::string::npos);
  EXPECT_TRUE(connection_->connected());
}

TEST_F(ConnectionTest, RequestsInFlightFailUnavailableNamingTheSwitchAndReason) {
  open();
  auto first = call("a");
  auto second = call("b");
  ASSERT_TRUE(run_io_until(io_, [&] { return peer_->received().size() == 2; }));

  peer_->hang_up();

  ASSERT_TRUE(run_io_until(io_, [&] { return first->has_value() && second->has_value(); }));
  for (auto* slot : {first.get(), second.get()}) {
    ASSERT_FALSE(slot->value());
    EXPECT_EQ(slot->value().error().code, ErrorCode::kUnavailable);
    EXPECT_NE(slot->value().error().message.find("switch s1 connection lost"), std::string::npos)
        << slot->value().error().message;
  }
  ASSERT_TRUE(run_io_until(io_, [&] { return connects_ == 2; }));
}

TEST_F(ConnectionTest, ACallWithoutASessionFailsLaterNotInside) {
  Connection idle(io_, "s1", "unix:" + dir_ + "/nobody.sock", {}, options_, {});
  bool inside = true;
  std::optional<Status> result;
  idle.call("x", json::array(), [&](Result<json::value> reply) {
    EXPECT_FALSE(inside);
    result = reply ? ok() : Status(reply.error());
  });
  inside = false;
  ASSERT_TRUE(run_io_until(io_, [&] { return result.has_value(); }));
  EXPECT_EQ(result->error().code, ErrorCode::kUnavailable);
  EXPECT_NE(result->error().message.find("switch s1 not connected"), std::string::npos);
}

TEST_F(ConnectionTest, StopFailsPendingRequestsAndSilencesHandlers) {
  open();
  auto pending = call("a");
  connection_->stop();
  int connects_before = connects_;
  ASSERT_TRUE(run_io_until(io_, [&] { return pending->has_value(); }));
  EXPECT_EQ(pending->value().error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(run_io_until(
      io_, [&] { return connects_ != connects_before; }, std::chrono::milliseconds(100)));
  EXPECT_TRUE(reasons_.empty());
}

TEST_F(ConnectionTest, AMissingServerIsRetriedWithBackoff) {
  Connection lonely(
      io_, "s1", "unix:" + dir_ + "/nobody.sock", {}, options_,
      {.connected = [] {},
       .disconnected = [this](const Error& reason) { reasons_.push_back(reason.message); },
       .notification = [](std::string_view, json::value&) {}});
  lonely.start();
  ASSERT_TRUE(run_io_until(io_, [&] { return reasons_.size() >= 3; }));
  EXPECT_TRUE(saw_reason("nobody.sock failed"));
}

TEST_F(ConnectionTest, AMalformedEndpointIsReportedOnce) {
  Connection broken(
      io_, "s1", "carrier-pigeon:1", {}, options_,
      {.connected = [] {},
       .disconnected = [this](const Error& reason) { reasons_.push_back(reason.message); },
       .notification = [](std::string_view, json::value&) {}});
  broken.start();
  ASSERT_TRUE(run_io_until(io_, [&] { return !reasons_.empty(); }));
  EXPECT_FALSE(run_io_until(
      io_, [&] { return reasons_.size() > 1; }, std::chrono::milliseconds(100)));
  EXPECT_TRUE(saw_reason("carrier-pigeon:1"));
}

}  // namespace
}  // namespace steward::ovsdb
