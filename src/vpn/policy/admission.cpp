#include "vpn/policy/admission.h"

#include "core/log.h"
#include "vpn/policy/netlink_message.h"
#include "vpn/policy/sock_diag.h"

#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

namespace steward::vpn {
namespace {

namespace fs = std::filesystem;

void log_admission(pid_t pid, const std::string& executable, std::string_view decision,
                   std::string_view reason) {
  log::get("vpn")->info("admission pid={} exe={} decision={} reason={}", pid,
                        executable.empty() ? "-" : executable, decision, reason);
}

// Socket inodes the process holds, from /proc/<pid>/fd ("socket:[1234]").
std::set<uint64_t> socket_inodes(pid_t pid) {
  std::set<uint64_t> inodes;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    auto target = fs::read_symlink(entry.path(), ec);
    if (ec) continue;
    auto text = target.string();
    if (text.starts_with("socket:[") && text.ends_with("]")) {
      inodes.insert(std::stoull(text.substr(8, text.size() - 9)));
    }
  }
  return inodes;
}

ProcessSocket from_diag(const diag::Socket& socket) {
  ProcessSocket out;
  out.family = socket.family;
  out.protocol = socket.protocol;
  out.local = socket.local;
  out.local_port = socket.local_port;
  out.remote = socket.remote;
  out.remote_port = socket.remote_port;
  out.inode = socket.inode;
  out.cgroup_id = socket.cgroup_id;
  out.interface = socket.interface;
  out.cookie = socket.cookie;
  return out;
}

diag::Socket to_diag(const ProcessSocket& socket) {
  diag::Socket out;
  out.family = socket.family;
  out.protocol = socket.protocol;
  out.local = socket.local;
  out.local_port = socket.local_port;
  out.remote = socket.remote;
  out.remote_port = socket.remote_port;
  out.inode = socket.inode;
  out.interface = socket.interface;
  out.cookie = socket.cookie;
  return out;
}

}  // namespace

std::string ProcessSocket::to_string() const {
  return fmt::format("{} {}:{} -> {}:{} inode={}", protocol == IPPROTO_TCP ? "tcp" : "udp",
                     local.to_string(), local_port, remote.to_string(), remote_port, inode);
}

std::string executable_of(pid_t pid) {
  std::error_code ec;
  auto target = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  return ec ? std::string() : target.string();
}

void log_adopted(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids)
    log_admission(pid, executable_of(pid), "admitted", "adopted");
}

Result<pid_t> run_admitted(const AdmittedCgroup& cgroup, const std::vector<std::string>& argv) {
  if (argv.empty()) return Error::make(ErrorCode::kInvalidArgument, "run: no command given");

  // Everything the child needs is prepared here: after fork it may only make system calls.
  std::vector<char*> arguments;
  for (const auto& argument : argv)
    arguments.push_back(const_cast<char*>(argument.c_str()));
  arguments.push_back(nullptr);
  std::string procs = cgroup.path() + "/cgroup.procs";
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    return Error::make(ErrorCode::kIo, "run: pipe: {}", std::strerror(errno));
  }

  pid_t child = ::fork();
  if (child < 0) {
    int saved = errno;
    ::close(report[0]);
    ::close(report[1]);
    return Error::make(ErrorCode::kIo, "run: fork: {}", std::strerror(saved));
  }
  if (child == 0) {
    // Join the group first ("0" is the writer itself), so nothing runs unadmitted.
    int stage = 1;
    int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && ::write(fd, "0", 1) == 1) {
      ::close(fd);
      stage = 2;
      ::execvp(arguments[0], arguments.data());
    }
    int failure[2] = {stage, errno};
    (void)!::write(report[1], failure, sizeof(failure));
    ::_exit(126);
  }

  // The report pipe closes on a successful exec and carries (stage, errno) otherwise.
  ::close(report[1]);
  int failure[2] = {0, 0};
  ssize_t got;
  do {
    got = ::read(report[0], failure, sizeof(failure));
  } while (got < 0 && errno == EINTR);
  ::close(report[0]);
  if (got == sizeof(failure)) {
    ::waitpid(child, nullptr, 0);
    log_admission(child, argv[0], "refused", failure[0] == 1 ? "cgroup" : "exec");
    if (failure[0] == 1) {
      return Error::make(ErrorCode::kIo, "run: cannot join cgroup {}: {}", cgroup.path(),
                         std::strerror(failure[1]));
    }
    return Error::make(ErrorCode::kNotFound, "run: cannot execute {}: {}", argv[0],
                       std::strerror(failure[1]));
  }
  log_admission(child, executable_of(child), "admitted", "run");
  return child;
}

Result<std::vector<ProcessSocket>> admit_process(const AdmittedCgroup& cgroup, pid_t pid) {
  std::string executable = executable_of(pid);
  if (auto status = cgroup.add_process(pid); !status) {
    log_admission(pid, executable, "refused", status.error().message);
    return status.error();
  }
  log_admission(pid, executable, "admitted", "pid");

  // Sockets opened before the move keep their cgroup: report them.
  auto inodes = socket_inodes(pid);
  std::vector<ProcessSocket> unadmitted;
  if (inodes.empty()) return unadmitted;
  for (int family : {AF_INET, AF_INET6}) {
    for (int protocol : {IPPROTO_TCP, IPPROTO_UDP}) {
      auto sockets = diag::dump(family, protocol);
      if (!sockets) return sockets.error().wrap("listing the sockets of the admitted process");
      for (const auto& socket : *sockets) {
        if (inodes.contains(socket.inode) && socket.cgroup_id != cgroup.id()) {
          unadmitted.push_back(from_diag(socket));
        }
      }
    }
  }
  if (!unadmitted.empty()) {
    log::get("vpn")->warn("admission pid={} unadmitted_sockets={} (opened before admission)", pid,
                          unadmitted.size());
  }
  return unadmitted;
}

Result<int> close_sockets(const std::vector<ProcessSocket>& sockets) {
  int closed = 0;
  auto logger = log::get("vpn");
  for (const auto& socket : sockets) {
    if (socket.protocol != IPPROTO_TCP) {
      logger->warn("socket={} not closed: only TCP sockets can be destroyed", socket.to_string());
      continue;
    }
    if (auto status = diag::destroy(to_diag(socket)); !status) return status.error();
    logger->info("socket={} closed (opened before admission)", socket.to_string());
    ++closed;
  }
  return closed;
}

ExecRuleWatcher::ExecRuleWatcher(int fd, const AdmittedCgroup& cgroup,
                                 std::vector<std::string> paths, OnAdmit on_admit)
    : fd_(fd), cgroup_(&cgroup), paths_(std::move(paths)), on_admit_(std::move(on_admit)) {}

ExecRuleWatcher::ExecRuleWatcher(ExecRuleWatcher&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      cgroup_(other.cgroup_),
      paths_(std::move(other.paths_)),
      on_admit_(std::move(other.on_admit_)) {}

ExecRuleWatcher& ExecRuleWatcher::operator=(ExecRuleWatcher&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    cgroup_ = other.cgroup_;
    paths_ = std::move(other.paths_);
    on_admit_ = std::move(other.on_admit_);
  }
  return *this;
}

ExecRuleWatcher::~ExecRuleWatcher() {
  if (fd_ >= 0) ::close(fd_);
}

Result<ExecRuleWatcher> ExecRuleWatcher::start(const AdmittedCgroup& cgroup,
                                               std::vector<std::string> paths, OnAdmit on_admit) {
  // Rules name executables as the kernel reports them: resolve symlinks once, here.
  for (auto& path : paths) {
    std::error_code ec;
    auto resolved = fs::canonical(path, ec);
    if (ec) {
      return Error::make(ErrorCode::kInvalidArgument, "exec rule {}: {}", path, ec.message());
    }
    path = resolved.string();
  }

  int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  if (fd < 0) {
    return Error::make(ErrorCode::kIo,
                       "exec rules: proc connector socket: {} (it exists only in the initial "
                       "network namespace)",
                       std::strerror(errno));
  }
  ExecRuleWatcher watcher(fd, cgroup, std::move(paths), std::move(on_admit));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = CN_IDX_PROC;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    return Error::make(ErrorCode::kIo, "exec rules: bind proc connector: {}", std::strerror(errno));
  }
  // nlmsghdr, cn_msg, then the operation as cn_msg's payload.
  constexpr size_t kSize = NLMSG_LENGTH(sizeof(cn_msg) + sizeof(proc_cn_mcast_op));
  alignas(nlmsghdr) char listen[kSize] = {};
  auto* header = reinterpret_cast<nlmsghdr*>(listen);
  header->nlmsg_len = kSize;
  header->nlmsg_type = NLMSG_DONE;
  auto* message = static_cast<cn_msg*>(NLMSG_DATA(header));
  message->id.idx = CN_IDX_PROC;
  message->id.val = CN_VAL_PROC;
  message->len = sizeof(proc_cn_mcast_op);
  proc_cn_mcast_op operation = PROC_CN_MCAST_LISTEN;
  std::memcpy(message->data, &operation, sizeof(operation));
  if (::send(fd, listen, kSize, 0) < 0) {
    return Error::make(ErrorCode::kIo, "exec rules: subscribe to exec events: {}",
                       std::strerror(errno));
  }
  return watcher;
}

Result<int> ExecRuleWatcher::poll_once() {
  int admitted = 0;
  alignas(nlmsghdr) char buffer[8192];
  for (;;) {
    ssize_t received = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (received < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return admitted;
      if (errno == EINTR) continue;
      return Error::make(ErrorCode::kIo, "exec rules: receive: {}", std::strerror(errno));
    }
    int length = static_cast<int>(received);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer); netlink_message_ok(header, length);
         header = NLMSG_NEXT(header, length)) {
      auto* message = static_cast<cn_msg*>(NLMSG_DATA(header));
      if (message->id.idx != CN_IDX_PROC || message->len < sizeof(proc_event)) continue;
      // The event sits at a 4-byte offset; copy it out to read it aligned.
      proc_event event;
      std::memcpy(&event, message->data, sizeof(event));
      if (event.what != proc_event::PROC_EVENT_EXEC) continue;
      pid_t pid = event.event_data.exec.process_tgid;
      std::string executable = executable_of(pid);
      if (std::find(paths_.begin(), paths_.end(), executable) == paths_.end()) continue;
      if (auto status = cgroup_->add_process(pid); !status) {
        log_admission(pid, executable, "refused", status.error().message);
        continue;
      }
      log_admission(pid, executable, "admitted", "exec-rule");
      ++admitted;
      if (on_admit_) on_admit_(pid, executable);
    }
  }
}

}  // namespace steward::vpn
