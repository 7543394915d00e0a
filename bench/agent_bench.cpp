// Benchmark of the agent (issue 4), with its floors, in one run on this machine:
//   1. publish -> `applied` report for the foreground OS, through a local Mosquitto, against the
//      floor: a minimal client that only echoes each message back through the same broker, the
//      messages published as the instructions are (retained, QoS 1, one topic each, confirmed);
//   2. replay of N stored instructions on a foreground switch (no-op executor), against the
//      floor: the same number of durable SQLite commits with no agent logic.
// It checks that no instruction was lost or repeated, prints the figures and writes them to the
// "## Agent" section of docs/benchmarks.md.
//
//   steward-bench-agent [--messages 2000] [--replay 10000] [--write docs/benchmarks.md]
//   steward-bench-agent echo <broker uri>     (the floor's echo client; started by the above)
//
// Everything runs on loopback and in a temporary directory; the broker, the agent and the echo
// client are started and ended by PID.
#include "agent/foreground/local_command.h"
#include "agent/model/control_message.h"
#include "agent/transport/mqtt.h"
#include "core/clock.h"
#include "core/sqlite.h"
#include "support/mosquitto_broker.h"

#include <boost/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace {

using namespace steward;
using namespace steward::agent;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

// The floor's messages travel like instructions: one retained QoS 1 message per topic under
// kEchoIn, each published and confirmed (PUBACK) as `steward agent send` does; the echo is a
// QoS 1 message on one topic, like a status report.
constexpr const char* kEchoIn = "bench/echo/in";
constexpr const char* kEchoInFilter = "bench/echo/in/+";
constexpr const char* kEchoOut = "bench/echo/out";

[[noreturn]] void die(const std::string& message) {
  fmt::print(stderr, "steward-bench-agent: {}\n", message);
  std::exit(1);
}

template <typename T>
T need(Result<T> result, const std::string& what) {
  if (!result) die(what + ": " + result.error().message);
  return std::move(*result);
}
void need(const Status& status, const std::string& what) {
  if (!status) die(what + ": " + status.error().message);
}

// Messages received by a client, keyed by a string the test extracts from each.
class Arrivals {
 public:
  void add(const std::string& key) {
    std::lock_guard lock(mutex_);
    seen_[key].push_back(Steady::now());
    ++total_;
    changed_.notify_all();
  }
  std::optional<Steady::time_point> wait(const std::string& key, std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, limit, [&] { return seen_.count(key) > 0; })) return std::nullopt;
    return seen_[key].front();
  }
  bool wait_distinct(size_t count, std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return seen_.size() >= count; });
  }
  bool wait_total(size_t count, std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return total_ >= count; });
  }
  size_t distinct() {
    std::lock_guard lock(mutex_);
    return seen_.size();
  }
  size_t total() {
    std::lock_guard lock(mutex_);
    return total_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::vector<Steady::time_point>> seen_;
  size_t total_ = 0;
};

struct Percentiles {
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
};

Percentiles percentiles(std::vector<double> samples_ms) {
  std::sort(samples_ms.begin(), samples_ms.end());
  auto at = [&](double q) {
    return samples_ms[std::min(samples_ms.size() - 1, static_cast<size_t>(q * samples_ms.size()))];
  };
  return {at(0.50), at(0.90), at(0.99), samples_ms.back()};
}

double ms_since(Steady::time_point start) {
  return std::chrono::duration<double, std::milli>(Steady::now() - start).count();
}

std::unique_ptr<MqttClient> connect(const std::string& uri, const std::string& client_id = "") {
  BrokerOptions options;
  options.uri = uri;
  options.client_id = client_id;
  auto client = need(MqttClient::create(options), "mqtt client");
  return client;
}

int run_echo(const std::string& uri) {
  ::signal(SIGPIPE, SIG_IGN);
  auto client = connect(uri);
  MqttClient* raw = client.get();
  client->on_message([raw](const std::string&, const std::string& payload, bool) {
    raw->publish(kEchoOut, payload, 1, false, nullptr);
  });
  need(client->connect(), "echo connect");
  need(client->subscribe(kEchoInFilter, 1, 5s), "echo subscribe");
  std::fputs("ready\n", stdout);
  std::fflush(stdout);
  while (true)
    std::this_thread::sleep_for(1h);
}

std::string self_path() {
  return fs::read_symlink("/proc/self/exe").string();
}

struct Options {
  int messages = 2000;
  int replay = 10000;
  std::string write;
};

// 1a. The floor: publish -> echo through the broker, closed loop, same QoS, retain flag, topic
// shape and size as the instructions.
Percentiles echo_floor(testing::MosquittoBroker& broker, const std::string& dir,
                       size_t payload_size, int messages) {
  auto echo =
      need(testing::ChildProcess::start({self_path(), "echo", broker.uri()}, {}, dir + "/echo.log"),
           "echo client");
  Arrivals arrivals;
  auto client = connect(broker.uri());
  client->on_message([&](const std::string&, const std::string& payload, bool) {
    arrivals.add(payload.substr(0, payload.find(' ')));
  });
  need(client->connect(), "connect");
  need(client->subscribe(kEchoOut, 1, 5s), "subscribe");
  std::this_thread::sleep_for(300ms);  // the echo client subscribes
  std::vector<double> samples;
  for (int i = -100; i < messages; ++i) {  // 100 warm-up rounds
    std::string key = fmt::format("e{}", i);
    std::string payload = key + " " + std::string(payload_size, 'x');
    auto start = Steady::now();
    need(client->publish_wait(fmt::format("{}/{}", kEchoIn, key), payload, 1, true, 10s),
         "floor publish");
    auto arrived = arrivals.wait(key, 10s);
    if (!arrived) die("echo lost " + key + ": " + echo->log_tail());
    if (i >= 0)
      samples.push_back(std::chrono::duration<double, std::milli>(*arrived - start).count());
  }
  return percentiles(samples);
}

std::string agent_config(const std::string& dir, const std::string& uri) {
  std::ostringstream config;
  config << "[agent]\nterminal = \"bench\"\ndatabase = \"" << dir << "/agent.db\"\n"
         << "socket = \"" << dir << "/agent.sock\"\nport = 0\nlog_level = \"warn\"\n"
         << "server_public_key = \"" << dir << "/server.pub\"\n"
         << "[agent.broker]\nuri = \"" << uri << "\"\n";
  for (const char* system : {"personal", "work"})
    config << "[[agent.systems]]\nid = \"" << system << "\"\nexecutor = \"noop\"\n";
  return config.str();
}

class AgentRun {
 public:
  AgentRun(testing::MosquittoBroker& broker, const std::string& dir) : dir_(dir) {
    server_key_ = need(PrivateKey::generate(), "key");
    std::ofstream(dir + "/server.pub") << server_key_.public_pem();
    std::ofstream(dir + "/agent.toml") << agent_config(dir, broker.uri());
    agent_ = need(testing::ChildProcess::start({STEWARD_BINARY_DIR "/src/cli/steward", "agent",
                                                "run", "-c", dir + "/agent.toml"},
                                               {}, dir + "/agent.log"),
                  "agent");
    auto deadline = Steady::now() + 20s;
    while (true) {
      auto status = local_command(dir + "/agent.sock", {{"op", "status"}}, 1s);
      if (status && status->at("connected").as_bool()) break;
      if (Steady::now() > deadline || !agent_->running())
        die("agent not up: " + agent_->log_tail());
      std::this_thread::sleep_for(20ms);
    }
    reports_ = connect(broker.uri());
    reports_->on_message([this](const std::string&, const std::string& payload, bool) {
      auto report = parse_report(payload);
      if (!report) return;
      if (report->status == ReportStatus::kApplied) applied_.add(report->instruction);
      if (report->status == ReportStatus::kPending) pending_.add(report->instruction);
      if (report->status != ReportStatus::kApplied && report->status != ReportStatus::kPending)
        other_.add(report->instruction);
    });
    need(reports_->connect(), "connect");
    need(reports_->subscribe(status_topic("bench"), 1, 5s), "subscribe");
    sender_ = connect(broker.uri());
    need(sender_->connect(), "connect");
  }
  ~AgentRun() { agent_->stop(SIGTERM); }

  std::string sealed(const std::string& id, const std::string& target, int64_t sequence) {
    Instruction instruction;
    instruction.id = id;
    instruction.terminal = "bench";
    instruction.target = target;
    instruction.kind = Kind::kAction;
    instruction.type = "lock";
    instruction.sequence = sequence;
    return need(seal_control_message(instruction, &server_key_), "seal");
  }
  void send(const std::string& id, const std::string& bytes) {
    need(sender_->publish_wait(control_topic("bench", id), bytes, 1, true, 10s), "publish");
  }
  void foreground(const std::string& system) {
    need(local_command(dir_ + "/agent.sock",
                       {{"op", "foreground"}, {"system", system}, {"wait", true}}, 600s),
         "foreground");
  }
  json::object status() {
    return need(local_command(dir_ + "/agent.sock", {{"op", "status"}}, 10s), "status");
  }

  Arrivals applied_, pending_, other_;
  std::string log_tail() { return agent_->log_tail(); }

 private:
  std::string dir_;
  PrivateKey server_key_;
  std::unique_ptr<testing::ChildProcess> agent_;
  std::unique_ptr<MqttClient> reports_;
  std::unique_ptr<MqttClient> sender_;
};

// 2b. The floor of the replay: durable commits of one row each, same pragmas as the agent.
double commit_floor(const std::string& dir, int commits) {
  auto db = need(sqlite::Database::open(dir + "/floor.db"), "floor db");
  need(db->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"), "floor table");
  // Like the agent's store: automatic checkpoints every 4000 log pages (the agent also runs
  // passive ones on a thread of their own, which the floor is spared).
  need(db->exec("PRAGMA wal_autocheckpoint=4000"), "floor pragma");
  auto start = Steady::now();
  for (int i = 0; i < commits; ++i) {
    sqlite::Transaction transaction(*db);
    auto insert = need(db->prepare("INSERT INTO t (id, body) VALUES (?1, ?2)"), "prepare");
    insert.bind(1, int64_t{i}).bind(2, "instruction");
    need(insert.run(), "insert");
    need(transaction.commit(), "commit");
  }
  return ms_since(start);
}

void write_section(const std::string& path, const std::string& section) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (text.empty()) text = "# Benchmarks\n";
  size_t start = text.find("\n## Agent");
  if (start == std::string::npos) {
    if (!text.ends_with("\n")) text += "\n";
    text += "\n" + section;
  } else {
    size_t end = text.find("\n## ", start + 1);
    text = text.substr(0, start + 1) + section +
           (end == std::string::npos ? "" : "\n" + text.substr(end + 1));
  }
  std::ofstream(path) << text;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "echo") return run_echo(args[1]);
  Options options;
  for (size_t i = 0; i + 1 < args.size(); i += 2) {
    if (args[i] == "--messages")
      options.messages = std::stoi(args[i + 1]);
    else if (args[i] == "--replay")
      options.replay = std::stoi(args[i + 1]);
    else if (args[i] == "--write")
      options.write = args[i + 1];
    else
      die("unknown option " + args[i]);
  }
  ::signal(SIGPIPE, SIG_IGN);
  auto broker = need(testing::MosquittoBroker::create(), "mosquitto");
  std::string dir = broker->dir() + "/bench";
  fs::create_directories(dir);
  AgentRun agent(*broker, dir);

  // 1. publish -> applied for the foreground OS, closed loop, after a warm-up.
  agent.foreground("work");
  std::vector<double> samples;
  int sequence = 0;
  for (int i = -100; i < options.messages; ++i) {
    std::string id = fmt::format("l{}", i);
    std::string bytes = agent.sealed(id, "work", ++sequence);
    auto start = Steady::now();
    agent.send(id, bytes);
    auto applied = agent.applied_.wait(id, 10s);
    if (!applied) die("no applied report for " + id + ": " + agent.log_tail());
    if (i >= 0)
      samples.push_back(std::chrono::duration<double, std::milli>(*applied - start).count());
  }
  Percentiles agent_latency = percentiles(samples);
  size_t message_size = agent.sealed("l0", "work", 1).size();
  Percentiles floor_latency = echo_floor(*broker, dir, message_size, options.messages);

  // 2. replay of stored instructions on a switch.
  agent.foreground("personal");
  for (int i = 0; i < options.replay; ++i) {
    std::string id = fmt::format("r{}", i);
    agent.send(id, agent.sealed(id, "work", ++sequence));
  }
  if (!agent.pending_.wait_distinct(options.replay, 300s)) die("instructions not all stored");
  auto replay_start = Steady::now();
  agent.foreground("work");
  double replay_ms = ms_since(replay_start);
  size_t expected = static_cast<size_t>(options.messages + 100 + options.replay);
  agent.applied_.wait_distinct(expected, 120s);
  double floor_ms = commit_floor(dir, options.replay);

  // Nothing lost, nothing repeated.
  json::object status = agent.status();
  int64_t executed = status.at("counters").at("executed").to_number<int64_t>();
  bool intact = agent.applied_.distinct() == expected &&
                executed == static_cast<int64_t>(expected) && agent.other_.total() == 0;

  auto verdict = [](bool met) { return met ? "met" : "missed"; };
  std::ifstream loadavg("/proc/loadavg");
  std::string load;
  loadavg >> load;
  std::string when = format_wall_us(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
  auto row = [](const char* what, const Percentiles& p) {
    return fmt::format("| {} | {:.3f} ms | {:.3f} ms | {:.3f} ms | {:.3f} ms |\n", what, p.p50_ms,
                       p.p90_ms, p.p99_ms, p.max_ms);
  };
  std::string section = fmt::format(
      "## Agent\n\nMeasured by `bench/agent_bench.cpp` (`build/bench/steward-bench-agent "
      "--messages {} --replay {}{}`) on this machine ({} cores, load average {} at the start, "
      "shared with other builds), {}. A local Mosquitto on loopback, the agent as its own process "
      "with the no-op executor and signed instructions, the floors in the same run. The floor's "
      "messages are published as the instructions are (retained, QoS 1, one topic each, the "
      "next one after the broker confirmed this one) and echoed as QoS 1 messages, like the "
      "reports.\n\n",
      options.messages, options.replay, options.write.empty() ? "" : " --write " + options.write,
      std::thread::hardware_concurrency(), load, when);
  section += "| path | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n";
  section +=
      row(fmt::format("publish -> `applied` report, foreground OS ({} messages, closed loop)",
                      options.messages)
              .c_str(),
          agent_latency);
  section +=
      row("floor: publish -> echo by a minimal client through the same broker", floor_latency);
  section += fmt::format(
      "\n| replay on a foreground switch | time |\n|---|---|\n"
      "| {} stored instructions, switch request until all ran | {:.0f} ms |\n"
      "| floor: {} durable SQLite commits (WAL, synchronous=NORMAL, wal_autocheckpoint=4000), "
      "no agent logic | {:.0f} ms |\n\n",
      options.replay, replay_ms, options.replay, floor_ms);
  section += fmt::format(
      "Targets: publish -> applied p99 under 20 ms: **{}**; within 3x of the floor's p99: **{}** "
      "({:.1f}x). Replay of {} under 1 s: **{}**; within 2x of its floor: **{}** ({:.2f}x). "
      "Instructions lost or repeated: **{}** ({} applied reports for {} sent, {} executions).\n",
      verdict(agent_latency.p99_ms < 20), verdict(agent_latency.p99_ms <= 3 * floor_latency.p99_ms),
      agent_latency.p99_ms / floor_latency.p99_ms, options.replay, verdict(replay_ms < 1000),
      verdict(replay_ms <= 2 * floor_ms), replay_ms / floor_ms, intact ? "none" : "SOME",
      agent.applied_.distinct(), expected, executed);
  fmt::print("{}", section);
  if (!options.write.empty()) write_section(options.write, section);
  return intact ? 0 : 1;
}
