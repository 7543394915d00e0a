// OvsSandbox: a private Open vSwitch database server for tests and demos. It creates a temporary
// directory, a database from the installed vswitch schema, and runs `ovsdb-server` on it,
// listening on a unix socket in that directory and optionally on loopback TCP and SSL ports
// (picked by the kernel, discovered from the server's own sockets). The Open_vSwitch root row
// and one bridge (datapath_type=netdev) are created. Optionally it also runs `ovs-vswitchd`
// (userspace datapath) inside a network namespace the sandbox creates.
//
// Ownership: the sandbox owns the directory, the processes it spawned (by PID, never by name)
// and the namespace; the destructor ends and removes all of them, also when a test fails.
// Children get SIGTERM if the test process dies first (PR_SET_PDEATHSIG).
// Threading: not thread-safe; blocking calls (they wait for child processes).
// Failures: every method returns an Error naming the command and its stderr / log tail.
#pragma once

#include "core/result.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/json/value.hpp>

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace steward::testing {

// Runs `argv` (argv[0] looked up in PATH) to completion with `env` added to the environment.
// Captures stdout and stderr through files in `scratch_dir`.
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                  const std::string& scratch_dir,
                                  const std::vector<std::string>& env = {});

// Runs `io` until `condition` holds (checked after every handler) or `timeout` passes; returns
// whether it held. Keeps `io` from running out of work meanwhile. For tests: synchronisation on
// a condition with a deadline, never a sleep.
bool run_io_until(boost::asio::io_context& io, const std::function<bool()>& condition,
                  std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A throw-away PKI made with the `openssl` command: a self-signed CA, and a server and a client
// certificate (CN 127.0.0.1 / steward-client) signed by it. PEM file paths.
struct TestPki {
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
};
// Writes the files into `dir` with names starting with `prefix`.
Result<TestPki> make_test_pki(const std::string& dir, const std::string& prefix);

class OvsSandbox {
 public:
  struct ServerTls {
    std::string private_key;
    std::string certificate;
    std::string ca_cert;  // client certificates must chain to this CA
  };
  struct Options {
    std::string bridge = "br-int";
    bool tcp = false;              // also listen on ptcp:<port>:127.0.0.1
    std::optional<ServerTls> ssl;  // also listen on pssl:<port>:127.0.0.1
    bool vswitchd = false;         // also run ovs-vswitchd in a network namespace
  };

  static Result<std::unique_ptr<OvsSandbox>> create(Options options);
  static Result<std::unique_ptr<OvsSandbox>> create() { return create(Options()); }
  ~OvsSandbox();
  OvsSandbox(const OvsSandbox&) = delete;
  OvsSandbox& operator=(const OvsSandbox&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& bridge() const { return options_.bridge; }
  std::string socket_path() const { return dir_ + "/db.sock"; }
  std::string unix_endpoint() const { return "unix:" + socket_path(); }
  // "tcp:127.0.0.1:<port>" / "ssl:127.0.0.1:<port>"; empty unless enabled.
  std::string tcp_endpoint() const;
  std::string ssl_endpoint() const;
  // The namespace ovs-vswitchd runs in; empty unless enabled.
  const std::string& netns() const { return netns_; }
  bool running() const { return server_pid_ > 0; }
  pid_t server_pid() const { return server_pid_; }

  // Ends ovsdb-server (SIGTERM, SIGKILL after 5 s) and waits for it.
  Status stop();
  // Starts ovsdb-server again on the same database file, socket and ports.
  Status start();

  // Runs `ovs-vsctl --no-wait --db=<unix endpoint> <args>` and returns its stdout.
  Result<std::string> vsctl(const std::vector<std::string>& args);
  // Like vsctl(), but returns once ovs-vswitchd applied the change (needs Options::vswitchd).
  Result<std::string> vsctl_and_wait(const std::vector<std::string>& args);
  // Adds a port (with its interface) that is not Steward's to the bridge.
  Status add_foreign_port(const std::string& name);
  // Creates a QoS row that is not Steward's; returns its uuid.
  Result<std::string> add_foreign_qos();

 private:
  explicit OvsSandbox(Options options) : options_(std::move(options)) {}
  Status create_database();
  Status spawn_server();
  Status wait_until_serving();
  Status discover_ports();
  Status initialise();
  Result<std::string> run_vsctl(const std::vector<std::string>& args, bool wait);
  Status start_vswitchd();
  void stop_vswitchd();
  std::vector<std::string> ovs_env() const;
  std::string log_tail(const std::string& file) const;

  Options options_;
  std::string dir_;
  pid_t server_pid_ = -1;
  pid_t vswitchd_pid_ = -1;
  std::string netns_;
  uint16_t tcp_port_ = 0;
  uint16_t ssl_port_ = 0;
};

// A scripted stand-in for an OVSDB server on a unix socket, for fault injection the real server
// cannot do (wrong replies, stale counts, missing methods). It accepts one connection after
// another on the caller's io_context, records what the current one sent, and writes whatever
// the test tells it to.
class ScriptedOvsdbPeer {
 public:
  ScriptedOvsdbPeer(boost::asio::io_context& io, const std::string& socket_path);

  int accepted() const { return accepted_; }
  bool connected() const { return client_ && client_->is_open(); }
  // The messages received on the current connection, parsed.
  std::vector<boost::json::value> received() const;
  // Sends raw bytes on the current connection.
  void send(std::string bytes);
  // Replies to a received request with `result` (JSON text).
  void reply(const boost::json::value& request, std::string_view result);
  void hang_up();

 private:
  void accept();
  void read(std::shared_ptr<boost::asio::local::stream_protocol::socket> socket);

  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<boost::asio::local::stream_protocol::socket> client_;
  std::array<char, 4096> buffer_{};
  std::string received_;
  int accepted_ = 0;
};

}  // namespace steward::testing
