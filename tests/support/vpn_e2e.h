// End-to-end pieces on top of the VPN lab (vpn_lab.h): the intranet host's services, a packet
// capture on the client's outside link, and the real `steward vpn connect` daemon as a child
// process inside the client namespace, driven through its control socket and the `steward vpn`
// commands like a user would.
//
// Ownership: every object owns the processes it started (by PID) and the files it wrote; the
// destructors end the processes and remove the files, also when a test fails half-way.
// Not thread-safe; every call blocks.
#pragma once

#include "core/result.h"
#include "support/vpn_lab.h"

#include <boost/json/object.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace steward::testing {

// On the intranet host (198.18.2.2): an HTTP server on port 80 serving hello.txt ("hello from
// the intranet\n") and big.bin (300 000 bytes), a UDP echo on port 7, and dnsmasq answering
// wiki.intranet.test -> 198.18.2.2.
class IntranetServices {
 public:
  static constexpr const char* kHello = "hello from the intranet";
  static constexpr const char* kName = "wiki.intranet.test";
  static constexpr size_t kBigSize = 300000;
  static Result<std::unique_ptr<IntranetServices>> start(const VpnLab& lab);

 private:
  NsProcess http_, echo_, sink_, dns_;
};

// tcpdump on the client's outside link (c0), all packets, into a pcap file.
class Capture {
 public:
  static Result<std::unique_ptr<Capture>> start(const VpnLab& lab, const std::string& name);
  ~Capture();
  // Stops the capture (flushes the file) and counts the packets matching a tcpdump filter.
  Result<uint64_t> stop_and_count(const std::string& filter);
  // The matching packets as tcpdump prints them, for failure messages.
  std::string matching(const std::string& filter) const;

 private:
  std::string file_;
  NsProcess tcpdump_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// The daemon and the user's commands.
class VpnDaemonProcess {
 public:
  struct Options {
    bool certificate_login = false;
    std::string ca_file;  // empty: the lab's CA
    std::string pin;      // set: the gateway is checked by this pin instead of a CA
    bool dtls = true;
    std::vector<std::string> extra_config;  // more `key = value` lines for [vpn]
  };

  // Writes the config and credentials file and starts `steward vpn connect` in the client
  // namespace. Does not wait: see wait_connected().
  static Result<std::unique_ptr<VpnDaemonProcess>> start(VpnLab& lab, Options options);
  ~VpnDaemonProcess();

  // Polls `status` until the state is "connected" and the tunnel is up; the status then.
  Result<boost::json::object> wait_connected(std::chrono::milliseconds timeout);
  // Polls `status` until `predicate` holds.
  template <typename Predicate>
  Result<boost::json::object> wait_status(Predicate predicate, std::chrono::milliseconds timeout,
                                          const std::string& what);
  Result<boost::json::object> status() const;
  // Waits for the daemon to exit; its exit code (or -1 after the timeout).
  int wait_exit(std::chrono::milliseconds timeout);
  void kill_hard();  // SIGKILL, as a crash
  // Sends `signal` and waits for the exit; the exit code (-1 when it did not exit by itself).
  int signal_and_wait(int signal);
  // Starts the same daemon again (after an exit or a kill).
  Status restart();
  // Starts it with `steward vpn connect --background`, which returns once the tunnel is up; the
  // detached daemon is then stopped by disconnect() or, failing that, by its PID.
  CommandResult start_background();
  pid_t pid() const { return process_.pid(); }

  // `steward vpn <verb> --config <its config> args...` in the client namespace (or, with
  // in_client_namespace false, in the test's own).
  CommandResult vpn(const std::vector<std::string>& args, bool in_client_namespace = true) const;
  // `steward vpn run -- sh -c <script>` in the client namespace.
  CommandResult run_admitted(const std::string& script) const;
  // `sh -c <script>` in the client namespace, not admitted.
  CommandResult run_unadmitted(const std::string& script) const;

  // What is left in the kernel of this instance: a list of "kind name" lines, empty when
  // nothing (routing table, rules with its mark, nft table, cgroup, TUN).
  std::vector<std::string> leftovers() const;

  std::string log() const;
  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/run/e2e.sock"; }
  static constexpr const char* kTun = "stwe0";
  static constexpr int kTable = 7271;
  static constexpr const char* kMark = "0x7271";
  static constexpr const char* kNftTable = "steward_e2e";
  std::string cgroup_path() const;

 private:
  VpnDaemonProcess(VpnLab& lab, Options options) : lab_(lab), options_(std::move(options)) {}
  Status write_files();
  Status spawn();
  VpnLab& lab_;
  Options options_;
  std::string dir_;
  NsProcess process_;
};

template <typename Predicate>
Result<boost::json::object> VpnDaemonProcess::wait_status(Predicate predicate,
                                                          std::chrono::milliseconds timeout,
                                                          const std::string& what) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::optional<Error> last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto now = status();
    if (now && predicate(*now)) return now;
    if (!now) last = now.error();
    if (!process_.running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Error::make(ErrorCode::kTimeout, "{} did not happen ({}); daemon log:\n{}", what,
                     last ? last->message : "status answered", log());
}

}  // namespace steward::testing
