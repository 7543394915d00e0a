#include "support/controller_process.h"

#include "support/files.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace steward::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kStopGrace = std::chrono::seconds(5);
constexpr auto kPollStep = std::chrono::milliseconds(10);

std::string binary_path() {
  return std::string(STEWARD_BINARY_DIR) + "/src/cli/steward";
}

// Our environment without STEWARD_TOKEN, which would override the daemon's token file.
std::vector<std::string> child_environment() {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    if (!text.starts_with("STEWARD_TOKEN=")) env.emplace_back(text);
  }
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& text : strings)
    pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Whether child `pid` has exited; reaps it if so.
bool reaped(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

}  // namespace

Result<std::unique_ptr<ControllerProcess>> ControllerProcess::start(Options options) {
  std::unique_ptr<ControllerProcess> process(new ControllerProcess(std::move(options)));
  std::string pattern = (fs::temp_directory_path() / "steward-controller-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    return Error::make(ErrorCode::kIo, "mkdtemp failed: {}", std::strerror(errno));
  process->dir_ = pattern;
  if (auto status = process->write_config(); !status) return status.error();
  if (auto status = process->spawn(); !status) return status.error();
  if (auto status = process->wait_until_healthy(); !status) return status.error();
  return process;
}

ControllerProcess::~ControllerProcess() {
  end(kStopGrace);
  if (!dir_.empty()) {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
}

std::unique_ptr<http::Client> ControllerProcess::client_with_token(const std::string& token) const {
  return std::make_unique<http::Client>("127.0.0.1", port_, token);
}

Status ControllerProcess::write_config() const {
  std::ofstream out(dir_ + "/controller.toml");
  out << "[controller]\n"
      << fmt::format("reconcile_interval_ms = {}\n", options_.reconcile_interval.count())
      << fmt::format("reconcile_settle_ms = {}\n", options_.reconcile_settle.count())
      << fmt::format("retry_initial_ms = {}\n", options_.retry_initial.count())
      << fmt::format("retry_max_ms = {}\n", options_.retry_max.count())
      << fmt::format("ovsdb_echo_interval_ms = {}\n", options_.ovsdb_echo_interval.count());
  out.close();
  if (!out) return Error::make(ErrorCode::kIo, "cannot write {}/controller.toml", dir_);
  return ok();
}

Status ControllerProcess::spawn() {
  std::error_code ignored;
  fs::remove(dir_ + "/controller.port", ignored);
  std::vector<std::string> argv = {binary_path(),
                                   "controller",
                                   "run",
                                   "--config",
                                   dir_ + "/controller.toml",
                                   "--database",
                                   database_path(),
                                   "--listen",
                                   "127.0.0.1",
                                   "--port",
                                   "0",
                                   "--port-file",
                                   dir_ + "/controller.port",
                                   "--token-file",
                                   dir_ + "/controller.token",
                                   "--log-level",
                                   options_.log_level};
  std::vector<std::string> env = child_environment();
  std::vector<char*> args = c_strings(argv);
  std::vector<char*> envp = c_strings(env);
  int log = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log < 0 || null < 0) {
    if (log >= 0) ::close(log);
    if (null >= 0) ::close(null);
    return Error::make(ErrorCode::kIo, "cannot open {}: {}", log_path(), std::strerror(errno));
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::close_range(3, ~0U, 0);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(log);
  ::close(null);
  if (pid < 0) return Error::make(ErrorCode::kIo, "fork failed: {}", std::strerror(fork_errno));
  pid_ = pid;
  append_line(log_path(), fmt::format("=== test harness: started controller pid={}", pid));
  return ok();
}

Status ControllerProcess::wait_until_healthy() {
  auto deadline = Clock::now() + options_.start_timeout;
  auto failed = [&](std::string why) {
    return Error::make(ErrorCode::kUnavailable, "controller pid={} {}; log tail:\n{}", pid_, why,
                       log_tail());
  };
  // The daemon writes the port file once it listens; the token file exists before that.
  port_ = 0;
  while (port_ == 0) {
    if (reaped(pid_)) {
      pid_ = -1;
      return failed("exited during start");
    }
    if (Clock::now() > deadline) return failed("wrote no port file");
    std::string text = read_file(dir_ + "/controller.port");
    if (!text.empty() && text.back() == '\n')
      port_ = static_cast<uint16_t>(std::atoi(text.c_str()));
    if (port_ == 0) std::this_thread::sleep_for(kPollStep);
  }
  std::string token = read_file(dir_ + "/controller.token");
  token_ = token.substr(0, token.find('\n'));
  if (token_.empty()) return failed("left an empty token file");
  client_ = std::make_unique<http::Client>("127.0.0.1", port_, token_);
  for (;;) {
    auto answer = client_->request("GET", "/healthz");
    if (answer && answer->status == 200) return ok();
    if (reaped(pid_)) {
      pid_ = -1;
      return failed("exited before /healthz answered");
    }
    if (Clock::now() > deadline) return failed("did not answer /healthz");
    std::this_thread::sleep_for(kPollStep);
  }
}

Status ControllerProcess::kill(int signal) {
  if (pid_ <= 0) return Error{ErrorCode::kInvalidArgument, "the controller is not running"};
  append_line(log_path(), fmt::format("=== test harness: signal {} to pid={}", signal, pid_));
  if (::kill(pid_, signal) != 0) {
    return Error::make(ErrorCode::kIo, "kill({}, {}) failed: {}", pid_, signal,
                       std::strerror(errno));
  }
  auto deadline = Clock::now() + kStopGrace;
  while (!reaped(pid_)) {
    if (Clock::now() > deadline) {
      end(std::chrono::milliseconds(0));
      return Error::make(ErrorCode::kTimeout, "controller did not exit on signal {}", signal);
    }
    std::this_thread::sleep_for(kPollStep);
  }
  pid_ = -1;
  return ok();
}

Status ControllerProcess::restart() {
  end(kStopGrace);
  client_.reset();
  if (auto status = spawn(); !status) return status;
  return wait_until_healthy();
}

void ControllerProcess::end(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  auto deadline = Clock::now() + grace;
  while (!reaped(pid_)) {
    if (Clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(kPollStep);
  }
  pid_ = -1;
}

std::string ControllerProcess::log_tail(size_t bytes) const {
  std::string text = read_file(log_path());
  return text.size() > bytes ? "..." + text.substr(text.size() - bytes) : text;
}

std::string ControllerProcess::sanitizer_report() const {
  std::string text = read_file(log_path());
  size_t found = std::string::npos;
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"})
    found = std::min(found, text.find(marker));
  if (found == std::string::npos) return "";
  size_t line = text.rfind('\n', found);
  return text.substr(line == std::string::npos ? 0 : line + 1, 4000);
}

}  // namespace steward::testing
