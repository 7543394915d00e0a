#include "cli/vpn_commands.h"

#include "cli/api_client.h"
#include "core/log.h"
#include "vpn/config.h"
#include "vpn/control.h"
#include "vpn/daemon.h"
#include "vpn/steering/steering.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <boost/json.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string_view>
#include <thread>

namespace steward::cli {
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

int fail(const std::string& message, int code = kExitFailure) {
  fmt::print(stderr, "steward: {}\n", message);
  return code;
}

// Where the daemon is: its config (instance, state directory) or an explicit socket.
struct DaemonFlags {
  std::string config_file;
  std::string instance;
  std::string socket;
  void add(CLI::App* command) {
    command->add_option("--config", config_file, "The daemon's TOML config (finds its socket)");
    command->add_option("--instance", instance, "Instance name (default: default)");
    command->add_option("--socket", socket, "Control socket of the daemon");
  }
  Result<vpn::VpnConfig> config() const {
    vpn::VpnConfig config;
    if (!config_file.empty()) {
      if (auto loaded = vpn::load_config_file(config_file, config); !loaded) return loaded.error();
    }
    if (!instance.empty()) config.instance = instance;
    if (!socket.empty()) config.control_socket = socket;
    // The instance names files in the state directory (its socket, ledger and lock).
    if (!vpn::is_instance_name(config.instance)) {
      return Error::make(ErrorCode::kInvalidArgument,
                         "instance '{}' must be a name without '/' that does not start with '.'",
                         config.instance);
    }
    return config;
  }
};

// ---- connect

struct ConnectFlags {
  std::string config_file, gateway, ca, pin, user, credentials_file, instance, state_directory,
      control_socket, tun, port_file, log_level, log_file;
  int status_port = -1;
  bool background = false;
  bool no_dtls = false;
  bool admit_all = false;
};

Result<vpn::VpnConfig> connect_config(const ConnectFlags& flags) {
  vpn::VpnConfig config;
  if (!flags.config_file.empty()) {
    if (auto loaded = vpn::load_config_file(flags.config_file, config); !loaded) {
      return loaded.error();
    }
  }
  auto override_with = [](const std::string& flag, std::string& key) {
    if (!flag.empty()) key = flag;
  };
  override_with(flags.gateway, config.gateway);
  override_with(flags.user, config.username);
  override_with(flags.credentials_file, config.credentials_file);
  override_with(flags.instance, config.instance);
  override_with(flags.state_directory, config.state_directory);
  override_with(flags.control_socket, config.control_socket);
  override_with(flags.tun, config.tun_name);
  override_with(flags.port_file, config.port_file);
  override_with(flags.log_level, config.log_level);
  // A CA or a pin on the command line replaces whichever the file had.
  if (!flags.ca.empty()) {
    config.ca_file = flags.ca;
    config.pin.clear();
  }
  if (!flags.pin.empty()) {
    config.pin = flags.pin;
    config.ca_file.clear();
  }
  if (flags.status_port >= 0) config.status_port = static_cast<uint16_t>(flags.status_port);
  if (flags.no_dtls) config.dtls = false;
  if (flags.admit_all) config.admit_all = true;
  if (auto valid = vpn::validate(config); !valid) return valid.error();
  return config;
}

Result<vpn::LoginSecrets> login_secrets(const vpn::VpnConfig& config) {
  if (!config.credentials_file.empty()) return vpn::load_credentials_file(config.credentials_file);
  if (config.username.empty()) {
    return Error{ErrorCode::kInvalidArgument,
                 "no credentials: give --credentials-file, or --user to be asked for a password"};
  }
  auto password = vpn::prompt_password(config.username, config.gateway);
  if (!password) return password.error();
  vpn::LoginSecrets secrets;
  secrets.credentials = {config.username, *password, config.group};
  return secrets;
}

// --background: the child runs the daemon detached; the parent returns once the tunnel is
// ready (exit 0) or the child has failed (its exit code).
int connect_in_background(const vpn::VpnConfig& config, const vpn::LoginSecrets& secrets,
                          const std::string& log_file) {
  // The log is opened here, before the fork: a daemon that cannot write its log must not keep
  // the caller's terminal (a first run has no state directory yet: it is made, private).
  std::error_code made;
  auto directory = std::filesystem::path(log_file).parent_path();
  if (!directory.empty() && std::filesystem::create_directories(directory, made)) {
    std::filesystem::permissions(directory, std::filesystem::perms::owner_all, made);
  }
  int out = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (out < 0) {
    return fail(fmt::format("cannot open the daemon's log {}: {}", log_file, std::strerror(errno)),
                kExitUsage);
  }
  // Where this daemon's lines start in the log, to show them if it fails.
  off_t log_start = ::lseek(out, 0, SEEK_END);
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    ::close(out);
    return fail("cannot create a pipe");
  }
  pid_t child = ::fork();
  if (child < 0) {
    ::close(out);
    ::close(ready[0]);
    ::close(ready[1]);
    return fail("cannot fork");
  }
  if (child == 0) {
    ::close(ready[0]);
    ::setsid();
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    vpn::DaemonHooks hooks;
    hooks.on_ready = [fd = ready[1]] {
      (void)!::write(fd, "r", 1);
      ::close(fd);
    };
    ::_exit(vpn::run_vpn_daemon(config, secrets, hooks));
  }
  ::close(ready[1]);
  ::close(out);
  char byte = 0;
  ssize_t got = ::read(ready[0], &byte, 1);
  ::close(ready[0]);
  if (got == 1) {
    fmt::print("connected to {} (daemon pid {}, log {})\n", config.gateway, child, log_file);
    return kExitOk;
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : kExitFailure;
  // What it logged says why: its last lines, here, rather than only the log's name.
  std::string logged;
  if (std::ifstream log(log_file); log && log_start >= 0) {
    log.seekg(log_start);
    logged.assign(std::istreambuf_iterator<char>(log), std::istreambuf_iterator<char>());
    constexpr size_t kShown = 2000;
    if (logged.size() > kShown) logged = "..." + logged.substr(logged.size() - kShown);
    while (!logged.empty() && logged.back() == '\n')
      logged.pop_back();
  }
  return fail(fmt::format("the vpn daemon did not connect (exit {}); log {}{}{}", code, log_file,
                          logged.empty() ? "" : ":\n", logged),
              code == 0 ? kExitFailure : code);
}

int connect(const ConnectFlags& flags) {
  auto config = connect_config(flags);
  if (!config) return fail(config.error().message, kExitUsage);
  if (!log::configure(config->log_level)) {
    return fail("unknown log level " + config->log_level, kExitUsage);
  }
  auto secrets = login_secrets(*config);
  if (!secrets) return fail(secrets.error().message, kExitUsage);
  if (flags.background) {
    std::string log_file = flags.log_file.empty()
                               ? config->state_directory + "/" + config->instance + ".log"
                               : flags.log_file;
    return connect_in_background(*config, *secrets, log_file);
  }
  return vpn::run_vpn_daemon(*config, *secrets);
}

void add_connect(CLI::App& vpn, std::function<int()>& action) {
  auto flags = std::make_shared<ConnectFlags>();
  auto* command = vpn.add_subcommand("connect", "Connect to the gateway and run the VPN daemon");
  command->add_option("--config", flags->config_file, "TOML config ([vpn] table)");
  command->add_option("--gateway", flags->gateway, "Gateway URL, https://host[:port][/group]");
  auto* ca =
      command->add_option("--ca", flags->ca, "PEM CA file the gateway's certificate chains to");
  auto* pin = command->add_option("--pin", flags->pin, "Gateway public key pin, pin-sha256:...");
  ca->excludes(pin);
  command->add_option("--user", flags->user, "User name (the password is asked on the terminal)");
  command->add_option("--credentials-file", flags->credentials_file,
                      "Credentials file (mode 0600): username/password or certificate/key");
  command->add_option("--instance", flags->instance, "Instance name (default: default)");
  command->add_option("--state-dir", flags->state_directory, "Ledger and socket directory");
  command->add_option("--socket", flags->control_socket, "Control socket path");
  command->add_option("--tun", flags->tun, "TUN device name");
  command->add_option("--status-port", flags->status_port, "Status endpoint port (0: any)");
  command->add_option("--port-file", flags->port_file, "Write the bound status port here");
  command->add_option("--log-level", flags->log_level, "debug, info, warn or error");
  command->add_flag("--no-dtls", flags->no_dtls, "Carry data over the TLS channel only");
  command->add_flag("--admit-all", flags->admit_all,
                    "Per-process admission off: tunnel every process's intranet traffic");
  command->add_flag("--background", flags->background,
                    "Detach once the tunnel is up (logs go to --log-file)");
  command->add_option("--log-file", flags->log_file,
                      "Log of the background daemon (default <state-dir>/<instance>.log)");
  command->callback([&action, flags] { action = [flags] { return connect(*flags); }; });
}

// ---- run

pid_t g_command = -1;  // the command `vpn run` waits for; signals are passed on to it

void pass_signal(int signal) {
  if (g_command > 0) ::kill(g_command, signal);
}

// The command line's words after its first "--", verbatim; nullopt when it has none.
std::optional<std::vector<std::string>>& words_after_dashes() {
  static std::optional<std::vector<std::string>> words;
  return words;
}

int run(const DaemonFlags& flags, const std::vector<std::string>& parsed) {
  // CLI11 splits a word like "[a,b]" into a list even after "--": when the command came after
  // "--" (`run -- CMD...`, the documented form), run the words as typed.
  const auto& typed = words_after_dashes();
  bool command_after_dashes = typed && !typed->empty() && !parsed.empty() &&
                              (typed->front() == parsed.front() || typed->front().starts_with('['));
  const std::vector<std::string>& argv = command_after_dashes ? *typed : parsed;
  auto config = flags.config();
  if (!config) return fail(config.error().message, kExitUsage);
  if (argv.empty()) return fail("vpn run needs a command: steward vpn run -- CMD...", kExitUsage);

  // The child waits on a pipe until the daemon has put it in the admitted cgroup, so the
  // command's very first socket is already admitted.
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return fail("cannot create a pipe");
  pid_t child = ::fork();
  if (child < 0) return fail("cannot fork");
  if (child == 0) {
    ::close(go[1]);
    char byte = 0;
    if (::read(go[0], &byte, 1) != 1) ::_exit(126);
    std::vector<char*> arguments;
    for (const auto& argument : argv)
      arguments.push_back(const_cast<char*>(argument.c_str()));
    arguments.push_back(nullptr);
    ::execvp(arguments[0], arguments.data());
    int error = errno;
    fmt::print(stderr, "steward: cannot run {}: {}\n", argv[0], std::strerror(error));
    ::_exit(error == ENOENT ? 127 : 126);  // as shells do: not found, or found but not runnable
  }
  ::close(go[0]);
  g_command = child;
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT})
    std::signal(signal, pass_signal);

  auto admitted =
      vpn::control_request(config->control_socket_path(),
                           json::object{{"op", "run"}, {"pid", child}, {"command", argv[0]}}, 60s);
  if (!admitted) {
    ::close(go[1]);  // the child exits 126 without running the command
    ::waitpid(child, nullptr, 0);
    return fail("not started: " + admitted.error().message);
  }
  (void)!::write(go[1], "g", 1);
  ::close(go[1]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void add_run(CLI::App& vpn, std::function<int()>& action) {
  struct Flags {
    DaemonFlags daemon;
    std::vector<std::string> argv;
  };
  auto flags = std::make_shared<Flags>();
  auto* command = vpn.add_subcommand(
      "run",
      "Run a command admitted to the intranet (it and all its children); exits with "
      "the command's exit code");
  flags->daemon.add(command);
  command->add_option("command", flags->argv, "The command and its arguments (after --)")
      ->required();
  command->callback(
      [&action, flags] { action = [flags] { return run(flags->daemon, flags->argv); }; });
}

// ---- admit, status, disconnect

int admit(const DaemonFlags& flags, int pid, bool close_existing) {
  auto config = flags.config();
  if (!config) return fail(config.error().message, kExitUsage);
  auto answer = vpn::control_request(
      config->control_socket_path(),
      json::object{{"op", "admit"}, {"pid", pid}, {"close_existing", close_existing}}, 10s);
  if (!answer) return fail(answer.error().message);
  fmt::print("admitted pid {}\n", pid);
  const auto& sockets = answer->at("sockets_opened_before").as_array();
  if (!sockets.empty()) {
    fmt::print("{} socket(s) opened before admission are not admitted{}:\n", sockets.size(),
               close_existing ? "" : " (use --close-existing to close them)");
    for (const auto& socket : sockets)
      fmt::print("  {}\n", socket.as_string().c_str());
  }
  if (const auto* closed = answer->if_contains("closed")) {
    fmt::print(
        "closed {} of them (TCP toward the intranet only; UDP sockets cannot be closed "
        "from outside)\n",
        closed->to_number<int64_t>());
  }
  return kExitOk;
}

void print_status(const json::object& status) {
  auto text = [&](const char* key) -> std::string {
    const auto* value = status.if_contains(key);
    return value && value->is_string() ? std::string(value->get_string()) : "";
  };
  auto number = [&](const json::object& object, const char* key) -> uint64_t {
    const auto* value = object.if_contains(key);
    return value ? value->to_number<uint64_t>() : 0;
  };
  fmt::print("state:        {}{}\n", text("state"),
             status.at("tunnel_up").as_bool() ? "" : " (intranet traffic refused)");
  fmt::print("gateway:      {}\n", text("gateway"));
  fmt::print("address:      {}{}\n", text("address"),
             text("address6").empty() ? "" : " " + text("address6"));
  std::string routes, dns;
  for (const auto& route : status.at("routes").as_array())
    routes += std::string(route.as_string()) + " ";
  for (const auto& server : status.at("dns").as_array())
    dns += std::string(server.as_string()) + " ";
  fmt::print("routes:       {}\n", routes);
  fmt::print("dns:          {}{}\n", dns, text("default_domain"));
  fmt::print("data channel: {}  mtu {}\n", text("data_channel"), number(status, "mtu"));
  for (const char* channel : {"cstp", "dtls"}) {
    const auto& counters = status.at("channels").at(channel).as_object();
    fmt::print("  {}: tx {} packets {} bytes, rx {} packets {} bytes\n", channel,
               number(counters, "tx_packets"), number(counters, "tx_bytes"),
               number(counters, "rx_packets"), number(counters, "rx_bytes"));
  }
  fmt::print("reconnects:   {}  re-authentications {}  address changes {}\n",
             number(status, "reconnects"), number(status, "reauthentications"),
             number(status, "address_changes"));
  fmt::print("flow check:   {} dropped\n", number(status.at("flow_check").as_object(), "drops"));
  fmt::print("failures:     send {}  tun write {}  tun read refused {}  dtls given up {}\n",
             number(status, "send_failures"), number(status, "tun_write_failures"),
             number(status, "tun_read_refusals"), number(status, "dtls_failures"));
  if (const auto* steering = status.if_contains("steering"); steering && steering->is_object()) {
    const auto& verdicts = steering->as_object();
    fmt::print("steering:     tunnelled {}  refused admitted {}  refused others {}  late {}\n",
               number(verdicts, "tunnelled"), number(verdicts, "refused_admitted"),
               number(verdicts, "refused_others"), number(verdicts, "dropped_late"));
  }
  const auto* admit_all = status.if_contains("admit_all");
  if (admit_all && admit_all->is_bool() && admit_all->get_bool()) {
    fmt::print("admission:    off, every process's intranet traffic is tunnelled (admit_all)\n");
  }
  const auto& admitted = status.at("admitted").as_array();
  fmt::print("admitted:     {} process(es)\n", admitted.size());
  for (const auto& process : admitted) {
    fmt::print("  {} {}\n", process.at("pid").to_number<int64_t>(),
               process.at("exe").as_string().c_str());
  }
}

int status(const DaemonFlags& flags, bool as_json) {
  auto config = flags.config();
  if (!config) return fail(config.error().message, kExitUsage);
  auto answer =
      vpn::control_request(config->control_socket_path(), json::object{{"op", "status"}}, 10s);
  if (!answer) {
    std::string message = answer.error().code == ErrorCode::kUnavailable
                              ? fmt::format("no vpn daemon is running for instance {} ({})",
                                            config->instance, answer.error().message)
                              : answer.error().message;
    // Scripts reading --json get JSON either way.
    if (as_json) {
      fmt::print("{}\n", json::serialize(json::object{{"state", "not running"},
                                                      {"instance", config->instance},
                                                      {"error", message}}));
    }
    return fail(message);
  }
  answer->erase("ok");
  if (as_json) {
    fmt::print("{}\n", json::serialize(*answer));
  } else {
    print_status(*answer);
  }
  return kExitOk;
}

// Asks the daemon to end the session and waits until it is gone. Without a daemon, removes
// what a crashed one left (its ledger).
int disconnect(const DaemonFlags& flags) {
  auto config = flags.config();
  if (!config) return fail(config.error().message, kExitUsage);
  std::string path = config->control_socket_path();
  auto answer = vpn::control_request(path, json::object{{"op", "disconnect"}}, 10s);
  if (!answer) {
    if (answer.error().code != ErrorCode::kUnavailable) return fail(answer.error().message);
    auto cleaned = vpn::cleanup_instance(config->steering_options());
    if (!cleaned) {
      return fail("no daemon runs, and cleaning up after a previous one failed: " +
                  cleaned.error().message);
    }
    // The instance's ledger lock was free, so nobody serves this socket any more.
    std::error_code ignored;
    if (std::filesystem::is_socket(path, ignored)) std::filesystem::remove(path, ignored);
    if (*cleaned == 0) {
      fmt::print("no vpn daemon was running, and instance {} had nothing to clean up\n",
                 config->instance);
    } else {
      fmt::print(
          "no vpn daemon was running; removed the {} object(s) a stopped daemon of instance {} "
          "left (routes, rules, nft tables, cgroup); nothing is left\n",
          *cleaned, config->instance);
    }
    return kExitOk;
  }
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!vpn::control_request(path, json::object{{"op", "ping"}}, 1s)) {
      fmt::print("disconnected\n");
      return kExitOk;
    }
    std::this_thread::sleep_for(50ms);
  }
  return fail("the vpn daemon acknowledged but has not stopped after 15 s");
}

void add_queries(CLI::App& vpn, std::function<int()>& action) {
  struct Flags {
    DaemonFlags daemon;
    int pid = 0;
    bool close_existing = false;
    bool json = false;
  };
  auto flags = std::make_shared<Flags>();
  auto* admit_command =
      vpn.add_subcommand("admit", "Admit a running process and its future children");
  flags->daemon.add(admit_command);
  admit_command->add_option("pid", flags->pid, "Process id")->required();
  admit_command->add_flag("--close-existing", flags->close_existing,
                          "Close its TCP connections toward the intranet opened before admission");
  admit_command->callback([&action, flags] {
    action = [flags] { return admit(flags->daemon, flags->pid, flags->close_existing); };
  });

  auto* status_command = vpn.add_subcommand("status", "Show the tunnel and admitted processes");
  flags->daemon.add(status_command);
  status_command->add_flag("--json", flags->json, "Machine-readable output");
  status_command->callback(
      [&action, flags] { action = [flags] { return status(flags->daemon, flags->json); }; });

  auto* disconnect_command =
      vpn.add_subcommand("disconnect", "End the session and remove everything it set up");
  flags->daemon.add(disconnect_command);
  disconnect_command->callback(
      [&action, flags] { action = [flags] { return disconnect(flags->daemon); }; });
}

}  // namespace

void remember_words_after_dashes(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      words_after_dashes() = std::vector<std::string>(argv + i + 1, argv + argc);
      return;
    }
  }
}

void add_vpn_commands(CLI::App& app, std::function<int()>& action) {
  auto* vpn = app.add_subcommand("vpn", "Per-process SSL VPN (OpenConnect gateways)");
  vpn->require_subcommand(1);
  add_connect(*vpn, action);
  add_run(*vpn, action);
  add_queries(*vpn, action);
}

}  // namespace steward::cli
