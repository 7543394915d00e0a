#include "controller/daemon.h"

#include "controller/engine/engine.h"
#include "controller/engine/vm_locks.h"
#include "controller/inventory/directory.h"
#include "controller/northbound/api.h"
#include "controller/northbound/nova.h"
#include "controller/reconcile/reconciler.h"
#include "controller/southbound/ovsdb/ovsdb_switch.h"
#include "controller/southbound/switch_pool.h"
#include "controller/store/store.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <toml++/toml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace steward::controller {
namespace asio = boost::asio;

namespace {

Status read_duration(const toml::table& table, const char* key, std::chrono::milliseconds& out) {
  if (auto value = table[key].value<int64_t>()) {
    if (*value < 0) return Error::make(ErrorCode::kInvalidArgument, "{} must not be negative", key);
    out = std::chrono::milliseconds(*value);
  }
  return ok();
}

}  // namespace

Status load_config_file(const std::string& path, ControllerConfig& config) {
  auto parsed = steward::config::parse_file(path);
  if (!parsed) return parsed.error();
  toml::table& root = *parsed;
  const toml::table* table = root["controller"].as_table();
  if (!table) return ok();
  static const std::set<std::string> known = {"listen_address",
                                              "port",
                                              "database",
                                              "token_file",
                                              "port_file",
                                              "owner",
                                              "log_level",
                                              "reconcile_interval_ms",
                                              "reconcile_settle_ms",
                                              "retry_initial_ms",
                                              "retry_max_ms",
                                              "ovsdb_echo_interval_ms"};
  if (auto status = steward::config::only_known(*table, known, "controller", path); !status)
    return status;
  config.listen_address = (*table)["listen_address"].value_or(config.listen_address);
  int64_t port = (*table)["port"].value_or(int64_t{config.port});
  if (port < 0 || port > 65535) {
    return Error::make(ErrorCode::kInvalidArgument, "config {}: port out of range", path);
  }
  config.port = static_cast<uint16_t>(port);
  config.database = (*table)["database"].value_or(config.database);
  config.token_file = (*table)["token_file"].value_or(config.token_file);
  config.port_file = (*table)["port_file"].value_or(config.port_file);
  config.owner = (*table)["owner"].value_or(config.owner);
  config.log_level = (*table)["log_level"].value_or(config.log_level);
  for (auto [key, field] : {std::pair{"reconcile_interval_ms", &config.reconcile_interval},
                            {"reconcile_settle_ms", &config.reconcile_settle},
                            {"retry_initial_ms", &config.retry_initial},
                            {"retry_max_ms", &config.retry_max},
                            {"ovsdb_echo_interval_ms", &config.ovsdb_echo_interval}}) {
    if (auto status = read_duration(*table, key, *field); !status) return status;
  }
  return ok();
}

std::string token_path(const ControllerConfig& config) {
  if (!config.token_file.empty()) return config.token_file;
  std::filesystem::path database(config.database);
  return (database.parent_path() / "controller.token").string();
}

Result<std::string> load_or_create_token(const std::string& path) {
  if (const char* from_env = std::getenv("STEWARD_TOKEN"); from_env && *from_env) {
    return std::string(from_env);
  }
  std::ifstream in(path);
  if (in) {
    std::string token;
    std::getline(in, token);
    if (token.empty())
      return Error::make(ErrorCode::kInvalidArgument, "token file {} is empty", path);
    return token;
  }
  unsigned char random[24];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    return Error{ErrorCode::kInternal, "cannot generate a token: no randomness"};
  }
  std::string token;
  for (unsigned char byte : random)
    token += fmt::format("{:02x}", byte);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    return Error::make(ErrorCode::kIo, "cannot create token file {}: {}", path,
                       std::strerror(errno));
  }
  std::string line = token + "\n";
  bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!written) return Error::make(ErrorCode::kIo, "cannot write token file {}", path);
  return token;
}

namespace {

// Everything the daemon owns, in construction order (destroyed in reverse).
class Controller {
 public:
  explicit Controller(const ControllerConfig& config) : config_(config) {}

  Status start();
  void run() { io_.run(); }

 private:
  void wire_listeners();
  void shutdown();

  ControllerConfig config_;
  asio::io_context io_;
  SystemClock clock_;
  metrics::Registry metrics_;
  std::shared_ptr<spdlog::logger> log_ = log::get("controller");
  std::unique_ptr<Store> store_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<SwitchPool> pool_;
  VmLocks locks_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<NovaCorrelator> nova_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<http::Server> server_;
  asio::signal_set signals_{io_, SIGINT, SIGTERM};
};

Status Controller::start() {
  // State first: nothing talks to a switch before the journal is readable.
  std::error_code ec;
  auto dir = std::filesystem::path(config_.database).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  auto store = open_sqlite_store(config_.database);
  if (!store) return store.error();
  store_ = std::move(*store);
  directory_ = std::make_unique<Directory>(*store_);
  if (auto status = directory_->load(); !status)
    return status.error().wrap("cannot load inventory");
  auto token = load_or_create_token(token_path(config_));
  if (!token) return token.error();

  // Switches, engine, reconciler.
  OvsdbSwitchOptions ovsdb;
  ovsdb.connection.echo_interval = config_.ovsdb_echo_interval;
  pool_ = std::make_unique<SwitchPool>([this, ovsdb](const Switch& spec) {
    return std::make_unique<OvsdbSwitch>(io_, spec, config_.owner, ovsdb);
  });
  engine_ = std::make_unique<Engine>(io_, *store_, *directory_, *pool_, locks_, clock_, metrics_,
                                     EngineOptions{config_.retry_initial, config_.retry_max});
  reconciler_ = std::make_unique<Reconciler>(
      io_, *directory_, *pool_, *engine_, locks_, metrics_,
      ReconcilerOptions{config_.reconcile_interval, config_.reconcile_settle,
                        std::chrono::milliseconds(100)});
  nova_ = std::make_unique<NovaCorrelator>(
      [this](const std::string& vm) -> std::optional<KnownMigration> {
        if (const Migration* active = engine_->active(vm)) {
          return KnownMigration{active->source_host, active->target_host, false};
        }
        auto latest = store_->latest_migration(vm);
        if (!latest || !*latest) return std::nullopt;
        return KnownMigration{(*latest)->source_host, (*latest)->target_host, !(*latest)->active()};
      });
  wire_listeners();
  for (const auto& [id, spec] : directory_->switches())
    pool_->ensure(spec);
  if (auto status = engine_->resume(); !status) return status;
  reconciler_->start();

  // The API last, once everything it calls exists.
  server_ = std::make_unique<http::Server>(io_, config_.listen_address, config_.port);
  server_->require_bearer_token(*token, {"/healthz"});
  api_ = std::make_unique<Api>(
      ApiContext{*directory_, *pool_, *engine_, *reconciler_, *nova_, metrics_});
  api_->register_routes(*server_);
  auto port = server_->start();
  if (!port) return port.error();
  if (!config_.port_file.empty()) {
    std::ofstream(config_.port_file) << *port << "\n";
  }
  log_->info("started listen={}:{} database={} switches={} hosts={} vms={} owner={}",
             config_.listen_address, *port, config_.database, directory_->switches().size(),
             directory_->hosts().size(), directory_->vms().size(), config_.owner);
  signals_.async_wait([this](boost::system::error_code ec2, int signal) {
    if (!ec2) log_->info("stopping signal={}", signal);
    shutdown();
  });
  return ok();
}

void Controller::wire_listeners() {
  auto& connected = metrics_.gauge("steward_switch_connected",
                                   "1 when the switch is connected and its view is current");
  // Called on every change of a switch's owned rows, and on its state changes.
  pool_->set_listener(
      [this, &connected, was_ready = std::set<std::string>()](const std::string& id) mutable {
        SwitchClient* client = pool_->find(id);
        if (!client) return;
        bool ready = client->state() == SwitchState::kReady;
        connected.set({{"switch", id}}, ready ? 1 : 0);
        // Steps waiting for the switch go once it becomes ready, not on each row change.
        if (ready && was_ready.insert(id).second) engine_->on_switch_ready(id);
        if (!ready) was_ready.erase(id);
        reconciler_->request();
      });
  directory_->set_listener([this](const std::string& kind, const std::string& id) {
    if (kind != "switch") return reconciler_->request();
    if (const Switch* spec = directory_->find_switch(id)) {
      pool_->ensure(*spec);
    } else {
      pool_->drop(id);
    }
  });
  engine_->set_finished_listener([this](const std::string&) { reconciler_->request(); });
}

void Controller::shutdown() {
  // Journaled migrations stay in the store and resume at the next start.
  if (server_) server_->stop();
  if (reconciler_) reconciler_->stop();
  if (pool_) pool_->stop_all();
  io_.stop();
}

}  // namespace

int run_controller(const ControllerConfig& config) {
  if (!log::configure(config.log_level)) {
    fmt::print(stderr, "steward: unknown log level '{}'\n", config.log_level);
    return 2;
  }
  auto controller = std::make_unique<Controller>(config);
  if (auto status = controller->start(); !status) {
    log::get("controller")->error("cannot start: {}", status.error().message);
    fmt::print(stderr, "steward controller: cannot start: {}\n", status.error().message);
    return 1;
  }
  controller->run();
  return 0;
}

}  // namespace steward::controller
