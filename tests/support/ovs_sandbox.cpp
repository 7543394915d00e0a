#include "support/ovs_sandbox.h"

#include "controller/southbound/ovsdb/message.h"
#include "support/files.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

extern char** environ;

namespace steward::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(10);
constexpr auto kStopGrace = std::chrono::seconds(5);
constexpr auto kPollStep = std::chrono::milliseconds(5);

// The environment of a child: ours, with `extra` ("KEY=value") replacing same-named entries.
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    std::string_view key = text.substr(0, text.find('='));
    bool replaced = false;
    for (const std::string& override_entry : extra)
      replaced = replaced || override_entry.substr(0, override_entry.find('=')) == key;
    if (!replaced) env.emplace_back(text);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& text : strings)
    pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Starts `argv` with stdout to `out_path` and stderr to `err_path`. The child gets SIGTERM when
// this process dies, and inherits no descriptor but 0, 1 and 2.
Result<pid_t> spawn(std::vector<std::string> argv, const std::vector<std::string>& extra_env,
                    const std::string& out_path, const std::string& err_path) {
  auto program = find_program(argv.at(0));
  if (!program) return program.error();
  std::vector<std::string> env = child_environment(extra_env);
  std::vector<char*> args = c_strings(argv);
  std::vector<char*> envp = c_strings(env);
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || err < 0 || null < 0)
    return Error::make(ErrorCode::kIo, "cannot open output files for {}: {}", argv[0],
                       std::strerror(errno));
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(126);
    ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::close_range(3, ~0U, 0);
    ::execve(program->c_str(), args.data(), envp.data());
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(out);
  ::close(err);
  ::close(null);
  if (pid < 0)
    return Error::make(ErrorCode::kIo, "fork for {} failed: {}", argv[0],
                       std::strerror(fork_errno));
  return pid;
}

// Ends `pid` (a child of ours): SIGTERM, then SIGKILL after the grace period.
void end_child(pid_t pid) {
  ::kill(pid, SIGTERM);
  auto deadline = Clock::now() + kStopGrace;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return;
    }
    std::this_thread::sleep_for(kPollStep);
  }
}

bool child_exited(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

bool unix_socket_answers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return connected;
}

// TCP ports `pid` listens on: its socket inodes matched against the LISTEN rows of
// /proc/<pid>/net/tcp.
std::set<uint16_t> listening_ports(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ignored)) {
    std::string target = fs::read_symlink(entry.path(), ignored).string();
    if (target.starts_with("socket:[")) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::set<uint16_t> ports;
  std::istringstream table(read_file(fmt::format("/proc/{}/net/tcp", pid)));
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
        timeout >> inode;
    if (state == "0A" && inodes.contains(inode))
      ports.insert(
          static_cast<uint16_t>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16)));
  }
  return ports;
}

std::atomic<int> netns_counter{0};

}  // namespace

bool run_io_until(boost::asio::io_context& io, const std::function<bool()>& condition,
                  std::chrono::milliseconds timeout) {
  auto guard = boost::asio::make_work_guard(io);
  auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    io.restart();
    io.run_one_until(deadline);
  }
  return true;
}

Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                  const std::string& scratch_dir,
                                  const std::vector<std::string>& env) {
  std::string out_path = scratch_dir + "/command.out";
  std::string err_path = scratch_dir + "/command.err";
  auto pid = spawn(argv, env, out_path, err_path);
  if (!pid) return pid.error();
  int status = 0;
  ::waitpid(*pid, &status, 0);
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_file(out_path);
  result.err = read_file(err_path);
  return result;
}

Result<TestPki> make_test_pki(const std::string& dir, const std::string& prefix) {
  std::string base = dir + "/" + prefix;
  TestPki pki{base + "ca.crt", base + "server.crt", base + "server.key", base + "client.crt",
              base + "client.key"};
  std::string ca_key = base + "ca.key";
  auto openssl = [&](std::vector<std::string> args) -> Status {
    args.insert(args.begin(), "openssl");
    auto ran = run_command(args, dir);
    if (!ran) return ran.error();
    if (ran->exit_code != 0)
      return Error::make(ErrorCode::kIo, "openssl {} failed: {}", args[1], ran->err);
    return ok();
  };
  const std::vector<std::string> new_key = {"-newkey", "ec", "-pkeyopt",
                                            "ec_paramgen_curve:prime256v1", "-nodes"};
  auto request = [&](const std::string& key, const std::string& out, const std::string& cn,
                     bool self_signed) {
    std::vector<std::string> args = {"req"};
    if (self_signed) args.push_back("-x509");
    args.insert(args.end(), new_key.begin(), new_key.end());
    args.insert(args.end(), {"-keyout", key, "-out", out, "-subj", "/CN=" + cn, "-days", "2"});
    return openssl(args);
  };
  auto sign = [&](const std::string& csr, const std::string& cert) {
    return openssl({"x509", "-req", "-in", csr, "-CA", pki.ca_cert, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2"});
  };
  for (Status status : {request(ca_key, pki.ca_cert, prefix + "steward-test-ca", true),
                        request(pki.server_key, base + "server.csr", "127.0.0.1", false),
                        sign(base + "server.csr", pki.server_cert),
                        request(pki.client_key, base + "client.csr", "steward-client", false),
                        sign(base + "client.csr", pki.client_cert)}) {
    if (!status) return status.error();
  }
  return pki;
}

Result<std::unique_ptr<OvsSandbox>> OvsSandbox::create(Options options) {
  std::unique_ptr<OvsSandbox> sandbox(new OvsSandbox(std::move(options)));
  std::string pattern = (fs::temp_directory_path() / "steward-ovs-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    return Error::make(ErrorCode::kIo, "mkdtemp failed: {}", std::strerror(errno));
  sandbox->dir_ = pattern;
  for (Status status : {sandbox->create_database(), sandbox->start(), sandbox->initialise()}) {
    if (!status) return status.error();
  }
  if (sandbox->options_.vswitchd) {
    if (auto status = sandbox->start_vswitchd(); !status) return status.error();
  }
  return sandbox;
}

OvsSandbox::~OvsSandbox() {
  stop_vswitchd();
  (void)stop();
  if (!dir_.empty()) {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
}

std::string OvsSandbox::tcp_endpoint() const {
  return tcp_port_ ? fmt::format("tcp:127.0.0.1:{}", tcp_port_) : std::string();
}

std::string OvsSandbox::ssl_endpoint() const {
  return ssl_port_ ? fmt::format("ssl:127.0.0.1:{}", ssl_port_) : std::string();
}

std::vector<std::string> OvsSandbox::ovs_env() const {
  return {"OVS_RUNDIR=" + dir_, "OVS_LOGDIR=" + dir_, "OVS_DBDIR=" + dir_,
          "OVS_SYSCONFDIR=" + dir_};
}

std::string OvsSandbox::log_tail(const std::string& file) const {
  std::string text = read_file(dir_ + "/" + file);
  return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
}

Status OvsSandbox::create_database() {
  auto ran = run_command(
      {"ovsdb-tool", "create", dir_ + "/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"}, dir_,
      ovs_env());
  if (!ran) return ran.error();
  if (ran->exit_code != 0)
    return Error::make(ErrorCode::kIo, "ovsdb-tool create failed: {}", ran->err);
  return ok();
}

Status OvsSandbox::start() {
  if (server_pid_ > 0) return ok();
  for (Status status : {spawn_server(), wait_until_serving(), discover_ports()}) {
    if (!status) {
      (void)stop();
      return status;
    }
  }
  return ok();
}

Status OvsSandbox::spawn_server() {
  std::vector<std::string> argv = {"ovsdb-server",
                                   dir_ + "/conf.db",
                                   "--remote=punix:" + socket_path(),
                                   "--unixctl=" + dir_ + "/ovsdb-server.ctl",
                                   "--log-file=" + dir_ + "/ovsdb-server.log",
                                   "-vconsole:off"};
  if (options_.tcp) argv.push_back(fmt::format("--remote=ptcp:{}:127.0.0.1", tcp_port_));
  if (options_.ssl) {
    argv.push_back("--private-key=" + options_.ssl->private_key);
    argv.push_back("--certificate=" + options_.ssl->certificate);
    argv.push_back("--ca-cert=" + options_.ssl->ca_cert);
    // The first start learns the TCP port before adding the SSL listener (discover_ports), so
    // the two kernel-chosen ports can be told apart; later starts reuse both ports.
    if (ssl_port_ != 0) argv.push_back(fmt::format("--remote=pssl:{}:127.0.0.1", ssl_port_));
  }
  auto pid = spawn(argv, ovs_env(), dir_ + "/ovsdb-server.out", dir_ + "/ovsdb-server.err");
  if (!pid) return pid.error();
  server_pid_ = *pid;
  return ok();
}

Status OvsSandbox::wait_until_serving() {
  auto deadline = Clock::now() + kStartTimeout;
  while (!unix_socket_answers(socket_path())) {
    if (child_exited(server_pid_)) {
      server_pid_ = -1;
      return Error::make(ErrorCode::kUnavailable, "ovsdb-server exited: {}{}",
                         log_tail("ovsdb-server.err"), log_tail("ovsdb-server.log"));
    }
    if (Clock::now() > deadline)
      return Error::make(ErrorCode::kTimeout, "ovsdb-server did not listen on {}", socket_path());
    std::this_thread::sleep_for(kPollStep);
  }
  return ok();
}

Status OvsSandbox::discover_ports() {
  auto wait_for_ports = [&](std::size_t count) -> Result<std::set<uint16_t>> {
    auto deadline = Clock::now() + kStartTimeout;
    for (;;) {
      std::set<uint16_t> ports = listening_ports(server_pid_);
      if (ports.size() >= count) return ports;
      if (Clock::now() > deadline)
        return Error::make(ErrorCode::kTimeout, "ovsdb-server did not open {} tcp listeners: {}",
                           count, log_tail("ovsdb-server.log"));
      std::this_thread::sleep_for(kPollStep);
    }
  };
  std::size_t expected = options_.tcp ? 1 : 0;
  auto ports = wait_for_ports(expected);
  if (!ports) return ports.error();
  if (options_.tcp && tcp_port_ == 0) tcp_port_ = *ports->begin();
  if (!options_.ssl || ssl_port_ != 0) {
    auto all = wait_for_ports(expected + (options_.ssl ? 1 : 0));
    return all ? ok() : Status(all.error());
  }

  // The control socket may appear after the database socket.
  std::string control = dir_ + "/ovsdb-server.ctl";
  auto deadline = Clock::now() + kStartTimeout;
  while (!unix_socket_answers(control)) {
    if (Clock::now() > deadline)
      return Error::make(ErrorCode::kTimeout, "ovsdb-server did not open {}", control);
    std::this_thread::sleep_for(kPollStep);
  }
  auto added =
      run_command({"ovs-appctl", "-t", control, "ovsdb-server/add-remote", "pssl:0:127.0.0.1"},
                  dir_, ovs_env());
  if (!added || added->exit_code != 0)
    return Error::make(ErrorCode::kIo, "ovs-appctl add-remote failed: {}",
                       added ? added->err : added.error().message);
  auto with_ssl = wait_for_ports(expected + 1);
  if (!with_ssl) return with_ssl.error();
  for (uint16_t port : *with_ssl) {
    if (port != tcp_port_) ssl_port_ = port;
  }
  return ok();
}

Status OvsSandbox::initialise() {
  if (auto init = vsctl({"init"}); !init) return init.error();
  auto bridge = vsctl(
      {"add-br", options_.bridge, "--", "set", "bridge", options_.bridge, "datapath_type=netdev"});
  return bridge ? ok() : Status(bridge.error());
}

Status OvsSandbox::stop() {
  if (server_pid_ <= 0) return ok();
  end_child(server_pid_);
  server_pid_ = -1;
  return ok();
}

Result<std::string> OvsSandbox::vsctl(const std::vector<std::string>& args) {
  return run_vsctl(args, false);
}

Result<std::string> OvsSandbox::vsctl_and_wait(const std::vector<std::string>& args) {
  if (vswitchd_pid_ <= 0)
    return Error{ErrorCode::kInvalidArgument, "vsctl_and_wait needs the sandbox's ovs-vswitchd"};
  return run_vsctl(args, true);
}

Result<std::string> OvsSandbox::run_vsctl(const std::vector<std::string>& args, bool wait) {
  std::vector<std::string> argv = {"ovs-vsctl", "--timeout=10", "--db=" + unix_endpoint()};
  if (!wait) argv.push_back("--no-wait");
  argv.insert(argv.end(), args.begin(), args.end());
  auto ran = run_command(argv, dir_, ovs_env());
  if (!ran) return ran.error();
  if (ran->exit_code != 0)
    return Error::make(ErrorCode::kIo, "ovs-vsctl {} failed: {}", fmt::join(args, " "),
                       trim(ran->err));
  return ran->out;
}

Status OvsSandbox::add_foreign_port(const std::string& name) {
  auto added = vsctl({"add-port", options_.bridge, name, "--", "set", "port", name,
                      "external_ids:created-by=test"});
  return added ? ok() : Status(added.error());
}

Result<std::string> OvsSandbox::add_foreign_qos() {
  auto created = vsctl({"create", "qos", "type=linux-htb", "other_config:max-rate=1000",
                        "external_ids:created-by=test"});
  if (!created) return created.error();
  return trim(*created);
}

Status OvsSandbox::start_vswitchd() {
  netns_ = fmt::format("steward-test-{}-{}", ::getpid(), netns_counter++);
  auto added = run_command({"ip", "netns", "add", netns_}, dir_);
  if (!added || added->exit_code != 0) {
    std::string reason = added ? added->err : added.error().message;
    netns_.clear();
    return Error::make(ErrorCode::kIo, "ip netns add failed: {}", reason);
  }
  std::string control = dir_ + "/ovs-vswitchd.ctl";
  auto pid =
      spawn({"ip", "netns", "exec", netns_, "ovs-vswitchd", unix_endpoint(), "--unixctl=" + control,
             "--log-file=" + dir_ + "/ovs-vswitchd.log", "-vconsole:off"},
            ovs_env(), dir_ + "/ovs-vswitchd.out", dir_ + "/ovs-vswitchd.err");
  if (!pid) return pid.error();
  vswitchd_pid_ = *pid;
  auto deadline = Clock::now() + kStartTimeout;
  while (!unix_socket_answers(control)) {
    if (child_exited(vswitchd_pid_)) {
      vswitchd_pid_ = -1;
      return Error::make(ErrorCode::kUnavailable, "ovs-vswitchd exited: {}{}",
                         log_tail("ovs-vswitchd.err"), log_tail("ovs-vswitchd.log"));
    }
    if (Clock::now() > deadline) return Error{ErrorCode::kTimeout, "ovs-vswitchd did not start"};
    std::this_thread::sleep_for(kPollStep);
  }
  return ok();
}

void OvsSandbox::stop_vswitchd() {
  if (vswitchd_pid_ > 0) end_child(vswitchd_pid_);
  vswitchd_pid_ = -1;
  if (!netns_.empty()) (void)run_command({"ip", "netns", "del", netns_}, dir_);
  netns_.clear();
}

ScriptedOvsdbPeer::ScriptedOvsdbPeer(boost::asio::io_context& io, const std::string& socket_path)
    : acceptor_(io, boost::asio::local::stream_protocol::endpoint(socket_path)) {
  accept();
}

void ScriptedOvsdbPeer::accept() {
  acceptor_.async_accept(
      [this](boost::system::error_code error, boost::asio::local::stream_protocol::socket peer) {
        if (error) return;
        accepted_++;
        received_.clear();
        client_ = std::make_shared<boost::asio::local::stream_protocol::socket>(std::move(peer));
        read(client_);
        accept();
      });
}

void ScriptedOvsdbPeer::read(std::shared_ptr<boost::asio::local::stream_protocol::socket> socket) {
  socket->async_read_some(boost::asio::buffer(buffer_),
                          [this, socket](boost::system::error_code error, std::size_t size) {
                            if (error || socket != client_) return;
                            received_.append(buffer_.data(), size);
                            read(socket);
                          });
}

std::vector<boost::json::value> ScriptedOvsdbPeer::received() const {
  std::vector<boost::json::value> messages;
  ovsdb::MessageReader reader(std::size_t{1} << 24);
  (void)reader.feed(received_, [&](boost::json::value&& message) {
    messages.push_back(std::move(message));
    return true;
  });
  return messages;
}

void ScriptedOvsdbPeer::send(std::string bytes) {
  auto text = std::make_shared<std::string>(std::move(bytes));
  boost::asio::async_write(*client_, boost::asio::buffer(*text),
                           [text](boost::system::error_code, std::size_t) {});
}

void ScriptedOvsdbPeer::reply(const boost::json::value& request, std::string_view result) {
  send(fmt::format(R"({{"id":{},"result":{},"error":null}})",
                   boost::json::serialize(request.at("id")), result));
}

void ScriptedOvsdbPeer::hang_up() {
  boost::system::error_code ignored;
  client_->close(ignored);
}

}  // namespace steward::testing
