// ControllerProcess: the real controller daemon (`steward controller run`) as a child process of
// a test. It makes a temporary directory holding the SQLite database, the bearer token, the port
// file, a TOML config with the test's timings and a log file that captures the daemon's stdout
// and stderr; starts the daemon on a free loopback port; and waits until /healthz answers.
//
// Ownership: the object owns its directory and the one process it started (by PID, never by
// name). The destructor ends that process (SIGTERM, SIGKILL after a grace period, waitpid) and
// removes the directory, also when a test failed; the child also gets SIGKILL if the test
// process dies first (PR_SET_PDEATHSIG). The log survives kill() and restart() (appended), so
// print log_tail() before the object goes away when a test failed.
// Threading: not thread-safe; every call blocks (it waits for the child or for HTTP answers).
// Failures: start() and restart() return an Error with the log tail when the daemon did not
// come up.
#pragma once

#include "core/http.h"
#include "core/result.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace steward::testing {

class ControllerProcess {
 public:
  // Timings written to the [controller] table of the config file (see controller/daemon.h).
  // The defaults are short so integration tests converge quickly.
  struct Options {
    std::chrono::milliseconds reconcile_interval{500};
    std::chrono::milliseconds reconcile_settle{150};
    std::chrono::milliseconds retry_initial{50};
    std::chrono::milliseconds retry_max{400};
    std::chrono::milliseconds ovsdb_echo_interval{1000};
    std::string log_level = "debug";
    std::chrono::milliseconds start_timeout{15'000};
  };

  static Result<std::unique_ptr<ControllerProcess>> start(Options options);
  static Result<std::unique_ptr<ControllerProcess>> start() { return start(Options()); }
  ~ControllerProcess();
  ControllerProcess(const ControllerProcess&) = delete;
  ControllerProcess& operator=(const ControllerProcess&) = delete;

  // A client that sends the daemon's bearer token. Replaced by restart() (the port changes).
  http::Client& client() { return *client_; }
  // A new client with the given token (empty: no Authorization header), for auth tests.
  std::unique_ptr<http::Client> client_with_token(const std::string& token) const;

  const std::string& token() const { return token_; }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  const std::string& dir() const { return dir_; }
  std::string database_path() const { return dir_ + "/controller.db"; }
  std::string log_path() const { return dir_ + "/controller.log"; }

  // Sends `signal` to the daemon and waits until it has exited (reaped).
  Status kill(int signal);
  // Starts the daemon again on the same database, token and config (ending the running one
  // first with SIGTERM), and waits until /healthz answers on its new port.
  Status restart();
  // The last `bytes` of the daemon's log (stdout and stderr of every run so far).
  std::string log_tail(size_t bytes = 6000) const;
  // The first AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report in the log
  // (a sanitizer build prints them there, leaks once the daemon exited), or "" when none.
  std::string sanitizer_report() const;

 private:
  explicit ControllerProcess(Options options) : options_(std::move(options)) {}
  Status write_config() const;
  Status spawn();
  Status wait_until_healthy();
  void end(std::chrono::milliseconds grace);

  Options options_;
  std::string dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string token_;
  std::unique_ptr<http::Client> client_;
};

}  // namespace steward::testing
