#include "agent/executors/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

extern char** environ;

namespace steward::agent {
namespace {

// Writes to a pipe whose reader may be gone already (a command that exits without reading its
// input) without raising SIGPIPE, which would end the whole process: the signal is blocked on
// this thread for the write (a pipe's SIGPIPE goes to the writing thread), and a pending one is
// taken back before the mask is restored. The command's exit status tells the rest.
void write_without_sigpipe(int fd, std::string_view data) {
  sigset_t pipe_only, previous;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
  ssize_t written = ::write(fd, data.data(), data.size());
  if (written < 0 && errno == EPIPE) {
    timespec no_wait{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &no_wait) > 0) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

struct Pipe {
  Fd read;
  Fd write;
};

Status make_pipe(Pipe& out) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Error::make(ErrorCode::kIo, "pipe: {}", std::strerror(errno));
  }
  out.read.reset(fds[0]);
  out.write.reset(fds[1]);
  return ok();
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& text : strings)
    out.push_back(text.data());
  out.push_back(nullptr);
  return out;
}

// Reads the child's output until it closes it or the deadline passes.
bool collect(int fd, std::chrono::steady_clock::time_point deadline, size_t limit,
             std::string& output) {
  char buffer[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd poll_fd{fd, POLLIN, 0};
    int ready = ::poll(&poll_fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return ready == 0 ? false : true;
    ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return true;
    size_t room = limit > output.size() ? limit - output.size() : 0;
    output.append(buffer, std::min(room, static_cast<size_t>(got)));
  }
}

}  // namespace

Result<ProcessResult> run_process(const std::vector<std::string>& argv,
                                  const ProcessOptions& options) {
  if (argv.empty()) return Error{ErrorCode::kInvalidArgument, "empty command"};
  // Everything the child needs is prepared before fork(): afterwards it may only make
  // async-signal-safe calls.
  std::vector<std::string> args = argv;
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry)
    env.emplace_back(*entry);
  env.insert(env.end(), options.env.begin(), options.env.end());
  auto arg_pointers = pointers(args);
  auto env_pointers = pointers(env);
  Pipe input, output;
  if (auto status = make_pipe(input); !status) return status.error();
  if (auto status = make_pipe(output); !status) return status.error();

  pid_t pid = ::fork();
  if (pid < 0) return Error::make(ErrorCode::kIo, "fork: {}", std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(input.read.get(), STDIN_FILENO);
    ::dup2(output.write.get(), STDOUT_FILENO);
    ::dup2(output.write.get(), STDERR_FILENO);
    ::signal(SIGPIPE, SIG_DFL);
    // The command must not hold the agent's sockets, database or broker connection open
    // (Asio and Paho do not mark them close-on-exec): a command that outlives a crashed agent
    // would otherwise keep them alive.
    ::close_range(3, ~0U, 0);
    ::execvpe(arg_pointers[0], arg_pointers.data(), env_pointers.data());
    const char message[] = "cannot execute the command\n";
    (void)!::write(STDERR_FILENO, message, sizeof(message) - 1);
    ::_exit(127);
  }
  input.read.reset();
  output.write.reset();

  // Input first (small: an instruction), then output until exit or the deadline.
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  if (!options.input.empty()) write_without_sigpipe(input.write.get(), options.input);
  input.write.reset();
  ProcessResult result;
  bool finished = collect(output.read.get(), deadline, options.output_limit, result.output);
  if (!finished) {
    result.timed_out = true;
    ::kill(-pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

}  // namespace steward::agent
