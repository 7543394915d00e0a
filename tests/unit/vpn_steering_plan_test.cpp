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

class HandoverRuleset : public ::testing::Test {
 protected:
  // `adopted`: the path of a group adopted from the earlier run, as nft resolves it.
  std::string render(const TunnelConfig& config, const std::string& adopted = {}) {
    auto plan = SteeringPlan::from(config, {ip::make_address("198.18.0.1")});
    EXPECT_TRUE(plan);
    return render_handover_ruleset(*plan, options_, adopted, adopted.empty() ? 0 : 2);
  }
  // The text of set `name`, up to its closing brace.
  static std::string set_text(const std::string& text, const std::string& name) {
    auto at = text.find("set " + name + " {");
    if (at == std::string::npos) return "";
    return text.substr(at, text.find("; }", at) - at);
  }
  SteeringOptions options_;
};

TEST_F(HandoverRuleset, RefusesEverySocketTowardTheIntranetButNotTheExcludedOnes) {
  options_.nft_table = "steward_test";
  std::string text = render(split_config());
  EXPECT_EQ(handover_table_name(options_), "inet steward_test_handover");
  EXPECT_EQ(text.rfind("table inet steward_test_handover {\n", 0), 0u) << text;
  EXPECT_NE(set_text(text, "refused4").find("198.18.4.0/24, 198.18.6.0/24, 198.18.4.53/32"),
            std::string::npos)
      << text;
  EXPECT_NE(set_text(text, "exclude4").find("198.18.0.1/32"), std::string::npos) << text;
  EXPECT_NE(set_text(text, "exclude4").find("198.18.6.128/25"), std::string::npos) << text;
  EXPECT_NE(set_text(text, "exclude4").find("127.0.0.0/8"), std::string::npos) << text;
  // Excluded destinations are accepted before anything is refused, for every socket: no
  // cgroup match, no mark, no DNS redirection, nothing but refusals.
  auto hold = text.find("type filter hook output priority filter; policy accept;");
  auto exclude = text.find("ip daddr @exclude4 accept");
  auto refuse = text.find("ip daddr @refused4 counter name refused jump refuse");
  ASSERT_NE(hold, std::string::npos) << text;
  EXPECT_LT(hold, exclude);
  EXPECT_LT(exclude, refuse);
  EXPECT_NE(text.find("ip6 daddr @refused6 counter name refused jump refuse"), std::string::npos);
  EXPECT_NE(text.find("reject with icmpx type admin-prohibited"), std::string::npos);
  EXPECT_EQ(text.find("socket cgroupv2"), std::string::npos) << text;
  EXPECT_EQ(text.find("mark"), std::string::npos) << text;
  EXPECT_EQ(text.find("dnat"), std::string::npos) << text;
  EXPECT_EQ(text.find("dport 53"), std::string::npos) << text;
}

TEST_F(HandoverRuleset, ADefaultRouteIntranetIsRefusedToEveryoneOnlyWhenEveryoneIsAdmitted) {
  auto config = split_config();
  config.split_include.clear();
  // Per process: the new steering leaves unadmitted processes their default route, and no
  // process is admitted during the handover; the DNS server stays closed.
  std::string text = render(config);
  EXPECT_EQ(set_text(text, "refused4").find("0.0.0.0/0"), std::string::npos) << text;
  EXPECT_NE(set_text(text, "refused4").find("198.18.4.53/32"), std::string::npos) << text;
  EXPECT_EQ(set_text(text, "refused6").find("::/0"), std::string::npos) << text;

  // admit_all: the new steering refuses every socket's intranet traffic (here: everything but
  // the excluded) while the tunnel is down, and sends all DNS into it.
  options_.admit_all = true;
  text = render(config);
  EXPECT_NE(set_text(text, "refused4").find("0.0.0.0/0"), std::string::npos) << text;
  EXPECT_NE(set_text(text, "refused6").find("::/0"), std::string::npos) << text;
  EXPECT_NE(text.find("meta l4proto { tcp, udp } th dport 53 counter name refused jump refuse"),
            std::string::npos)
      << text;
}

TEST_F(HandoverRuleset, AnAdoptedGroupIsRefusedTowardTheWholeIntranetAndForDnsLikeTheNewTable) {
  auto config = split_config();
  config.split_include.clear();
  std::string text = render(config, "unified/steward-vpn/admitted");
  const std::string members = " socket cgroupv2 level 2 \"unified/steward-vpn/admitted\"";
  // Its members are admitted: the new table refuses them toward everything in the intranet,
  // default routes too, and sends their DNS into the tunnel, which is down.
  EXPECT_NE(set_text(text, "intranet4").find("0.0.0.0/0"), std::string::npos) << text;
  EXPECT_NE(set_text(text, "intranet6").find("::/0"), std::string::npos) << text;
  EXPECT_NE(text.find("ip daddr @intranet4" + members + " counter name refused jump refuse"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ip6 daddr @intranet6" + members + " counter name refused jump refuse"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("th dport 53" + members + " counter name refused jump refuse"),
            std::string::npos)
      << text;
  // Everyone else keeps the default route, as without an adopted group; excluded destinations
  // come first for the members too.
  EXPECT_EQ(set_text(text, "refused4").find("0.0.0.0/0"), std::string::npos) << text;
  EXPECT_LT(text.find("ip daddr @exclude4 accept"), text.find("ip daddr @intranet4" + members));

  // Without an adopted group nothing names a cgroup; with admit_all everyone is refused so
  // already, and no cgroup is named either.
  EXPECT_EQ(render(config).find("socket cgroupv2"), std::string::npos);
  options_.admit_all = true;
  EXPECT_EQ(render(config, "unified/steward-vpn/admitted").find("socket cgroupv2"),
            std::string::npos);
}

}  // namespace
}  // namespace steward::vpn
