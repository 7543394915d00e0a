// The steering against the real kernel, in a client namespace joined to a peer by a veth
// (tests/support/vpn_netns.h): admitted processes' intranet traffic arrives on the TUN, other
// traffic toward the intranet is refused locally and never reaches the peer, and everything
// Steward created goes away on stop and after a SIGKILL.
#include "core/log.h"
#include "support/vpn_netns.h"
#include "vpn/policy/admission.h"
#include "vpn/policy/flow_check.h"
#include "vpn/steering/steering.h"
#include "vpn/tun/tun_device.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

namespace steward::vpn {
namespace {

namespace ip = boost::asio::ip;
using namespace std::chrono_literals;
using steward::testing::NetnsGuard;
using steward::testing::VpnNetns;

constexpr const char* kIntranetHost = "198.18.4.1";

std::string tcp_connect(const std::string& host, int port) {
  return fmt::format("exec 3<>/dev/tcp/{}/{}", host, port);
}

std::string udp_send(const std::string& host, int port) {
  return fmt::format("echo query > /dev/udp/{}/{}", host, port);
}

// Exit status of a child, or -1 when it did not exit normally.
int wait_exit(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

pid_t spawn_unadmitted(const std::vector<std::string>& argv) {
  std::vector<char*> arguments;
  for (const auto& argument : argv)
    arguments.push_back(const_cast<char*>(argument.c_str()));
  arguments.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execvp(arguments[0], arguments.data());
    ::_exit(127);
  }
  return pid;
}

// The lines the "vpn" logger writes while this object lives.
class VpnLogCapture {
 public:
  VpnLogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(lines_)) {
    log::get("vpn")->sinks().push_back(sink_);
  }
  ~VpnLogCapture() {
    auto& sinks = log::get("vpn")->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  VpnLogCapture(const VpnLogCapture&) = delete;
  VpnLogCapture& operator=(const VpnLogCapture&) = delete;
  std::string text() const { return lines_.str(); }

 private:
  std::ostringstream lines_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// What an earlier run of this test that crashed (no TearDown) left: its namespaces, cgroup
// and directory are named after its PID, which no longer runs.
void remove_leftovers_of_dead_runs() {
  auto alive = [](const std::string& digits) {
    return !digits.empty() && ::kill(std::stoi(digits), 0) == 0;
  };
  auto digits_after = [](const std::string& name, const std::string& prefix) {
    std::string digits;
    for (size_t i = prefix.size(); i < name.size() && std::isdigit(name[i]); ++i) {
      digits += name[i];
    }
    return name.starts_with(prefix) ? digits : std::string();
  };
  if (auto namespaces = testing::shell("ip netns list")) {
    std::istringstream lines(*namespaces);
    std::string name;
    while (lines >> name) {
      auto digits = digits_after(name, "stw");
      bool ours = name == "stw" + digits + "-client" || name == "stw" + digits + "-peer";
      if (ours && !alive(digits)) (void)testing::shell("ip netns del " + name);
      lines.ignore(1000, '\n');
    }
  }
  if (auto mount = find_cgroup2()) {
    for (const auto& entry : std::filesystem::directory_iterator(mount->path)) {
      auto name = entry.path().filename().string();
      auto digits = digits_after(name, "steward-vpn-stw");
      if (!digits.empty() && name == "steward-vpn-stw" + digits && !alive(digits)) {
        (void)remove_cgroup(mount->path, name + "/admitted");
      }
    }
  }
  for (const auto& entry : std::filesystem::directory_iterator("/tmp")) {
    auto name = entry.path().filename().string();
    auto digits = digits_after(name, "steward-steering-stw");
    if (!digits.empty() && name == "steward-steering-stw" + digits && !alive(digits)) {
      std::filesystem::remove_all(entry.path());
    }
  }
}

// Sends UDP to port 9 of an IPv4 and an IPv6 host (by default in the intranet) as fast as it
// can from one socket per family, refusals ignored, until a stop file appears (at most 30 s);
// then writes "<sent> <refused>".
constexpr const char* kIntranetSender = R"(import os, socket, sys, time
stop, ready, report = sys.argv[1:4]
host4, host6 = sys.argv[4:6] if len(sys.argv) > 5 else ('198.18.4.1', '64:ff9b::c612:401')
targets = [(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), (host4, 9)),
           (socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), (host6, 9))]
sent = refused = 0
deadline = time.monotonic() + 30
while not os.path.exists(stop) and time.monotonic() < deadline:
    for sock, address in targets:
        for _ in range(100):
            try:
                sock.sendto(b'x', address)
                sent += 1
            except OSError:
                refused += 1
    if not os.path.exists(ready):
        open(ready, 'w').close()
with open(report + '.new', 'w') as out:
    out.write(f'{sent} {refused}\n')
os.rename(report + '.new', report)
)";

class VpnSteering : public ::testing::Test {
 protected:
  void SetUp() override {
    remove_leftovers_of_dead_runs();
    tag_ = fmt::format("stw{}", ::getpid());
    auto netns = VpnNetns::create(tag_);
    ASSERT_TRUE(netns) << netns.error().message;
    netns_.emplace(std::move(*netns));
    directory_ = "/tmp/steward-steering-" + tag_;
    std::filesystem::create_directories(directory_);

    options_.instance = "test";
    options_.ledger_directory = directory_ + "/run";
    options_.tun_name = "stwt0";
    options_.nft_table = "steward_test";
    options_.cgroup_path = "steward-vpn-" + tag_ + "/admitted";
    options_.cgroup2_fallback_mount = directory_ + "/cgroup2";
    options_.gateway_addresses = {ip::make_address("198.18.0.1")};

    config_.address = ip::make_address_v4("198.18.8.10");
    config_.netmask_length = 24;
    config_.mtu = 1400;
    config_.dns = {ip::make_address("198.18.4.53")};
    config_.split_include = {*Prefix::parse("198.18.4.0/24"),
                             *Prefix::parse("64:ff9b::c612:400/120")};
    enter_client();
  }

  void TearDown() override {
    tun_.reset();
    if (steering_) {
      EXPECT_TRUE(steering_->stop());
    }
    steering_.reset();
    if (guard_) (void)cleanup_instance(options_);
    guard_.reset();
    netns_.reset();
    std::filesystem::remove_all(directory_);
  }

  void enter_client() {
    auto guard = NetnsGuard::enter(netns_->client());
    ASSERT_TRUE(guard) << guard.error().message;
    guard_.emplace(std::move(*guard));
  }

  // Steering, then the TUN (recorded first, as the daemon does), then the tunnel routes.
  void start(bool tunnel_up = true) {
    auto plan = SteeringPlan::from(config_, options_.gateway_addresses);
    ASSERT_TRUE(plan) << plan.error().message;
    auto steering = Steering::start(options_, *plan);
    ASSERT_TRUE(steering) << steering.error().message;
    steering_ = std::move(*steering);
    LedgerEntry tun_entry;
    tun_entry.kind = LedgerEntry::Kind::kTun;
    tun_entry.name = options_.tun_name;
    ASSERT_TRUE(steering_->ledger().record(tun_entry));
    auto tun = TunDevice::create(options_.tun_name);
    ASSERT_TRUE(tun) << tun.error().message;
    tun_.emplace(std::move(*tun));
    auto configured = tun_->configure(config_);
    ASSERT_TRUE(configured) << configured.error().message;
    if (tunnel_up) {
      auto up = steering_->set_tunnel_up(tun_->ifindex());
      ASSERT_TRUE(up) << up.error().message;
    }
  }

  // A start of this instance that must fail: its error (kInternal when it did not fail).
  Error failed_start() {
    auto plan = SteeringPlan::from(config_, options_.gateway_addresses);
    if (!plan) return plan.error();
    auto steering = Steering::start(options_, *plan);
    if (!steering) return steering.error();
    steering_ = std::move(*steering);  // stopped by TearDown
    return Error{ErrorCode::kInternal, "the start succeeded"};
  }

  // A sender that keeps trying the intranet until <directory>/stop exists (kIntranetSender):
  // it writes <name>.ready once running and its counts to <name> at the end.
  std::vector<std::string> intranet_sender(const std::string& name) const {
    return {"python3",
            "-c",
            kIntranetSender,
            directory_ + "/stop",
            directory_ + "/" + name + ".ready",
            directory_ + "/" + name};
  }
  bool sender_ready(const std::string& name) const {
    auto ready = directory_ + "/" + name + ".ready";
    for (int i = 0; i < 250 && !std::filesystem::exists(ready); ++i)
      std::this_thread::sleep_for(20ms);
    return std::filesystem::exists(ready);
  }

  pid_t spawn_admitted(const std::vector<std::string>& argv) {
    auto pid = run_admitted(steering_->cgroup(), argv);
    EXPECT_TRUE(pid) << pid.error().message;
    return pid ? *pid : -1;
  }

  // Packets read from the TUN within `timeout`, until one satisfies `wanted`.
  std::optional<std::vector<uint8_t>> read_tun_until(
      const std::function<bool(const FlowKey&)>& wanted, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<uint8_t> packet(65536);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd ready{tun_->fd(), POLLIN, 0};
      if (::poll(&ready, 1, 50) <= 0) continue;
      ssize_t got = ::read(tun_->fd(), packet.data(), packet.size());
      if (got <= 0) continue;
      packet.resize(static_cast<size_t>(got));
      auto flow = flow_of_packet(packet);
      if (flow) tun_flows_.push_back(*flow);
      if (flow && wanted(*flow)) return packet;
      packet.resize(65536);
    }
    return std::nullopt;
  }

  static std::function<bool(const FlowKey&)> toward(const std::string& host, int port) {
    auto address = ip::make_address(host);
    return [address, port](const FlowKey& flow) {
      return flow.destination == address && flow.destination_port == port;
    };
  }

  static std::function<bool(const FlowKey&)> toward_intranet() {
    std::vector<Prefix> intranet = {*Prefix::parse("198.18.4.0/24"),
                                    *Prefix::parse("64:ff9b::c612:400/120")};
    return [intranet](const FlowKey& flow) {
      return std::any_of(intranet.begin(), intranet.end(),
                         [&](const Prefix& prefix) { return prefix.contains(flow.destination); });
    };
  }

  uint64_t intranet_at_peer() {
    auto count = netns_->intranet_packets_at_peer();
    EXPECT_TRUE(count) << count.error().message;
    return count ? *count : ~0ull;
  }

  // Starts this instance in a child (full steering, a TUN, the tunnel up), runs `admitted` in
  // its group, and kills the child with SIGKILL: what it set up stays behind, as after a crash
  // of the daemon. Returns the admitted process's PID (it outlives the child).
  pid_t crash_an_instance(const std::vector<std::string>& admitted) {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    pid_t holder = ::fork();
    if (holder == 0) {
      ::close(ready[0]);
      start();
      pid_t pid = -1;
      if (steering_) {
        auto spawned = run_admitted(steering_->cgroup(), admitted);
        if (spawned) pid = *spawned;
      }
      (void)!::write(ready[1], &pid, sizeof(pid));
      ::pause();
      ::_exit(0);
    }
    ::close(ready[1]);
    pid_t admitted_pid = -1;
    EXPECT_EQ(::read(ready[0], &admitted_pid, sizeof(admitted_pid)),
              static_cast<ssize_t>(sizeof(admitted_pid)))
        << "the holder did not start its steering";
    ::close(ready[0]);
    ::kill(holder, SIGKILL);
    ::waitpid(holder, nullptr, 0);
    EXPECT_GT(admitted_pid, 0) << "the holder could not run the admitted process";
    return admitted_pid;
  }

  // Whatever Steward could have left in the client namespace and the cgroup tree.
  void expect_nothing_left() {
    auto rules = testing::shell("ip rule; ip -6 rule");
    ASSERT_TRUE(rules);
    EXPECT_EQ(rules->find("0x7270"), std::string::npos) << *rules;
    auto routes = testing::shell(
        fmt::format("ip route show table {0}; ip -6 route show table {0}", options_.table));
    ASSERT_TRUE(routes);
    EXPECT_EQ(*routes, "");
    auto tables = testing::shell("nft list tables");
    ASSERT_TRUE(tables);
    EXPECT_EQ(tables->find(options_.nft_table), std::string::npos) << *tables;
    auto link = testing::shell("ip link show " + options_.tun_name);
    EXPECT_FALSE(link) << "the TUN is still there";
    auto mount = find_cgroup2();
    ASSERT_TRUE(mount);
    EXPECT_FALSE(std::filesystem::exists(mount->path + "/steward-vpn-" + tag_));
    EXPECT_FALSE(std::filesystem::exists(options_.ledger_directory + "/test.state"));
  }

  std::string tag_;
  std::string directory_;
  std::optional<VpnNetns> netns_;
  std::optional<NetnsGuard> guard_;
  SteeringOptions options_;
  TunnelConfig config_;
  std::unique_ptr<Steering> steering_;
  std::optional<TunDevice> tun_;
  std::vector<FlowKey> tun_flows_;
};

TEST_F(VpnSteering, AdmittedProcessAndItsGrandchildReachTheTunOverTcpAndUdp) {
  start();

  // The command itself, then a grandchild (sh -> timeout -> bash), over TCP; then UDP.
  pid_t child = spawn_admitted({"timeout", "1", "bash", "-c", tcp_connect(kIntranetHost, 80)});
  auto syn = read_tun_until(toward(kIntranetHost, 80), 2s);
  wait_exit(child);
  ASSERT_TRUE(syn) << "no SYN on the TUN from the admitted process";
  EXPECT_EQ(flow_of_packet(*syn)->source, ip::make_address("198.18.8.10"));

  pid_t parent = spawn_admitted(
      {"sh", "-c", "timeout 1 bash -c '" + tcp_connect(kIntranetHost, 81) + "'; true"});
  auto grandchild_syn = read_tun_until(toward(kIntranetHost, 81), 2s);
  wait_exit(parent);
  EXPECT_TRUE(grandchild_syn) << "no SYN on the TUN from the grandchild";

  pid_t udp = spawn_admitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  auto datagram = read_tun_until(toward(kIntranetHost, 7), 2s);
  EXPECT_EQ(wait_exit(udp), 0);
  ASSERT_TRUE(datagram);
  EXPECT_EQ(flow_of_packet(*datagram)->protocol, IPPROTO_UDP);

  EXPECT_EQ(intranet_at_peer(), 0u);
  auto counters = steering_->counters();
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GE(counters->tunnelled, 3u);
  EXPECT_EQ(counters->refused_others, 0u);
}

TEST_F(VpnSteering, UnadmittedProcessIsRefusedLocallyAndNothingLeavesTowardTheIntranet) {
  start();

  pid_t tcp = spawn_unadmitted({"timeout", "5", "bash", "-c", tcp_connect(kIntranetHost, 80)});
  EXPECT_EQ(wait_exit(tcp), 1) << "expected connection refused (a local TCP reset)";
  pid_t udp = spawn_unadmitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  EXPECT_NE(wait_exit(udp), 0) << "the datagram should have been refused";
  pid_t dns = spawn_unadmitted({"bash", "-c", udp_send("198.18.4.53", 53)});
  EXPECT_NE(wait_exit(dns), 0) << "the intranet DNS server is closed to unadmitted processes";

  EXPECT_FALSE(read_tun_until(toward_intranet(), 300ms));
  EXPECT_EQ(intranet_at_peer(), 0u);
  auto counters = steering_->counters();
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GE(counters->refused_others, 3u);
  EXPECT_EQ(counters->tunnelled, 0u);
  EXPECT_EQ(counters->dropped_late, 0u);
}

TEST_F(VpnSteering, ASecondStartOfARunningInstanceIsRefusedAndChangesNothing) {
  start();
  auto running = std::move(steering_);
  auto second = failed_start();
  steering_ = std::move(running);
  EXPECT_EQ(second.code, ErrorCode::kConflict) << second.message;
  EXPECT_EQ(cleanup_instance(options_).error().code, ErrorCode::kConflict);

  pid_t pid = spawn_admitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  EXPECT_TRUE(read_tun_until(toward(kIntranetHost, 7), 2s)) << "the running steering was harmed";
  wait_exit(pid);
}

TEST_F(VpnSteering, AdmitPidCoversNewConnectionsAndReportsOlderSockets) {
  start();
  std::string flag = directory_ + "/go";
  std::string ready = directory_ + "/ready";
  // Holds a listening TCP socket and a connected UDP socket from before admission, then
  // connects once told to.
  std::string script = fmt::format(
      "import socket, os, time\n"
      "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
      "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(('198.18.0.1', 9))\n"
      "open('{}', 'w').close()\n"
      "while not os.path.exists('{}'): time.sleep(0.02)\n"
      "c = socket.socket(); c.settimeout(1)\n"
      "try: c.connect(('{}', 82))\n"
      "except Exception as e: print(e)\n",
      ready, flag, kIntranetHost);
  pid_t pid = spawn_unadmitted({"python3", "-c", script});
  for (int i = 0; i < 200 && !std::filesystem::exists(ready); ++i)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(std::filesystem::exists(ready));

  // pyenv may put a shim between us and python: admit the process that holds the sockets.
  auto holder = testing::shell(fmt::format("pgrep -P {} python3 || echo {}", pid, pid));
  ASSERT_TRUE(holder);
  pid_t target = std::stoi(*holder);
  auto unadmitted = admit_process(steering_->cgroup(), target);
  ASSERT_TRUE(unadmitted) << unadmitted.error().message;
  EXPECT_TRUE(steering_->cgroup().contains(target));
  int tcp = 0, udp = 0;
  for (const auto& socket : *unadmitted)
    (socket.protocol == IPPROTO_TCP ? tcp : udp)++;
  EXPECT_EQ(tcp, 1);
  EXPECT_EQ(udp, 1);
  auto closed = close_sockets(*unadmitted);
  ASSERT_TRUE(closed) << closed.error().message;
  EXPECT_EQ(*closed, 1);

  std::ofstream(flag).close();
  auto syn = read_tun_until(toward(kIntranetHost, 82), 3s);
  wait_exit(pid);
  EXPECT_TRUE(syn) << "the admitted process's new connection did not reach the TUN";
  EXPECT_EQ(intranet_at_peer(), 0u);
}

TEST_F(VpnSteering, ExecRuleAdmitsAProcessWhenItStarts) {
  // A copy of bash under its own name, so that the rule matches only what this test starts.
  std::string rule_binary = directory_ + "/stw-bash";
  std::filesystem::copy_file("/bin/bash", rule_binary);
  std::filesystem::permissions(rule_binary, std::filesystem::perms::owner_all);
  start();

  // The proc connector delivers only in the initial network namespace.
  guard_.reset();
  std::vector<pid_t> admitted;
  auto watcher =
      ExecRuleWatcher::start(steering_->cgroup(), {rule_binary},
                             [&](pid_t pid, const std::string&) { admitted.push_back(pid); });
  enter_client();
  ASSERT_TRUE(watcher) << watcher.error().message;

  pid_t pid = spawn_unadmitted({rule_binary, "-c",
                                "sleep 0.5; timeout 1 " + rule_binary + " -c '" +
                                    tcp_connect(kIntranetHost, 83) + "'; true"});
  for (int i = 0; i < 100 && admitted.empty(); ++i) {
    pollfd ready{watcher->fd(), POLLIN, 0};
    ::poll(&ready, 1, 20);
    auto polled = watcher->poll_once();
    ASSERT_TRUE(polled) << polled.error().message;
  }
  ASSERT_FALSE(admitted.empty()) << "the exec rule did not admit the process";
  EXPECT_EQ(admitted.front(), pid);
  auto syn = read_tun_until(toward(kIntranetHost, 83), 3s);
  wait_exit(pid);
  EXPECT_TRUE(syn);
  EXPECT_EQ(intranet_at_peer(), 0u);
}

TEST_F(VpnSteering, TunnelDownRefusesAdmittedTrafficAndNothingLeaves) {
  start();
  ASSERT_TRUE(steering_->set_tunnel_down());

  pid_t tcp = spawn_admitted({"timeout", "5", "bash", "-c", tcp_connect(kIntranetHost, 80)});
  EXPECT_EQ(wait_exit(tcp), 1) << "expected a local refusal while the tunnel is down";
  pid_t udp = spawn_admitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  EXPECT_NE(wait_exit(udp), 0);

  EXPECT_FALSE(read_tun_until(toward_intranet(), 300ms));
  EXPECT_EQ(intranet_at_peer(), 0u);
  auto counters = steering_->counters();
  ASSERT_TRUE(counters);
  EXPECT_GE(counters->refused_admitted, 2u);

  // And up again (twice: a no-op): the same traffic is tunnelled.
  ASSERT_TRUE(steering_->set_tunnel_up(tun_->ifindex()));
  ASSERT_TRUE(steering_->set_tunnel_up(tun_->ifindex()));
  pid_t again = spawn_admitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  EXPECT_TRUE(read_tun_until(toward(kIntranetHost, 7), 2s));
  wait_exit(again);
}

TEST_F(VpnSteering, AdmittedIpv6WithAnIpv4OnlyTunnelIsRefusedNotLeaked) {
  start();
  pid_t tcp = spawn_admitted({"timeout", "5", "bash", "-c", tcp_connect("64:ff9b::c612:401", 80)});
  EXPECT_EQ(wait_exit(tcp), 1) << "expected a local refusal of IPv6 toward the intranet";
  pid_t udp = spawn_admitted({"bash", "-c", udp_send("64:ff9b::c612:401", 7)});
  EXPECT_NE(wait_exit(udp), 0);
  EXPECT_FALSE(read_tun_until(toward_intranet(), 300ms));
  EXPECT_EQ(intranet_at_peer(), 0u);
}

TEST_F(VpnSteering, AdmittedDnsGoesToTheGatewayDnsThroughTheTunOthersAreUntouched) {
  start();
  pid_t admitted = spawn_admitted({"bash", "-c", udp_send("198.18.0.1", 53)});
  auto query = read_tun_until(toward("198.18.4.53", 53), 2s);
  wait_exit(admitted);
  ASSERT_TRUE(query) << "the admitted query did not arrive on the TUN for the gateway's DNS";
  EXPECT_EQ(flow_of_packet(*query)->source, ip::make_address("198.18.8.10"));
  auto before = netns_->dns_packets_at_peer();
  ASSERT_TRUE(before);
  EXPECT_EQ(*before, 0u) << "the admitted query also left through the normal route";

  pid_t other = spawn_unadmitted({"bash", "-c", udp_send("198.18.0.1", 53)});
  EXPECT_EQ(wait_exit(other), 0);
  auto after = netns_->dns_packets_at_peer();
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, 1u) << "an unadmitted query should go to its resolver unchanged";
  EXPECT_FALSE(read_tun_until(toward("198.18.4.53", 53), 300ms));
}

TEST_F(VpnSteering, FlowCheckPassesAdmittedFlowsAndDropsOthers) {
  start();
  SystemClock clock;
  FlowCheck check(steering_->cgroup().id(), clock);

  pid_t child = spawn_admitted({"timeout", "1", "bash", "-c", tcp_connect(kIntranetHost, 84)});
  auto syn = read_tun_until(toward(kIntranetHost, 84), 2s);
  ASSERT_TRUE(syn);
  auto owner = find_socket_owner(*flow_of_packet(*syn));
  ASSERT_TRUE(owner) << owner.error().message;
  ASSERT_TRUE(*owner) << "no socket found for the admitted flow";
  EXPECT_EQ((*owner)->cgroup_id, steering_->cgroup().id());
  EXPECT_EQ(check.check(*syn), FlowCheck::Decision::kPass);
  wait_exit(child);

  // A socket of this (unadmitted) test process, and a packet claiming to be its flow.
  int socket = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(9);
  ::inet_pton(AF_INET, kIntranetHost, &remote.sin_addr);
  ASSERT_EQ(::connect(socket, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)), 0);
  sockaddr_in local{};
  socklen_t length = sizeof(local);
  ::getsockname(socket, reinterpret_cast<sockaddr*>(&local), &length);
  std::vector<uint8_t> forged(28, 0);
  forged[0] = 0x45;
  forged[9] = IPPROTO_UDP;
  std::memcpy(&forged[12], &local.sin_addr, 4);
  std::memcpy(&forged[16], &remote.sin_addr, 4);
  std::memcpy(&forged[20], &local.sin_port, 2);
  std::memcpy(&forged[22], &remote.sin_port, 2);
  EXPECT_EQ(check.check(forged), FlowCheck::Decision::kDrop);
  EXPECT_EQ(check.check(forged), FlowCheck::Decision::kDrop);
  EXPECT_EQ(check.lookups(), 2u) << "the second packet of a flow should hit the cache";
  ::close(socket);
}

TEST_F(VpnSteering, StopRemovesEverythingItCreated) {
  start();
  pid_t child = spawn_admitted({"sleep", "0.2"});
  ASSERT_TRUE(steering_->stop());
  steering_.reset();
  tun_.reset();
  wait_exit(child);
  expect_nothing_left();
}

TEST_F(VpnSteering, StartAfterASigkilledInstanceRemovesWhatItLeft) {
  pid_t sleeper = crash_an_instance({"sleep", "30"});

  // It left its table, rules and cgroup behind (its TUN went with its descriptor).
  auto tables = testing::shell("nft list tables");
  ASSERT_TRUE(tables);
  EXPECT_NE(tables->find(options_.nft_table), std::string::npos);
  auto rules = testing::shell("ip rule");
  ASSERT_TRUE(rules);
  EXPECT_NE(rules->find("fwmark 0x7270 lookup 7270"), std::string::npos) << *rules;

  start();
  ASSERT_TRUE(steering_->stop());
  steering_.reset();
  tun_.reset();
  if (sleeper > 0) ::kill(sleeper, SIGKILL);
  expect_nothing_left();
}

TEST_F(VpnSteering, NoIntranetPacketLeavesWhileAStartReplacesASigkilledInstance) {
  // Two senders that never stop trying: one admitted by the instance that crashes, one that
  // nobody admitted.
  pid_t admitted = crash_an_instance(intranet_sender("admitted"));
  pid_t unadmitted = spawn_unadmitted(intranet_sender("unadmitted"));
  for (const char* name : {"admitted", "unadmitted"}) {
    ASSERT_TRUE(sender_ready(name)) << "the " << name << " sender did not start";
  }
  ASSERT_EQ(intranet_at_peer(), 0u) << "the crashed instance's leftovers let traffic out";

  // The second start removes the leftovers and sets up its own while both keep sending.
  start(/*tunnel_up=*/false);
  std::this_thread::sleep_for(200ms);
  std::ofstream(directory_ + "/stop").close();
  wait_exit(unadmitted);
  for (int i = 0; i < 250 && !std::filesystem::exists(directory_ + "/admitted"); ++i)
    std::this_thread::sleep_for(20ms);
  if (admitted > 0) ::kill(admitted, SIGKILL);

  EXPECT_EQ(intranet_at_peer(), 0u) << "intranet packets left by the normal route";
  for (const char* name : {"admitted", "unadmitted"}) {
    uint64_t sent = 0, refused = 0;
    std::ifstream(directory_ + "/" + name) >> sent >> refused;
    EXPECT_GT(refused, 10'000u) << "the " << name << " sender hardly ran (sent " << sent << ")";
  }
  auto counters = steering_->counters();
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GT(counters->refused_others, 0u) << "the senders were not running after the start";

  // The handover table went with the start; the ledger lists only the new objects.
  auto tables = testing::shell("nft list tables");
  ASSERT_TRUE(tables);
  EXPECT_EQ(tables->find("_handover"), std::string::npos) << *tables;
  auto entries = steering_->ledger().entries();
  ASSERT_TRUE(entries);
  for (const auto& entry : *entries)
    EXPECT_EQ(entry.name.find("_handover"), std::string::npos);
}

TEST_F(VpnSteering, NoIntranetPacketLeavesWhileTheTunnelGoesDownAndUpAgain) {
  start();
  pid_t admitted = spawn_admitted(intranet_sender("admitted"));
  pid_t unadmitted = spawn_unadmitted(intranet_sender("unadmitted"));
  for (const char* name : {"admitted", "unadmitted"}) {
    ASSERT_TRUE(sender_ready(name)) << "the " << name << " sender did not start";
  }
  // Reconnects switch the steering down and up; both senders keep trying all the while.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(steering_->set_tunnel_down());
    std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(steering_->set_tunnel_up(tun_->ifindex()));
    std::this_thread::sleep_for(5ms);
  }
  std::ofstream(directory_ + "/stop").close();
  wait_exit(unadmitted);
  wait_exit(admitted);
  EXPECT_EQ(intranet_at_peer(), 0u) << "intranet packets left by the normal route";
}

TEST_F(VpnSteering, AStartThatFailsAfterASigkilledInstanceKeepsRefusingThroughTheHandover) {
  pid_t sleeper = crash_an_instance({"sleep", "30"});
  if (sleeper > 0) ::kill(sleeper, SIGKILL);

  // The new plan has a prefix whose prohibit route someone else already holds: the start
  // fails after the leftovers are gone.
  ASSERT_TRUE(testing::shell(
      fmt::format("ip route add prohibit 198.18.5.0/24 table {} metric 4000", options_.table)));
  config_.split_include.push_back(*Prefix::parse("198.18.5.0/24"));
  auto failed = failed_start();
  EXPECT_NE(failed.message.find("prohibit route"), std::string::npos) << failed.message;

  // Only the handover is left, in the kernel and in the ledger, and it refuses.
  auto tables = testing::shell("nft list tables");
  ASSERT_TRUE(tables);
  EXPECT_NE(tables->find("inet steward_test_handover"), std::string::npos) << *tables;
  EXPECT_EQ(tables->find("inet steward_test\n"), std::string::npos) << *tables;
  auto rules = testing::shell("ip rule");
  ASSERT_TRUE(rules);
  EXPECT_EQ(rules->find("0x7270"), std::string::npos) << *rules;
  pid_t udp = spawn_unadmitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  EXPECT_NE(wait_exit(udp), 0) << "the handover should refuse intranet traffic";
  pid_t other = spawn_unadmitted({"bash", "-c", udp_send("198.18.6.1", 7)});
  EXPECT_EQ(wait_exit(other), 0) << "the handover refuses only the intranet";
  EXPECT_EQ(intranet_at_peer(), 0u);

  // Cleanup without a daemon removes it, and leaves the foreign route alone.
  EXPECT_TRUE(cleanup_instance(options_));
  auto routes = testing::shell(fmt::format("ip route show table {}", options_.table));
  ASSERT_TRUE(routes);
  EXPECT_NE(routes->find("198.18.5.0/24"), std::string::npos) << *routes;
  ASSERT_TRUE(testing::shell(
      fmt::format("ip route del prohibit 198.18.5.0/24 table {} metric 4000", options_.table)));
  expect_nothing_left();
}

// Every 20 ms (for at most 30 s), a datagram to port 85 of the intranet host from a socket
// opened at the start, and one to port 87 from a new socket; refusals ignored.
constexpr const char* kKeepsSending = R"(import socket, time
early = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(1500):
    for sock, port in [(early, 85), (socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 87)]:
        try:
            sock.sendto(b'x', ('198.18.4.1', port))
        except OSError:
            pass
    time.sleep(0.02)
)";

TEST_F(VpnSteering, AProcessAdmittedBeforeASigkillStaysAdmittedAndIsTunnelledAfterTheNextStart) {
  pid_t admitted = crash_an_instance({"/usr/bin/python3", "-c", kKeepsSending});
  ASSERT_GT(admitted, 0);
  auto mount = find_cgroup2();
  ASSERT_TRUE(mount);
  auto id_before = cgroup_id_of(mount->path + "/" + options_.cgroup_path);
  ASSERT_TRUE(id_before) << id_before.error().message;

  VpnLogCapture log;
  start(/*tunnel_up=*/false);
  EXPECT_EQ(intranet_at_peer(), 0u)
      << "intranet packets left while the start replaced the crashed run";
  // The group was adopted, not made again: same directory, same id, same member.
  EXPECT_EQ(steering_->cgroup().id(), *id_before);
  EXPECT_TRUE(steering_->cgroup().contains(admitted)) << "the admitted process lost its admission";
  EXPECT_NE(
      log.text().find(fmt::format("adopted the admitted cgroup {}", steering_->cgroup().path())),
      std::string::npos)
      << log.text();
  EXPECT_NE(log.text().find(fmt::format("processes=1 pids={}", admitted)), std::string::npos)
      << log.text();

  // Once the tunnel is up, its datagrams, from the socket it opened before the crash and from
  // new ones, are marked and arrive on the TUN.
  ASSERT_TRUE(steering_->set_tunnel_up(tun_->ifindex()));
  EXPECT_TRUE(read_tun_until(toward(kIntranetHost, 85), 2s)) << "its early socket is not steered";
  EXPECT_TRUE(read_tun_until(toward(kIntranetHost, 87), 2s)) << "its new sockets are not steered";
  // A process nobody admitted is refused, and nothing of it reaches the TUN.
  pid_t other = spawn_unadmitted({"bash", "-c", udp_send(kIntranetHost, 86)});
  EXPECT_NE(wait_exit(other), 0) << "the unadmitted datagram should have been refused";
  EXPECT_FALSE(read_tun_until(toward(kIntranetHost, 86), 300ms));
  auto counters = steering_->counters();
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GT(counters->tunnelled, 0u);
  EXPECT_GE(counters->refused_others, 1u);

  // A normal stop removes the adopted group with the rest.
  ::kill(admitted, SIGKILL);
  ASSERT_TRUE(steering_->stop());
  steering_.reset();
  tun_.reset();
  expect_nothing_left();
}

TEST_F(VpnSteering, WithAFullTunnelNoPacketOfAnAdoptedProcessLeavesWhileAStartReplacesIt) {
  // The gateway sends no split-include: everything is intranet, and a process that lost its
  // admission would take the normal route (198.18.6.0/24 is counted at the peer as "outside").
  config_.split_include.clear();
  std::vector<std::string> sender = {"/usr/bin/python3",
                                     "-c",
                                     kIntranetSender,
                                     directory_ + "/stop",
                                     directory_ + "/sender.ready",
                                     directory_ + "/sender",
                                     "198.18.6.1",
                                     "64:ff9b::c612:601"};
  pid_t admitted = crash_an_instance(sender);
  for (int i = 0; i < 250 && !std::filesystem::exists(directory_ + "/sender.ready"); ++i)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(std::filesystem::exists(directory_ + "/sender.ready")) << "the sender did not start";

  // The second start hands over while the sender keeps sending: before, during and after it
  // (the tunnel still down), everything the sender sends is refused.
  start(/*tunnel_up=*/false);
  std::this_thread::sleep_for(200ms);
  auto outside = netns_->counter("outside");
  ASSERT_TRUE(outside) << outside.error().message;
  EXPECT_EQ(*outside, 0u) << "the adopted process's packets took the normal route";
  auto counters = steering_->counters();
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GT(counters->refused_admitted, 0u) << "the new table does not see the sender admitted";
  // Once the tunnel is up, they go into it.
  ASSERT_TRUE(steering_->set_tunnel_up(tun_->ifindex()));
  EXPECT_TRUE(read_tun_until(toward("198.18.6.1", 9), 2s)) << "the adopted process is not steered";

  std::ofstream(directory_ + "/stop").close();
  for (int i = 0; i < 250 && !std::filesystem::exists(directory_ + "/sender"); ++i)
    std::this_thread::sleep_for(20ms);
  if (admitted > 0) ::kill(admitted, SIGKILL);
  uint64_t sent = 0, refused = 0;
  std::ifstream(directory_ + "/sender") >> sent >> refused;
  EXPECT_GT(refused, 10'000u) << "the sender hardly ran (sent " << sent << ")";
}

TEST_F(VpnSteering, AGroupAtTheAdmittedPathThatTheLedgerDoesNotListIsNotAdopted) {
  pid_t sleeper = crash_an_instance({"sleep", "30"});
  ASSERT_GT(sleeper, 0);
  // The crashed run's ledger forgets its group: from now on it is someone else's.
  auto mount = find_cgroup2();
  ASSERT_TRUE(mount);
  {
    auto ledger = Ledger::open(options_.ledger_directory, options_.instance);
    ASSERT_TRUE(ledger) << ledger.error().message;
    LedgerEntry group;
    group.kind = LedgerEntry::Kind::kCgroup;
    group.name = mount->path;
    group.text = options_.cgroup_path;
    ASSERT_TRUE(ledger->forget(group));
  }

  auto refused = failed_start();
  EXPECT_NE(refused.message.find("exists and is not ours"), std::string::npos) << refused.message;
  // The group and its member are left alone.
  std::string group = mount->path + "/" + options_.cgroup_path;
  std::string procs;
  std::ifstream(group + "/cgroup.procs") >> procs;
  EXPECT_EQ(procs, std::to_string(sleeper));

  ::kill(sleeper, SIGKILL);
  EXPECT_TRUE(cleanup_instance(options_));
  EXPECT_TRUE(remove_cgroup(mount->path, options_.cgroup_path));
  expect_nothing_left();
}

TEST_F(VpnSteering, AnAdmittedGroupThatIsGoneIsReplacedByAFreshOneWithAWarning) {
  pid_t quick = crash_an_instance({"true"});
  ASSERT_GT(quick, 0);
  auto mount = find_cgroup2();
  ASSERT_TRUE(mount);
  // The crashed run's group (listed in its ledger) vanishes once its member has exited.
  std::string group = mount->path + "/" + options_.cgroup_path;
  for (int i = 0; i < 100 && ::rmdir(group.c_str()) != 0; ++i)
    std::this_thread::sleep_for(20ms);
  ASSERT_FALSE(std::filesystem::exists(group));

  VpnLogCapture log;
  start();
  EXPECT_NE(log.text().find("cannot adopt the admitted cgroup"), std::string::npos) << log.text();
  EXPECT_EQ(log.text().find("adopted the admitted cgroup"), std::string::npos) << log.text();
  pid_t admitted = spawn_admitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  EXPECT_TRUE(read_tun_until(toward(kIntranetHost, 7), 2s)) << "the fresh group does not work";
  wait_exit(admitted);
  ASSERT_TRUE(steering_->stop());
  steering_.reset();
  tun_.reset();
  expect_nothing_left();
}

TEST_F(VpnSteering, RefusesToStartWhenAPieceCannotBeSetUpAndLeavesOthersAlone) {
  // Someone else's nft table of the same name.
  ASSERT_TRUE(testing::shell("nft add table inet " + options_.nft_table));
  auto failed = failed_start();
  EXPECT_NE(failed.message.find("nft table inet steward_test"), std::string::npos)
      << failed.message;

  auto tables = testing::shell("nft list tables");
  ASSERT_TRUE(tables);
  EXPECT_NE(tables->find(options_.nft_table), std::string::npos) << "the foreign table was removed";
  auto rules = testing::shell("ip rule");
  ASSERT_TRUE(rules);
  EXPECT_EQ(rules->find("0x7270"), std::string::npos) << *rules;
  ASSERT_TRUE(testing::shell("nft delete table inet " + options_.nft_table));
}

TEST_F(VpnSteering, RepliesWrittenToTheTunReachTheAdmittedProcess) {
  start();
  std::string script = fmt::format(
      "import socket, sys\n"
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
      "s.sendto(b'ping', ('{}', 7))\n"
      "data, peer = s.recvfrom(100)\n"
      "sys.exit(0 if data == b'ping' and peer == ('{}', 7) else 3)\n",
      kIntranetHost, kIntranetHost);
  pid_t pid = spawn_admitted({"python3", "-c", script});
  auto request = read_tun_until(toward(kIntranetHost, 7), 3s);
  ASSERT_TRUE(request);

  // The echo: addresses and ports swapped, which leaves both checksums valid.
  auto reply = *request;
  size_t header = (reply[0] & 0x0f) * 4u;
  std::swap_ranges(reply.begin() + 12, reply.begin() + 16, reply.begin() + 16);
  std::swap_ranges(reply.begin() + header, reply.begin() + header + 2, reply.begin() + header + 2);
  ASSERT_EQ(::write(tun_->fd(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  EXPECT_EQ(wait_exit(pid), 0) << "the admitted process did not get the reply from the TUN";
}

TEST_F(VpnSteering, TheGatewayKeepsItsNormalRouteEvenForAdmittedProcesses) {
  start();
  pid_t pid = spawn_admitted({"timeout", "5", "bash", "-c", tcp_connect("198.18.0.1", 443)});
  EXPECT_EQ(wait_exit(pid), 1) << "the peer has no listener on 443 and answers with a reset";
  auto at_gateway = netns_->counter("gateway");
  ASSERT_TRUE(at_gateway);
  EXPECT_GE(*at_gateway, 1u) << "the admitted process's packet to the gateway did not go out";
  EXPECT_FALSE(read_tun_until(toward("198.18.0.1", 443), 300ms));
}

TEST_F(VpnSteering, FullTunnelCarriesEverythingAdmittedAndLeavesOthersTheirRoutes) {
  config_.split_include.clear();
  start();

  pid_t admitted = spawn_admitted({"bash", "-c", udp_send("198.18.6.1", 7)});
  EXPECT_TRUE(read_tun_until(toward("198.18.6.1", 7), 2s));
  EXPECT_EQ(wait_exit(admitted), 0);
  auto outside = netns_->counter("outside");
  ASSERT_TRUE(outside);
  EXPECT_EQ(*outside, 0u) << "admitted traffic left outside the tunnel";

  pid_t other = spawn_unadmitted({"bash", "-c", udp_send("198.18.6.1", 7)});
  EXPECT_EQ(wait_exit(other), 0);
  outside = netns_->counter("outside");
  ASSERT_TRUE(outside);
  EXPECT_EQ(*outside, 1u) << "an unadmitted process should keep its normal route";

  pid_t gateway = spawn_admitted({"timeout", "5", "bash", "-c", tcp_connect("198.18.0.1", 443)});
  EXPECT_EQ(wait_exit(gateway), 1);
  auto at_gateway = netns_->counter("gateway");
  ASSERT_TRUE(at_gateway);
  EXPECT_GE(*at_gateway, 1u) << "the tunnel's own traffic to the gateway must not be tunnelled";

  pid_t v6 = spawn_admitted({"timeout", "5", "bash", "-c", tcp_connect("64:ff9b::c612:601", 80)});
  EXPECT_EQ(wait_exit(v6), 1) << "IPv6 of an admitted process without an IPv6 tunnel is refused";
}

TEST_F(VpnSteering, UsesAPrivateCgroup2MountWhereSysIsRemountedAsUnderIpNetnsExec) {
  std::string fallback = options_.cgroup2_fallback_mount;
  pid_t child = ::fork();
  if (child == 0) {
    // What `ip netns exec` does to /sys: a fresh sysfs with no cgroup mounts below it.
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::umount2("/sys", MNT_DETACH) != 0 || ::mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0) {
      ::_exit(10);
    }
    if (find_cgroup2()) ::_exit(11);
    start();
    if (HasFatalFailure() || !steering_) ::_exit(12);
    if (!steering_->cgroup().path().starts_with(fallback)) ::_exit(13);
    pid_t admitted = spawn_admitted({"bash", "-c", udp_send(kIntranetHost, 7)});
    bool tunnelled = read_tun_until(toward(kIntranetHost, 7), 2s).has_value();
    wait_exit(admitted);
    if (!tunnelled) ::_exit(14);
    if (!steering_->stop()) ::_exit(15);
    ::_exit(0);
  }
  EXPECT_EQ(wait_exit(child), 0)
      << "10 namespace setup, 11 cgroup2 still visible, 12 start failed, 13 not the private "
         "mount, 14 admitted traffic not tunnelled, 15 stop failed";
  // Unmounted; the empty directory stays (it may carry another namespace's mount).
  std::error_code ec;
  EXPECT_TRUE(!std::filesystem::exists(fallback) || std::filesystem::is_empty(fallback, ec))
      << "the private mount point still holds something";
  std::filesystem::remove(fallback, ec);
  expect_nothing_left();
}

TEST_F(VpnSteering, Ipv6IsTunnelledWhenTheTunnelHasIpv6) {
  config_.address6 = ip::make_address_v6("64:ff9b::c612:80a");
  config_.address6_length = 128;
  start();
  pid_t pid = spawn_admitted({"timeout", "1", "bash", "-c", tcp_connect("64:ff9b::c612:401", 80)});
  auto syn = read_tun_until(toward("64:ff9b::c612:401", 80), 2s);
  wait_exit(pid);
  ASSERT_TRUE(syn) << "the admitted IPv6 connection did not reach the TUN";
  EXPECT_EQ(flow_of_packet(*syn)->source, ip::make_address("64:ff9b::c612:80a"));
  EXPECT_EQ(intranet_at_peer(), 0u);
}

TEST_F(VpnSteering, TheTunDescriptorWorksWithAsio) {
  start();
  boost::asio::io_context io;
  boost::asio::posix::stream_descriptor stream(io, ::dup(tun_->fd()));
  std::array<uint8_t, 2048> buffer{};
  std::optional<FlowKey> received;
  std::function<void()> read_next = [&] {
    stream.async_read_some(
        boost::asio::buffer(buffer), [&](boost::system::error_code ec, size_t size) {
          if (ec) return;
          auto flow = flow_of_packet(std::span<const uint8_t>(buffer.data(), size));
          if (flow && flow->destination_port == 7) {
            received = *flow;
            return;
          }
          read_next();
        });
  };
  read_next();
  pid_t pid = spawn_admitted({"bash", "-c", udp_send(kIntranetHost, 7)});
  io.run_for(2s);
  wait_exit(pid);
  ASSERT_TRUE(received) << "no packet through the Asio stream";
  EXPECT_EQ(received->destination, ip::make_address(kIntranetHost));
}

TEST_F(VpnSteering, BadAdmissionRequestsSaySoAndChangeNothing) {
  start();
  auto missing = run_admitted(steering_->cgroup(), {"/nonexistent/steward-command"});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("/nonexistent/steward-command"), std::string::npos);
  EXPECT_FALSE(run_admitted(steering_->cgroup(), {}));

  auto no_process = admit_process(steering_->cgroup(), 0);
  ASSERT_FALSE(no_process);
  EXPECT_EQ(no_process.error().code, ErrorCode::kNotFound);
  auto members = steering_->cgroup().processes();
  ASSERT_TRUE(members);
  EXPECT_TRUE(members->empty());

  auto rule = ExecRuleWatcher::start(steering_->cgroup(), {"/nonexistent/steward-command"});
  EXPECT_FALSE(rule);
}

}  // namespace
}  // namespace steward::vpn
