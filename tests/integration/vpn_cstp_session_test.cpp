// The OpenConnect client library against real ocserv (Debian) in the VPN lab's namespaces: login,
// tunnel configuration, data through the tunnel (ICMP echo to the intranet host), DTLS and its
// fallback, dead-peer detection, gateway restarts, cookie refusal, address changes, disconnect.
#include "support/vpn_lab.h"
#include "support/vpn_session_runner.h"

#include "vpn/cstp/auth.h"
#include "vpn/cstp/https.h"
#include "vpn/cstp/session.h"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>

namespace steward::testing {
namespace {

namespace cstp = vpn::cstp;
using cstp::SessionState;
using namespace std::chrono_literals;

class VpnSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = VpnLab::create();
    ASSERT_TRUE(created) << created.error().message;
    lab_ = std::move(*created);
  }

  void start_gateway(GatewayOptions options = {}) {
    gateway_options_ = options;
    auto started = lab_->start_gateway(options);
    ASSERT_TRUE(started) << started.error().message;
  }

  cstp::SessionOptions options() {
    cstp::SessionOptions options;
    options.url = *cstp::GatewayUrl::parse(lab_->gateway_url());
    options.tls.ca_file = lab_->ca_file();
    options.credentials = {VpnLab::kUsername, VpnLab::kPassword, ""};
    options.reconnect_min = 100ms;
    options.reconnect_max = 500ms;
    options.connect_timeout = 5s;
    return options;
  }

  // An ICMP echo to the intranet host through the tunnel comes back.
  void expect_ping(SessionRunner& runner) {
    static std::atomic<uint16_t> sequence{1};
    auto address = runner.config().address;
    ASSERT_TRUE(address);
    // The first echo may race the gateway's route set-up: try a few.
    for (int attempt = 0; attempt < 10; ++attempt) {
      uint16_t seq = sequence++;
      auto sent = runner.send(
          icmp_echo_request(address->to_string(), VpnLab::kIntranetAddress, 0x5157, seq));
      ASSERT_TRUE(sent) << sent.error().message;
      auto reply = runner.wait_for_packet(
          [seq](const auto& packet) { return is_icmp_echo_reply(packet, 0x5157, seq); }, 500ms);
      if (reply) return;
    }
    ADD_FAILURE() << "no echo reply through the tunnel; gateway log:\n" << lab_->gateway_log();
  }

  std::string states(SessionRunner& runner) {
    std::string text;
    for (const auto& change : runner.history()) {
      text += std::string(cstp::to_string(change.state));
      if (change.error) text += "(" + change.error->message + ")";
      text += " ";
    }
    return text;
  }

  // Logs in from the client namespace with `tls` instead of the lab's defaults.
  Result<cstp::SessionCookie> login_with(const cstp::TlsOptions& tls,
                                         cstp::Credentials credentials = {VpnLab::kUsername,
                                                                          VpnLab::kPassword, ""}) {
    Result<cstp::SessionCookie> result = Error{};
    auto ran = VpnLab::run_in(lab_->client_ns(), [&] {
      boost::asio::io_context io;
      cstp::LoginOptions login;
      login.url = *cstp::GatewayUrl::parse(lab_->gateway_url());
      login.tls = tls;
      login.credentials = credentials;
      login.timeout = 5s;
      cstp::async_login(io, login, [&](Result<cstp::SessionCookie> done) { result = done; });
      io.run();
    });
    EXPECT_TRUE(ran);
    return result;
  }

  // The HTTP status the gateway answers a CONNECT with `cookie`.
  int connect_status(const std::string& cookie) {
    int status = -1;
    auto ran = VpnLab::run_in(lab_->client_ns(), [&] {
      boost::asio::io_context io;
      boost::asio::co_spawn(
          io,
          [&]() -> boost::asio::awaitable<void> {
            cstp::TlsOptions tls;
            tls.ca_file = lab_->ca_file();
            auto url = *cstp::GatewayUrl::parse(lab_->gateway_url());
            auto connection = co_await cstp::connect_gateway(url, tls, 5s);
            if (!connection) co_return;
            auto request = fmt::format(
                "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {}\r\nUser-Agent: Open AnyConnect "
                "VPN Agent v9.01\r\nCookie: webvpn={}\r\nX-CSTP-Version: 1\r\n\r\n",
                url.host, cookie);
            if (!co_await cstp::write_all(*connection, request)) co_return;
            auto head = co_await cstp::read_head(*connection);
            status = head ? head->status : 0;
          },
          boost::asio::detached);
      io.run();
    });
    EXPECT_TRUE(ran);
    return status;
  }

  std::unique_ptr<VpnLab> lab_;
  GatewayOptions gateway_options_;
};

TEST_F(VpnSessionTest, PasswordLoginOpensTunnelWithGatewayConfiguration) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner) << "\n"
                                                              << lab_->gateway_log();

  auto config = runner.config();
  ASSERT_TRUE(config.address);
  EXPECT_TRUE(vpn::Prefix::parse(VpnLab::kPool)->contains(*config.address))
      << config.address->to_string();
  EXPECT_EQ(config.netmask_length, 24);
  EXPECT_GE(config.mtu, 1000);
  ASSERT_EQ(config.split_include.size(), 1u);
  EXPECT_EQ(config.split_include[0].to_string(), VpnLab::kIntranetPrefix);
  ASSERT_FALSE(config.dns.empty());
  EXPECT_EQ(config.dns[0].to_string(), VpnLab::kIntranetAddress);
  EXPECT_EQ(config.default_domain, VpnLab::kDomain);
  EXPECT_EQ(config.dpd, std::chrono::seconds(gateway_options_.dpd_seconds));
  EXPECT_EQ(config.keepalive, std::chrono::seconds(gateway_options_.keepalive_seconds));
  expect_ping(runner);
}

// The gateway sizes the tunnel MTU from the base MTU the client announces: by default the
// path MTU of the TLS connection (the lab's veth: 1500), as openconnect does.
TEST_F(VpnSessionTest, TunnelMtuFollowsThePathToTheGateway) {
  start_gateway();
  auto tunnel_mtu = [&](int base_mtu) {
    auto session_options = options();
    session_options.base_mtu = base_mtu;
    SessionRunner runner(lab_->client_ns(), session_options);
    runner.start();
    EXPECT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
    return runner.config().mtu;
  };
  int from_path = tunnel_mtu(0);
  int announced_1300 = tunnel_mtu(1300);
  EXPECT_GT(from_path, cstp::kFallbackBaseMtu - 100) << "path MTU 1500 should give a larger MTU";
  EXPECT_LE(from_path, 1500 - 40);
  EXPECT_LT(announced_1300, 1300);
  EXPECT_GT(from_path, announced_1300);
}

TEST(VpnPathMtu, IsUnknownForASocketThatIsNotTcp) {
  int socket = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(socket, 0);
  EXPECT_FALSE(cstp::path_mtu(socket));
  ::close(socket);
  EXPECT_FALSE(cstp::path_mtu(-1));
}

TEST_F(VpnSessionTest, CertificateLoginOpensTunnel) {
  GatewayOptions gateway;
  gateway.auth = GatewayOptions::Auth::kCertificate;
  start_gateway(gateway);
  auto session_options = options();
  session_options.credentials = {};
  session_options.tls.client_cert_file = lab_->client_cert_file();
  session_options.tls.client_key_file = lab_->client_key_file();
  SessionRunner runner(lab_->client_ns(), session_options);
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner) << "\n"
                                                              << lab_->gateway_log();
  expect_ping(runner);
}

TEST_F(VpnSessionTest, CertificateGatewayRefusesClientWithoutCertificate) {
  GatewayOptions gateway;
  gateway.auth = GatewayOptions::Auth::kCertificate;
  start_gateway(gateway);
  cstp::TlsOptions tls;
  tls.ca_file = lab_->ca_file();
  auto cookie = login_with(tls, {});
  ASSERT_FALSE(cookie);
  EXPECT_TRUE(cookie.error().code == ErrorCode::kUnauthenticated ||
              cookie.error().code == ErrorCode::kUnavailable)
      << cookie.error().message;
}

TEST_F(VpnSessionTest, WrongPasswordEndsSessionWithClearError) {
  start_gateway();
  auto session_options = options();
  session_options.credentials.password = "wrong";
  SessionRunner runner(lab_->client_ns(), session_options);
  runner.start();
  auto down = runner.wait_for(SessionState::kDown, 10s);
  ASSERT_TRUE(down) << states(runner);
  ASSERT_TRUE(down->error);
  EXPECT_EQ(down->error->code, ErrorCode::kUnauthenticated) << down->error->message;
  EXPECT_NE(down->error->message.find("refused the login"), std::string::npos)
      << down->error->message;
  EXPECT_FALSE(runner.wait_for(SessionState::kConnected, 0ms));
}

TEST_F(VpnSessionTest, UnknownUserIsRefused) {
  start_gateway();
  cstp::TlsOptions tls;
  tls.ca_file = lab_->ca_file();
  auto cookie = login_with(tls, {"mallory", VpnLab::kPassword, ""});
  ASSERT_FALSE(cookie);
  EXPECT_EQ(cookie.error().code, ErrorCode::kUnauthenticated) << cookie.error().message;
}

TEST_F(VpnSessionTest, GatewayCertificateFromAnotherCaIsRefused) {
  start_gateway();
  cstp::TlsOptions tls;
  tls.ca_file = lab_->other_ca_file();
  auto cookie = login_with(tls);
  ASSERT_FALSE(cookie);
  EXPECT_EQ(cookie.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(cookie.error().message.find("not trusted by the CA file"), std::string::npos)
      << cookie.error().message;
}

TEST_F(VpnSessionTest, GatewayCertificateForAnotherNameIsRefused) {
  start_gateway();
  cstp::TlsOptions tls;
  tls.ca_file = lab_->ca_file();
  tls.server_name = "intranet-gateway.example.test";
  auto cookie = login_with(tls);
  ASSERT_FALSE(cookie);
  EXPECT_NE(cookie.error().message.find("is not valid for the name"), std::string::npos)
      << cookie.error().message;
}

TEST_F(VpnSessionTest, GatewayNameFromCertificateIsAccepted) {
  start_gateway();
  cstp::TlsOptions tls;
  tls.ca_file = lab_->ca_file();
  tls.server_name = VpnLab::kServerName;
  auto cookie = login_with(tls);
  ASSERT_TRUE(cookie) << cookie.error().message;
  EXPECT_FALSE(cookie->empty());
  EXPECT_EQ(cookie->redacted(), "<redacted>");
}

TEST_F(VpnSessionTest, WrongPinIsRefusedAndRightPinAccepted) {
  start_gateway();
  auto other_pin = cstp::public_key_pin_of_certificate(lab_->other_ca_file());
  ASSERT_TRUE(other_pin) << other_pin.error().message;
  cstp::TlsOptions tls;
  tls.pin_sha256 = *other_pin;
  auto refused = login_with(tls);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("does not match the pin"), std::string::npos)
      << refused.error().message;

  auto pin = cstp::public_key_pin_of_certificate(lab_->server_cert_file());
  ASSERT_TRUE(pin) << pin.error().message;
  tls.pin_sha256 = *pin;
  auto accepted = login_with(tls);
  EXPECT_TRUE(accepted) << accepted.error().message;
}

TEST_F(VpnSessionTest, DtlsCarriesDataWhenOffered) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  for (int i = 0; i < 50 && runner.data_channel() != cstp::DataChannel::kDtls; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(runner.data_channel(), cstp::DataChannel::kDtls) << lab_->gateway_log();
  expect_ping(runner);
  auto counters = runner.counters();
  EXPECT_GT(counters.dtls.tx_packets, 0u);
  EXPECT_GT(counters.dtls.rx_packets, 0u);
  EXPECT_EQ(counters.cstp.tx_packets, 0u);
}

TEST_F(VpnSessionTest, BlockedDtlsFallsBackToCstp) {
  start_gateway();
  ASSERT_TRUE(lab_->block_dtls(true));
  auto session_options = options();
  session_options.dtls_handshake_timeout = 1s;
  SessionRunner runner(lab_->client_ns(), session_options);
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  for (int i = 0; i < 50 && runner.counters().dtls_failures == 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(runner.counters().dtls_failures, 1u);
  EXPECT_EQ(runner.data_channel(), cstp::DataChannel::kCstp);
  expect_ping(runner);
  auto counters = runner.counters();
  EXPECT_GT(counters.cstp.rx_packets, 0u);
  EXPECT_EQ(counters.dtls.tx_packets, 0u);
}

TEST_F(VpnSessionTest, GatewayWithoutDtlsCarriesDataOverCstp) {
  GatewayOptions gateway;
  gateway.dtls = false;
  start_gateway(gateway);
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  EXPECT_FALSE(runner.config().dtls_port);
  expect_ping(runner);
  auto counters = runner.counters();
  EXPECT_GT(counters.cstp.rx_packets, 0u);
  EXPECT_EQ(counters.dtls_failures, 0u);
  EXPECT_EQ(runner.data_channel(), cstp::DataChannel::kCstp);
}

// ocserv reads each TLS record as one CSTP frame: frames queued together must still go out in
// records of their own, or the gateway drops the session ("error parsing CSTP data").
TEST_F(VpnSessionTest, ABurstOfPacketsOverCstpArrivesAndKeepsTheTunnel) {
  GatewayOptions gateway;
  gateway.dtls = false;
  start_gateway(gateway);
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  expect_ping(runner);
  auto address = runner.config().address;
  ASSERT_TRUE(address);
  constexpr uint16_t kBurst = 64;
  std::vector<std::vector<uint8_t>> burst;
  for (uint16_t seq = 1; seq <= kBurst; ++seq) {
    burst.push_back(
        icmp_echo_request(address->to_string(), VpnLab::kIntranetAddress, 0x6262, seq, 1000));
  }
  ASSERT_TRUE(runner.send_burst(burst));
  int replies = 0;
  for (uint16_t seq = 1; seq <= kBurst; ++seq) {
    if (!runner.wait_for_packet(
            [seq](const auto& packet) { return is_icmp_echo_reply(packet, 0x6262, seq); }, 2s))
      break;  // the rest would time out the same way
    replies++;
  }
  EXPECT_EQ(replies, kBurst) << "gateway log:\n" << lab_->gateway_log();
  EXPECT_EQ(runner.counters().reconnects, 0u) << states(runner);
  EXPECT_EQ(runner.data_channel(), cstp::DataChannel::kCstp);
}

// The batched data path: hundreds of frames queued in one turn leave as records sent together
// (more than one socket buffer's worth), and the answers, many records per read, are decrypted
// and handed over complete and in the order they were sent.
TEST_F(VpnSessionTest, AFloodOfPacketsBothWaysOverCstpArrivesCompleteAndInOrder) {
  GatewayOptions gateway;
  gateway.dtls = false;
  start_gateway(gateway);
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  expect_ping(runner);
  auto address = runner.config().address;
  ASSERT_TRUE(address);
  constexpr uint16_t kIdentifier = 0x6363;
  constexpr uint16_t kFlood = 400;
  std::vector<std::vector<uint8_t>> flood;
  for (uint16_t seq = 1; seq <= kFlood; ++seq) {
    flood.push_back(
        icmp_echo_request(address->to_string(), VpnLab::kIntranetAddress, kIdentifier, seq, 1000));
  }
  auto before = runner.counters();
  ASSERT_TRUE(runner.send_burst(flood));
  auto replies = runner.wait_for_packets(
      kFlood,
      [](const auto& packet) {
        return packet.size() >= 28 && packet[9] == 1 && packet[20] == 0 &&
               (packet[24] << 8 | packet[25]) == kIdentifier;
      },
      10s);
  ASSERT_EQ(replies.size(), kFlood) << "gateway log:\n" << lab_->gateway_log();
  for (uint16_t seq = 1; seq <= kFlood; ++seq) {
    EXPECT_TRUE(is_icmp_echo_reply(replies[seq - 1], kIdentifier, seq)) << "reply #" << seq;
    EXPECT_EQ(replies[seq - 1].size(), 20u + 8u + 1000u) << "reply #" << seq;
  }
  auto after = runner.counters();
  EXPECT_EQ(after.cstp.tx_packets - before.cstp.tx_packets, kFlood);
  EXPECT_GE(after.cstp.rx_packets - before.cstp.rx_packets, kFlood);
  EXPECT_EQ(after.dropped_congested, 0u);
  EXPECT_EQ(after.reconnects, 0u) << states(runner);
}

// The same over DTLS: the datagrams of a batch leave in sendmmsg() calls and the answers come
// in through recvmmsg(). Smaller than the CSTP flood: ocserv's UDP socket keeps its default
// receive buffer, and a datagram it cannot hold is lost (as UDP may).
TEST_F(VpnSessionTest, AFloodOfPacketsBothWaysOverDtlsArrivesCompleteAndInOrder) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  for (int i = 0; i < 50 && runner.data_channel() != cstp::DataChannel::kDtls; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(runner.data_channel(), cstp::DataChannel::kDtls) << lab_->gateway_log();
  expect_ping(runner);
  auto address = runner.config().address;
  ASSERT_TRUE(address);
  constexpr uint16_t kIdentifier = 0x6464;
  constexpr uint16_t kFlood = 100;
  // Runs of equal sizes leave as segmentation-offload sends; a shorter packet ends a run and a
  // longer one starts the next, so the gateway must get every datagram as it was cut.
  constexpr std::array<size_t, 6> kSizes = {1000, 1000, 1000, 300, 1000, 1200};
  auto size_of = [&](uint16_t seq) { return kSizes[seq % kSizes.size()]; };
  std::vector<std::vector<uint8_t>> flood;
  for (uint16_t seq = 1; seq <= kFlood; ++seq) {
    flood.push_back(icmp_echo_request(address->to_string(), VpnLab::kIntranetAddress, kIdentifier,
                                      seq, size_of(seq)));
  }
  auto before = runner.counters();
  ASSERT_TRUE(runner.send_burst(flood));
  auto replies = runner.wait_for_packets(
      kFlood,
      [](const auto& packet) {
        return packet.size() >= 28 && packet[9] == 1 && packet[20] == 0 &&
               (packet[24] << 8 | packet[25]) == kIdentifier;
      },
      10s);
  ASSERT_EQ(replies.size(), kFlood) << "gateway log:\n" << lab_->gateway_log();
  for (uint16_t seq = 1; seq <= kFlood; ++seq) {
    EXPECT_TRUE(is_icmp_echo_reply(replies[seq - 1], kIdentifier, seq)) << "reply #" << seq;
    EXPECT_EQ(replies[seq - 1].size(), 20u + 8u + size_of(seq)) << "reply #" << seq;
  }
  auto after = runner.counters();
  EXPECT_EQ(after.dtls.tx_packets - before.dtls.tx_packets, kFlood);
  EXPECT_EQ(after.cstp.tx_packets, before.cstp.tx_packets);
  EXPECT_GE(after.dtls.rx_packets - before.dtls.rx_packets, kFlood);
  EXPECT_EQ(runner.data_channel(), cstp::DataChannel::kDtls);
}

TEST_F(VpnSessionTest, SilentGatewayIsDetectedAndTunnelComesBackWithSameCookie) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  auto address = runner.config().address;

  ASSERT_TRUE(lab_->blackhole_gateway(true));
  auto reconnecting = runner.wait_for(SessionState::kReconnecting, 15s);
  ASSERT_TRUE(reconnecting) << states(runner);
  ASSERT_TRUE(reconnecting->error);
  EXPECT_NE(reconnecting->error->message.find("dead peer"), std::string::npos)
      << reconnecting->error->message;
  EXPECT_EQ(runner.send(icmp_echo_request(address->to_string(), VpnLab::kIntranetAddress, 1, 1))
                .error()
                .code,
            ErrorCode::kUnavailable);

  ASSERT_TRUE(lab_->blackhole_gateway(false));
  for (int i = 0; i < 100 && runner.counters().reconnects == 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  auto counters = runner.counters();
  EXPECT_EQ(counters.reconnects, 1u) << states(runner);
  EXPECT_EQ(counters.reauthentications, 0u);
  EXPECT_GT(counters.dropped_while_down, 0u);
  EXPECT_EQ(runner.config().address, address);
  expect_ping(runner);
}

TEST_F(VpnSessionTest, GatewayRestartRefusesCookieAndSessionLogsInAgain) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  auto first_cookie = runner.cookie();

  auto restarted = lab_->restart_gateway(gateway_options_);
  ASSERT_TRUE(restarted) << restarted.error().message;
  ASSERT_TRUE(runner.wait_for(SessionState::kReconnecting, 15s)) << states(runner);
  for (int i = 0; i < 100 && runner.counters().reconnects == 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  auto counters = runner.counters();
  EXPECT_EQ(counters.reconnects, 1u) << states(runner) << "\n" << lab_->gateway_log();
  EXPECT_EQ(counters.reauthentications, 1u);
  EXPECT_NE(runner.cookie(), first_cookie);
  expect_ping(runner);
}

TEST_F(VpnSessionTest, ReconnectWithAnotherAddressEndsSessionByDefault) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);

  auto other = gateway_options_;
  other.other_pool = true;
  auto restarted = lab_->restart_gateway(other);
  ASSERT_TRUE(restarted) << restarted.error().message;
  auto down = runner.wait_for(SessionState::kDown, 20s);
  ASSERT_TRUE(down) << states(runner);
  ASSERT_TRUE(down->error);
  EXPECT_EQ(down->error->code, ErrorCode::kConflict);
  EXPECT_NE(down->error->message.find("changed the tunnel address"), std::string::npos)
      << down->error->message;
}

TEST_F(VpnSessionTest, ReconnectWithAnotherAddressIsReportedAndOwnerMayAccept) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options(), cstp::AddressChangeDecision::kAccept);
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);

  auto other = gateway_options_;
  other.other_pool = true;
  auto restarted = lab_->restart_gateway(other);
  ASSERT_TRUE(restarted) << restarted.error().message;
  for (int i = 0; i < 150 && runner.counters().reconnects == 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(runner.address_changes(), 1) << states(runner);
  auto address = runner.config().address;
  ASSERT_TRUE(address);
  EXPECT_TRUE(vpn::Prefix::parse(VpnLab::kOtherPool)->contains(*address)) << address->to_string();
  expect_ping(runner);
}

TEST_F(VpnSessionTest, NewTunnelRekeyReconnectsWithSameCookieAndAddress) {
  GatewayOptions gateway;
  gateway.rekey_seconds = 2;
  gateway.rekey_method = "new-tunnel";
  start_gateway(gateway);
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  auto config = runner.config();
  ASSERT_EQ(config.rekey_method, "new-tunnel") << lab_->gateway_log();
  auto address = config.address;
  for (int i = 0; i < 80 && runner.counters().reconnects == 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  auto counters = runner.counters();
  EXPECT_GE(counters.reconnects, 1u) << states(runner);
  EXPECT_EQ(counters.reauthentications, 0u);
  EXPECT_EQ(runner.config().address, address);
  expect_ping(runner);
}

TEST_F(VpnSessionTest, UserDisconnectEndsSessionAndInvalidatesCookie) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  auto cookie = runner.cookie();
  ASSERT_FALSE(cookie.empty());

  runner.disconnect();
  auto down = runner.wait_for(SessionState::kDown, 5s);
  ASSERT_TRUE(down);
  EXPECT_FALSE(down->error);
  // The gateway forgets the cookie once it has the disconnect frame.
  int status = 0;
  for (int i = 0; i < 20; ++i) {
    status = connect_status(cookie);
    if (status == 401) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(status, 401);
}

TEST_F(VpnSessionTest, StopKeepsCookieValidForAnotherTunnel) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s)) << states(runner);
  auto cookie = runner.cookie();
  // stop() is what a killed daemon amounts to: no disconnect frame, the cookie survives.
  runner.stop();
  ASSERT_TRUE(runner.wait_for(SessionState::kDown, 5s));
  EXPECT_EQ(connect_status(cookie), 200);
}

}  // namespace
}  // namespace steward::testing
