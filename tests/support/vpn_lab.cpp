#include "support/vpn_lab.h"

#include "support/files.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace steward::testing {
namespace {

std::atomic<int> lab_counter{0};

Result<std::string> run_shell(const std::string& command) {
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return Error::make(ErrorCode::kIo, "cannot run '{}'", command);
  std::string output;
  std::array<char, 4096> chunk;
  size_t got = 0;
  while ((got = fread(chunk.data(), 1, chunk.size(), pipe)) > 0)
    output.append(chunk.data(), got);
  int status = pclose(pipe);
  if (status != 0) {
    return Error::make(ErrorCode::kIo, "'{}' failed (status {}): {}", command, status, output);
  }
  return output;
}

Status shell(const std::string& command) {
  auto result = run_shell(command);
  if (!result) return result.error();
  return ok();
}

Status write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  out.close();
  if (!out) return Error::make(ErrorCode::kIo, "cannot write {}", path);
  return ok();
}

}  // namespace

// ---- NsProcess

NsProcess::~NsProcess() {
  if (pid_ > 0) stop(SIGKILL, std::chrono::seconds(5));
}

NsProcess& NsProcess::operator=(NsProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) stop(SIGKILL, std::chrono::seconds(5));
    pid_ = other.pid_;
    exit_status_ = other.exit_status_;
    other.pid_ = -1;
  }
  return *this;
}

bool NsProcess::running() const {
  if (pid_ <= 0 || exit_status_) return false;
  int status = 0;
  pid_t done = waitpid(pid_, &status, WNOHANG);
  if (done == pid_) exit_status_ = status;  // reaped here: keep what stop() would return
  return done == 0;
}

int NsProcess::stop(int signal, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return exit_status_.value_or(0);
  if (exit_status_) {
    pid_ = -1;
    return *exit_status_;
  }
  kill(pid_, signal);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_ || done < 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  exit_status_ = status;
  pid_ = -1;
  return status;
}

// ---- VpnLab: namespaces and links

Result<std::unique_ptr<VpnLab>> VpnLab::create() {
  if (geteuid() != 0) return Error::make(ErrorCode::kIo, "the VPN lab needs root");
  if (!std::filesystem::exists("/usr/sbin/ocserv")) {
    return Error::make(ErrorCode::kNotFound, "ocserv is not installed (scripts/deps.sh)");
  }
  std::unique_ptr<VpnLab> lab(new VpnLab());
  int id = lab_counter++;
  auto suffix = fmt::format("{}-{}", getpid(), id);
  lab->client_ns_ = "stw-client-" + suffix;
  lab->gateway_ns_ = "stw-gw-" + suffix;
  lab->intranet_ns_ = "stw-intra-" + suffix;
  // A port per lab, so that labs of tests running side by side never share one.
  lab->port_ = static_cast<uint16_t>(20000 + (getpid() * 7 + id) % 20000);
  char dir_template[] = "/tmp/steward-vpn-lab-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return Error::make(ErrorCode::kIo, "cannot mkdtemp");
  lab->dir_ = dir_template;
  // ocserv's workers run as nobody and read the certificates and the password file.
  chmod(lab->dir_.c_str(), 0755);
  if (auto built = lab->build(); !built) return built.error().wrap("vpn lab");
  if (auto made = lab->make_certificates(); !made) return made.error().wrap("vpn lab");
  return lab;
}

Status VpnLab::build() {
  const std::string& c = client_ns_;
  const std::string& g = gateway_ns_;
  const std::string& i = intranet_ns_;
  for (const auto& ns : {c, g, i}) {
    if (auto added = shell("ip netns add " + ns); !added) return added;
    if (auto up = shell(fmt::format("ip -n {} link set lo up", ns)); !up) return up;
  }
  std::vector<std::string> steps = {
      fmt::format("ip -n {} link add c0 type veth peer name g0 netns {}", c, g),
      fmt::format("ip -n {} link add g1 type veth peer name i0 netns {}", g, i),
      fmt::format("ip -n {} addr add {}/24 dev c0", c, kClientAddress),
      fmt::format("ip -n {} addr add {}/24 dev g0", g, kGatewayOutside),
      fmt::format("ip -n {} addr add {}/24 dev g1", g, kGatewayInside),
      fmt::format("ip -n {} addr add {}/24 dev i0", i, kIntranetAddress),
      fmt::format("ip -n {} link set c0 up", c),
      fmt::format("ip -n {} link set g0 up", g),
      fmt::format("ip -n {} link set g1 up", g),
      fmt::format("ip -n {} link set i0 up", i),
      // Replies to tunnel addresses (both pools) go back through the gateway.
      fmt::format("ip -n {} route add 198.18.100.0/23 via {}", i, kGatewayInside),
      fmt::format("ip netns exec {} sysctl -qw net.ipv4.ip_forward=1", g),
  };
  for (const auto& step : steps) {
    if (auto done = shell(step); !done) return done;
  }
  return ok();
}

Status VpnLab::make_certificates() {
  auto d = dir_;
  auto key = [](const std::string& path) {
    return fmt::format("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {}",
                       path);
  };
  std::vector<std::string> steps = {
      key(d + "/ca.key"),
      fmt::format("openssl req -x509 -new -key {0}/ca.key -out {0}/ca.pem -days 2 "
                  "-subj '/CN=Steward Lab CA'",
                  d),
      key(d + "/other-ca.key"),
      fmt::format("openssl req -x509 -new -key {0}/other-ca.key -out {0}/other-ca.pem -days 2 "
                  "-subj '/CN=Unrelated CA'",
                  d),
      key(d + "/server.key"),
      fmt::format("openssl req -new -key {0}/server.key -out {0}/server.csr -subj '/CN={1}'", d,
                  kServerName),
      fmt::format("printf 'subjectAltName=DNS:{1},IP:{2}\\nextendedKeyUsage=serverAuth\\n' "
                  "> {0}/server.ext",
                  d, kServerName, kGatewayOutside),
      fmt::format("openssl x509 -req -in {0}/server.csr -CA {0}/ca.pem -CAkey {0}/ca.key "
                  "-CAcreateserial -out {0}/server.pem -days 2 -extfile {0}/server.ext",
                  d),
      key(d + "/client.key"),
      fmt::format("openssl req -new -key {0}/client.key -out {0}/client.csr -subj '/CN={1}'", d,
                  kUsername),
      fmt::format("printf 'extendedKeyUsage=clientAuth\\n' > {0}/client.ext", d),
      fmt::format("openssl x509 -req -in {0}/client.csr -CA {0}/ca.pem -CAkey {0}/ca.key "
                  "-CAcreateserial -out {0}/client.pem -days 2 -extfile {0}/client.ext",
                  d),
      fmt::format("chmod 0644 {0}/*.pem {0}/*.key", d),
  };
  for (const auto& step : steps) {
    if (auto done = shell(step); !done) return done;
  }
  auto hash = run_shell(fmt::format("openssl passwd -6 '{}'", kPassword));
  if (!hash) return hash.error();
  while (!hash->empty() && hash->back() == '\n')
    hash->pop_back();
  return write_file(d + "/passwd", fmt::format("{}:*:{}\n", kUsername, *hash));
}

VpnLab::~VpnLab() {
  (void)stop_gateway();
  // Every process still in our namespaces was started by this lab (ocserv's workers, test
  // peers): end them by PID before the namespaces go.
  for (const auto& ns : {client_ns_, gateway_ns_, intranet_ns_}) {
    if (auto pids = run_shell("ip netns pids " + ns)) {
      std::istringstream in(*pids);
      pid_t pid = 0;
      while (in >> pid)
        kill(pid, SIGKILL);
    }
  }
  for (const auto& ns : {client_ns_, gateway_ns_, intranet_ns_}) {
    if (!ns.empty()) (void)shell("ip netns delete " + ns);
  }
  if (!dir_.empty() && std::getenv("STEWARD_KEEP_LAB") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string VpnLab::ca_file() const {
  return dir_ + "/ca.pem";
}
std::string VpnLab::other_ca_file() const {
  return dir_ + "/other-ca.pem";
}
std::string VpnLab::server_cert_file() const {
  return dir_ + "/server.pem";
}
std::string VpnLab::client_cert_file() const {
  return dir_ + "/client.pem";
}
std::string VpnLab::client_key_file() const {
  return dir_ + "/client.key";
}
std::string VpnLab::gateway_url() const {
  return fmt::format("https://{}:{}/", kGatewayOutside, port_);
}
std::string VpnLab::gateway_log() const {
  return read_file(dir_ + "/ocserv.log");
}

// ---- ocserv

Status VpnLab::write_gateway_config(const GatewayOptions& options) {
  const auto& d = dir_;
  std::string auth = options.auth == GatewayOptions::Auth::kPassword
                         ? fmt::format("plain[passwd={}/passwd]", d)
                         : std::string("certificate");
  std::string pool = options.other_pool ? "198.18.101.0" : "198.18.100.0";
  std::string config = fmt::format(
      "auth = \"{auth}\"\n"
      "tcp-port = {port}\n"
      "{udp}"
      "run-as-user = nobody\n"
      "run-as-group = nogroup\n"
      "socket-file = {d}/ocserv.sock\n"
      "occtl-socket-file = {d}/occtl.sock\n"
      "use-occtl = true\n"
      "pid-file = {d}/ocserv.pid\n"
      "server-cert = {d}/server.pem\n"
      "server-key = {d}/server.key\n"
      "ca-cert = {d}/ca.pem\n"
      "cert-user-oid = 2.5.4.3\n"
      "isolate-workers = false\n"
      "max-clients = 16\n"
      "max-same-clients = 0\n"
      "server-stats-reset-time = 604800\n"
      "keepalive = {keepalive}\n"
      "dpd = {dpd}\n"
      "mobile-dpd = {dpd}\n"
      "switch-to-tcp-timeout = 25\n"
      "try-mtu-discovery = false\n"
      "tls-priorities = \"NORMAL:%SERVER_PRECEDENCE\"\n"
      "auth-timeout = 240\n"
      "min-reauth-time = 0\n"
      "max-ban-score = 0\n"
      "cookie-timeout = {cookie}\n"
      "deny-roaming = false\n"
      "rekey-time = {rekey}\n"
      "rekey-method = {rekey_method}\n"
      "device = vpns\n"
      "predictable-ips = true\n"
      "default-domain = {domain}\n"
      "ipv4-network = {pool}\n"
      "ipv4-netmask = 255.255.255.0\n"
      "dns = {dns}\n"
      "{route}"
      "ping-leases = false\n"
      "cisco-client-compat = true\n"
      "dtls-legacy = true\n",
      fmt::arg("auth", auth), fmt::arg("port", port_),
      fmt::arg("udp", options.dtls ? fmt::format("udp-port = {}\n", port_) : std::string()),
      fmt::arg("d", d), fmt::arg("keepalive", options.keepalive_seconds),
      fmt::arg("dpd", options.dpd_seconds), fmt::arg("cookie", options.cookie_timeout_seconds),
      fmt::arg("rekey", options.rekey_seconds), fmt::arg("rekey_method", options.rekey_method),
      fmt::arg("domain", kDomain), fmt::arg("pool", pool), fmt::arg("dns", kIntranetAddress),
      fmt::arg("route", options.split_include ? "route = 198.18.2.0/255.255.255.0\n" : ""));
  return write_file(d + "/ocserv.conf", config);
}

Status VpnLab::start_gateway(const GatewayOptions& options) {
  if (ocserv_.pid() > 0) return Error::make(ErrorCode::kConflict, "ocserv already runs");
  if (auto written = write_gateway_config(options); !written) return written;
  auto process = spawn_in(gateway_ns_, {"/usr/sbin/ocserv", "-f", "-c", dir_ + "/ocserv.conf"},
                          dir_ + "/ocserv.log");
  if (!process) return process.error();
  ocserv_ = std::move(*process);

  // Ready when its TCP port listens.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  std::string probe = fmt::format("ss -Hltn 'sport = :{}'", port_);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!ocserv_.running()) {
      ocserv_ = NsProcess();
      return Error::make(ErrorCode::kUnavailable, "ocserv exited at start: {}", gateway_log());
    }
    auto listening = exec_in(gateway_ns_, probe);
    if (listening && !listening->empty()) return ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Error::make(ErrorCode::kTimeout, "ocserv did not listen on port {}: {}", port_,
                     gateway_log());
}

Status VpnLab::stop_gateway() {
  if (ocserv_.pid() <= 0) return ok();
  ocserv_.stop(SIGTERM, std::chrono::seconds(5));
  // Its workers and sec-mod may outlive it for a moment; they are ours, end them by PID.
  if (auto pids = run_shell("ip netns pids " + gateway_ns_)) {
    std::istringstream in(*pids);
    pid_t pid = 0;
    while (in >> pid)
      kill(pid, SIGKILL);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string probe = fmt::format("ss -Hltn 'sport = :{}'", port_);
  while (std::chrono::steady_clock::now() < deadline) {
    auto listening = exec_in(gateway_ns_, probe);
    if (listening && listening->empty()) return ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Error::make(ErrorCode::kTimeout, "port {} still listens after ocserv stopped", port_);
}

Status VpnLab::restart_gateway(const GatewayOptions& options) {
  if (auto stopped = stop_gateway(); !stopped) return stopped;
  return start_gateway(options);
}

// ---- firewall in the gateway namespace

Status VpnLab::block_dtls(bool blocked) {
  std::string table = "steward_lab_dtls";
  if (!blocked)
    return shell(fmt::format("ip netns exec {} nft delete table inet {}", gateway_ns_, table));
  return shell(
      fmt::format("ip netns exec {} nft 'add table inet {t}; "
                  "add chain inet {t} input {{ type filter hook input priority 0; }}; "
                  "add rule inet {t} input udp dport {p} drop'",
                  gateway_ns_, fmt::arg("t", table), fmt::arg("p", port_)));
}

Status VpnLab::blackhole_gateway(bool blocked) {
  std::string table = "steward_lab_blackhole";
  if (!blocked)
    return shell(fmt::format("ip netns exec {} nft delete table inet {}", gateway_ns_, table));
  return shell(fmt::format(
      "ip netns exec {} nft 'add table inet {t}; "
      "add chain inet {t} input {{ type filter hook input priority 0; }}; "
      "add chain inet {t} output {{ type filter hook output priority 0; }}; "
      "add rule inet {t} input tcp dport {p} drop; add rule inet {t} input udp dport {p} drop; "
      "add rule inet {t} output tcp sport {p} drop; add rule inet {t} output udp sport {p} drop'",
      gateway_ns_, fmt::arg("t", table), fmt::arg("p", port_)));
}

// ---- running things in namespaces

Status VpnLab::run_in(const std::string& ns, const std::function<void()>& fn) {
  Status status = ok();
  std::thread worker([&] {
    int fd = open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      status = Error::make(ErrorCode::kNotFound, "network namespace {} does not exist", ns);
      return;
    }
    int joined = setns(fd, CLONE_NEWNET);
    close(fd);
    if (joined != 0) {
      status = Error::make(ErrorCode::kIo, "cannot join network namespace {}", ns);
      return;
    }
    fn();
  });
  worker.join();
  return status;
}

Result<std::string> VpnLab::exec_in(const std::string& ns, const std::string& command) {
  std::string quoted;
  for (char c : command)
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return run_shell(fmt::format("ip netns exec {} sh -c '{}'", ns, quoted));
}

Result<NsProcess> VpnLab::spawn_in(const std::string& ns, const std::vector<std::string>& argv,
                                   const std::string& log_file) {
  std::vector<std::string> full = {"/usr/sbin/ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (auto& arg : full)
    args.push_back(arg.data());
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return Error::make(ErrorCode::kIo, "fork failed");
  if (pid == 0) {
    int out = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    setpgid(0, 0);
    // A test killed by a timeout takes its peers with it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execv(args[0], args.data());
    _exit(127);
  }
  return NsProcess(pid);
}

}  // namespace steward::testing
