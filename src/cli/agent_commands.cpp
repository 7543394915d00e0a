#include "cli/agent_commands.h"

#include "agent/daemon.h"
#include "agent/foreground/local_command.h"
#include "agent/model/control_message.h"
#include "agent/transport/mqtt.h"
#include "cli/api_client.h"
#include "core/clock.h"
#include "core/log.h"

#include <fmt/format.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <boost/json.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <fstream>
#include <mutex>
#include <sstream>

namespace steward::cli {
namespace json = boost::json;
using namespace steward::agent;

namespace {

int fail(const std::string& message) {
  fmt::print(stderr, "steward: {}\n", message);
  return kExitFailure;
}

int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string random_id() {
  unsigned char bytes[8];
  RAND_bytes(bytes, sizeof(bytes));
  std::string out = "i-";
  for (unsigned char byte : bytes)
    out += fmt::format("{:02x}", byte);
  return out;
}

// Broker options shared by `send` and `status`.
struct BrokerFlags {
  BrokerOptions options;
  void add(CLI::App* command) {
    command->add_option("--broker", options.uri, "Broker URI (tcp://host:port, ssl://host:port)")
        ->capture_default_str();
    command->add_option("--ca", options.ca_file, "TLS: CA file the broker must chain to");
    command->add_option("--tls-cert", options.cert_file, "TLS: client certificate");
    command->add_option("--tls-key", options.key_file, "TLS: client private key");
    command->add_option("--username", options.username, "Broker user name");
  }
};

void print_report(const Report& report, bool as_json) {
  if (as_json) {
    fmt::print("{}\n", json::serialize(to_json(report)));
    return;
  }
  fmt::print("{} {} {} on {} seq {}{}{}\n", format_wall_us(report.at_ms * 1000),
             report.instruction.empty() ? "-" : report.instruction, to_string(report.status),
             report.target.empty() ? "-" : report.target, report.sequence,
             report.detail.empty() ? "" : ": " + report.detail,
             report.exit_code ? fmt::format(" (exit {})", *report.exit_code) : "");
}

// Reports of one terminal as they arrive, for `status` and `send --wait`.
// One connection to the broker that collects a terminal's reports (when `subscribe`) and also
// publishes: a second Paho client in the same process waits seconds for its CONNACK (Paho C
// serves every client from one receive thread, which notices a new socket late).
class ReportWatch {
 public:
  Status open(BrokerOptions options, const std::string& terminal, bool subscribe = true) {
    auto client = MqttClient::create(std::move(options));
    if (!client) return client.error();
    client_ = std::move(*client);
    client_->on_message([this](const std::string&, const std::string& payload, bool) {
      auto report = parse_report(payload);
      if (!report) return;
      std::lock_guard lock(mutex_);
      reports_.push_back(*report);
      changed_.notify_all();
    });
    if (auto status = client_->connect(); !status) return status;
    if (!subscribe) return ok();
    return client_->subscribe(status_topic(terminal), 1, std::chrono::seconds(10));
  }
  MqttClient& client() { return *client_; }
  // Waits until `done` holds for the reports so far, or the deadline.
  std::vector<Report> wait(std::chrono::milliseconds timeout,
                           const std::function<bool(const std::vector<Report>&)>& done) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return done(reports_); });
    return reports_;
  }

 private:
  std::unique_ptr<MqttClient> client_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Report> reports_;
};

struct SendFlags {
  BrokerFlags broker;
  std::string terminal, target, kind = "action", type, id, params_json, sign_key, file;
  std::vector<std::string> params, supersedes, cancel;
  bool revoke = false;
  int64_t sequence = 0;
  int64_t expires_in_ms = 0;
  int64_t wait_ms = 0;
  bool json = false;
};

Result<Instruction> build_instruction(const SendFlags& flags) {
  if (!flags.file.empty()) {
    std::ifstream in(flags.file);
    if (!in) return Error::make(ErrorCode::kInvalidArgument, "cannot read {}", flags.file);
    std::stringstream text;
    text << in.rdbuf();
    return parse_instruction(text.str());
  }
  json::object out{{"id", flags.id.empty() ? random_id() : flags.id},
                   {"terminal", flags.terminal},
                   {"target", flags.target},
                   {"kind", flags.kind},
                   // Default sequence: wall-clock microseconds, increasing for one operator.
                   {"sequence", flags.sequence > 0 ? flags.sequence : wall_ms() * 1000}};
  if (!flags.type.empty()) out["type"] = flags.type;
  json::object params;
  if (!flags.params_json.empty()) {
    boost::system::error_code ec;
    json::value parsed = json::parse(flags.params_json, ec);
    if (ec || !parsed.is_object()) {
      return Error{ErrorCode::kInvalidArgument, "--params-json must be a JSON object"};
    }
    params = parsed.get_object();
  }
  for (const std::string& pair : flags.params) {
    size_t eq = pair.find('=');
    if (eq == std::string::npos) {
      return Error::make(ErrorCode::kInvalidArgument, "--param {} is not key=value", pair);
    }
    params[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  if (!params.empty()) out["params"] = std::move(params);
  if (flags.revoke) out["revoke"] = true;
  if (flags.expires_in_ms > 0) out["expires_at_ms"] = wall_ms() + flags.expires_in_ms;
  auto ids = [](const std::vector<std::string>& list) {
    json::array array;
    for (const auto& id : list)
      array.emplace_back(id);
    return array;
  };
  if (!flags.supersedes.empty()) out["supersedes"] = ids(flags.supersedes);
  if (!flags.cancel.empty()) out["cancel"] = ids(flags.cancel);
  return instruction_from_json(out);
}

bool final_status(ReportStatus status) {
  return status != ReportStatus::kPending;
}

int send(const SendFlags& flags) {
  std::signal(SIGPIPE, SIG_IGN);  // Paho and OpenSSL write to sockets the broker may close
  log::configure("warn");         // the answer is the output; connection chatter is not
  auto instruction = build_instruction(flags);
  if (!instruction) return fail(instruction.error().message);
  std::optional<PrivateKey> key;
  if (!flags.sign_key.empty()) {
    auto loaded = PrivateKey::from_pem_file(flags.sign_key);
    if (!loaded) return fail(loaded.error().message);
    key = *loaded;
  }
  auto sealed = seal_control_message(*instruction, key ? &*key : nullptr);
  if (!sealed) return fail(sealed.error().message);

  // Watch the reports first, so that a quick answer is not missed.
  ReportWatch watch;
  if (auto status = watch.open(flags.broker.options, instruction->terminal, flags.wait_ms > 0);
      !status)
    return fail(status.error().message);
  // Retained on its own topic: the agent clears it once stored (see docs/agent.md).
  auto published =
      watch.client().publish_wait(control_topic(instruction->terminal, instruction->id), *sealed, 1,
                                  true, std::chrono::seconds(10));
  if (!published) return fail(published.error().message);
  if (!flags.json)
    fmt::print("sent {} to {} on {}\n", instruction->id, instruction->target,
               instruction->terminal);
  if (flags.wait_ms <= 0) {
    if (flags.json) fmt::print("{}\n", json::serialize(to_json(*instruction)));
    return kExitOk;
  }
  auto reports = watch.wait(std::chrono::milliseconds(flags.wait_ms), [&](const auto& all) {
    for (const Report& report : all)
      if (report.instruction == instruction->id && final_status(report.status)) return true;
    return false;
  });
  int code = kExitFailure;
  for (const Report& report : reports) {
    if (report.instruction != instruction->id) continue;
    print_report(report, flags.json);
    if (report.status == ReportStatus::kApplied || report.status == ReportStatus::kPending)
      code = kExitOk;
    if (final_status(report.status)) code = report.status == ReportStatus::kApplied ? 0 : 1;
  }
  return code;
}

void add_send(CLI::App& agent, std::function<int()>& action) {
  auto flags = std::make_shared<SendFlags>();
  auto* command = agent.add_subcommand("send", "Publish a control instruction to a terminal");
  flags->broker.add(command);
  command->add_option("--terminal", flags->terminal, "Terminal id");
  command->add_option("--target", flags->target, "System id of the target OS");
  command->add_option("--kind", flags->kind, "setting, action or cancel")->capture_default_str();
  command->add_option("--type", flags->type, "Setting or action type (camera, lock, ...)");
  command->add_option("--id", flags->id, "Instruction id (default: random)");
  command->add_option("--param", flags->params, "Parameter key=value (repeatable)");
  command->add_option("--params-json", flags->params_json, "Parameters as a JSON object");
  command->add_flag("--revoke", flags->revoke, "Lift the setting instead of imposing it");
  command->add_option("--sequence", flags->sequence, "Sequence number (default: clock-based)");
  command->add_option("--expires-in-ms", flags->expires_in_ms, "Expire this many ms from now");
  command->add_option("--supersedes", flags->supersedes, "Instruction id it replaces");
  command->add_option("--cancel", flags->cancel, "Instruction id to cancel (kind cancel)");
  command->add_option("--sign-key", flags->sign_key, "Ed25519 private key (PEM) to sign with");
  command->add_option("--file", flags->file, "Send this instruction JSON instead");
  command->add_option("--wait-ms", flags->wait_ms, "Wait this long for the terminal's report");
  command->add_flag("--json", flags->json, "Machine-readable output");
  command->callback([&action, flags] { action = [flags] { return send(*flags); }; });
}

void add_status(CLI::App& agent, std::function<int()>& action) {
  struct Flags {
    BrokerFlags broker;
    std::string terminal, session;
    int64_t for_ms = 3000;
    size_t count = 0;
    bool json = false;
  };
  auto flags = std::make_shared<Flags>();
  auto* command = agent.add_subcommand("status", "Print a terminal's status reports");
  flags->broker.add(command);
  command->add_option("--terminal", flags->terminal, "Terminal id")->required();
  command->add_option("--session", flags->session,
                      "Persistent session name: reports published while away are kept for it");
  command->add_option("--for-ms", flags->for_ms, "How long to listen")->capture_default_str();
  command->add_option("--count", flags->count, "Stop after this many reports");
  command->add_flag("--json", flags->json, "One JSON report per line");
  command->callback([&action, flags] {
    action = [flags] {
      std::signal(SIGPIPE, SIG_IGN);
      log::configure("warn");
      BrokerOptions options = flags->broker.options;
      if (!flags->session.empty()) {
        options.client_id = "steward-status-" + flags->session;
        options.clean_session = false;
      }
      ReportWatch watch;
      if (auto status = watch.open(options, flags->terminal); !status)
        return fail(status.error().message);
      auto reports = watch.wait(std::chrono::milliseconds(flags->for_ms), [&](const auto& all) {
        return flags->count > 0 && all.size() >= flags->count;
      });
      for (const Report& report : reports)
        print_report(report, flags->json);
      return kExitOk;
    };
  });
}

void add_local(CLI::App& agent, std::function<int()>& action) {
  auto socket = std::make_shared<std::string>("/run/steward/agent.sock");
  auto system = std::make_shared<std::string>();
  auto none = std::make_shared<bool>(false);
  auto wait = std::make_shared<bool>(false);
  auto* foreground = agent.add_subcommand("foreground", "Tell the agent which OS is in front");
  foreground->add_option("system", *system, "System id now in the foreground");
  foreground->add_flag("--none", *none, "No managed OS is in the foreground");
  foreground->add_flag("--wait", *wait, "Return once that OS's stored instructions ran");
  foreground->add_option("--socket", *socket, "Agent socket")->capture_default_str();
  foreground->callback([&action, socket, system, none, wait] {
    action = [socket, system, none, wait] {
      if (system->empty() != *none) return fail("give a system id or --none");
      json::object request{{"op", "foreground"}, {"wait", *wait}};
      request["system"] = *none ? json::value(nullptr) : json::value(*system);
      auto answer = local_command(*socket, request, std::chrono::seconds(*wait ? 600 : 10));
      if (!answer) return fail(answer.error().message);
      return kExitOk;
    };
  });

  auto as_json = std::make_shared<bool>(false);
  auto* pending = agent.add_subcommand("pending", "List each OS's stored instructions");
  pending->add_option("--socket", *socket, "Agent socket")->capture_default_str();
  pending->add_flag("--json", *as_json, "Machine-readable output");
  pending->callback([&action, socket, as_json] {
    action = [socket, as_json] {
      auto answer = local_command(*socket, {{"op", "status"}}, std::chrono::seconds(10));
      if (!answer) return fail(answer.error().message);
      if (*as_json) {
        fmt::print("{}\n", json::serialize(*answer));
        return kExitOk;
      }
      const json::value& in_front = answer->at("foreground");
      fmt::print("terminal {}: foreground {}, broker {}\n",
                 std::string(answer->at("terminal").as_string()),
                 in_front.is_string() ? std::string(in_front.as_string()) : "-",
                 answer->at("connected").as_bool() ? "connected" : "disconnected");
      for (const auto& entry : answer->at("systems").as_array()) {
        const auto& list = entry.at("pending").as_array();
        fmt::print("  {}: {} pending\n", std::string(entry.at("id").as_string()), list.size());
        for (const auto& item : list) {
          fmt::print("    {} {} {} seq {} ({})\n", std::string(item.at("id").as_string()),
                     std::string(item.at("kind").as_string()),
                     std::string(item.at("type").as_string()), json::serialize(item.at("sequence")),
                     std::string(item.at("state").as_string()));
        }
      }
      return kExitOk;
    };
  });
}

void add_keygen(CLI::App& agent, std::function<int()>& action) {
  auto prefix = std::make_shared<std::string>();
  auto* keygen = agent.add_subcommand("keygen", "Make an Ed25519 key pair for signing");
  keygen->add_option("prefix", *prefix, "Writes PREFIX.key (0600) and PREFIX.pub")->required();
  keygen->callback([&action, prefix] {
    action = [prefix] {
      auto key = PrivateKey::generate();
      if (!key) return fail(key.error().message);
      std::string private_path = *prefix + ".key";
      mode_t old = ::umask(077);
      std::ofstream(private_path) << key->private_pem();
      ::umask(old);
      std::ofstream(*prefix + ".pub") << key->public_pem();
      fmt::print("wrote {} (keep it on the server) and {}.pub (give it to agents)\n", private_path,
                 *prefix);
      return kExitOk;
    };
  });
}

void add_run(CLI::App& agent, std::function<int()>& action) {
  auto config_file = std::make_shared<std::string>();
  auto overrides = std::make_shared<AgentConfig>();
  auto* run = agent.add_subcommand("run", "Run the agent daemon in the foreground");
  run->add_option("-c,--config", *config_file, "TOML file with an [agent] table");
  run->add_option("--terminal", overrides->terminal, "Terminal id");
  run->add_option("--database", overrides->database, "SQLite file of the store");
  run->add_option("--socket", overrides->socket, "Local command socket");
  run->add_option("--broker", overrides->broker.uri, "Broker URI");
  run->add_option("--port", overrides->port, "Port of /metrics and /v1/status (0: any)");
  run->add_option("--port-file", overrides->port_file, "Write the bound port to this file");
  run->add_option("--foreground", overrides->initial_foreground, "OS in the foreground at start");
  run->add_option("--log-level", overrides->log_level, "debug, info, warn or error");
  run->callback([&action, config_file, overrides, run] {
    action = [config_file, overrides, run] {
      AgentConfig config;
      if (!config_file->empty()) {
        if (auto status = load_config_file(*config_file, config); !status)
          return fail(status.error().message);
      }
      auto given = [run](const char* name) { return run->count(name) > 0; };
      if (given("--terminal")) config.terminal = overrides->terminal;
      if (given("--database")) config.database = overrides->database;
      if (given("--socket")) config.socket = overrides->socket;
      if (given("--broker")) config.broker.uri = overrides->broker.uri;
      if (given("--port")) config.port = overrides->port;
      if (given("--port-file")) config.port_file = overrides->port_file;
      if (given("--foreground")) config.initial_foreground = overrides->initial_foreground;
      if (given("--log-level")) config.log_level = overrides->log_level;
      return run_agent(config);
    };
  });
}

}  // namespace

void add_agent_commands(CLI::App& app, std::function<int()>& action) {
  auto* agent = app.add_subcommand("agent", "Control instructions that wait for their OS");
  agent->require_subcommand(1);
  add_run(*agent, action);
  add_send(*agent, action);
  add_status(*agent, action);
  add_local(*agent, action);
  add_keygen(*agent, action);
}

}  // namespace steward::cli
