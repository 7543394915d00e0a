#include "vpn/config.h"

#include "core/config.h"
#include "vpn/steering/cgroup.h"
#include "vpn/steering/ledger.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <cstdio>
#include <set>

namespace steward::vpn {
namespace {

using steward::config::invalid;
using steward::config::only_known;

// A non-negative integer key into `out`; absent keys keep the default.
template <typename T>
Status read_number(const toml::table& table, const char* key, T& out, int64_t max,
                   const std::string& path) {
  auto value = table[key].value<int64_t>();
  if (!value) {
    if (table.contains(key)) return invalid(path, fmt::format("vpn.{} must be an integer", key));
    return ok();
  }
  if (*value < 0 || *value > max) {
    return invalid(path, fmt::format("vpn.{} must be between 0 and {}", key, max));
  }
  out = static_cast<T>(*value);
  return ok();
}

template <typename Duration>
Status read_duration(const toml::table& table, const char* key, Duration& out,
                     const std::string& path) {
  int64_t count = out.count();
  if (auto status = read_number(table, key, count, int64_t{1} << 40, path); !status) return status;
  out = Duration(count);
  return ok();
}

Status read_strings(const toml::table& table, VpnConfig& config) {
  auto text = [&](const char* key, std::string& out) { out = table[key].value_or(out); };
  text("gateway", config.gateway);
  text("ca_file", config.ca_file);
  text("pin", config.pin);
  text("server_name", config.server_name);
  text("credentials_file", config.credentials_file);
  text("username", config.username);
  text("group", config.group);
  text("instance", config.instance);
  text("state_directory", config.state_directory);
  text("control_socket", config.control_socket);
  text("status_address", config.status_address);
  text("port_file", config.port_file);
  text("log_level", config.log_level);
  text("tun_name", config.tun_name);
  text("nft_table", config.nft_table);
  text("cgroup_path", config.cgroup_path);
  text("cgroup2_fallback_mount", config.cgroup2_fallback_mount);
  text("exec_rules_netns", config.exec_rules_netns);
  config.dtls = table["dtls"].value_or(config.dtls);
  config.ipv6 = table["ipv6"].value_or(config.ipv6);
  config.admit_all = table["admit_all"].value_or(config.admit_all);
  return ok();
}

Status read_vpn(const toml::table& table, VpnConfig& config, const std::string& path) {
  static const std::set<std::string> known = {"gateway",
                                              "ca_file",
                                              "pin",
                                              "server_name",
                                              "credentials_file",
                                              "username",
                                              "group",
                                              "dtls",
                                              "ipv6",
                                              "instance",
                                              "state_directory",
                                              "control_socket",
                                              "status_address",
                                              "status_port",
                                              "port_file",
                                              "log_level",
                                              "tun_name",
                                              "table",
                                              "rule_priority",
                                              "mark",
                                              "nft_table",
                                              "cgroup_path",
                                              "cgroup2_fallback_mount",
                                              "exec_rules",
                                              "exec_rules_netns",
                                              "admit_all",
                                              "reconnect_min_ms",
                                              "reconnect_max_ms",
                                              "reconnect_timeout_s",
                                              "connect_timeout_s",
                                              "flow_ttl_s",
                                              "base_mtu"};
  if (auto status = only_known(table, known, "vpn", path); !status) return status;
  if (auto status = read_strings(table, config); !status) return status;
  // A quoted "false" must not pass for the default: this key turns per-process admission off.
  if (table.contains("admit_all") && !table["admit_all"].is_boolean()) {
    return invalid(path, "vpn.admit_all must be true or false");
  }
  for (auto status : {read_number(table, "status_port", config.status_port, 65535, path),
                      read_number(table, "table", config.table, 0x7fffffff, path),
                      read_number(table, "rule_priority", config.rule_priority, 32765, path),
                      read_number(table, "mark", config.mark, 0xffffffff, path),
                      read_duration(table, "reconnect_min_ms", config.reconnect_min, path),
                      read_duration(table, "reconnect_max_ms", config.reconnect_max, path),
                      read_duration(table, "reconnect_timeout_s", config.reconnect_timeout, path),
                      read_duration(table, "connect_timeout_s", config.connect_timeout, path),
                      read_duration(table, "flow_ttl_s", config.flow_ttl, path),
                      read_number(table, "base_mtu", config.base_mtu, 65535, path)}) {
    if (!status) return status;
  }
  if (table.contains("exec_rules")) {
    const toml::array* rules = table["exec_rules"].as_array();
    if (!rules) return invalid(path, "vpn.exec_rules must be an array of executable paths");
    config.exec_rules.clear();
    for (const auto& rule : *rules) {
      auto text = rule.value<std::string>();
      if (!text || text->empty() || (*text)[0] != '/') {
        return invalid(path, "vpn.exec_rules entries must be absolute executable paths");
      }
      config.exec_rules.push_back(*text);
    }
  }
  return ok();
}

bool fits_link_name(const std::string& name) {
  return !name.empty() && name.size() <= 15 && name.find_first_of("/ \t:") == std::string::npos;
}

}  // namespace

std::string VpnConfig::control_socket_path() const {
  if (!control_socket.empty()) return control_socket;
  return state_directory + "/" + instance + ".sock";
}

SteeringOptions VpnConfig::steering_options() const {
  SteeringOptions options;
  options.instance = instance;
  options.ledger_directory = state_directory;
  options.tun_name = tun_name;
  options.table = table;
  options.rule_priority = rule_priority;
  options.mark = mark;
  options.nft_table = nft_table;
  options.cgroup_path = cgroup_path;
  options.cgroup2_fallback_mount = cgroup2_fallback_mount;
  options.admit_all = admit_all;
  return options;
}

Status load_config_file(const std::string& path, VpnConfig& config) {
  // The config decides what runs as root (gateway, cgroup paths, nft names): anybody who may
  // change it must be trusted like root.
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode)) {
    if ((info.st_mode & S_IWOTH) != 0) {
      return Error::make(ErrorCode::kInvalidArgument,
                         "config {} is writable by every user (mode {:o}): run `chmod o-w {}`",
                         path, info.st_mode & 0777, path);
    }
    if (info.st_uid != ::geteuid() && info.st_uid != 0) {
      return Error::make(ErrorCode::kInvalidArgument,
                         "config {} belongs to uid {}, not to this user (uid {}) or root: run "
                         "`chown {} {}`",
                         path, info.st_uid, ::geteuid(), ::geteuid(), path);
    }
  }
  auto root = steward::config::parse_file(path);
  if (!root) return root.error();
  if (auto status = only_known(*root, {"vpn"}, "", path); !status) return status;
  const toml::table* table = (*root)["vpn"].as_table();
  if (!table) return ok();
  return read_vpn(*table, config, path);
}

Status validate(const VpnConfig& config) {
  auto bad = [](std::string message) {
    return Error{ErrorCode::kInvalidArgument, std::move(message)};
  };
  if (config.gateway.empty()) return bad("no gateway: set vpn.gateway or --gateway");
  if (config.base_mtu != 0 && config.base_mtu < 1280) {
    // Below that the gateway's tunnel MTU (the base less its TLS overhead) would fall under
    // what IPv4 hosts must accept (576 bytes) on some gateways, and under IPv6's 1280.
    return bad("vpn.base_mtu must be 0 (from the path) or at least 1280");
  }
  if (auto url = cstp::GatewayUrl::parse(config.gateway); !url) {
    return url.error().wrap("gateway " + config.gateway);
  }
  if (config.ca_file.empty() && config.pin.empty()) {
    return bad("no way to check the gateway: set vpn.ca_file (--ca) or vpn.pin (--pin)");
  }
  if (!config.pin.empty() && config.pin.rfind("pin-sha256:", 0) != 0) {
    return bad("pin must look like pin-sha256:<base64> (as `openssl` or openconnect print it)");
  }
  if (!fits_link_name(config.tun_name)) {
    return bad("tun_name must be 1 to 15 characters without '/', ':' or spaces");
  }
  if (!is_instance_name(config.instance)) {
    return bad("instance must be a non-empty name without '/' that does not start with '.'");
  }
  if (config.nft_table.empty() ||
      config.nft_table.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_") != std::string::npos) {
    return bad("nft_table must be letters, digits and '_'");
  }
  if (!is_group_path(config.cgroup_path)) {
    return bad(
        "cgroup_path must be a path below the cgroup2 mount, such as steward-vpn/admitted "
        "(letters, digits, '.', '_', '-' joined by '/'; no '.' or '..' parts)");
  }
  if (config.cgroup2_fallback_mount.size() < 2 || config.cgroup2_fallback_mount.front() != '/' ||
      config.cgroup2_fallback_mount.find("..") != std::string::npos) {
    return bad("cgroup2_fallback_mount must be an absolute path other than / (and without '..')");
  }
  if (config.table == 0 || config.table == 253 || config.table == 254 || config.table == 255) {
    return bad("table must not be 0 or one of the kernel's tables (253, 254, 255)");
  }
  if (config.mark == 0) return bad("mark must not be 0");
  if (config.reconnect_min > config.reconnect_max) {
    return bad("reconnect_min_ms must not be larger than reconnect_max_ms");
  }
  return ok();
}

Result<LoginSecrets> load_credentials_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return Error::make(ErrorCode::kNotFound, "credentials file {} cannot be read", path);
  }
  // A secret another user owns is theirs to change (and so where Steward logs in as whom).
  if (info.st_uid != ::geteuid() && info.st_uid != 0) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "credentials file {} belongs to uid {}, not to this user (uid {}) or root: "
                       "run `chown {} {}`",
                       path, info.st_uid, ::geteuid(), ::geteuid(), path);
  }
  // A secret others can read is no longer a secret; refuse rather than use it.
  if ((info.st_mode & 077) != 0) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "credentials file {} is accessible by other users (mode {:o}): run "
                       "`chmod 600 {}`",
                       path, info.st_mode & 0777, path);
  }
  auto root = steward::config::parse_file(path);
  if (!root) {
    // toml++ may quote the offending text: keep only the position.
    return Error::make(ErrorCode::kInvalidArgument, "credentials file {} is not valid TOML", path);
  }
  if (auto status =
          only_known(*root, {"username", "password", "group", "certificate", "key"}, "", path);
      !status)
    return Error::make(ErrorCode::kInvalidArgument, "credentials file {}: {}", path,
                       status.error().message.substr(status.error().message.find("unknown")));
  LoginSecrets secrets;
  secrets.credentials.username = (*root)["username"].value_or(std::string());
  secrets.credentials.password = (*root)["password"].value_or(std::string());
  secrets.credentials.group = (*root)["group"].value_or(std::string());
  secrets.client_cert_file = (*root)["certificate"].value_or(std::string());
  secrets.client_key_file = (*root)["key"].value_or(std::string());
  if (secrets.client_cert_file.empty() != secrets.client_key_file.empty()) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "credentials file {}: certificate and key go together", path);
  }
  if (secrets.credentials.password.empty() && secrets.client_cert_file.empty()) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "credentials file {} has neither a password nor a certificate", path);
  }
  if (!secrets.credentials.password.empty() && secrets.credentials.username.empty()) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "credentials file {}: a password needs a username", path);
  }
  return secrets;
}

Result<std::string> prompt_password(const std::string& username, const std::string& gateway) {
  int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (tty < 0) {
    return Error::make(ErrorCode::kUnavailable,
                       "no credentials file and no terminal to ask for the password: set "
                       "vpn.credentials_file or --credentials-file");
  }
  std::string question = fmt::format("password for {} at {}: ", username, gateway);
  (void)!::write(tty, question.data(), question.size());
  termios saved{};
  bool restore = ::tcgetattr(tty, &saved) == 0;
  if (restore) {
    termios silent = saved;
    silent.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(tty, TCSAFLUSH, &silent);
  }
  std::string password;
  char c = 0;
  while (::read(tty, &c, 1) == 1 && c != '\n')
    password.push_back(c);
  if (restore) ::tcsetattr(tty, TCSAFLUSH, &saved);
  (void)!::write(tty, "\n", 1);
  ::close(tty);
  if (password.empty()) return Error::make(ErrorCode::kInvalidArgument, "empty password");
  return password;
}

}  // namespace steward::vpn
