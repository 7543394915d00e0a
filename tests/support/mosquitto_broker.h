// MosquittoBroker: a private Mosquitto broker for the agent's tests and benchmark. It writes its
// own configuration into a fresh temporary directory, listens on loopback only (a port the
// kernel picked; optionally a second, TLS port with a throw-away CA and client certificates),
// keeps its persistence file there, and can be stopped and started again on the same ports and
// data (a broker restart). ChildProcess runs any other program the tests need (the agent).
//
// Ownership: each object owns the processes it started, by PID (never by name), and its
// directory; destructors end them (SIGTERM, then SIGKILL) and remove the directory, also when a
// test fails. Children get SIGKILL if the test process dies first (PR_SET_PDEATHSIG).
// Threading: not thread-safe; the methods block while waiting for processes.
#pragma once

#include "core/result.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace steward::testing {

// A child process with its output in files.
class ChildProcess {
 public:
  // Starts `argv` (argv[0] looked up in PATH) with `env` ("KEY=value") added to ours;
  // stdout and stderr go to `log_path`.
  static Result<std::unique_ptr<ChildProcess>> start(const std::vector<std::string>& argv,
                                                     const std::vector<std::string>& env,
                                                     const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `signal` and waits for the exit; returns the wait status.
  int stop(int signal, std::chrono::milliseconds grace = std::chrono::seconds(5));
  // Waits for the process to exit by itself; nullopt-like -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  std::string log_tail(size_t bytes = 4000) const;

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  int status_ = -1;
};

// Files of a throw-away PKI: a CA, a server certificate for 127.0.0.1 (with the IP in its
// subjectAltName) and a client certificate, all signed by the CA.
struct BrokerPki {
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
};
Result<BrokerPki> make_broker_pki(const std::string& dir, const std::string& prefix);

class MosquittoBroker {
 public:
  struct Options {
    bool tls = false;  // also a TLS listener that requires client certificates
  };
  static Result<std::unique_ptr<MosquittoBroker>> create(Options options);
  static Result<std::unique_ptr<MosquittoBroker>> create() { return create(Options()); }
  ~MosquittoBroker();

  const std::string& dir() const { return dir_; }
  uint16_t port() const { return port_; }
  uint16_t tls_port() const { return tls_port_; }
  std::string uri() const;      // tcp://127.0.0.1:<port>
  std::string tls_uri() const;  // ssl://127.0.0.1:<tls port>
  const BrokerPki& pki() const { return pki_; }
  bool running() const { return process_ != nullptr; }

  // Ends the broker (SIGTERM: it saves its persistence file) and waits for it.
  Status stop();
  // Starts it again on the same ports and data.
  Status start();
  std::string log_tail() const;

 private:
  MosquittoBroker() = default;
  Status write_config();
  Status wait_until_listening();

  Options options_;
  std::string dir_;
  uint16_t port_ = 0;
  uint16_t tls_port_ = 0;
  BrokerPki pki_;
  std::unique_ptr<ChildProcess> process_;
};

// A free loopback TCP port, as the kernel picks it (released again before returning).
Result<uint16_t> free_loopback_port();

}  // namespace steward::testing
