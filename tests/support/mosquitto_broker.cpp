#include "support/mosquitto_broker.h"

#include "support/files.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace steward::testing {
namespace {

namespace fs = std::filesystem;
constexpr auto kPollStep = std::chrono::milliseconds(5);

bool port_answers(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return connected;
}

Status run_openssl(const std::vector<std::string>& args, const std::string& dir) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::start(argv, {}, dir + "/openssl.log");
  if (!child) return child.error();
  int status = (*child)->wait(std::chrono::seconds(30));
  if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Error::make(ErrorCode::kIo, "openssl {} failed: {}", args[0], (*child)->log_tail());
  }
  return ok();
}

}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::start(const std::vector<std::string>& argv,
                                                          const std::vector<std::string>& env,
                                                          const std::string& log_path) {
  auto program = find_program(argv.at(0));
  if (!program) return program.error();
  // Everything the child needs is prepared before fork(): it may only make async-signal-safe
  // calls afterwards.
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry)
    environment.emplace_back(*entry);
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> args, envp;
  for (const auto& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  for (const auto& entry : environment)
    envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Error::make(ErrorCode::kIo, "cannot open {}: {}", log_path, std::strerror(errno));
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return Error::make(ErrorCode::kIo, "fork failed: {}", std::strerror(errno));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::setpgid(0, 0);
    ::execve(program->c_str(), args.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, log_path));
}

ChildProcess::~ChildProcess() {
  if (running()) stop(SIGTERM, std::chrono::seconds(5));
}

bool ChildProcess::running() {
  if (status_ >= 0) return false;
  int status = 0;
  pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) status_ = status;
  return status_ < 0;
}

int ChildProcess::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(kPollStep);
  }
  return status_;
}

int ChildProcess::stop(int signal, std::chrono::milliseconds grace) {
  if (!running()) return status_;
  ::kill(pid_, signal);
  if (wait(grace) >= 0) return status_;
  ::kill(pid_, SIGKILL);
  return wait(std::chrono::seconds(10));
}

std::string ChildProcess::log_tail(size_t bytes) const {
  std::string text = read_file(log_path_);
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

Result<uint16_t> free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::make(ErrorCode::kIo, "socket: {}", std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    ::close(fd);
    return Error::make(ErrorCode::kIo, "cannot pick a loopback port: {}", std::strerror(errno));
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

Result<BrokerPki> make_broker_pki(const std::string& dir, const std::string& prefix) {
  BrokerPki pki;
  std::string base = dir + "/" + prefix;
  pki.ca_cert = base + "ca.pem";
  pki.server_cert = base + "server.pem";
  pki.server_key = base + "server-key.pem";
  pki.client_cert = base + "client.pem";
  pki.client_key = base + "client-key.pem";
  std::string ca_key = base + "ca-key.pem";
  std::string ext = base + "server.ext";
  std::ofstream(ext) << "subjectAltName=IP:127.0.0.1\n";
  std::vector<std::vector<std::string>> steps = {
      {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", ca_key, "-out", pki.ca_cert, "-subj", "/CN=steward-test-ca", "-days", "2"},
      {"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
       pki.server_key, "-out", base + "server.csr", "-subj", "/CN=127.0.0.1"},
      {"x509", "-req", "-in", base + "server.csr", "-CA", pki.ca_cert, "-CAkey", ca_key,
       "-CAcreateserial", "-out", pki.server_cert, "-days", "2", "-extfile", ext},
      {"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
       pki.client_key, "-out", base + "client.csr", "-subj", "/CN=steward-agent"},
      {"x509", "-req", "-in", base + "client.csr", "-CA", pki.ca_cert, "-CAkey", ca_key,
       "-CAcreateserial", "-out", pki.client_cert, "-days", "2"},
  };
  for (const auto& step : steps) {
    if (auto status = run_openssl(step, dir); !status) return status.error();
  }
  return pki;
}

Result<std::unique_ptr<MosquittoBroker>> MosquittoBroker::create(Options options) {
  std::unique_ptr<MosquittoBroker> broker(new MosquittoBroker());
  broker->options_ = options;
  char pattern[] = "/tmp/steward-mosquitto-XXXXXX";
  if (!::mkdtemp(pattern)) {
    return Error::make(ErrorCode::kIo, "mkdtemp: {}", std::strerror(errno));
  }
  broker->dir_ = pattern;
  auto port = free_loopback_port();
  if (!port) return port.error();
  broker->port_ = *port;
  if (options.tls) {
    auto tls_port = free_loopback_port();
    if (!tls_port) return tls_port.error();
    broker->tls_port_ = *tls_port;
    auto pki = make_broker_pki(broker->dir_, "");
    if (!pki) return pki.error();
    broker->pki_ = *pki;
  }
  if (auto status = broker->write_config(); !status) return status.error();
  if (auto status = broker->start(); !status) return status.error();
  return broker;
}

MosquittoBroker::~MosquittoBroker() {
  process_.reset();
  std::error_code ignored;
  if (!dir_.empty()) fs::remove_all(dir_, ignored);
}

std::string MosquittoBroker::uri() const {
  return fmt::format("tcp://127.0.0.1:{}", port_);
}

std::string MosquittoBroker::tls_uri() const {
  return fmt::format("ssl://127.0.0.1:{}", tls_port_);
}

Status MosquittoBroker::write_config() {
  std::ofstream config(dir_ + "/mosquitto.conf");
  // Loopback only; queues large enough for the burst tests; persistence for restarts.
  config << "user root\n"
         << "per_listener_settings false\n"
         << "allow_anonymous true\n"
         << "persistence true\n"
         << "persistence_location " << dir_ << "/\n"
         << "autosave_interval 1\n"
         << "max_queued_messages 100000\n"
         << "max_inflight_messages 100\n"
         << "set_tcp_nodelay true\n"
         << "log_dest file " << dir_ << "/mosquitto.log\n"
         << "log_type error\nlog_type warning\nlog_type notice\n"
         << "listener " << port_ << " 127.0.0.1\n";
  if (options_.tls) {
    config << "listener " << tls_port_ << " 127.0.0.1\n"
           << "cafile " << pki_.ca_cert << "\n"
           << "certfile " << pki_.server_cert << "\n"
           << "keyfile " << pki_.server_key << "\n"
           << "require_certificate true\n";
  }
  if (!config) return Error::make(ErrorCode::kIo, "cannot write {}/mosquitto.conf", dir_);
  return ok();
}

Status MosquittoBroker::start() {
  if (process_) return ok();
  auto child = ChildProcess::start({"mosquitto", "-c", dir_ + "/mosquitto.conf"}, {},
                                   dir_ + "/mosquitto.out");
  if (!child) return child.error();
  process_ = std::move(*child);
  return wait_until_listening();
}

Status MosquittoBroker::wait_until_listening() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_->running()) {
      auto tail = log_tail();
      process_.reset();
      return Error::make(ErrorCode::kUnavailable, "mosquitto exited at start: {}", tail);
    }
    if (port_answers(port_) && (!options_.tls || port_answers(tls_port_))) return ok();
    std::this_thread::sleep_for(kPollStep);
  }
  return Error::make(ErrorCode::kTimeout, "mosquitto did not listen on port {}: {}", port_,
                     log_tail());
}

Status MosquittoBroker::stop() {
  if (!process_) return ok();
  process_->stop(SIGTERM);
  process_.reset();
  return ok();
}

std::string MosquittoBroker::log_tail() const {
  std::string text = read_file(dir_ + "/mosquitto.log") + read_file(dir_ + "/mosquitto.out");
  return text.size() > 3000 ? text.substr(text.size() - 3000) : text;
}

}  // namespace steward::testing
