// The VPN daemon's control socket on a real Unix socket: root and the daemon's own uid are
// served (and the handler learns who asked), another uid is refused by its peer credentials
// even when the socket file's mode lets it connect, and a second daemon does not steal the
// socket of a live one.
#include "vpn/control.h"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <thread>

namespace steward::vpn {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

class VpnControl : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "needs root (to ask as another uid)";
    char pattern[] = "/tmp/steward-vpn-control-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    ::chmod(dir_.c_str(), 0755);
    server_ = std::make_unique<ControlServer>(
        io_, path(),
        [this](const Peer& peer, const json::object& request, ControlServer::Reply reply) {
          last_peer_ = peer;
          reply(json::object{{"ok", true}, {"op", request.at("op")}});
        });
    ASSERT_TRUE(server_->start());
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    boost::asio::post(io_, [this] { server_->stop(); });
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string path() const { return dir_ + "/vpn.sock"; }

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::unique_ptr<ControlServer> server_;
  std::thread thread_;
  std::string dir_;
  Peer last_peer_;
};

TEST_F(VpnControl, RootIsServedAndTheHandlerKnowsWhoAsked) {
  auto answer = control_request(path(), json::object{{"op", "status"}}, 2s);
  ASSERT_TRUE(answer) << answer.error().message;
  EXPECT_EQ(answer->at("op").as_string(), "status");
  EXPECT_EQ(last_peer_.pid, ::getpid());
  EXPECT_EQ(last_peer_.uid, 0u);
  struct stat info {};
  ASSERT_EQ(::stat(path().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
}

TEST_F(VpnControl, AnotherUidIsRefusedByItsCredentialsNotOnlyByTheFileMode) {
  ::chmod(path().c_str(), 0666);  // let it connect: the credentials check must still refuse
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    auto answer = control_request(path(), json::object{{"op", "status"}}, 2s);
    if (answer) ::_exit(1);
    ::_exit(answer.error().code == ErrorCode::kUnauthenticated ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: served, 2: refused for another reason, 3: setuid";
  EXPECT_EQ(server_->refused(), 1u);
}

TEST_F(VpnControl, ASecondServerDoesNotStealTheSocketOfALiveOne) {
  boost::asio::io_context other;
  ControlServer second(other, path(),
                       [](const Peer&, const json::object&, ControlServer::Reply) {});
  auto started = second.start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, ErrorCode::kConflict);
  EXPECT_TRUE(control_request(path(), json::object{{"op", "ping"}}, 2s));
}

TEST_F(VpnControl, ARequestThatIsNotJsonGetsAnErrorAndNoDaemonMeansUnavailable) {
  boost::asio::io_context client;
  boost::asio::local::stream_protocol::socket raw(client);
  raw.connect(boost::asio::local::stream_protocol::endpoint(path()));
  boost::asio::write(raw, boost::asio::buffer(std::string("hello\n")));
  boost::asio::streambuf answer;
  boost::system::error_code ec;
  boost::asio::read_until(raw, answer, '\n', ec);
  std::string text(boost::asio::buffers_begin(answer.data()),
                   boost::asio::buffers_end(answer.data()));
  EXPECT_NE(text.find("\"ok\":false"), std::string::npos) << text;
  EXPECT_NE(text.find("one JSON object"), std::string::npos) << text;

  auto missing = control_request(dir_ + "/nothing.sock", json::object{{"op", "status"}}, 1s);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace steward::vpn
