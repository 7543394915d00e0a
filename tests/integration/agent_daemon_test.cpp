// The agent daemon end to end: `steward agent run` as a child process, a real Mosquitto broker
// on loopback, instructions published by a management-side client (signed with the server
// key), executors that log each run to a file, foreground switches over the local socket.
// Covers every case of the agent issue, including SIGKILL crashes and a broker restart.
#include "agent/foreground/local_command.h"
#include "agent/model/control_message.h"
#include "agent/transport/mqtt.h"
#include "core/http.h"
#include "support/mosquitto_broker.h"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace steward::agent {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::MosquittoBroker;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One line of the executors' log: who ran, for which OS, when it started.
struct Execution {
  int64_t at_ns = 0;
  std::string id;
  std::string target;
  std::string type;
};

// Collects the terminal's status reports from the broker.
class Reports {
 public:
  Status open(const std::string& uri) {
    BrokerOptions options;
    options.uri = uri;
    options.client_id = "test-status-reader";
    options.clean_session = false;  // keeps reports published while the broker restarts
    auto client = MqttClient::create(options);
    if (!client) return client.error();
    client_ = std::move(*client);
    client_->on_message([this](const std::string&, const std::string& payload, bool) {
      auto report = parse_report(payload);
      std::lock_guard lock(mutex_);
      if (report) reports_.push_back(*report);
      changed_.notify_all();
    });
    client_->on_connected(
        [this] { (void)client_->subscribe(status_topic("t1"), 1, std::chrono::milliseconds(0)); });
    if (auto status = client_->connect(); !status) return status;
    return client_->subscribe(status_topic("t1"), 1, 5s);
  }

  // Waits until `id` has a report with `status`.
  bool wait(const std::string& id, ReportStatus status, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      for (const Report& report : reports_)
        if (report.instruction == id && report.status == status) return true;
      return false;
    });
  }
  bool wait_count(ReportStatus status, size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return distinct(status) >= count; });
  }
  // Distinct instruction ids reported with `status` (a report may be delivered twice).
  size_t distinct(ReportStatus status) {
    std::set<std::string> ids;
    for (const Report& report : reports_)
      if (report.status == status) ids.insert(report.instruction);
    return ids.size();
  }
  std::vector<ReportStatus> of(const std::string& id) {
    std::lock_guard lock(mutex_);
    std::vector<ReportStatus> out;
    for (const Report& report : reports_)
      if (report.instruction == id && (out.empty() || out.back() != report.status))
        out.push_back(report.status);
    return out;
  }
  std::optional<Report> last(const std::string& id) {
    std::lock_guard lock(mutex_);
    for (auto it = reports_.rbegin(); it != reports_.rend(); ++it)
      if (it->instruction == id) return *it;
    return std::nullopt;
  }

 private:
  std::unique_ptr<MqttClient> client_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Report> reports_;
};

class AgentDaemon : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = MosquittoBroker::create();
    ASSERT_TRUE(broker) << broker.error().message;
    broker_ = std::move(*broker);
    dir_ = broker_->dir() + "/agent";
    fs::create_directories(dir_);
    auto key = PrivateKey::generate();
    ASSERT_TRUE(key);
    server_key_ = *key;
    std::ofstream(dir_ + "/server.pub") << server_key_.public_pem();
    write_config();
    ASSERT_TRUE(reports_.open(broker_->uri()));
    BrokerOptions sender;
    sender.uri = broker_->uri();
    auto client = MqttClient::create(sender);
    ASSERT_TRUE(client);
    sender_ = std::move(*client);
    ASSERT_TRUE(sender_->connect());
    start_agent();
  }

  void TearDown() override {
    if (agent_ && HasFailure()) fmt::print("agent log:\n{}\n", agent_->log_tail(6000));
    agent_.reset();
  }

  // Every OS runs the same script: log the run, then behave by type.
  void write_config() {
    std::string log = dir_ + "/ran.log";
    std::string script =
        "printf '%s %s %s %s\\n' \"$(date +%s%N)\" \"$STEWARD_INSTRUCTION_ID\" "
        "\"$STEWARD_TARGET\" \"$STEWARD_TYPE\" >> " +
        log +
        "\ncase \"$STEWARD_TYPE\" in\n"
        "  fail) echo 'no such device'; exit 3 ;;\n"
        "  slow) sleep 30 ;;\n"
        "  crash) kill -9 $PPID; sleep 5 ;;\n"
        "esac\necho done\n";
    std::ofstream(dir_ + "/run.sh") << script;
    // A setting is in force when its id is in the log.
    std::ofstream(dir_ + "/check.sh") << "grep -q \" $STEWARD_INSTRUCTION_ID \" " << log << "\n";
    std::ofstream config(dir_ + "/agent.toml");
    config << "[agent]\nterminal = \"t1\"\ndatabase = \"" << dir_ << "/agent.db\"\n"
           << "socket = \"" << dir_ << "/agent.sock\"\nport = 0\nport_file = \"" << dir_
           << "/port\"\nexpiry_check_ms = 100\nserver_public_key = \"" << dir_
           << "/server.pub\"\n\n[agent.broker]\nuri = \"" << broker_->uri() << "\"\n";
    for (const char* system : {"personal", "work", "guest"}) {
      config << "\n[[agent.systems]]\nid = \"" << system << "\"\ntimeout_ms = 60000\n"
             << "[agent.systems.commands]\n\"*\" = [\"/bin/sh\", \"" << dir_ << "/run.sh\"]\n"
             << "[agent.systems.checks]\n\"*\" = [\"/bin/sh\", \"" << dir_ << "/check.sh\"]\n";
    }
  }

  void start_agent() {
    fs::remove(dir_ + "/port");
    auto child = ChildProcess::start(
        {STEWARD_BINARY_DIR "/src/cli/steward", "agent", "run", "-c", dir_ + "/agent.toml"}, {},
        dir_ + "/agent.log");
    ASSERT_TRUE(child) << child.error().message;
    agent_ = std::move(*child);
    // Up when its socket answers and it is connected to the broker.
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      ASSERT_TRUE(agent_->running()) << agent_->log_tail();
      auto status = local_command(dir_ + "/agent.sock", {{"op", "status"}}, 1s);
      if (status && status->at("connected").as_bool()) return;
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "agent did not come up: " << agent_->log_tail();
  }

  void kill_agent() {
    ASSERT_TRUE(agent_);
    int status = agent_->stop(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(status));
    agent_.reset();
  }

  // Blocks until the switch is recorded and (with `wait`) that OS's stored instructions ran.
  void foreground(const std::string& system, bool wait = true) {
    json::object request{{"op", "foreground"}, {"wait", wait}};
    request["system"] = system.empty() ? json::value(nullptr) : json::value(system);
    auto answer = local_command(dir_ + "/agent.sock", request, 60s);
    ASSERT_TRUE(answer) << answer.error().message;
  }

  Instruction make(const std::string& id, const std::string& target, int64_t sequence,
                   const std::string& type = "lock", Kind kind = Kind::kAction) {
    Instruction out;
    out.id = id;
    out.terminal = "t1";
    out.target = target;
    out.kind = kind;
    out.type = kind == Kind::kCancel ? "" : type;
    out.sequence = sequence;
    return out;
  }

  void send_bytes(const std::string& id, const std::string& bytes) {
    auto status = sender_->publish_wait(control_topic("t1", id), bytes, 1, true, 10s);
    ASSERT_TRUE(status) << status.error().message;
  }
  void send(const Instruction& instruction) {
    auto sealed = seal_control_message(instruction, &server_key_);
    ASSERT_TRUE(sealed);
    send_bytes(instruction.id, *sealed);
  }

  std::vector<Execution> runs() {
    std::ifstream in(dir_ + "/ran.log");
    std::vector<Execution> out;
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      Execution run;
      fields >> run.at_ns >> run.id >> run.target >> run.type;
      out.push_back(run);
    }
    return out;
  }
  std::vector<std::string> run_ids() {
    std::vector<std::string> out;
    for (const Execution& run : runs())
      out.push_back(run.id);
    return out;
  }
  size_t times_run(const std::string& id) {
    auto ids = run_ids();
    return static_cast<size_t>(std::count(ids.begin(), ids.end(), id));
  }

  std::unique_ptr<MosquittoBroker> broker_;
  std::string dir_;
  PrivateKey server_key_;
  Reports reports_;
  std::unique_ptr<MqttClient> sender_;
  std::unique_ptr<ChildProcess> agent_;
};

using S = ReportStatus;

TEST_F(AgentDaemon, AnInstructionForTheForegroundOsIsAppliedAndReported) {
  foreground("work");
  send(make("a1", "work", 1));
  ASSERT_TRUE(reports_.wait("a1", S::kApplied));
  EXPECT_EQ(run_ids(), std::vector<std::string>{"a1"});
  EXPECT_EQ(reports_.of("a1"), std::vector{S::kApplied});
  EXPECT_EQ(reports_.last("a1")->exit_code, 0);

  // And the daemon's HTTP endpoint says so.
  std::ifstream port_file(dir_ + "/port");
  uint16_t port = 0;
  port_file >> port;
  http::Client client("127.0.0.1", port);
  auto metrics = client.request("GET", "/metrics");
  ASSERT_TRUE(metrics) << metrics.error().message;
  EXPECT_NE(metrics->body.find("steward_agent_executions_total 1"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("steward_agent_reports_total{status=\"applied\"} 1"),
            std::string::npos);
  auto status = client.request("GET", "/v1/status");
  ASSERT_TRUE(status);
  EXPECT_NE(status->body.find("\"foreground\":\"work\""), std::string::npos) << status->body;
}

// The broker keeps each instruction (retained) until the agent has committed it: a fresh
// subscriber then finds nothing left, for stored, applied and rejected ones alike.
TEST_F(AgentDaemon, TheBrokersCopyIsClearedOnceTheInstructionIsCommitted) {
  foreground("personal");
  send(make("stored", "work", 1));
  send(make("applied", "personal", 2));
  send(make("refused", "printer", 3));
  ASSERT_TRUE(reports_.wait("stored", S::kPending));
  ASSERT_TRUE(reports_.wait("applied", S::kApplied));
  ASSERT_TRUE(reports_.wait("refused", S::kRejected));
  std::mutex mutex;
  std::vector<std::string> retained;
  BrokerOptions options;
  options.uri = broker_->uri();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (true) {  // the clearing publishes are asynchronous: look until they have landed
    retained.clear();
    auto reader = MqttClient::create(options);
    ASSERT_TRUE(reader);
    (*reader)->on_message([&](const std::string& topic, const std::string& payload, bool) {
      std::lock_guard lock(mutex);
      if (!payload.empty()) retained.push_back(topic);
    });
    ASSERT_TRUE((*reader)->connect());
    ASSERT_TRUE((*reader)->subscribe(control_filter("t1"), 1, 5s));
    std::this_thread::sleep_for(300ms);
    std::lock_guard lock(mutex);
    if (retained.empty() || std::chrono::steady_clock::now() > deadline) break;
  }
  EXPECT_TRUE(retained.empty()) << retained.front();
}

TEST_F(AgentDaemon, AnInstructionForABackgroundOsWaitsAndRunsOnceAfterTheSwitch) {
  foreground("personal");
  send(make("a1", "work", 1));
  ASSERT_TRUE(reports_.wait("a1", S::kPending));
  EXPECT_TRUE(runs().empty());
  foreground("work");
  ASSERT_TRUE(reports_.wait("a1", S::kApplied));
  foreground("personal");
  foreground("work");
  EXPECT_EQ(run_ids(), std::vector<std::string>{"a1"});
  EXPECT_EQ(reports_.of("a1"), (std::vector{S::kPending, S::kApplied}));
}

TEST_F(AgentDaemon, StoredInstructionsRunInSequenceOrderNotArrivalOrder) {
  foreground("personal");
  // Arrival order differs from sequence order; two share a sequence (arrival breaks the tie).
  for (auto [id, sequence] : std::vector<std::pair<std::string, int64_t>>{
           {"s30", 30}, {"s10", 10}, {"s20a", 20}, {"s20b", 20}, {"s40", 40}}) {
    send(make(id, "work", sequence));
    ASSERT_TRUE(reports_.wait(id, S::kPending));
  }
  foreground("work");
  EXPECT_EQ(run_ids(), (std::vector<std::string>{"s10", "s20a", "s20b", "s30", "s40"}));
}

TEST_F(AgentDaemon, TheSameInstructionDeliveredTwiceRunsOnce) {
  foreground("work");
  send(make("a1", "work", 1));
  ASSERT_TRUE(reports_.wait("a1", S::kApplied));
  send(make("a1", "work", 1));  // the server (or the broker) delivers it again
  kill_agent();                 // and the agent restarts, re-subscribing
  send(make("a1", "work", 1));
  start_agent();
  foreground("work");
  send(make("a2", "work", 2));
  ASSERT_TRUE(reports_.wait("a2", S::kApplied));
  EXPECT_EQ(run_ids(), (std::vector<std::string>{"a1", "a2"}));
}

TEST_F(AgentDaemon, AnOlderSettingDoesNotOverwriteANewerOneAndACancelRemovesAStoredOne) {
  foreground("personal");
  send(make("cam-5", "work", 5, "camera", Kind::kSetting));
  send(make("cam-3", "work", 3, "camera", Kind::kSetting));
  ASSERT_TRUE(reports_.wait("cam-3", S::kRejected));
  send(make("wipe", "work", 6, "wipe"));
  ASSERT_TRUE(reports_.wait("wipe", S::kPending));
  Instruction cancel = make("c1", "work", 7, "", Kind::kCancel);
  cancel.cancel = {"wipe"};
  send(cancel);
  ASSERT_TRUE(reports_.wait("wipe", S::kCancelled));
  foreground("work");
  ASSERT_TRUE(reports_.wait("cam-5", S::kApplied));
  EXPECT_EQ(run_ids(), std::vector<std::string>{"cam-5"});
}

TEST_F(AgentDaemon, AnExpiredInstructionIsReportedExpiredAndNeverRun) {
  foreground("personal");
  int64_t now_ms = now_ns() / 1'000'000;
  Instruction old = make("old", "work", 1);
  old.expires_at_ms = now_ms - 1000;
  send(old);
  Instruction soon = make("soon", "work", 2);
  soon.expires_at_ms = now_ms + 300;
  send(soon);
  ASSERT_TRUE(reports_.wait("old", S::kExpired));
  ASSERT_TRUE(reports_.wait("soon", S::kPending));
  ASSERT_TRUE(reports_.wait("soon", S::kExpired));  // reported when it passes, not at the switch
  foreground("work");
  EXPECT_TRUE(runs().empty());
}

TEST_F(AgentDaemon, UnknownSystemMalformedAndBadlySignedMessagesAreRejectedAndNotStored) {
  foreground("work");
  send(make("x-os", "printer", 1));
  send_bytes("x-json", "{\"id\": \"x-json\", ");
  send_bytes("x-unsigned", *seal_control_message(make("x-unsigned", "work", 2), nullptr));
  auto forger = PrivateKey::generate();
  ASSERT_TRUE(forger);
  send_bytes("x-forged", *seal_control_message(make("x-forged", "work", 3), &*forger));
  for (const char* id : {"x-os", "x-unsigned", "x-forged"})
    EXPECT_TRUE(reports_.wait(id, S::kRejected)) << id;
  EXPECT_TRUE(reports_.wait("", S::kRejected));  // the malformed one has no readable id
  auto status = local_command(dir_ + "/agent.sock", {{"op", "status"}}, 5s);
  ASSERT_TRUE(status);
  for (const auto& system : status->at("systems").as_array())
    EXPECT_TRUE(system.at("pending").as_array().empty());
  EXPECT_TRUE(runs().empty());
}

TEST_F(AgentDaemon, AFailingExecutorDoesNotBlockTheNextInstruction) {
  foreground("personal");
  send(make("bad", "work", 1, "fail"));
  send(make("good", "work", 2));
  ASSERT_TRUE(reports_.wait("good", S::kPending));
  foreground("work");
  ASSERT_TRUE(reports_.wait("bad", S::kFailed));
  ASSERT_TRUE(reports_.wait("good", S::kApplied));
  auto failed = reports_.last("bad");
  EXPECT_EQ(failed->exit_code, 3);
  EXPECT_NE(failed->output.find("no such device"), std::string::npos);
  EXPECT_EQ(run_ids(), (std::vector<std::string>{"bad", "good"}));
}

TEST_F(AgentDaemon, KilledBetweenStoringAndExecutingItRunsOnceAfterRestart) {
  foreground("personal");
  send(make("a1", "work", 1));
  send(make("s1", "work", 2, "usb_storage", Kind::kSetting));
  ASSERT_TRUE(reports_.wait("s1", S::kPending));
  kill_agent();
  start_agent();
  foreground("work");
  ASSERT_TRUE(reports_.wait("a1", S::kApplied));
  ASSERT_TRUE(reports_.wait("s1", S::kApplied));
  EXPECT_EQ(run_ids(), (std::vector<std::string>{"a1", "s1"}));
}

TEST_F(AgentDaemon, KilledWhileAnActionRunsTheActionIsReportedUnknownAndNotRunAgain) {
  foreground("work");
  send(make("slow-wipe", "work", 1, "slow"));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (times_run("slow-wipe") == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_EQ(times_run("slow-wipe"), 1u);
  kill_agent();
  start_agent();
  foreground("work");
  ASSERT_TRUE(reports_.wait("slow-wipe", S::kUnknown));
  send(make("next", "work", 2));
  ASSERT_TRUE(reports_.wait("next", S::kApplied));
  EXPECT_EQ(times_run("slow-wipe"), 1u);
}

TEST_F(AgentDaemon, KilledBetweenExecutingAndReportingEachRanOnceOrItsDoubtIsReported) {
  foreground("work");
  // The executor finishes its work and then the agent dies before recording it.
  send(make("act", "work", 1, "crash"));
  ASSERT_EQ(agent_->wait(20s) >= 0, true) << "the agent should have been killed";
  agent_.reset();
  start_agent();
  foreground("work");
  ASSERT_TRUE(reports_.wait("act", S::kUnknown));  // an action: doubt reported, not re-run
  EXPECT_EQ(times_run("act"), 1u);

  send(make("set", "work", 2, "crash", Kind::kSetting));
  ASSERT_EQ(agent_->wait(20s) >= 0, true);
  agent_.reset();
  start_agent();
  foreground("work");
  ASSERT_TRUE(reports_.wait("set", S::kApplied));  // a setting: verified in force, not re-run
  EXPECT_EQ(times_run("set"), 1u);
}

TEST_F(AgentDaemon, ReportsMadeWhileTheBrokerIsDownArriveAfterItReturns) {
  foreground("personal");
  send(make("a1", "work", 1));
  ASSERT_TRUE(reports_.wait("a1", S::kPending));
  ASSERT_TRUE(broker_->stop());
  foreground("work");  // runs while the broker is down: the report waits in the outbox
  EXPECT_EQ(run_ids(), std::vector<std::string>{"a1"});
  kill_agent();  // and survives a crash there
  ASSERT_TRUE(broker_->start());
  start_agent();
  ASSERT_TRUE(reports_.wait("a1", S::kApplied, 30s));
}

TEST_F(AgentDaemon, AfterABrokerRestartInstructionsPublishedMeanwhileArriveAndRun) {
  foreground("work");
  send(make("before", "work", 1));
  ASSERT_TRUE(reports_.wait("before", S::kApplied));
  ASSERT_TRUE(broker_->stop());
  ASSERT_TRUE(broker_->start());
  // Published at once, before the agent has reconnected.
  BrokerOptions options;
  options.uri = broker_->uri();
  auto sender = MqttClient::create(options);
  ASSERT_TRUE(sender);
  sender_ = std::move(*sender);
  ASSERT_TRUE(sender_->connect());
  send(make("during-1", "work", 2));
  send(make("during-2", "guest", 3));
  ASSERT_TRUE(reports_.wait("during-1", S::kApplied, 30s));
  ASSERT_TRUE(reports_.wait("during-2", S::kPending, 30s));
  foreground("guest");
  ASSERT_TRUE(reports_.wait("during-2", S::kApplied));
  EXPECT_EQ(run_ids(), (std::vector<std::string>{"before", "during-1", "during-2"}));
}

// 1,000 instructions for three OSes while the foreground switches rapidly. Between two OSes
// the foreground is cleared with a waiting request: once it returns, nothing for the previous
// OS can still be running, which gives each OS a strict time window to check runs against.
TEST_F(AgentDaemon, ABurstWithRapidSwitchesLosesNothingRunsNothingTwiceOrOnTheWrongOs) {
  const std::vector<std::string> systems = {"personal", "work", "guest"};
  constexpr int kInstructions = 1000;
  struct Window {
    std::string system;
    int64_t from_ns, to_ns;
  };
  std::vector<Window> windows;
  std::atomic<bool> sending{true};
  std::thread switcher([&] {
    std::mt19937 random(7);
    while (sending) {
      const std::string& system = systems[random() % systems.size()];
      int64_t from = now_ns();
      foreground(system, false);
      std::this_thread::sleep_for(std::chrono::milliseconds(random() % 30));
      foreground("");  // waits: the OS's work has finished when this returns
      windows.push_back({system, from, now_ns()});
    }
  });
  std::map<std::string, int64_t> sequence;
  std::map<std::string, std::string> target_of;
  std::mt19937 random(11);
  for (int i = 0; i < kInstructions; ++i) {
    const std::string& system = systems[random() % systems.size()];
    std::string id = fmt::format("b{:04}", i);
    target_of[id] = system;
    send(make(id, system, ++sequence[system]));
    std::this_thread::sleep_for(3ms);  // a steady stream the agent keeps up with
  }
  sending = false;
  switcher.join();
  for (const auto& system : systems)
    foreground(system);
  ASSERT_TRUE(reports_.wait_count(S::kApplied, kInstructions, 60s))
      << reports_.distinct(S::kApplied) << " applied";

  // None lost, none twice, each on its own OS and in its OS's sequence order.
  auto all = runs();
  ASSERT_EQ(all.size(), static_cast<size_t>(kInstructions));
  std::set<std::string> distinct;
  std::map<std::string, std::string> last_of;
  for (const Execution& run : all) {
    EXPECT_TRUE(distinct.insert(run.id).second) << run.id << " ran twice";
    EXPECT_EQ(run.target, target_of[run.id]);
    EXPECT_LT(last_of[run.target], run.id) << "order on " << run.target;
    last_of[run.target] = run.id;
  }
  // Each run happened while its OS was in the foreground (or in the final sweep).
  int64_t sweep = windows.empty() ? 0 : windows.back().to_ns;
  int wrong = 0;
  for (const Execution& run : all) {
    if (run.at_ns >= sweep) continue;
    bool inside = std::any_of(windows.begin(), windows.end(), [&](const Window& window) {
      return window.system == run.target && run.at_ns >= window.from_ns &&
             run.at_ns <= window.to_ns;
    });
    if (!inside) ++wrong;
  }
  EXPECT_EQ(wrong, 0) << "runs outside their OS's foreground window";
  EXPECT_GT(windows.size(), 5u) << "the foreground did not switch rapidly";
}

}  // namespace
}  // namespace steward::agent
