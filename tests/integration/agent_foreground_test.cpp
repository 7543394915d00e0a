// Foreground sources: the local command socket (with its peer-credential check, tried from a
// process of another uid) and the systemd-logind source against a private dbus-daemon with a
// stand-in login1 service (logind itself does not run on the test machines).
#include "agent/foreground/local_command.h"
#include "agent/foreground/logind.h"
#include "support/mosquitto_broker.h"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/json.hpp>

#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace steward::agent {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string scratch_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / fmt::format("steward-{}-{}", name, ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Runs an io_context on its own thread for the duration of a test.
class IoThread {
 public:
  IoThread() : work_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~IoThread() {
    work_.reset();
    io_.stop();
    thread_.join();
  }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

class LocalCommandTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = scratch_dir("local-command") + "/agent.sock"; }
  void TearDown() override { fs::remove_all(fs::path(path_).parent_path()); }

  std::unique_ptr<LocalCommandServer> serve(std::set<uid_t> allowed) {
    auto server = std::make_unique<LocalCommandServer>(
        io_.io(), path_, std::move(allowed),
        [this](const json::object& request, LocalCommandServer::Reply reply) {
          std::lock_guard lock(mutex_);
          requests_.push_back(request);
          reply(json::object{{"ok", true}, {"echo", request}});
        });
    EXPECT_TRUE(server->start());
    return server;
  }

  IoThread io_;
  std::string path_;
  std::mutex mutex_;
  std::vector<json::object> requests_;
};

TEST_F(LocalCommandTest, AnAllowedPeerGetsAnAnswerPerRequest) {
  auto server = serve({::getuid()});
  for (const char* system : {"work", "personal"}) {
    auto answer = local_command(path_, {{"op", "foreground"}, {"system", system}}, 5s);
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->at("echo").at("system"), system);
  }
  EXPECT_EQ(requests_.size(), 2u);
  EXPECT_EQ(fs::status(path_).permissions() & fs::perms::others_all, fs::perms::none);
}

TEST_F(LocalCommandTest, APeerWithAnotherUidIsRefusedBeforeItsRequestIsRead) {
  auto server = serve({::getuid()});
  fs::permissions(fs::path(path_).parent_path(), fs::perms::all);
  fs::permissions(path_, fs::perms::all);  // let the other uid reach the socket at all
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) _exit(2);
    auto answer = local_command(path_, {{"op", "foreground"}, {"system", "work"}}, 5s);
    _exit(!answer && answer.error().code == ErrorCode::kUnauthenticated ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: not refused, 2: could not change uid";
  EXPECT_TRUE(requests_.empty());
  EXPECT_EQ(server->refused(), 1u);
}

TEST_F(LocalCommandTest, MalformedRequestsAreAnsweredWithAnError) {
  auto server = serve({::getuid()});
  auto answer = local_command(path_, {{"op", "status"}}, 5s);
  ASSERT_TRUE(answer);
  auto unreachable = local_command(path_ + ".missing", {{"op", "status"}}, 1s);
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error().code, ErrorCode::kUnavailable);
}

// A stand-in for systemd-logind on a private bus: seat0 with an ActiveSession property that
// the test switches, and sessions with a user name.
class FakeLogind {
 public:
  struct Session {
    std::string id;
    std::string user;
    std::string path;
  };

  explicit FakeLogind(std::string address) : address_(std::move(address)) {}
  ~FakeLogind() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    for (sd_bus_slot* slot : slots_)
      sd_bus_slot_unref(slot);
    sd_bus_flush_close_unref(bus_);
  }

  bool start(std::vector<Session> sessions, const std::string& active) {
    sessions_ = std::move(sessions);
    active_ = active;
    if (sd_bus_new(&bus_) < 0 || sd_bus_set_address(bus_, address_.c_str()) < 0 ||
        sd_bus_set_bus_client(bus_, 1) < 0 || sd_bus_start(bus_) < 0) {
      return false;
    }
    static const sd_bus_vtable seat[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("ActiveSession", "(so)", &FakeLogind::active_session, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END};
    static const sd_bus_vtable session[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", &FakeLogind::session_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END};
    sd_bus_slot* slot = nullptr;
    if (sd_bus_add_object_vtable(bus_, &slot, "/org/freedesktop/login1/seat/seat0",
                                 "org.freedesktop.login1.Seat", seat, this) < 0)
      return false;
    slots_.push_back(slot);
    for (Session& entry : sessions_) {
      if (sd_bus_add_object_vtable(bus_, &slot, entry.path.c_str(),
                                   "org.freedesktop.login1.Session", session, &entry) < 0)
        return false;
      slots_.push_back(slot);
    }
    if (sd_bus_request_name(bus_, "org.freedesktop.login1", 0) < 0) return false;
    thread_ = std::thread([this] { serve(); });
    return true;
  }

  // Switches the active session, as logind does when another session takes the seat.
  void activate(const std::string& id) {
    std::lock_guard lock(mutex_);
    next_ = id;
  }

 private:
  void serve() {
    while (!stopping_) {
      while (sd_bus_process(bus_, nullptr) > 0) {
      }
      std::optional<std::string> next;
      {
        std::lock_guard lock(mutex_);
        next.swap(next_);
      }
      if (next) {
        active_ = *next;
        sd_bus_emit_properties_changed(bus_, "/org/freedesktop/login1/seat/seat0",
                                       "org.freedesktop.login1.Seat", "ActiveSession", nullptr);
      }
      sd_bus_wait(bus_, 20'000);
    }
  }

  static int active_session(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply,
                            void* self, sd_bus_error*) {
    auto* fake = static_cast<FakeLogind*>(self);
    std::string path = "/";
    for (const Session& entry : fake->sessions_)
      if (entry.id == fake->active_) path = entry.path;
    return sd_bus_message_append(reply, "(so)", fake->active_.c_str(), path.c_str());
  }

  static int session_name(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply,
                          void* self, sd_bus_error*) {
    return sd_bus_message_append(reply, "s", static_cast<Session*>(self)->user.c_str());
  }

  std::string address_;
  sd_bus* bus_ = nullptr;
  std::vector<sd_bus_slot*> slots_;
  std::vector<Session> sessions_;
  std::string active_;
  std::mutex mutex_;
  std::optional<std::string> next_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

class LogindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir("dbus");
    std::string socket = dir_ + "/bus";
    std::ofstream(dir_ + "/bus.conf")
        << "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
           " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
           "<busconfig><type>session</type><listen>unix:path="
        << socket
        << "</listen><auth>EXTERNAL</auth><policy context=\"default\">"
           "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>"
           "<allow own=\"*\"/></policy></busconfig>\n";
    auto daemon = testing::ChildProcess::start(
        {"dbus-daemon", "--config-file=" + dir_ + "/bus.conf", "--nofork"}, {}, dir_ + "/dbus.log");
    ASSERT_TRUE(daemon) << daemon.error().message;
    daemon_ = std::move(*daemon);
    for (int i = 0; i < 400 && !fs::exists(socket); ++i)
      std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(fs::exists(socket)) << daemon_->log_tail();
    address_ = "unix:path=" + socket;
    logind_ = std::make_unique<FakeLogind>(address_);
  }
  void TearDown() override {
    logind_.reset();
    daemon_.reset();
    fs::remove_all(dir_);
  }

  // Records every foreground the source reports.
  struct Seen {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::optional<std::string>> systems;
    bool wait_for(size_t count) {
      std::unique_lock lock(mutex);
      return changed.wait_for(lock, 10s, [&] { return systems.size() >= count; });
    }
  };

  std::unique_ptr<LogindSource> source(Seen& seen) {
    LogindOptions options;
    options.bus_address = address_;
    options.sessions = {{"c1", "personal"}, {"alice-work", "work"}};
    return std::make_unique<LogindSource>(options, [&seen](std::optional<std::string> system) {
      std::lock_guard lock(seen.mutex);
      seen.systems.push_back(system);
      seen.changed.notify_all();
    });
  }

  std::string dir_;
  std::string address_;
  std::unique_ptr<testing::ChildProcess> daemon_;
  std::unique_ptr<FakeLogind> logind_;
};

TEST_F(LogindTest, ReadsTheForegroundAtStartThenFollowsTheSeat) {
  ASSERT_TRUE(logind_->start({{"c1", "alice", "/org/freedesktop/login1/session/c1"},
                              {"c2", "alice-work", "/org/freedesktop/login1/session/c2"},
                              {"c3", "guest", "/org/freedesktop/login1/session/c3"}},
                             "c1"));
  Seen seen;
  auto watcher = source(seen);
  auto started = watcher->start();
  ASSERT_TRUE(started) << started.error().message;
  ASSERT_EQ(seen.systems.size(), 1u);  // read before start() returned
  EXPECT_EQ(seen.systems[0], "personal");

  logind_->activate("c2");  // mapped by user name
  ASSERT_TRUE(seen.wait_for(2));
  EXPECT_EQ(seen.systems[1], "work");
  logind_->activate("c3");  // not mapped: no managed OS in the foreground
  ASSERT_TRUE(seen.wait_for(3));
  EXPECT_EQ(seen.systems[2], std::nullopt);
  logind_->activate("c1");
  ASSERT_TRUE(seen.wait_for(4));
  EXPECT_EQ(seen.systems[3], "personal");
}

TEST_F(LogindTest, StartFailsWhenLogindIsNotOnTheBus) {
  Seen seen;
  auto watcher = source(seen);
  auto started = watcher->start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message.find("ActiveSession"), std::string::npos)
      << started.error().message;
}

}  // namespace
}  // namespace steward::agent
