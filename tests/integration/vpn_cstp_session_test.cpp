// The OpenConnect client library against real ocserv (Debian) in the VPN lab's namespaces: login,
// tunnel configuration, data through the tunnel (ICMP echo to the intranet host), DTLS and its
// fallback, dead-peer detection, gateway restarts, cookie refusal, address changes, disconnect.
#include "support/vpn_lab.h"
#include "support/vpn_session_runner.h"

#include "vpn/cstp/session.h"

#include <gtest/gtest.h>

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

  std::unique_ptr<VpnLab> lab_;
  GatewayOptions gateway_options_;
};

TEST_F(VpnSessionTest, PasswordLoginOpensTunnelWithGatewayConfiguration) {
  start_gateway();
  SessionRunner runner(lab_->client_ns(), options());
  runner.start();
  ASSERT_TRUE(runner.wait_for(SessionState::kConnected, 10s))
      << states(runner) << "\n" << lab_->gateway_log();

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

}  // namespace
}  // namespace steward::testing
