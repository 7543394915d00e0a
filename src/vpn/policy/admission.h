// Admission: putting processes into the admitted cgroup, three ways, each logged (logger
// "vpn", fields pid=, exe=, decision=, reason=).
//   run    start a command already admitted (it and every descendant);
//   admit  move a running process (its future children follow). Sockets it opened before
//          admission keep their old cgroup and stay unadmitted: list them, optionally close;
//   rules  admit processes by executable path as they exec (proc connector).
#pragma once

#include "core/result.h"
#include "vpn/steering/cgroup.h"

#include <boost/asio/ip/address.hpp>

#include <sys/types.h>

#include <array>
#include <cstdint>

#include <functional>
#include <string>
#include <vector>

namespace steward::vpn {

// Forks, moves the child into `cgroup` before it execs `argv` (argv[0] looked up in PATH),
// and returns the child's PID; the caller waits for it. If the move fails the child exits
// with status 126 without running the command, and the error is returned.
Result<pid_t> run_admitted(const AdmittedCgroup& cgroup, const std::vector<std::string>& argv);

// A socket of a process, as found through /proc/<pid>/fd and sock_diag.
struct ProcessSocket {
  int family = 0;    // AF_INET or AF_INET6
  int protocol = 0;  // IPPROTO_TCP or IPPROTO_UDP
  boost::asio::ip::address local;
  uint16_t local_port = 0;
  boost::asio::ip::address remote;  // unspecified when unconnected
  uint16_t remote_port = 0;
  uint64_t inode = 0;
  uint64_t cgroup_id = 0;
  // What SOCK_DESTROY needs to name the socket exactly.
  uint32_t interface = 0;
  std::array<uint32_t, 2> cookie{};

  std::string to_string() const;  // "tcp 198.18.0.2:40000 -> 198.18.4.1:80 inode=1234"
};

// Moves a running process into `cgroup`. Returns the TCP and UDP sockets (IPv4 and IPv6) it
// holds that were created before and so are *not* admitted; the caller reports them and may
// pass them to close_sockets(). kNotFound when the process does not exist.
Result<std::vector<ProcessSocket>> admit_process(const AdmittedCgroup& cgroup, pid_t pid);

// Closes sockets with SOCK_DESTROY (TCP only: the kernel aborts the connection, the process
// sees ECONNABORTED). UDP sockets are reported as not closable. Returns how many were closed.
Result<int> close_sockets(const std::vector<ProcessSocket>& sockets);

// The executable of a process (/proc/<pid>/exe), empty when it has exited or is a kernel
// thread.
std::string executable_of(pid_t pid);

// Logs the processes of a group adopted from an earlier run (Steering::adopted_processes()),
// one admission line each (reason=adopted): they stay admitted without a new request.
void log_adopted(const std::vector<pid_t>& pids);

// Admits processes whose executable is one of `paths` (exact, after resolving symlinks) when
// they exec, using the proc connector (NETLINK_CONNECTOR, PROC_EVENT_EXEC). The connector
// only delivers in the initial network namespace: create the watcher there.
// Not thread-safe; drive it from one thread (fd() with Asio, or poll_once()). `cgroup` must
// outlive the watcher (it is the Steering's).
class ExecRuleWatcher {
 public:
  using OnAdmit = std::function<void(pid_t pid, const std::string& executable)>;

  static Result<ExecRuleWatcher> start(const AdmittedCgroup& cgroup, std::vector<std::string> paths,
                                       OnAdmit on_admit = {});
  ExecRuleWatcher(ExecRuleWatcher&& other) noexcept;
  ExecRuleWatcher& operator=(ExecRuleWatcher&& other) noexcept;
  ExecRuleWatcher(const ExecRuleWatcher&) = delete;
  ExecRuleWatcher& operator=(const ExecRuleWatcher&) = delete;
  ~ExecRuleWatcher();

  int fd() const { return fd_; }
  // Reads pending events without blocking and admits matching processes. Returns how many
  // were admitted. kIo when the socket fails (e.g. ENOBUFS: events were lost).
  Result<int> poll_once();

 private:
  ExecRuleWatcher(int fd, const AdmittedCgroup& cgroup, std::vector<std::string> paths,
                  OnAdmit on_admit);
  int fd_ = -1;
  const AdmittedCgroup* cgroup_ = nullptr;
  std::vector<std::string> paths_;
  OnAdmit on_admit_;
};

}  // namespace steward::vpn
