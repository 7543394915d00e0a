#include "support/vpn_e2e.h"

#include "support/files.h"
#include "vpn/control.h"
#include "vpn/steering/cgroup.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace steward::testing {
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPython = "/usr/bin/python3";

std::string quote(const std::string& text) {
  std::string out = "'";
  for (char c : text)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> chunk;
  size_t got = 0;
  while ((got = fread(chunk.data(), 1, chunk.size(), pipe)) > 0)
    result.output.append(chunk.data(), got);
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

Status write_file(const std::string& path, const std::string& content, mode_t mode = 0644) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  out.close();
  if (!out) return Error::make(ErrorCode::kIo, "cannot write {}", path);
  ::chmod(path.c_str(), mode);
  return ok();
}

// Waits until something in namespace `ns` listens on `port` (`proto` "t" or "u").
Status wait_listening(const std::string& ns, const char* proto, int port, NsProcess& process,
                      const std::string& log_file) {
  std::string probe = fmt::format("ss -Hl{}n 'sport = :{}'", proto, port);
  for (int i = 0; i < 200; ++i) {
    if (!process.running()) {
      return Error::make(ErrorCode::kUnavailable, "service for port {} exited: {}", port,
                         read_file(log_file));
    }
    auto listening = VpnLab::exec_in(ns, probe);
    if (listening && !listening->empty()) return ok();
    std::this_thread::sleep_for(25ms);
  }
  return Error::make(ErrorCode::kTimeout, "nothing listens on port {}: {}", port,
                     read_file(log_file));
}

// The UDP echo server and client, as small Python programs.
constexpr const char* kEchoServer = R"(import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
)";

constexpr const char* kEchoClient = R"(import socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
payload = bytes((i % 251 for i in range(size)))
for attempt in range(6):
    try:
        s.sendto(payload, (host, port))
        data, _ = s.recvfrom(65535)
    except OSError as error:
        last = error
        continue
    if data == payload:
        print("udp echo ok", len(data))
        sys.exit(0)
print("udp echo failed:", last if 'last' in dir() else 'mismatch')
sys.exit(1)
)";

// TCP sink: reads a connection to its end, answers with the byte count and their SHA-256.
constexpr const char* kSinkServer = R"(import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
while True:
    c, _ = s.accept()
    digest, count = hashlib.sha256(), 0
    while True:
        data = c.recv(1 << 16)
        if not data:
            break
        digest.update(data)
        count += len(data)
    c.sendall("{} {}\n".format(count, digest.hexdigest()).encode())
    c.close()
)";

// Uploads `size` bytes to the sink in large writes (the stack sends them as 64 KiB segments
// where the device allows), exit 0 when the sink saw exactly those bytes.
constexpr const char* kUploadClient = R"(import hashlib, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = bytes((i * 7 + i // 251) % 256 for i in range(1 << 16))
payload = (block * (size // len(block) + 1))[:size]
s = socket.create_connection((host, port), timeout=10)
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
answer = s.makefile().readline().split()
expected = [str(size), hashlib.sha256(payload).hexdigest()]
print("upload", "ok" if answer == expected else "mismatch", answer)
sys.exit(0 if answer == expected else 1)
)";

}  // namespace

// ---- IntranetServices

Result<std::unique_ptr<IntranetServices>> IntranetServices::start(const VpnLab& lab) {
  std::unique_ptr<IntranetServices> services(new IntranetServices());
  const std::string& ns = lab.intranet_ns();
  std::string www = lab.dir() + "/www";
  fs::create_directories(www);
  if (auto written = write_file(www + "/hello.txt", std::string(kHello) + "\n"); !written)
    return written.error();
  if (auto written = write_file(www + "/big.bin", std::string(kBigSize, 'x')); !written)
    return written.error();
  if (auto written = write_file(lab.dir() + "/echo_server.py", kEchoServer); !written)
    return written.error();
  if (auto written = write_file(lab.dir() + "/echo_client.py", kEchoClient); !written)
    return written.error();
  if (auto written = write_file(lab.dir() + "/sink_server.py", kSinkServer); !written)
    return written.error();
  if (auto written = write_file(lab.dir() + "/upload_client.py", kUploadClient); !written)
    return written.error();

  // Each service: started in the intranet namespace with its own log, then waited for.
  auto serve = [&](const std::string& name, const std::vector<std::string>& argv,
                   const char* protocol, int port, NsProcess& into) -> Status {
    std::string log_file = lab.dir() + "/" + name + ".log";
    auto started = VpnLab::spawn_in(ns, argv, log_file);
    if (!started) return started.error();
    into = std::move(*started);
    return wait_listening(ns, protocol, port, into, log_file);
  };
  Status up = serve(
      "http",
      {kPython, "-m", "http.server", "80", "--bind", VpnLab::kIntranetAddress, "--directory", www},
      "t", 80, services->http_);
  if (up) {
    up = serve("echo", {kPython, lab.dir() + "/echo_server.py", VpnLab::kIntranetAddress, "7"}, "u",
               7, services->echo_);
  }
  if (up) {
    up = serve("sink", {kPython, lab.dir() + "/sink_server.py", VpnLab::kIntranetAddress, "9"}, "t",
               9, services->sink_);
  }
  if (up) {
    up = serve("dnsmasq",
               {"/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", "--log-queries", "--log-facility=-",
                std::string("--listen-address=") + VpnLab::kIntranetAddress, "--bind-interfaces",
                fmt::format("--host-record={},{}", kName, VpnLab::kIntranetAddress),
                "--pid-file=" + lab.dir() + "/dnsmasq.pid"},
               "u", 53, services->dns_);
  }
  if (!up) return up.error();
  return services;
}

// ---- Capture

Result<std::unique_ptr<Capture>> Capture::start(const VpnLab& lab, const std::string& name) {
  std::unique_ptr<Capture> capture(new Capture());
  capture->file_ = lab.dir() + "/" + name + ".pcap";
  std::string log_file = lab.dir() + "/" + name + ".tcpdump.log";
  ::unlink(capture->file_.c_str());
  ::unlink(log_file.c_str());
  auto process = VpnLab::spawn_in(
      lab.client_ns(), {"/usr/bin/tcpdump", "-i", "c0", "-n", "-U", "-w", capture->file_},
      log_file);
  if (!process) return process.error();
  capture->tcpdump_ = std::move(*process);
  for (int i = 0; i < 200; ++i) {
    if (read_file(log_file).find("listening on") != std::string::npos) return capture;
    if (!capture->tcpdump_.running()) break;
    std::this_thread::sleep_for(25ms);
  }
  return Error::make(ErrorCode::kUnavailable, "tcpdump did not start: {}", read_file(log_file));
}

Capture::~Capture() {
  if (tcpdump_.running()) tcpdump_.stop(SIGINT, 2s);
  ::unlink(file_.c_str());
}

Result<uint64_t> Capture::stop_and_count(const std::string& filter) {
  if (tcpdump_.running()) tcpdump_.stop(SIGINT, 5s);
  auto counted =
      run_command(fmt::format("tcpdump -r {} -nn {} 2>/dev/null | wc -l", file_, quote(filter)));
  if (counted.exit_code != 0) {
    return Error::make(ErrorCode::kIo, "cannot read the capture: {}", counted.output);
  }
  return std::stoull(counted.output);
}

std::string Capture::matching(const std::string& filter) const {
  return run_command(
             fmt::format("tcpdump -r {} -nn {} 2>/dev/null | head -20", file_, quote(filter)))
      .output;
}

// ---- VpnDaemonProcess

Result<std::unique_ptr<VpnDaemonProcess>> VpnDaemonProcess::start(VpnLab& lab, Options options) {
  std::unique_ptr<VpnDaemonProcess> daemon(new VpnDaemonProcess(lab, std::move(options)));
  daemon->dir_ = lab.dir() + "/daemon";
  fs::remove_all(daemon->dir_);
  fs::create_directories(daemon->dir_ + "/run");
  if (auto written = daemon->write_files(); !written) return written.error();
  if (auto spawned = daemon->spawn(); !spawned) return spawned.error();
  return daemon;
}

std::string VpnDaemonProcess::cgroup_path() const {
  return fmt::format("steward-vpn-e2e-{}/admitted", ::getpid());
}

Status VpnDaemonProcess::write_files() {
  std::string credentials = options_.certificate_login
                                ? fmt::format("certificate = \"{}\"\nkey = \"{}\"\n",
                                              lab_.client_cert_file(), lab_.client_key_file())
                                : fmt::format("username = \"{}\"\npassword = \"{}\"\n",
                                              VpnLab::kUsername, VpnLab::kPassword);
  if (auto written = write_file(dir_ + "/credentials", credentials, 0600); !written) return written;
  std::string config = fmt::format(
      "[vpn]\n"
      "gateway = \"{gateway}\"\n"
      "{trust}\n"
      "credentials_file = \"{d}/credentials\"\n"
      "instance = \"e2e\"\n"
      "state_directory = \"{d}/run\"\n"
      "control_socket = \"{socket}\"\n"
      "status_port = 0\n"
      "port_file = \"{d}/port\"\n"
      "log_level = \"debug\"\n"
      "tun_name = \"{tun}\"\n"
      "table = {table}\n"
      "rule_priority = {table}\n"
      "mark = {mark}\n"
      "nft_table = \"{nft}\"\n"
      "cgroup_path = \"{cgroup}\"\n"
      "cgroup2_fallback_mount = \"{d}/cgroup2\"\n"
      "reconnect_min_ms = 100\n"
      "reconnect_max_ms = 500\n"
      "connect_timeout_s = 5\n"
      "dtls = {dtls}\n",
      fmt::arg("gateway", lab_.gateway_url()),
      fmt::arg("trust",
               !options_.pin.empty()
                   ? fmt::format("pin = \"{}\"", options_.pin)
                   : fmt::format("ca_file = \"{}\"",
                                 options_.ca_file.empty() ? lab_.ca_file() : options_.ca_file)),
      fmt::arg("d", dir_), fmt::arg("socket", socket()), fmt::arg("tun", kTun),
      fmt::arg("table", kTable), fmt::arg("mark", kMark), fmt::arg("nft", kNftTable),
      fmt::arg("cgroup", cgroup_path()), fmt::arg("dtls", options_.dtls ? "true" : "false"));
  for (const auto& line : options_.extra_config)
    config += line + "\n";
  return write_file(dir_ + "/vpn.toml", config);
}

Status VpnDaemonProcess::spawn() {
  std::string binary = std::string(STEWARD_BINARY_DIR) + "/src/cli/steward";
  auto process =
      VpnLab::spawn_in(lab_.client_ns(), {binary, "vpn", "connect", "--config", dir_ + "/vpn.toml"},
                       dir_ + "/daemon.log");
  if (!process) return process.error();
  process_ = std::move(*process);
  return ok();
}

VpnDaemonProcess::~VpnDaemonProcess() {
  if (process_.running()) process_.stop(SIGTERM, 10s);
}

Status VpnDaemonProcess::restart() {
  if (process_.running()) process_.stop(SIGTERM, 10s);
  return spawn();
}

CommandResult VpnDaemonProcess::start_background() {
  // The log goes into a directory that does not exist yet, as on a first run: the daemon must
  // make it and leave the caller's output (a daemon that kept it would hold this command until
  // the timeout).
  return run_command(
      fmt::format("timeout 30 ip netns exec {} {}/src/cli/steward vpn connect --config {}/vpn.toml "
                  "--background --log-file {}/background/daemon.log",
                  lab_.client_ns(), STEWARD_BINARY_DIR, dir_, dir_));
}

Result<json::object> VpnDaemonProcess::status() const {
  return vpn::control_request(socket(), json::object{{"op", "status"}}, 2s);
}

Result<json::object> VpnDaemonProcess::wait_connected(std::chrono::milliseconds timeout) {
  return wait_status(
      [](const json::object& now) {
        return now.at("state").as_string() == "connected" && now.at("tunnel_up").as_bool();
      },
      timeout, "tunnel up");
}

int VpnDaemonProcess::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (process_.running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  if (process_.running()) return -1;
  int status = process_.stop(SIGKILL, 1s);  // reaps it
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int VpnDaemonProcess::signal_and_wait(int signal) {
  int status = process_.stop(signal, 15s);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void VpnDaemonProcess::kill_hard() {
  process_.stop(SIGKILL, 5s);
}

CommandResult VpnDaemonProcess::vpn(const std::vector<std::string>& args,
                                    bool in_client_namespace) const {
  std::string command =
      fmt::format("timeout 60 {}{}/src/cli/steward vpn",
                  in_client_namespace ? "ip netns exec " + lab_.client_ns() + " " : std::string(),
                  STEWARD_BINARY_DIR);
  for (size_t i = 0; i < args.size(); ++i) {
    command += " " + quote(args[i]);
    if (i == 0) command += " --config " + quote(dir_ + "/vpn.toml");
  }
  return run_command(command);
}

CommandResult VpnDaemonProcess::run_admitted(const std::string& script) const {
  return vpn({"run", "--", "sh", "-c", script});
}

CommandResult VpnDaemonProcess::run_unadmitted(const std::string& script) const {
  return run_command(
      fmt::format("timeout 60 ip netns exec {} sh -c {}", lab_.client_ns(), quote(script)));
}

std::vector<std::string> VpnDaemonProcess::leftovers() const {
  std::vector<std::string> left;
  const std::string& ns = lab_.client_ns();
  for (const char* family : {"-4", "-6"}) {
    auto routes = run_command(fmt::format("ip {} -n {} route show table {}", family, ns, kTable));
    if (routes.exit_code == 0 && !routes.output.empty()) left.push_back("routes " + routes.output);
    auto rules = run_command(fmt::format("ip {} -n {} rule show", family, ns));
    std::istringstream lines(rules.output);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.find(std::string("fwmark ") + kMark) != std::string::npos ||
          line.find(fmt::format("lookup {}", kTable)) != std::string::npos)
        left.push_back("rule " + line);
    }
  }
  if (run_command(fmt::format("ip netns exec {} nft list table inet {}", ns, kNftTable))
          .exit_code == 0)
    left.push_back(std::string("nft table inet ") + kNftTable);
  if (run_command(fmt::format("ip -n {} link show {}", ns, kTun)).exit_code == 0)
    left.push_back(std::string("tun ") + kTun);
  if (auto mount = vpn::find_cgroup2()) {
    std::string top = mount->path + "/" + cgroup_path().substr(0, cgroup_path().find('/'));
    if (fs::exists(top)) left.push_back("cgroup " + top);
  }
  if (fs::exists(dir_ + "/run/e2e.state")) left.push_back("ledger " + dir_ + "/run/e2e.state");
  return left;
}

std::string VpnDaemonProcess::log() const {
  std::string background = dir_ + "/background/daemon.log";
  return read_file(dir_ + "/daemon.log") +
         (fs::exists(background) ? "\n(background daemon)\n" + read_file(background) : "");
}

}  // namespace steward::testing
