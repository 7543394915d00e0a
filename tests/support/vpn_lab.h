// A VPN laboratory for tests: three network namespaces (client, gateway, intranet) joined by
// veth pairs with 198.18.0.0/15 addresses, a CA with server and client certificates, and real
// ocserv instances in the gateway namespace. Everything it creates (namespaces, processes,
// files) is removed by its destructor, also when a test fails half-way.
//
//   client 198.18.1.2 --- 198.18.1.1 gateway 198.18.2.1 --- 198.18.2.2 intranet
//   tunnel pool 198.18.100.0/24 (198.18.101.0/24 with GatewayOptions::other_pool),
//   split-include 198.18.2.0/24, DNS 198.18.2.2, default domain intranet.test
//
// Daemon and end-to-end tests reuse it: they start their own peers inside the namespaces with
// run_in() / spawn_in(), and Steward's TUN and steering in the client namespace.
#pragma once

#include "core/result.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace steward::testing {

// What ocserv is asked to offer.
struct GatewayOptions {
  enum class Auth { kPassword, kCertificate };
  Auth auth = Auth::kPassword;
  bool dtls = true;     // udp-port set; false: no DTLS offered
  int dpd_seconds = 2;  // dpd / mobile-dpd
  int keepalive_seconds = 10;
  int cookie_timeout_seconds = 60;
  bool other_pool = false;    // hand out 198.18.101.0/24 instead of 198.18.100.0/24
  bool split_include = true;  // false: no route sent, the gateway takes all traffic
  int rekey_seconds = 172800;
  std::string rekey_method = "ssl";  // or "new-tunnel": the client reconnects after rekey_seconds
};

// A process started in a namespace; killed (SIGKILL) and reaped by its destructor.
class NsProcess {
 public:
  NsProcess() = default;
  explicit NsProcess(pid_t pid) : pid_(pid) {}
  ~NsProcess();
  NsProcess(NsProcess&& other) noexcept : pid_(other.pid_), exit_status_(other.exit_status_) {
    other.pid_ = -1;
  }
  NsProcess& operator=(NsProcess&& other) noexcept;
  pid_t pid() const { return pid_; }
  // Sends `signal` and waits up to `timeout` for the exit; SIGKILL after that. Returns the
  // wait status.
  int stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool running() const;
  // The wait status once running() or stop() has seen the exit.
  std::optional<int> exit_status() const { return exit_status_; }

 private:
  pid_t pid_ = -1;
  mutable std::optional<int> exit_status_;
};

class VpnLab {
 public:
  static constexpr const char* kClientAddress = "198.18.1.2";
  static constexpr const char* kGatewayOutside = "198.18.1.1";
  static constexpr const char* kGatewayInside = "198.18.2.1";
  static constexpr const char* kIntranetAddress = "198.18.2.2";
  static constexpr const char* kIntranetPrefix = "198.18.2.0/24";
  static constexpr const char* kPool = "198.18.100.0/24";
  static constexpr const char* kOtherPool = "198.18.101.0/24";
  static constexpr const char* kDomain = "intranet.test";
  static constexpr const char* kServerName = "gateway.steward.test";
  static constexpr const char* kUsername = "alice";
  static constexpr const char* kPassword = "correct horse battery";

  // Builds namespaces, links and certificates. Fails with a message naming the step (and the
  // command's output) when the machine cannot do it (not root, no ocserv, ...).
  static Result<std::unique_ptr<VpnLab>> create();
  ~VpnLab();

  // Namespace names (unique per lab: they carry the PID and a counter).
  const std::string& client_ns() const { return client_ns_; }
  const std::string& gateway_ns() const { return gateway_ns_; }
  const std::string& intranet_ns() const { return intranet_ns_; }

  // Files in the lab's temporary directory.
  std::string ca_file() const;           // the CA that signed the server and client certs
  std::string other_ca_file() const;     // an unrelated CA (for "wrong CA" tests)
  std::string server_cert_file() const;  // its SANs: kServerName and 198.18.1.1
  std::string client_cert_file() const;  // CN = kUsername, signed by ca_file()
  std::string client_key_file() const;
  const std::string& dir() const { return dir_; }

  // Starts ocserv in the gateway namespace on `port` (a fixed port per lab so a restart keeps
  // it) and waits until it accepts TCP connections. One instance per lab at a time.
  Status start_gateway(const GatewayOptions& options = {});
  // Stops it (SIGTERM, then SIGKILL) and waits for the port to be free.
  Status stop_gateway();
  // stop_gateway() then start_gateway(options) on the same port.
  Status restart_gateway(const GatewayOptions& options);
  pid_t gateway_pid() const { return ocserv_.pid(); }
  uint16_t gateway_port() const { return port_; }
  // "https://198.18.1.1:<port>/".
  std::string gateway_url() const;
  // ocserv's output so far (for failure messages).
  std::string gateway_log() const;

  // Drops UDP to the gateway's DTLS port (nft table in the gateway namespace).
  Status block_dtls(bool blocked);
  // Drops all traffic of the gateway's TCP and UDP ports: the gateway stops answering.
  Status blackhole_gateway(bool blocked);

  // Runs `fn` on a new thread that has joined namespace `ns`, and waits for it. Sockets it
  // opens belong to that namespace (and keep belonging to it when used from other threads).
  static Status run_in(const std::string& ns, const std::function<void()>& fn);
  // Runs a shell command in namespace `ns` (`ip netns exec`); returns its output or an error
  // with the output and exit status.
  static Result<std::string> exec_in(const std::string& ns, const std::string& command);
  // Starts `argv` in namespace `ns` (via `ip netns exec`), output to `log_file`.
  static Result<NsProcess> spawn_in(const std::string& ns, const std::vector<std::string>& argv,
                                    const std::string& log_file);

 private:
  VpnLab() = default;
  Status build();
  Status make_certificates();
  Status write_gateway_config(const GatewayOptions& options);

  std::string client_ns_, gateway_ns_, intranet_ns_;
  std::string dir_;
  uint16_t port_ = 4443;
  NsProcess ocserv_;
  bool firewall_ = false;
};

}  // namespace steward::testing
