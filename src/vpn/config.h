// The VPN daemon's configuration: every key has a default; a TOML file ([vpn] table) and then
// the command line override them. docs/vpn.md lists every key.
//
// Credentials are not part of it: they come from a credentials file of their own (readable by
// its owner only) or from a prompt on the terminal, never from the command line, and are never
// logged.
#pragma once

#include "core/result.h"
#include "vpn/cstp/auth.h"
#include "vpn/cstp/tls.h"
#include "vpn/steering/steering.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace steward::vpn {

struct VpnConfig {
  std::string gateway;      // "https://host[:port][/group]"; required
  std::string ca_file;      // PEM CA of the gateway's certificate, or:
  std::string pin;          // "pin-sha256:<base64>" of the gateway's public key
  std::string server_name;  // name checked in the certificate; default: the URL's host
  std::string credentials_file;
  std::string username;  // used with a password prompt when there is no credentials file
  std::string group;
  bool dtls = true;
  bool ipv6 = true;  // ask the gateway for IPv6 too

  std::string instance = "default";
  std::string state_directory = "/run/steward-vpn";  // ledger and control socket
  std::string control_socket;                        // default <state_directory>/<instance>.sock
  std::string status_address = "127.0.0.1";
  uint16_t status_port = 8473;  // /healthz, /v1/status, /metrics; 0 picks a free port
  std::string port_file;        // the bound status port is written here when set
  std::string log_level = "info";

  std::string tun_name = "stw0";
  int table = 7270;
  int rule_priority = 7270;
  uint32_t mark = 0x7270;
  std::string nft_table = "steward";
  std::string cgroup_path = "steward-vpn/admitted";
  std::string cgroup2_fallback_mount = "/run/steward-vpn/cgroup2";
  std::vector<std::string> exec_rules;  // executables admitted when they start
  // Per-process admission off: every local process's traffic toward the intranet goes through
  // the tunnel (still refused locally while the tunnel is down). For comparisons and for
  // machines where the whole host is meant to be on the intranet.
  bool admit_all = false;
  // Where the proc connector works (the initial network namespace), entered to watch execs
  // when the daemon itself runs in another network namespace.
  std::string exec_rules_netns = "/proc/1/ns/net";

  std::chrono::milliseconds reconnect_min{200};
  std::chrono::milliseconds reconnect_max{5000};
  std::chrono::seconds reconnect_timeout{300};
  std::chrono::seconds connect_timeout{20};
  std::chrono::seconds flow_ttl{300};
  // X-CSTP-Base-MTU announced to the gateway; 0: from the TLS connection's path MTU and MSS
  // (cstp::path_mtu). A fixed value for paths that lose large packets without telling.
  int base_mtu = 0;

  std::string control_socket_path() const;
  SteeringOptions steering_options() const;
};

// Reads the [vpn] table of a TOML file over the defaults in `config`. Unknown keys are errors.
Status load_config_file(const std::string& path, VpnConfig& config);
// Checks what no default can fill in (gateway URL, a CA or a pin, names that fit the kernel).
Status validate(const VpnConfig& config);

// What a user proves identity with: a password or a client certificate.
struct LoginSecrets {
  cstp::Credentials credentials;
  std::string client_cert_file;
  std::string client_key_file;
};

// Reads a credentials file (TOML, top level):
//   username = "alice"            password = "..."          group = "staff" (optional)
//   or: certificate = "/path/cert.pem"   key = "/path/key.pem"
// Refuses a file that others than its owner can read or write (kInvalidArgument, saying the
// mode to set), a missing file, unknown keys, and a file with neither a password nor a
// certificate. Messages never include the password.
Result<LoginSecrets> load_credentials_file(const std::string& path);

// Asks for the password on the controlling terminal without echo (kUnavailable when there is
// no terminal).
Result<std::string> prompt_password(const std::string& username, const std::string& gateway);

}  // namespace steward::vpn
