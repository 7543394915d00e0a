// What steering derives from the gateway's configuration, and the nftables text it loads.
#include "vpn/steering/steering.h"

#include <gtest/gtest.h>

namespace steward::vpn {
namespace {

namespace ip = boost::asio::ip;

TunnelConfig split_config() {
  TunnelConfig config;
  config.address = ip::make_address_v4("198.18.8.10");
  config.netmask_length = 24;
  config.dns = {ip::make_address("198.18.4.53")};
  config.split_include = {*Prefix::parse("198.18.4.0/24"), *Prefix::parse("198.18.6.0/24")};
  config.split_exclude = {*Prefix::parse("198.18.6.128/25")};
  return config;
}

bool has(const std::vector<Prefix>& prefixes, const std::string& text) {
  return std::find(prefixes.begin(), prefixes.end(), *Prefix::parse(text)) != prefixes.end();
}

TEST(SteeringPlan, SplitIncludesAndDnsServersAreTheIntranetGatewayAndExcludesAreLeftAlone) {
  auto plan = SteeringPlan::from(split_config(), {ip::make_address("198.18.0.1")});
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_TRUE(has(plan->intranet, "198.18.4.0/24"));
  EXPECT_TRUE(has(plan->intranet, "198.18.6.0/24"));
  EXPECT_TRUE(has(plan->intranet, "198.18.4.53/32"));
  EXPECT_TRUE(has(plan->exclude, "198.18.0.1/32"));
  EXPECT_TRUE(has(plan->exclude, "198.18.6.128/25"));
  EXPECT_EQ(plan->dns, ip::make_address("198.18.4.53"));
  EXPECT_FALSE(plan->tunnel_has_ipv6);
}

TEST(SteeringPlan, NoSplitIncludeMeansEverythingIncludingIpv6) {
  auto config = split_config();
  config.split_include.clear();
  auto plan = SteeringPlan::from(config, {});
  ASSERT_TRUE(plan);
  EXPECT_TRUE(has(plan->intranet, "0.0.0.0/0"));
  EXPECT_TRUE(has(plan->intranet, "::/0"));
  // Loopback stays local even when everything else is intranet.
  EXPECT_TRUE(has(plan->exclude, "127.0.0.0/8"));
  EXPECT_TRUE(has(plan->exclude, "::1/128"));
}

TEST(SteeringPlan, RefusesATunnelWithoutAddressOrAnExcludedDnsServer) {
  auto config = split_config();
  config.address.reset();
  EXPECT_FALSE(SteeringPlan::from(config, {}));

  config = split_config();
  auto plan = SteeringPlan::from(config, {ip::make_address("198.18.4.53")});
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("198.18.4.53"), std::string::npos);
}

class NftRuleset : public ::testing::Test {
 protected:
  std::string render(const TunnelConfig& config) {
    auto plan = SteeringPlan::from(config, {ip::make_address("198.18.0.1")});
    EXPECT_TRUE(plan);
    return render_nft_ruleset(*plan, options_, "unified/steward-vpn/admitted", 2);
  }
  SteeringOptions options_;
};

TEST_F(NftRuleset, MarksOnlyAdmittedSocketsAndRefusesTheRestTowardTheIntranet) {
  std::string text = render(split_config());
  EXPECT_NE(text.find("table inet steward {"), std::string::npos);
  EXPECT_NE(text.find("elements = { 198.18.4.0/24, 198.18.6.0/24, 198.18.4.53/32 }"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ip daddr @intranet4 socket cgroupv2 level 2 "
                      "\"unified/steward-vpn/admitted\" counter name refused_admitted jump refuse"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ip daddr @closed4 counter name refused_others jump refuse"),
            std::string::npos);
  EXPECT_NE(text.find("reject with tcp reset"), std::string::npos);
  EXPECT_NE(text.find("reject with icmpx type admin-prohibited"), std::string::npos);
  // Started with the tunnel down: nothing is marked yet.
  EXPECT_EQ(text.find("meta mark set"), std::string::npos) << text;
  // Admitted DNS goes to the gateway's server; IPv6 DNS (which cannot) is refused.
  EXPECT_NE(text.find("th dport 53 socket cgroupv2 level 2 \"unified/steward-vpn/admitted\" "
                      "dnat ip to 198.18.4.53"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 socket cgroupv2 "
                      "level 2 \"unified/steward-vpn/admitted\" counter name refused_admitted "
                      "jump refuse"),
            std::string::npos)
      << text;
}

TEST_F(NftRuleset, AdmittingEverythingDropsTheCgroupMatchButStillRefusesWhileDown) {
  options_.admit_all = true;
  std::string text = render(split_config());
  EXPECT_EQ(text.find("socket cgroupv2"), std::string::npos) << text;
  // Tunnel down (as started): every socket's intranet traffic is refused locally, none marked.
  EXPECT_NE(text.find("    ip daddr @intranet4 counter name refused_admitted jump refuse\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("    ip6 daddr @intranet6 counter name refused_admitted jump refuse\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("meta mark set"), std::string::npos) << text;
  // Every process's DNS goes to the gateway's server.
  EXPECT_NE(text.find("meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to "
                      "198.18.4.53\n"),
            std::string::npos)
      << text;
  // The gateway itself is still left alone, and only marked packets leave into the TUN.
  EXPECT_NE(text.find("ip daddr @exclude4 accept"), std::string::npos);
  EXPECT_NE(text.find("meta mark 0x7270 counter name dropped_late drop"), std::string::npos);
}

TEST_F(NftRuleset, ADefaultRouteIntranetIsNotClosedToEveryone) {
  auto config = split_config();
  config.split_include.clear();
  std::string text = render(config);
  auto closed = text.find("set closed4 {");
  ASSERT_NE(closed, std::string::npos);
  auto end = text.find('}', closed + 13);
  EXPECT_EQ(text.substr(closed, end - closed).find("0.0.0.0/0"), std::string::npos) << text;
  EXPECT_NE(text.find("set intranet6 { type ipv6_addr; flags interval; auto-merge; elements = "
                      "{ ::/0 }; }"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace steward::vpn
