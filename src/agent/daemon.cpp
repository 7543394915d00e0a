#include "agent/daemon.h"

#include "agent/foreground/local_command.h"
#include "agent/gate/gate.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/sqlite_checkpointer.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

namespace steward::agent {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr int kOutboxBatch = 256;
constexpr int kQos = 1;

std::unique_ptr<Executor> make_executor(const SystemConfig& system) {
  if (system.executor == "linux") return std::make_unique<LinuxExecutor>(system.builtin);
  if (system.executor == "noop") return std::make_unique<NoopExecutor>();
  return std::make_unique<CommandExecutor>(system.command);
}

json::object describe(const StoredInstruction& entry) {
  const Instruction& instruction = entry.instruction;
  json::object out{{"id", instruction.id},
                   {"kind", to_string(instruction.kind)},
                   {"type", instruction.type},
                   {"sequence", instruction.sequence},
                   {"state", entry.state == StoredState::kExecuting ? "executing" : "pending"}};
  if (instruction.is_setting()) out["revoke"] = instruction.revoke;
  if (instruction.expires_at_ms) out["expires_at_ms"] = *instruction.expires_at_ms;
  return out;
}

// Everything the daemon owns, in construction order (destroyed in reverse).
class Agent {
 public:
  explicit Agent(const AgentConfig& config) : config_(config) {}
  ~Agent() { stop_gate(); }

  Status start();
  void run() { io_.run(); }

 private:
  Status open_state();
  Status start_foreground();
  Status start_endpoints();
  Status start_local_socket();
  void handle_local(const json::object& request, LocalCommandServer::Reply reply);
  Status start_http();
  std::string render_metrics(const json::object& status);
  void start_transport();
  void connect_broker();
  void schedule_expiry();
  void shutdown();
  void stop_gate();

  // Gate-thread work.
  template <typename F>
  void on_gate(F work) {
    asio::post(gate_io_, std::move(work));
  }
  void receive(const std::string& topic, const std::string& payload);
  void announce(std::optional<std::string> system, std::function<void()> applied);
  void schedule_pump();
  void pump_if_scheduled();
  void pump_outbox();
  void acknowledged(int64_t key, bool delivered);
  json::object status_json();
  void check(const Status& status, std::string_view what);

  AgentConfig config_;
  asio::io_context io_;
  asio::io_context gate_io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> gate_work_;
  std::thread gate_thread_;
  SystemClock clock_;
  metrics::Registry metrics_;
  std::shared_ptr<spdlog::logger> log_ = log::get("agent");
  std::optional<PublicKey> server_key_;
  std::unique_ptr<InstructionStore> store_;
  std::unique_ptr<sqlite::Checkpointer> checkpointer_;
  std::map<std::string, std::unique_ptr<Executor>> executors_;
  std::unique_ptr<Gate> gate_;
  std::unique_ptr<MqttClient> mqtt_;
  std::unique_ptr<LogindSource> logind_;
  std::unique_ptr<LocalCommandServer> local_;
  std::unique_ptr<http::Server> http_;
  asio::steady_timer expiry_timer_{io_};
  asio::steady_timer connect_timer_{io_};
  asio::signal_set signals_{io_, SIGINT, SIGTERM};
  Backoff connect_backoff_{std::chrono::milliseconds(200), std::chrono::seconds(5)};

  // Owned by the gate thread.
  std::set<int64_t> in_flight_;
  int64_t handed_up_to_ = 0;  // outbox keys up to this one were given to Paho
  std::vector<int64_t> acked_;
  bool flush_scheduled_ = false;
  bool pump_scheduled_ = false;
};

Status Agent::start() {
  if (auto status = open_state(); !status) return status;
  gate_work_.emplace(gate_io_.get_executor());
  gate_thread_ = std::thread([this] { gate_io_.run(); });
  // The foreground is known (or known to be unknown) before anything is applied.
  if (auto status = start_foreground(); !status) return status;
  on_gate([this] { check(gate_->apply_foreground(), "replay at start"); });
  if (auto status = start_endpoints(); !status) return status;
  start_transport();
  schedule_expiry();
  signals_.async_wait([this](boost::system::error_code ec, int signal) {
    if (!ec) log_->info("stopping signal={}", signal);
    shutdown();
  });
  log_->info("started terminal={} systems={} foreground_source={} broker={} database={}",
             config_.terminal, config_.systems.size(), config_.foreground_source,
             config_.broker.uri, config_.database);
  return ok();
}

// The store, the executors and the gate; crash leftovers are resolved here, before anything
// new arrives.
Status Agent::open_state() {
  std::error_code ec;
  auto dir = std::filesystem::path(config_.database).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (!config_.server_public_key.empty()) {
    auto key = PublicKey::from_pem_file(config_.server_public_key);
    if (!key) return key.error().wrap("server public key");
    server_key_ = *key;
  }
  auto store = InstructionStore::open(config_.database);
  if (!store) return store.error();
  store_ = std::move(*store);
  auto checkpointer = sqlite::Checkpointer::start(config_.database, std::chrono::milliseconds(200));
  if (!checkpointer) return checkpointer.error();
  checkpointer_ = std::move(*checkpointer);
  if (auto status = sqlite::Checkpointer::relax_auto_checkpoints(store_->db()); !status)
    return status;
  gate_ = std::make_unique<Gate>(
      *store_, clock_, Gate::Options{config_.terminal, server_key_ ? &*server_key_ : nullptr});
  std::map<std::string, std::string> enrolments;
  for (const SystemConfig& system : config_.systems) {
    executors_[system.id] = make_executor(system);
    gate_->add_system(system.id, *executors_[system.id]);
    enrolments[system.id] = system.enrolment;
  }
  gate_->on_reports([this] { schedule_pump(); });
  return gate_->recover(enrolments);
}

Status Agent::start_foreground() {
  if (config_.foreground_source == "logind") {
    logind_ = std::make_unique<LogindSource>(
        config_.logind, [this](std::optional<std::string> system) { announce(system, nullptr); });
    return logind_->start();
  }
  if (!config_.initial_foreground.empty()) announce(config_.initial_foreground, nullptr);
  return ok();
}

void Agent::announce(std::optional<std::string> system, std::function<void()> applied) {
  log_->info("foreground system={}", system.value_or("-"));
  gate_->announce_foreground(system);  // a replay in progress for another OS stops now
  on_gate([this, applied = std::move(applied)] {
    check(gate_->apply_foreground(), "replay on foreground change");
    if (applied) asio::post(io_, applied);
  });
}

Status Agent::start_endpoints() {
  if (auto status = start_local_socket(); !status) return status;
  return start_http();
}

// Local command socket: foreground changes and the status listing.
Status Agent::start_local_socket() {
  std::set<uid_t> uids = config_.socket_uids;
  uids.insert(::getuid());
  std::error_code ec;
  auto socket_dir = std::filesystem::path(config_.socket).parent_path();
  if (!socket_dir.empty()) std::filesystem::create_directories(socket_dir, ec);
  local_ = std::make_unique<LocalCommandServer>(
      io_, config_.socket, uids,
      [this](const json::object& request, LocalCommandServer::Reply reply) {
        handle_local(request, std::move(reply));
      });
  return local_->start();
}

void Agent::handle_local(const json::object& request, LocalCommandServer::Reply reply) {
  const json::value* op = request.if_contains("op");
  if (op && *op == "foreground") {
    const json::value* system = request.if_contains("system");
    std::optional<std::string> id;
    if (system && system->is_string()) id = std::string(system->get_string());
    bool wait = request.contains("wait") && request.at("wait") == true;
    json::object answer{{"ok", true}, {"foreground", id ? json::value(*id) : nullptr}};
    if (!wait) {
      announce(id, nullptr);
      return reply(answer);
    }
    return announce(id, [reply, answer] { reply(answer); });
  }
  if (op && *op == "status") {
    return on_gate([this, reply] {
      auto status = status_json();
      asio::post(io_, [reply, status] { reply(status); });
    });
  }
  reply(json::object{{"ok", false}, {"error", "op must be \"foreground\" or \"status\""}});
}

// HTTP: /metrics and /v1/status. The store is read on the gate's thread, the answer written on
// the event loop.
Status Agent::start_http() {
  http_ = std::make_unique<http::Server>(io_, config_.listen_address, config_.port);
  http_->route("GET", "/v1/status", [this](http::Request&, http::Reply reply) {
    on_gate([this, reply] {
      std::string body = json::serialize(status_json()) + "\n";
      asio::post(io_, [reply, body] { reply(http::Response{200, body}); });
    });
  });
  http_->route("GET", "/metrics", [this](http::Request&, http::Reply reply) {
    on_gate([this, reply] {
      json::object status = status_json();
      asio::post(io_, [this, reply, status] {
        reply(http::Response{200, render_metrics(status), "text/plain; version=0.0.4"});
      });
    });
  });
  auto port = http_->start();
  if (!port) return port.error();
  if (!config_.port_file.empty()) std::ofstream(config_.port_file) << *port << "\n";
  return ok();
}

std::string Agent::render_metrics(const json::object& status) {
  auto& pending = metrics_.gauge("steward_agent_pending", "Stored instructions per OS");
  for (const auto& system : status.at("systems").as_array()) {
    pending.set({{"system", std::string(system.at("id").as_string())}},
                static_cast<double>(system.at("pending").as_array().size()));
  }
  const GateCounters& counters = gate_->counters();
  auto& reports = metrics_.counter("steward_agent_reports_total", "Reports by status");
  for (const auto& [report_status, count] : counters.reported) {
    reports.set({{"status", std::string(to_string(report_status))}},
                static_cast<double>(count.load()));
  }
  metrics_.counter("steward_agent_messages_total", "Control messages received")
      .set({}, static_cast<double>(counters.received.load()));
  metrics_.counter("steward_agent_duplicates_total", "Duplicate deliveries dropped")
      .set({}, static_cast<double>(counters.duplicates.load()));
  metrics_.counter("steward_agent_executions_total", "Executor runs")
      .set({}, static_cast<double>(counters.executed.load()));
  metrics_.gauge("steward_agent_broker_connected", "1 when connected to the broker")
      .set({}, mqtt_ && mqtt_->connected() ? 1 : 0);
  metrics_
      .counter("steward_agent_local_refused_total",
               "Local command connections refused by peer credentials")
      .set({}, static_cast<double>(local_->refused()));
  return metrics_.render();
}

void Agent::start_transport() {
  BrokerOptions options = config_.broker;
  if (options.client_id.empty()) options.client_id = "steward-agent-" + config_.terminal;
  options.clean_session = false;
  auto client = MqttClient::create(options);
  if (!client) {
    log_->error("mqtt: {}", client.error().message);
    return;
  }
  mqtt_ = std::move(*client);
  mqtt_->on_message([this](const std::string& topic, const std::string& payload, bool) {
    receive(topic, payload);
  });
  mqtt_->on_connected([this] {
    // Subscribing again also makes the broker re-send retained instructions not yet cleared.
    (void)mqtt_->subscribe(control_filter(config_.terminal), kQos, std::chrono::milliseconds(0));
    on_gate([this] {
      // What was in flight on the old connection may be lost: hand everything over again.
      in_flight_.clear();
      handed_up_to_ = 0;
      schedule_pump();
    });
  });
  connect_broker();
}

void Agent::connect_broker() {
  auto status = mqtt_->connect();
  if (status) {
    connect_backoff_.reset();
  } else {
    auto delay = connect_backoff_.next();
    log_->warn("mqtt: cannot connect to {} ({}); retrying in {} ms", config_.broker.uri,
               status.error().message, delay.count());
    connect_timer_.expires_after(delay);
    connect_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) connect_broker();
    });
  }
}

// On Paho's thread: hand the message to the gate; clear the broker's retained copy only once
// the gate has committed its decision.
void Agent::receive(const std::string& topic, const std::string& payload) {
  if (payload.empty()) return;  // our own clearing of a retained copy
  on_gate([this, topic, payload] {
    auto status = gate_->receive(payload);
    if (!status) {
      log_->error("instruction topic={} not stored ({}); left on the broker", topic,
                  status.error().message);
      return;
    }
    // The report goes to Paho before the clearing: the server waits for the one, nobody for
    // the other, and Paho sends in the order it is handed messages.
    pump_if_scheduled();
    if (!instruction_of_topic(topic).empty()) mqtt_->publish(topic, "", kQos, true, nullptr);
  });
}

// Many commits in a row (a replay) make one pump, after them.
void Agent::schedule_pump() {
  if (pump_scheduled_) return;
  pump_scheduled_ = true;
  on_gate([this] { pump_if_scheduled(); });
}

// On the gate's thread: the scheduled pump now rather than after the work queued before it.
void Agent::pump_if_scheduled() {
  if (!pump_scheduled_) return;
  pump_scheduled_ = false;
  pump_outbox();
}

// Hands Paho the outbox reports it has not had yet, oldest first, a batch at a time; the next
// batch follows once this one is confirmed.
void Agent::pump_outbox() {
  if (!mqtt_ || !mqtt_->connected()) return;
  auto pending = store_->outbox_after(handed_up_to_, kOutboxBatch);
  if (!pending) return check(pending.error(), "outbox read");
  std::string topic = status_topic(config_.terminal);
  for (const auto& [key, report] : *pending) {
    handed_up_to_ = std::max(handed_up_to_, key);
    if (!in_flight_.insert(key).second) continue;
    mqtt_->publish(topic, json::serialize(to_json(report)), kQos, false,
                   [this, key = key](bool delivered) {
                     on_gate([this, key, delivered] { acknowledged(key, delivered); });
                   });
  }
}

// Confirmed reports leave the outbox in batches (one commit for all confirmed meanwhile).
void Agent::acknowledged(int64_t key, bool delivered) {
  in_flight_.erase(key);
  if (!delivered) {
    // Stays in the outbox; handed over again from the start on the next connection.
    handed_up_to_ = 0;
    return;
  }
  acked_.push_back(key);
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  on_gate([this] {
    flush_scheduled_ = false;
    sqlite::Transaction transaction(store_->db());
    for (int64_t done : acked_)
      check(store_->ack_report(done), "outbox ack");
    check(transaction.commit(), "outbox ack commit");
    acked_.clear();
    if (in_flight_.empty()) schedule_pump();
  });
}

void Agent::schedule_expiry() {
  expiry_timer_.expires_after(config_.expiry_check);
  expiry_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    on_gate([this] { check(gate_->expire_due(), "expiry check"); });
    schedule_expiry();
  });
}

json::object Agent::status_json() {
  json::object out{
      {"ok", true}, {"terminal", config_.terminal}, {"connected", mqtt_ && mqtt_->connected()}};
  auto foreground = gate_->foreground();
  out["foreground"] = foreground ? json::value(*foreground) : nullptr;
  std::map<std::string, json::array> pending;
  for (const SystemConfig& system : config_.systems)
    pending[system.id];
  if (auto stored = store_->stored()) {
    for (const StoredInstruction& entry : *stored)
      pending[entry.instruction.target].push_back(describe(entry));
  }
  json::array systems;
  for (auto& [id, list] : pending)
    systems.push_back(json::object{{"id", id}, {"pending", std::move(list)}});
  out["systems"] = std::move(systems);
  json::object counters{{"received", gate_->counters().received.load()},
                        {"duplicates", gate_->counters().duplicates.load()},
                        {"executed", gate_->counters().executed.load()}};
  for (const auto& [status, count] : gate_->counters().reported)
    counters[to_string(status)] = count.load();
  out["counters"] = std::move(counters);
  return out;
}

void Agent::check(const Status& status, std::string_view what) {
  if (!status) log_->error("{} failed: {}", what, status.error().message);
}

void Agent::shutdown() {
  expiry_timer_.cancel();
  connect_timer_.cancel();
  if (local_) local_->stop();
  if (http_) http_->stop();
  if (logind_) logind_->stop();
  stop_gate();
  if (mqtt_) (void)mqtt_->disconnect();
  io_.stop();
}

void Agent::stop_gate() {
  if (!gate_thread_.joinable()) return;
  gate_work_.reset();
  gate_io_.stop();
  gate_thread_.join();
}

}  // namespace

int run_agent(const AgentConfig& config) {
  if (!log::configure(config.log_level)) {
    fmt::print(stderr, "steward: unknown log level '{}'\n", config.log_level);
    return 2;
  }
  if (auto status = validate(config); !status) {
    fmt::print(stderr, "steward: {}\n", status.error().message);
    return 2;
  }
  // Paho and OpenSSL write to sockets the peer may have closed.
  ::signal(SIGPIPE, SIG_IGN);
  Agent agent(config);
  if (auto status = agent.start(); !status) {
    fmt::print(stderr, "steward: agent cannot start: {}\n", status.error().message);
    return 1;
  }
  agent.run();
  return 0;
}

}  // namespace steward::agent
