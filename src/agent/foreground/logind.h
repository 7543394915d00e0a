// LogindSource: follows which OS is in the foreground through systemd-logind over D-Bus: the
// seat's ActiveSession property (org.freedesktop.login1.Seat), and the active session's user
// name (org.freedesktop.login1.Session.Name), mapped to a system id by a configured table whose
// keys are session ids or user names (session id first). An active session that is not in the
// table, or no active session, means no managed OS is in the foreground.
//
// It reads the current value at start and after every reconnect to the bus, not only changes,
// so a switch that happened while the agent or the bus was down is not lost.
//
// Threading: the source owns its sd-bus connection and a thread that serves it; `on_change`
// runs on that thread whenever the mapped system changes (and once at start). stop() and the
// destructor join the thread.
#pragma once

#include "core/result.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

namespace steward::agent {

struct LogindOptions {
  std::string bus_address;  // empty: the system bus
  std::string seat = "seat0";
  std::map<std::string, std::string> sessions;  // session id or user name -> system id
};

class LogindSource {
 public:
  using OnChange = std::function<void(std::optional<std::string> system)>;

  LogindSource(LogindOptions options, OnChange on_change);
  ~LogindSource();
  LogindSource(const LogindSource&) = delete;
  LogindSource& operator=(const LogindSource&) = delete;

  // Connects, reads the current foreground (reported through on_change before this returns)
  // and starts following changes. Errors when the bus or logind cannot be reached.
  Status start();
  void stop();

  // The system id the current active session maps to (blocking D-Bus calls; on the caller's
  // thread). Exposed for tests.
  struct Bus;

 private:
  void serve();
  Status connect();
  Result<std::optional<std::string>> read_foreground();
  void publish(std::optional<std::string> system);

  LogindOptions options_;
  OnChange on_change_;
  std::unique_ptr<Bus> bus_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> dirty_{false};
  std::optional<std::optional<std::string>> last_;
  std::thread thread_;
};

}  // namespace steward::agent
