// The whole VPN end to end: the real `steward vpn connect` daemon in the lab's client namespace,
// real ocserv in the gateway namespace, HTTP, UDP echo and DNS on the intranet host, and a
// capture on the client's outside link that must never show a packet toward the intranet
// (198.18.2.0/24) or the tunnel pools: only the tunnel's TLS and DTLS to the gateway may leave.
//
// One lab (namespaces, ocserv, intranet services) is shared by the cases; each case starts its
// own daemon and, at its end, disconnects it and checks that nothing of it is left.
#include "support/vpn_e2e.h"
#include "support/vpn_lab.h"
#include "vpn/cstp/tls.h"
#include "vpn/cstp/tunnel_config.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace steward::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Any packet on the outside link toward the intranet or the tunnel pools is a leak.
constexpr const char* kLeakFilter = "dst net 198.18.2.0/24 or dst net 198.18.100.0/23";

// Where the lab keeps its helper programs (set once the suite's lab exists).
std::string& lab_dir() {
  static std::string dir;
  return dir;
}

// The UDP echo client of tests/support/vpn_e2e.cpp: exit 0 when `size` bytes came back.
std::string echo_command(size_t size) {
  return fmt::format("/usr/bin/python3 {}/echo_client.py {} 7 {}", lab_dir(),
                     VpnLab::kIntranetAddress, size);
}

// The TCP upload client of tests/support/vpn_e2e.cpp: exit 0 when the intranet's sink got
// exactly the `size` bytes sent.
std::string upload_command(size_t size) {
  return fmt::format("/usr/bin/python3 {}/upload_client.py {} 9 {}", lab_dir(),
                     VpnLab::kIntranetAddress, size);
}

std::string curl(const std::string& path, const std::string& extra = "") {
  return fmt::format("curl -sS --max-time 3 {} http://{}/{}", extra, VpnLab::kIntranetAddress,
                     path);
}

// An admitted shell loop that tries the intranet over TCP and UDP every 50 ms until stopped,
// so that a capture sees anything that would leak during an outage.
class AdmittedSender {
 public:
  explicit AdmittedSender(const VpnDaemonProcess& daemon)
      : stop_file_(daemon.dir() + "/stop-sender") {
    std::filesystem::remove(stop_file_);
    std::string script = fmt::format(
        "while [ ! -e {} ]; do {} > /dev/null 2>&1; {} > /dev/null 2>&1; sleep 0.05; done",
        stop_file_, curl("hello.txt", "--max-time 1"), echo_command(16));
    thread_ = std::thread([&daemon, script] { daemon.run_admitted(script); });
  }
  ~AdmittedSender() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    std::ofstream(stop_file_) << "stop\n";
    thread_.join();
  }

 private:
  std::string stop_file_;
  std::thread thread_;
};

// A long-running process started with `steward vpn run` that fetches the intranet page each
// time it is asked to, until stopped: it is admitted once, at its start.
class LongRunningAdmitted {
 public:
  explicit LongRunningAdmitted(const VpnDaemonProcess& daemon) : dir_(daemon.dir() + "/long") {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ + "/run.sh") << fmt::format(
        "echo $$ > {d}/pid\n"
        "while [ ! -e {d}/stop ]; do\n"
        "  if [ -e {d}/go ]; then\n"
        "    rm -f {d}/go; {curl} > {d}/out.new 2>&1; echo \"exit $?\" >> {d}/out.new\n"
        "    mv {d}/out.new {d}/out\n"
        "  fi\n"
        "  sleep 0.05\n"
        "done\n",
        fmt::arg("d", dir_), fmt::arg("curl", curl("hello.txt")));
    thread_ =
        std::thread([this, &daemon] { ran_ = daemon.run_admitted("exec sh " + dir_ + "/run.sh"); });
  }
  ~LongRunningAdmitted() { stop(); }

  // Its PID once it runs; empty when it did not start.
  std::string pid() const {
    std::string pid;
    for (int i = 0; i < 400 && pid.empty(); ++i) {
      std::this_thread::sleep_for(25ms);
      std::ifstream(dir_ + "/pid") >> pid;
    }
    return pid;
  }
  // What one fetch printed, then "exit <curl's exit code>".
  std::string fetch() const {
    fs::remove(dir_ + "/out");
    std::ofstream(dir_ + "/go") << "go\n";
    for (int i = 0; i < 400 && !fs::exists(dir_ + "/out"); ++i)
      std::this_thread::sleep_for(25ms);
    std::ifstream in(dir_ + "/out");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // Stops it; the result of its `steward vpn run`.
  CommandResult stop() {
    if (thread_.joinable()) {
      std::ofstream(dir_ + "/stop") << "stop\n";
      thread_.join();
    }
    return ran_;
  }

 private:
  std::string dir_;
  std::thread thread_;
  CommandResult ran_;
};

class VpnEndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto lab = VpnLab::create();
    ASSERT_TRUE(lab) << lab.error().message;
    lab_ = std::move(*lab);
    lab_dir() = lab_->dir();
    auto started = lab_->start_gateway(GatewayOptions{});
    ASSERT_TRUE(started) << started.error().message;
    auto services = IntranetServices::start(*lab_);
    ASSERT_TRUE(services) << services.error().message;
    services_ = std::move(*services);
    // Like any machine, the client has a default route (its router is the gateway host): a
    // packet toward the intranet that escaped the steering would leave on c0 and show.
    auto routed = VpnLab::exec_in(
        lab_->client_ns(), fmt::format("ip route add default via {}", VpnLab::kGatewayOutside));
    ASSERT_TRUE(routed) << routed.error().message;
    // `ip netns exec` shows /etc/netns/<ns>/* over /etc: the client's normal resolver is the
    // gateway's outside address, where no DNS server runs.
    resolv_dir_ = "/etc/netns/" + lab_->client_ns();
    fs::create_directories(resolv_dir_);
    std::ofstream(resolv_dir_ + "/resolv.conf")
        << "nameserver " << VpnLab::kGatewayOutside << "\noptions timeout:1 attempts:1\n";
  }

  static void TearDownTestSuite() {
    services_.reset();
    lab_.reset();
    if (!resolv_dir_.empty()) fs::remove_all(resolv_dir_);
  }

  void TearDown() override {
    if (daemon_) {
      if (daemon_->pid() > 0) {
        auto done = daemon_->vpn({"disconnect"});
        EXPECT_EQ(done.exit_code, 0) << done.output << daemon_->log();
        EXPECT_EQ(daemon_->wait_exit(15s), 0) << daemon_->log();
      }
      auto left = daemon_->leftovers();
      EXPECT_TRUE(left.empty()) << fmt::format("{}", fmt::join(left, "\n"));
      daemon_.reset();
    }
    if (restore_gateway_) {
      // Whichever fault the case injected; removing one that is not there fails harmlessly.
      (void)lab_->block_dtls(false);
      (void)lab_->blackhole_gateway(false);
      auto restarted = lab_->restart_gateway(GatewayOptions{});
      EXPECT_TRUE(restarted) << restarted.error().message;
    }
  }

  json::object connect(VpnDaemonProcess::Options options = {}) {
    auto daemon = VpnDaemonProcess::start(*lab_, std::move(options));
    EXPECT_TRUE(daemon) << daemon.error().message;
    if (!daemon) return {};
    daemon_ = std::move(*daemon);
    auto status = daemon_->wait_connected(15s);
    EXPECT_TRUE(status) << status.error().message << "\ngateway log:\n" << lab_->gateway_log();
    return status ? *status : json::object{};
  }

  std::unique_ptr<Capture> capture(const std::string& name) {
    auto started = Capture::start(*lab_, name);
    EXPECT_TRUE(started) << started.error().message;
    return started ? std::move(*started) : nullptr;
  }

  void expect_no_leak(Capture& capture, const std::string& filter = kLeakFilter) {
    auto leaked = capture.stop_and_count(filter);
    ASSERT_TRUE(leaked) << leaked.error().message;
    EXPECT_EQ(*leaked, 0u) << "packets left outside the tunnel:\n" << capture.matching(filter);
  }

  void expect_intranet_works(const std::string& context) {
    auto fetched = daemon_->run_admitted(curl("hello.txt"));
    EXPECT_EQ(fetched.exit_code, 0) << context << ": " << fetched.output << daemon_->log();
    EXPECT_NE(fetched.output.find(IntranetServices::kHello), std::string::npos) << fetched.output;
  }

  static uint64_t number(const json::object& status, const char* key) {
    return status.at(key).to_number<uint64_t>();
  }

  static std::string echo(size_t size) { return echo_command(size); }

  static inline std::unique_ptr<VpnLab> lab_;
  static inline std::unique_ptr<IntranetServices> services_;
  static inline std::string resolv_dir_;
  std::unique_ptr<VpnDaemonProcess> daemon_;
  bool restore_gateway_ = false;
};

TEST_F(VpnEndToEnd, RunReachesTheIntranetOverTcpAndUdpAndSoDoesItsGrandchild) {
  auto status = connect();
  ASSERT_FALSE(status.empty());
  EXPECT_TRUE(vpn::Prefix::parse(VpnLab::kPool)
                  ->contains(boost::asio::ip::make_address(status.at("address").as_string())));
  auto outside = capture("run");
  ASSERT_TRUE(outside);

  auto tcp = daemon_->run_admitted(curl("hello.txt"));
  EXPECT_EQ(tcp.exit_code, 0) << tcp.output << daemon_->log();
  EXPECT_NE(tcp.output.find(IntranetServices::kHello), std::string::npos) << tcp.output;
  auto udp = daemon_->run_admitted(echo(64));
  EXPECT_EQ(udp.exit_code, 0) << udp.output << daemon_->log();
  // sh -> sh -> curl: the grandchild inherits the admission.
  auto grandchild = daemon_->run_admitted("sh -c '" + curl("hello.txt") + " && " + echo(32) + "'");
  EXPECT_EQ(grandchild.exit_code, 0) << grandchild.output << daemon_->log();
  EXPECT_NE(grandchild.output.find(IntranetServices::kHello), std::string::npos);

  // Each admission is logged with the command `run` was given (the process is still steward's
  // until it execs).
  EXPECT_NE(daemon_->log().find("command=\"sh\" decision=admit reason=run"), std::string::npos)
      << daemon_->log();
  // The command's exit code is `run`'s.
  EXPECT_EQ(daemon_->run_admitted("exit 7").exit_code, 7);
  // Its words arrive as typed, brackets and commas included (the CLI parser would split
  // "[a,b]" into a list), and a command that cannot run exits as a shell's would.
  auto words = daemon_->vpn({"run", "--", "sh", "-c",
                             "[ \"$1\" = '[a,b]' ] && [ \"$2\" = '[]' ] && [ $# = 2 ]", "sh",
                             "[a,b]", "[]"});
  EXPECT_EQ(words.exit_code, 0) << words.output;
  EXPECT_EQ(daemon_->vpn({"run", "--", "/nonexistent/steward-test"}).exit_code, 127);
  const std::string not_executable = daemon_->dir() + "/not-executable";
  std::ofstream(not_executable) << "exit 0\n";
  std::filesystem::permissions(
      not_executable, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(daemon_->vpn({"run", "--", not_executable}).exit_code, 126);
  // Packets written to the TUN pass through GRO, held up to 500 us for the rest of their stream.
  auto gro = VpnLab::exec_in(
      lab_->client_ns(),
      fmt::format("cat /sys/class/net/{}/gro_flush_timeout", VpnDaemonProcess::kTun));
  ASSERT_TRUE(gro) << gro.error().message;
  EXPECT_EQ(gro->substr(0, gro->find_last_not_of(" \n") + 1), "500000") << *gro;
  expect_no_leak(*outside);

  auto after = daemon_->status();
  ASSERT_TRUE(after) << after.error().message;
  const auto& channels = after->at("channels").as_object();
  uint64_t sent = channels.at("cstp").at("tx_packets").to_number<uint64_t>() +
                  channels.at("dtls").at("tx_packets").to_number<uint64_t>();
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(number(after->at("flow_check").as_object(), "drops"), 0u) << daemon_->log();

  // The CLI's status and the HTTP endpoint tell the same story.
  auto text = daemon_->vpn({"status"});
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("connected"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find(VpnLab::kIntranetPrefix), std::string::npos) << text.output;
  std::string port;
  std::ifstream(daemon_->dir() + "/port") >> port;
  auto metrics = VpnLab::exec_in(lab_->client_ns(),
                                 "curl -sS --max-time 3 http://127.0.0.1:" + port + "/metrics");
  ASSERT_TRUE(metrics) << metrics.error().message;
  EXPECT_NE(metrics->find("steward_vpn_tunnel_up 1"), std::string::npos) << *metrics;
  EXPECT_NE(metrics->find("steward_vpn_packets_total{channel=\""), std::string::npos);
  // Nothing was lost inside Steward on the way, and the counters that would say so are there.
  for (const char* where : {"send", "tun_write", "tun_read_refused"}) {
    EXPECT_NE(
        metrics->find(fmt::format("steward_vpn_data_failures_total{{where=\"{}\"}} 0", where)),
        std::string::npos)
        << *metrics;
  }
  EXPECT_NE(text.output.find("steering:     tunnelled "), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("failures:     send 0  tun write 0  tun read refused 0"),
            std::string::npos)
      << text.output;
  auto health = VpnLab::exec_in(lab_->client_ns(),
                                "curl -sS -f --max-time 3 http://127.0.0.1:" + port + "/healthz");
  EXPECT_TRUE(health) << health.error().message;
}

TEST_F(VpnEndToEnd, AProcessNotAdmittedGetsNothingAndNothingLeavesTheMachine) {
  ASSERT_FALSE(connect().empty());
  auto outside = capture("unadmitted");
  ASSERT_TRUE(outside);
  auto tcp = daemon_->run_unadmitted(curl("hello.txt"));
  EXPECT_NE(tcp.exit_code, 0) << tcp.output;
  auto udp = daemon_->run_unadmitted(echo(64));
  EXPECT_NE(udp.exit_code, 0) << udp.output;
  expect_no_leak(*outside);
  // Admission is per process: the same command admitted works at once.
  expect_intranet_works("admitted after the refusals");
}

TEST_F(VpnEndToEnd, AdmitAllTunnelsEveryProcessAndStillRefusesLocallyWhileTheTunnelIsDown) {
  VpnDaemonProcess::Options options;
  options.extra_config = {"admit_all = true"};
  auto status = connect(std::move(options));
  ASSERT_FALSE(status.empty());
  EXPECT_TRUE(status.at("admit_all").as_bool());
  EXPECT_NE(daemon_->log().find("per-process admission is OFF"), std::string::npos)
      << daemon_->log();
  auto outside = capture("admit-all");
  ASSERT_TRUE(outside);

  // Processes nobody admitted reach the intranet over TCP and UDP, and resolve its names.
  auto tcp = daemon_->run_unadmitted(curl("hello.txt"));
  EXPECT_EQ(tcp.exit_code, 0) << tcp.output << daemon_->log();
  EXPECT_NE(tcp.output.find(IntranetServices::kHello), std::string::npos) << tcp.output;
  auto udp = daemon_->run_unadmitted(echo(64));
  EXPECT_EQ(udp.exit_code, 0) << udp.output << daemon_->log();
  auto name = daemon_->run_unadmitted(std::string("getent hosts ") + IntranetServices::kName);
  EXPECT_EQ(name.exit_code, 0) << name.output << daemon_->log();
  EXPECT_NE(name.output.find(VpnLab::kIntranetAddress), std::string::npos) << name.output;

  // A silent gateway takes the tunnel down: everyone's intranet traffic is refused at once.
  restore_gateway_ = true;
  ASSERT_TRUE(lab_->blackhole_gateway(true));
  auto lost = daemon_->wait_status(
      [](const json::object& now) { return now.at("state").as_string() == "reconnecting"; }, 20s,
      "dead peer detected");
  ASSERT_TRUE(lost) << lost.error().message;
  auto refused = daemon_->run_unadmitted(curl("hello.txt"));
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  ASSERT_TRUE(lab_->blackhole_gateway(false));
  auto back = daemon_->wait_connected(30s);
  ASSERT_TRUE(back) << back.error().message;
  auto again = daemon_->run_unadmitted(curl("hello.txt"));
  EXPECT_EQ(again.exit_code, 0) << again.output << daemon_->log();
  expect_no_leak(*outside, "port 53 or (" + std::string(kLeakFilter) + ")");
  restore_gateway_ = false;

  auto after = daemon_->status();
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(number(after->at("flow_check").as_object(), "drops"), 0u) << daemon_->log();
  EXPECT_EQ(number(after->at("flow_check").as_object(), "lookups"), 0u);
}

TEST_F(VpnEndToEnd, AdmitPidLetsTheRunningProcessOpenNewConnections) {
  ASSERT_FALSE(connect().empty());
  std::string go = daemon_->dir() + "/go";
  std::string out = daemon_->dir() + "/admitted.out";
  // Unadmitted at first: it proves that with a refused connection, opens a UDP socket toward
  // the intranet and a TCP connection to the gateway host (both stay unadmitted), then waits.
  std::string script = fmt::format(
      "{} > /dev/null 2>&1 && echo early-success > {out}; "
      "exec 3<>/dev/udp/{intranet}/7; exec 4<>/dev/tcp/{gateway}/{port}; echo $$ > {dir}/pid; "
      "while [ ! -e {go} ]; do sleep 0.05; done; {} >> {out} 2>&1",
      curl("hello.txt"), curl("hello.txt"), fmt::arg("out", out), fmt::arg("go", go),
      fmt::arg("dir", daemon_->dir()), fmt::arg("intranet", VpnLab::kIntranetAddress),
      fmt::arg("gateway", VpnLab::kGatewayOutside), fmt::arg("port", lab_->gateway_port()));
  std::string script_file = daemon_->dir() + "/admit-me.sh";
  std::ofstream(script_file) << script << "\n";
  std::thread runner([&] { daemon_->run_unadmitted("bash " + script_file); });
  std::string pid;
  for (int i = 0; i < 200 && pid.empty(); ++i) {
    std::this_thread::sleep_for(25ms);
    std::ifstream(daemon_->dir() + "/pid") >> pid;
  }
  if (pid.empty()) {
    std::ofstream(go) << "go\n";
    runner.join();
    FAIL() << "the process to admit did not start";
  }
  auto admitted = daemon_->vpn({"admit", pid, "--close-existing"});
  EXPECT_EQ(admitted.exit_code, 0) << admitted.output;
  EXPECT_NE(admitted.output.find("admitted pid " + pid), std::string::npos) << admitted.output;
  // The sockets it opened before are listed.
  EXPECT_NE(admitted.output.find("2 socket(s) opened before admission"), std::string::npos)
      << admitted.output;
  EXPECT_NE(admitted.output.find(fmt::format("{}:7", VpnLab::kIntranetAddress)), std::string::npos)
      << admitted.output;
  // --close-existing closes TCP toward the intranet only: the connection to the gateway stays
  // (closing sockets works: VpnSteering's admission test aborts one toward the intranet).
  EXPECT_NE(admitted.output.find("closed 0 of them"), std::string::npos) << admitted.output;
  std::ofstream(go) << "go\n";
  runner.join();
  std::string result;
  std::ifstream in(out);
  result.assign(std::istreambuf_iterator<char>(in), {});
  EXPECT_EQ(result.find("early-success"), std::string::npos) << result;
  EXPECT_NE(result.find(IntranetServices::kHello), std::string::npos) << result << daemon_->log();

  // A PID that does not exist is refused with a message; nothing changes.
  auto missing = daemon_->vpn({"admit", "999999"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("no process"), std::string::npos) << missing.output;

  // A process in another network namespace (here: `run` started from the test's own) is
  // refused: the steering of the client namespace would never see its packets. `true` sends
  // nothing should the refusal fail.
  auto elsewhere = daemon_->vpn({"run", "--", "true"}, false);
  EXPECT_NE(elsewhere.exit_code, 0) << elsewhere.output;
  EXPECT_NE(elsewhere.output.find("another network namespace"), std::string::npos)
      << elsewhere.output;
}

TEST_F(VpnEndToEnd, GatewayRestartBringsTheTunnelBackWithANewLoginAndLeaksNothing) {
  ASSERT_FALSE(connect().empty());
  auto outside = capture("restart");
  ASSERT_TRUE(outside);
  // An admitted sender that keeps trying the intranet while the gateway is away.
  AdmittedSender sender(*daemon_);
  auto stopped = lab_->stop_gateway();
  ASSERT_TRUE(stopped) << stopped.error().message;
  auto lost = daemon_->wait_status(
      [](const json::object& now) { return now.at("state").as_string() == "reconnecting"; }, 15s,
      "reconnecting");
  EXPECT_TRUE(lost) << lost.error().message;
  std::this_thread::sleep_for(1s);  // the sender keeps trying against the refused routes
  auto started = lab_->start_gateway(GatewayOptions{});
  ASSERT_TRUE(started) << started.error().message;
  auto back = daemon_->wait_status(
      [](const json::object& now) {
        return now.at("state").as_string() == "connected" && now.at("tunnel_up").as_bool() &&
               number(now, "reconnects") >= 1;
      },
      30s, "reconnected");
  sender.stop();
  ASSERT_TRUE(back) << back.error().message << lab_->gateway_log();
  // The new ocserv does not know the old cookie: the daemon logged in again.
  EXPECT_GE(number(*back, "reauthentications"), 1u);
  EXPECT_EQ(number(*back, "address_changes"), 0u);
  expect_intranet_works("after the gateway restart");
  expect_no_leak(*outside);
}

TEST_F(VpnEndToEnd, DeadPeerDetectionNoticesASilentGatewayAndTheTunnelComesBack) {
  ASSERT_FALSE(connect().empty());
  auto outside = capture("dpd");
  ASSERT_TRUE(outside);
  restore_gateway_ = true;
  ASSERT_TRUE(lab_->blackhole_gateway(true));
  auto lost = daemon_->wait_status(
      [](const json::object& now) { return now.at("state").as_string() == "reconnecting"; }, 20s,
      "dead peer detected");
  ASSERT_TRUE(lost) << lost.error().message;
  EXPECT_FALSE(lost->at("tunnel_up").as_bool());
  // While the tunnel is down, admitted traffic is refused at once, not sent anywhere.
  auto refused = daemon_->run_admitted(curl("hello.txt"));
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  ASSERT_TRUE(lab_->blackhole_gateway(false));
  auto back = daemon_->wait_connected(30s);
  ASSERT_TRUE(back) << back.error().message;
  expect_intranet_works("after the gateway answered again");
  expect_no_leak(*outside);
  restore_gateway_ = false;
}

TEST_F(VpnEndToEnd, WithoutDtlsOrWithDtlsBlockedTrafficFlowsOverCstp) {
  restore_gateway_ = true;
  // DTLS offered but blocked on the way.
  ASSERT_TRUE(lab_->block_dtls(true));
  ASSERT_FALSE(connect().empty());
  expect_intranet_works("dtls blocked");
  auto blocked = daemon_->status();
  ASSERT_TRUE(blocked);
  EXPECT_EQ(blocked->at("data_channel").as_string(), "cstp");
  EXPECT_GT(blocked->at("channels").at("cstp").at("tx_packets").to_number<uint64_t>(), 0u);
  auto done = daemon_->vpn({"disconnect"});
  EXPECT_EQ(done.exit_code, 0) << done.output;
  EXPECT_EQ(daemon_->wait_exit(15s), 0);
  ASSERT_TRUE(lab_->block_dtls(false));

  // DTLS not offered at all.
  GatewayOptions no_dtls;
  no_dtls.dtls = false;
  ASSERT_TRUE(lab_->restart_gateway(no_dtls));
  ASSERT_TRUE(daemon_->restart());
  ASSERT_TRUE(daemon_->wait_connected(15s));
  expect_intranet_works("dtls not offered");
  auto plain = daemon_->status();
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->at("data_channel").as_string(), "cstp");
  EXPECT_EQ(plain->at("channels").at("dtls").at("tx_packets").to_number<uint64_t>(), 0u);
}

TEST_F(VpnEndToEnd, AReconnectWithAnotherAddressIsReportedAndTheNewAddressWorks) {
  auto first = connect();
  ASSERT_FALSE(first.empty());
  restore_gateway_ = true;
  GatewayOptions other;
  other.other_pool = true;
  ASSERT_TRUE(lab_->restart_gateway(other));
  auto moved = daemon_->wait_status(
      [](const json::object& now) {
        return number(now, "address_changes") == 1 && now.at("tunnel_up").as_bool();
      },
      30s, "address change handled");
  ASSERT_TRUE(moved) << moved.error().message;
  auto address = boost::asio::ip::make_address(moved->at("address").as_string());
  EXPECT_TRUE(vpn::Prefix::parse(VpnLab::kOtherPool)->contains(address)) << address;
  EXPECT_NE(moved->at("last_address_change").as_string().find(first.at("address").as_string()),
            std::string::npos);
  EXPECT_NE(daemon_->log().find("tunnel address changed"), std::string::npos);
  expect_intranet_works("after the address change");
  std::string port;
  std::ifstream(daemon_->dir() + "/port") >> port;
  auto metrics = VpnLab::exec_in(lab_->client_ns(),
                                 "curl -sS --max-time 3 http://127.0.0.1:" + port + "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->find("steward_vpn_address_changes_total 1"), std::string::npos) << *metrics;
}

TEST_F(VpnEndToEnd, AGatewayCertificateThatDoesNotMatchIsRefusedWithAClearMessage) {
  VpnDaemonProcess::Options options;
  options.ca_file = lab_->other_ca_file();
  auto daemon = VpnDaemonProcess::start(*lab_, options);
  ASSERT_TRUE(daemon) << daemon.error().message;
  daemon_ = std::move(*daemon);
  EXPECT_EQ(daemon_->wait_exit(20s), 1) << daemon_->log();
  EXPECT_NE(daemon_->log().find("is not trusted by the CA file"), std::string::npos)
      << daemon_->log();
}

TEST_F(VpnEndToEnd, PacketsLargerThanTheTunnelMtuStillGetThrough) {
  auto status = connect();
  ASSERT_FALSE(status.empty());
  int mtu = static_cast<int>(number(status, "mtu"));
  ASSERT_GT(mtu, 0);
  auto outside = capture("mtu");
  ASSERT_TRUE(outside);
  // TCP: segments sized by the TUN's MTU; a 300 kB body arrives whole.
  auto big = daemon_->run_admitted(curl("big.bin", "-o /dev/null -w '%{size_download}'"));
  EXPECT_EQ(big.exit_code, 0) << big.output << daemon_->log();
  EXPECT_NE(big.output.find(std::to_string(IntranetServices::kBigSize)), std::string::npos)
      << big.output;
  // TCP the other way: the stack hands the TUN 64 KiB segments (segmentation offload), which
  // Steward cuts to the MTU; 4 MB arrive whole, and no read was refused.
  auto upload = daemon_->run_admitted(upload_command(4'000'000));
  EXPECT_EQ(upload.exit_code, 0) << upload.output << daemon_->log();
  // UDP: a datagram larger than the MTU is fragmented before the TUN and reassembled.
  auto udp = daemon_->run_admitted(echo(static_cast<size_t>(mtu) * 2));
  EXPECT_EQ(udp.exit_code, 0) << udp.output << daemon_->log();
  auto after = daemon_->status();
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(number(*after, "tun_read_refusals"), 0u) << daemon_->log();
  expect_no_leak(*outside);
}

TEST_F(VpnEndToEnd, IntranetNamesResolveForAdmittedProcessesOnly) {
  ASSERT_FALSE(connect().empty());
  auto outside = capture("dns");
  ASSERT_TRUE(outside);
  auto admitted = daemon_->run_admitted(std::string("getent hosts ") + IntranetServices::kName);
  EXPECT_EQ(admitted.exit_code, 0) << admitted.output << daemon_->log();
  EXPECT_NE(admitted.output.find(VpnLab::kIntranetAddress), std::string::npos) << admitted.output;
  // The admitted query went through the tunnel: no DNS packet on the outside link.
  expect_no_leak(*outside, "port 53 or (" + std::string(kLeakFilter) + ")");

  auto other = daemon_->run_unadmitted(std::string("getent hosts ") + IntranetServices::kName);
  EXPECT_NE(other.exit_code, 0) << other.output;
  EXPECT_EQ(other.output.find(VpnLab::kIntranetAddress), std::string::npos) << other.output;
}

TEST_F(VpnEndToEnd, IPv6FromAnAdmittedProcessIsRejectedWhenTheGatewayIsIPv4Only) {
  // The gateway takes all traffic (no split-include) and offers no IPv6; the client has an
  // IPv6 route out of its outside link, so a leak would show on the capture.
  restore_gateway_ = true;
  GatewayOptions full;
  full.split_include = false;
  ASSERT_TRUE(lab_->restart_gateway(full));
  std::string add_v6 =
      "ip -6 addr add 64:ff9b::c612:102/120 dev c0 nodad && "
      "ip -6 route add default via 64:ff9b::c612:101 dev c0";
  ASSERT_TRUE(VpnLab::exec_in(lab_->client_ns(), add_v6));
  auto status = connect();
  ASSERT_FALSE(status.empty());
  EXPECT_TRUE(status.at("address6").as_string().empty());
  auto outside = capture("ipv6");
  ASSERT_TRUE(outside);
  auto attempt =
      daemon_->run_admitted("curl -sS --max-time 3 -6 http://[64:ff9b::c612:202]/hello.txt");
  EXPECT_NE(attempt.exit_code, 0) << attempt.output;
  // IPv4 still works through the full tunnel.
  expect_intranet_works("full tunnel, IPv4");
  expect_no_leak(*outside, "ip6 and (tcp or udp)");
  (void)VpnLab::exec_in(lab_->client_ns(),
                        "ip -6 route del default; "
                        "ip -6 addr del 64:ff9b::c612:102/120 dev c0");
}

TEST_F(VpnEndToEnd, CertificateLoginOpensTheTunnel) {
  restore_gateway_ = true;
  GatewayOptions certificate;
  certificate.auth = GatewayOptions::Auth::kCertificate;
  ASSERT_TRUE(lab_->restart_gateway(certificate));
  VpnDaemonProcess::Options options;
  options.certificate_login = true;
  ASSERT_FALSE(connect(options).empty());
  expect_intranet_works("certificate login");
}

TEST_F(VpnEndToEnd, APinnedKeyIsAcceptedAndAWrongPinRefused) {
  auto pin = vpn::cstp::public_key_pin_of_certificate(lab_->server_cert_file());
  ASSERT_TRUE(pin) << pin.error().message;
  VpnDaemonProcess::Options options;
  options.pin = *pin;
  ASSERT_FALSE(connect(options).empty());
  expect_intranet_works("pinned gateway");
  auto done = daemon_->vpn({"disconnect"});
  EXPECT_EQ(done.exit_code, 0) << done.output;
  EXPECT_EQ(daemon_->wait_exit(15s), 0);

  auto other = vpn::cstp::public_key_pin_of_certificate(lab_->other_ca_file());
  ASSERT_TRUE(other);
  options.pin = *other;
  auto refused = VpnDaemonProcess::start(*lab_, options);
  ASSERT_TRUE(refused) << refused.error().message;
  daemon_ = std::move(*refused);
  EXPECT_EQ(daemon_->wait_exit(20s), 1) << daemon_->log();
  EXPECT_NE(daemon_->log().find("pin"), std::string::npos) << daemon_->log();
}

TEST_F(VpnEndToEnd, AnExecRuleAdmitsAProgramWhenItStarts) {
  // A copy of curl under its own name, so that the rule matches only what this case starts.
  std::string program = lab_->dir() + "/stw-curl";
  fs::copy_file("/usr/bin/curl", program, fs::copy_options::overwrite_existing);
  fs::permissions(program, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  VpnDaemonProcess::Options options;
  // The daemon runs in the client namespace; the proc connector works in this process's.
  options.extra_config = {fmt::format("exec_rules = [\"{}\"]", program),
                          fmt::format("exec_rules_netns = \"/proc/{}/ns/net\"", ::getpid())};
  ASSERT_FALSE(connect(options).empty());
  auto outside = capture("exec-rule");
  ASSERT_TRUE(outside);
  // The exec is reported after it happened: the program's first connect may race the move,
  // so it tries a few times (each attempt is a new socket).
  auto fetched = daemon_->run_unadmitted(fmt::format(
      "{} -sS --max-time 3 --retry 5 --retry-delay 0 --retry-connrefused http://{}/hello.txt",
      program, VpnLab::kIntranetAddress));
  EXPECT_EQ(fetched.exit_code, 0) << fetched.output << daemon_->log();
  EXPECT_NE(fetched.output.find(IntranetServices::kHello), std::string::npos) << fetched.output;
  // The same binary under its usual name is not admitted.
  auto plain = daemon_->run_unadmitted(curl("hello.txt"));
  EXPECT_NE(plain.exit_code, 0) << plain.output;
  expect_no_leak(*outside);
  fs::remove(program);
}

TEST_F(VpnEndToEnd, BackgroundConnectReturnsOnceTheTunnelIsUp) {
  auto daemon = VpnDaemonProcess::start(*lab_, VpnDaemonProcess::Options{});
  ASSERT_TRUE(daemon) << daemon.error().message;
  daemon_ = std::move(*daemon);
  // The foreground instance is not wanted here: stop it before the background one starts.
  ASSERT_TRUE(daemon_->wait_connected(15s));
  ASSERT_EQ(daemon_->vpn({"disconnect"}).exit_code, 0);
  ASSERT_EQ(daemon_->wait_exit(15s), 0);

  auto started = daemon_->start_background();
  ASSERT_EQ(started.exit_code, 0) << started.output << daemon_->log();
  auto at = started.output.find("daemon pid ");
  ASSERT_NE(at, std::string::npos) << started.output;
  pid_t pid = std::stoi(started.output.substr(at + 11));
  auto status = daemon_->status();
  EXPECT_TRUE(status && status->at("tunnel_up").as_bool());
  expect_intranet_works("background daemon");
  // A second one for the same instance is refused, and says why and what to do.
  auto second = daemon_->start_background();
  EXPECT_EQ(second.exit_code, 2) << second.output;
  EXPECT_NE(second.output.find("running in another process"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("steward vpn disconnect"), std::string::npos) << second.output;
  expect_intranet_works("background daemon after a refused second one");
  auto done = daemon_->vpn({"disconnect"});
  EXPECT_EQ(done.exit_code, 0) << done.output;
  // It is not this process's child: gone means no /proc entry, or a zombie left to init.
  auto gone = [pid] {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return true;
    return line.find(") Z ") != std::string::npos;
  };
  for (int i = 0; i < 250 && !gone(); ++i)
    std::this_thread::sleep_for(20ms);
  if (!gone()) {
    ADD_FAILURE() << "the background daemon is still running after disconnect";
    ::kill(pid, SIGKILL);
  }
}

TEST_F(VpnEndToEnd, ALinkInTheWayIsNamedAndLeftAloneAndNothingElseRemains) {
  // Someone else's link has the TUN's name: the daemon must say so, exit 4, and remove only
  // what it created itself.
  ASSERT_TRUE(VpnLab::exec_in(lab_->client_ns(),
                              fmt::format("ip tuntap add {} mode tun", VpnDaemonProcess::kTun)));
  auto daemon = VpnDaemonProcess::start(*lab_, VpnDaemonProcess::Options{});
  ASSERT_TRUE(daemon) << daemon.error().message;
  daemon_ = std::move(*daemon);
  EXPECT_EQ(daemon_->wait_exit(20s), 4) << daemon_->log();
  EXPECT_NE(daemon_->log().find(fmt::format("cannot set up the kernel side: tun device {}",
                                            VpnDaemonProcess::kTun)),
            std::string::npos)
      << daemon_->log();
  auto left = daemon_->leftovers();
  ASSERT_EQ(left.size(), 1u) << fmt::format("{}", fmt::join(left, "\n"));
  EXPECT_EQ(left[0], std::string("tun ") + VpnDaemonProcess::kTun);
  ASSERT_TRUE(VpnLab::exec_in(lab_->client_ns(),
                              fmt::format("ip tuntap del {} mode tun", VpnDaemonProcess::kTun)));
}

TEST_F(VpnEndToEnd, NothingIsLeftAfterDisconnectOrAfterSigkillAndRestart) {
  ASSERT_FALSE(connect().empty());
  expect_intranet_works("before disconnect");
  auto done = daemon_->vpn({"disconnect"});
  EXPECT_EQ(done.exit_code, 0) << done.output;
  EXPECT_EQ(daemon_->wait_exit(15s), 0) << daemon_->log();
  auto left = daemon_->leftovers();
  EXPECT_TRUE(left.empty()) << fmt::format("{}", fmt::join(left, "\n"));

  // SIGTERM (and Ctrl-C's SIGINT) is a user disconnect too.
  ASSERT_TRUE(daemon_->restart());
  ASSERT_TRUE(daemon_->wait_connected(15s));
  EXPECT_EQ(daemon_->signal_and_wait(SIGTERM), 0) << daemon_->log();
  left = daemon_->leftovers();
  EXPECT_TRUE(left.empty()) << fmt::format("{}", fmt::join(left, "\n"));

  // A crash leaves the kernel state behind; the next start removes it first.
  ASSERT_TRUE(daemon_->restart());
  ASSERT_TRUE(daemon_->wait_connected(15s));
  auto outside = capture("sigkill");
  ASSERT_TRUE(outside);
  // An admitted sender keeps trying while the daemon is dead and again while it restarts.
  AdmittedSender sender(*daemon_);
  std::this_thread::sleep_for(300ms);
  daemon_->kill_hard();
  EXPECT_FALSE(daemon_->leftovers().empty()) << "a SIGKILL should leave the steering in place";
  std::this_thread::sleep_for(500ms);  // fail closed meanwhile: the leftovers refuse it all
  ASSERT_TRUE(daemon_->restart());
  auto back = daemon_->wait_connected(15s);
  sender.stop();
  ASSERT_TRUE(back) << back.error().message;
  expect_no_leak(*outside);
  expect_intranet_works("after SIGKILL and restart");
  daemon_->kill_hard();
  // Without a daemon, `disconnect` cleans up from the ledger.
  auto cleanup = daemon_->vpn({"disconnect"});
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.output;
  EXPECT_NE(cleanup.output.find("removed the"), std::string::npos) << cleanup.output;
  EXPECT_FALSE(std::filesystem::exists(daemon_->socket())) << "the dead daemon's socket stayed";
  left = daemon_->leftovers();
  EXPECT_TRUE(left.empty()) << fmt::format("{}", fmt::join(left, "\n"));
  auto again = daemon_->vpn({"disconnect"});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("nothing to clean up"), std::string::npos) << again.output;
  auto none = daemon_->vpn({"status", "--json"});
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.output.find("\"state\":\"not running\""), std::string::npos) << none.output;
  EXPECT_NE(none.output.find("no vpn daemon is running"), std::string::npos) << none.output;
  // An instance name is a file name in the state directory, never a path.
  EXPECT_EQ(daemon_->vpn({"disconnect", "--instance", "../escape"}).exit_code, 2);
  EXPECT_EQ(daemon_->vpn({"status", "--instance", ".hidden"}).exit_code, 2);
}

TEST_F(VpnEndToEnd, AProcessRunBeforeASigkillReachesTheIntranetAfterTheRestartWithoutAdmission) {
  ASSERT_FALSE(connect().empty());
  auto outside = capture("adopt");
  ASSERT_TRUE(outside);
  LongRunningAdmitted process(*daemon_);
  std::string pid = process.pid();
  ASSERT_FALSE(pid.empty()) << "the long-running process did not start" << daemon_->log();
  auto admitted_now = [&] {
    auto status = daemon_->status();
    if (!status) return false;
    for (const auto& entry : status->at("admitted").as_array()) {
      if (std::to_string(entry.at("pid").to_number<int64_t>()) == pid) return true;
    }
    return false;
  };
  std::string fetched = process.fetch();
  EXPECT_NE(fetched.find(IntranetServices::kHello), std::string::npos) << fetched;
  EXPECT_TRUE(admitted_now());

  // The daemon crashes and comes back; nobody admits the process again.
  daemon_->kill_hard();
  EXPECT_FALSE(daemon_->leftovers().empty()) << "a SIGKILL should leave the steering in place";
  ASSERT_TRUE(daemon_->restart());
  auto back = daemon_->wait_connected(15s);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_TRUE(admitted_now()) << "status does not list the process admitted before the crash";
  fetched = process.fetch();
  EXPECT_NE(fetched.find(IntranetServices::kHello), std::string::npos)
      << "the process admitted before the crash no longer reaches the intranet: " << fetched
      << daemon_->log();
  std::string log = daemon_->log();
  EXPECT_NE(log.find("adopted the admitted cgroup"), std::string::npos) << log;
  auto line = log.find(fmt::format("admission pid={} ", pid), log.find("adopted the admitted"));
  EXPECT_NE(line, std::string::npos) << log;
  if (line != std::string::npos) {
    auto text = log.substr(line, log.find('\n', line) - line);
    EXPECT_NE(text.find("reason=adopted"), std::string::npos) << text;
  }
  expect_no_leak(*outside);

  // Disconnect removes the group as always, and the process is back in the cgroup root.
  auto done = daemon_->vpn({"disconnect"});
  EXPECT_EQ(done.exit_code, 0) << done.output;
  EXPECT_EQ(daemon_->wait_exit(15s), 0) << daemon_->log();
  auto left = daemon_->leftovers();
  EXPECT_TRUE(left.empty()) << fmt::format("{}", fmt::join(left, "\n"));
  std::ifstream cgroups("/proc/" + pid + "/cgroup");
  std::string membership;
  while (std::getline(cgroups, membership) && !membership.starts_with("0::")) {
  }
  EXPECT_EQ(membership, "0::/") << "the process should be back in the cgroup root";
  auto ran = process.stop();
  EXPECT_EQ(ran.exit_code, 0) << ran.output;
}

}  // namespace
}  // namespace steward::testing
