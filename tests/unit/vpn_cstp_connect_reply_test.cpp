#include "vpn/cstp/connect_reply.h"

#include <gtest/gtest.h>

namespace steward::vpn::cstp {
namespace {

constexpr const char* kOcservReply =
    "HTTP/1.1 200 CONNECTED\r\n"
    "X-CSTP-Version: 1\r\n"
    "X-CSTP-Server-Name: ocserv 1.1.6\r\n"
    "X-CSTP-Hostname: gateway\r\n"
    "X-CSTP-DPD: 90\r\n"
    "X-CSTP-Default-Domain: intranet.test\r\n"
    "X-CSTP-Address: 198.18.100.50\r\n"
    "X-CSTP-Netmask: 255.255.255.0\r\n"
    "X-CSTP-DNS: 198.18.2.2\r\n"
    "X-CSTP-DNS: 198.18.2.3\r\n"
    "X-CSTP-Split-Include: 198.18.2.0/255.255.255.0\r\n"
    "x-cstp-split-include: 198.18.4.0/24\r\n"
    "X-CSTP-Split-Exclude: 198.18.2.128/25\r\n"
    "X-CSTP-Address-IP6: fd00:198:18::5/64\r\n"
    "X-CSTP-Split-Include-IP6: fd00:198:18::/48\r\n"
    "X-CSTP-Keepalive: 32\r\n"
    "X-CSTP-Idle-Timeout: none\r\n"
    "X-CSTP-Session-Timeout: 86400\r\n"
    "X-CSTP-Rekey-Time: 172800\r\n"
    "X-CSTP-Rekey-Method: new-tunnel\r\n"
    "X-CSTP-MTU: 1340\r\n"
    "X-CSTP-Base-MTU: 1406\r\n"
    "X-DTLS-Port: 443\r\n"
    "X-DTLS-App-ID: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\r\n"
    "X-DTLS-CipherSuite: PSK-NEGOTIATE\r\n"
    "X-DTLS-DPD: 60\r\n"
    "X-Unknown-Header: ignored\r\n"
    "\r\n";

TunnelConfig parse(std::string_view text) {
  auto head = parse_http_head(text);
  EXPECT_TRUE(head) << head.error().message;
  auto config = parse_connect_reply(*head);
  EXPECT_TRUE(config) << config.error().message;
  return config ? *config : TunnelConfig{};
}

Error parse_error(std::string_view headers) {
  std::string text = "HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 198.18.100.2\r\nX-CSTP-MTU: 1300\r\n";
  text += headers;
  auto head = parse_http_head(text);
  EXPECT_TRUE(head);
  auto config = parse_connect_reply(*head);
  EXPECT_FALSE(config) << headers;
  return config ? Error{} : config.error();
}

TEST(ConnectReply, EveryHeaderOfAnOcservReplyIsParsed) {
  auto config = parse(kOcservReply);
  ASSERT_TRUE(config.address);
  EXPECT_EQ(config.address->to_string(), "198.18.100.50");
  EXPECT_EQ(config.netmask_length, 24);
  ASSERT_TRUE(config.address6);
  EXPECT_EQ(config.address6->to_string(), "fd00:198:18::5");
  EXPECT_EQ(config.address6_length, 64);
  EXPECT_EQ(config.mtu, 1340);
  ASSERT_EQ(config.dns.size(), 2u);
  EXPECT_EQ(config.dns[1].to_string(), "198.18.2.3");
  EXPECT_EQ(config.default_domain, "intranet.test");
  ASSERT_EQ(config.split_include.size(), 3u);
  EXPECT_EQ(config.split_include[0].to_string(), "198.18.2.0/24");
  EXPECT_EQ(config.split_include[1].to_string(), "198.18.4.0/24");
  EXPECT_EQ(config.split_include[2].to_string(), "fd00:198:18::/48");
  ASSERT_EQ(config.split_exclude.size(), 1u);
  EXPECT_EQ(config.split_exclude[0].to_string(), "198.18.2.128/25");
  EXPECT_EQ(config.dpd.count(), 90);
  EXPECT_EQ(config.keepalive.count(), 32);
  EXPECT_EQ(config.idle_timeout.count(), 0);
  EXPECT_EQ(config.session_timeout.count(), 86400);
  EXPECT_EQ(config.rekey_time.count(), 172800);
  EXPECT_EQ(config.rekey_method, "new-tunnel");
  EXPECT_EQ(config.dtls_port, 443);
  EXPECT_EQ(config.dtls_app_id, "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
  EXPECT_EQ(config.dtls_cipher_suite, "PSK-NEGOTIATE");
  EXPECT_EQ(config.dtls_dpd.count(), 60);
}

TEST(ConnectReply, NoSplitIncludeMeansEverythingThroughTheTunnel) {
  auto config = parse("HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 198.18.100.2\r\n"
                      "X-CSTP-MTU: 1300\r\n\r\n");
  EXPECT_TRUE(config.split_include.empty());
  auto prefixes = config.intranet_prefixes();
  ASSERT_EQ(prefixes.size(), 1u);
  EXPECT_EQ(prefixes[0].to_string(), "0.0.0.0/0");
  EXPECT_EQ(config.netmask_length, 32);
  EXPECT_FALSE(config.dtls_port);
}

TEST(ConnectReply, MissingAddressOrMtuIsAnError) {
  auto head = parse_http_head("HTTP/1.1 200 CONNECTED\r\nX-CSTP-MTU: 1300\r\n");
  ASSERT_TRUE(head);
  auto config = parse_connect_reply(*head);
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message.find("X-CSTP-Address"), std::string::npos);
  head = parse_http_head("HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 198.18.100.2\r\n");
  config = parse_connect_reply(*head);
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message.find("X-CSTP-MTU"), std::string::npos);
}

TEST(ConnectReply, BadValuesAreErrorsNamingTheHeader) {
  EXPECT_NE(parse_error("X-CSTP-DNS: not-an-ip\r\n").message.find("X-CSTP-DNS"),
            std::string::npos);
  EXPECT_NE(parse_error("X-CSTP-MTU: 99999\r\n").message.find("X-CSTP-MTU"), std::string::npos);
  EXPECT_NE(parse_error("X-CSTP-MTU: 12ab\r\n").message.find("not a number"), std::string::npos);
  EXPECT_NE(parse_error("X-CSTP-Netmask: 255.0.255.0\r\n").message.find("X-CSTP-Netmask"),
            std::string::npos);
  EXPECT_NE(parse_error("X-CSTP-Split-Include: 198.18.2.0/33\r\n").message.find("Split-Include"),
            std::string::npos);
  EXPECT_NE(parse_error("X-CSTP-DPD: -5\r\n").message.find("X-CSTP-DPD"), std::string::npos);
  EXPECT_NE(parse_error("X-DTLS-Port: 0\r\n").message.find("X-DTLS-Port"), std::string::npos);
  EXPECT_NE(parse_error("X-DTLS-App-ID: xyz\r\n").message.find("X-DTLS-App-ID"),
            std::string::npos);
  EXPECT_NE(parse_error("X-CSTP-Address-IP6: 198.18.1.1/64\r\n").message.find("IPv6"),
            std::string::npos);
}

TEST(HttpHead, StatusReasonAndHeadersInOrder) {
  auto head = parse_http_head("HTTP/1.1 401 Unauthorized\r\nX-Reason: cookie\r\nA: 1\r\nA: 2\r\n");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 401);
  EXPECT_EQ(head->reason, "Unauthorized");
  EXPECT_EQ(head->find("x-reason"), "cookie");
  auto all = head->find_all("a");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1], "2");
  EXPECT_FALSE(head->find("missing"));
}

TEST(HttpHead, SetCookieValueByName) {
  auto head = parse_http_head(
      "HTTP/1.1 200 OK\r\nSet-Cookie: webvpncontext=abc; Secure\r\n"
      "Set-Cookie: webvpn=; expires=Thu, 01 Jan 1970\r\nSet-Cookie: webvpn=s3cr3t; Secure\r\n");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->set_cookie("webvpncontext"), "abc");
  EXPECT_EQ(head->set_cookie("webvpn"), "s3cr3t") << "the last Set-Cookie wins";
  EXPECT_EQ(head->set_cookie("other"), std::nullopt);
}

TEST(HttpHead, MalformedHeadsAreErrors) {
  EXPECT_FALSE(parse_http_head("SSH-2.0-OpenSSH\r\n"));
  EXPECT_FALSE(parse_http_head("HTTP/1.1 abc Bad\r\n"));
  EXPECT_FALSE(parse_http_head("HTTP/1.1 200 OK\r\nno colon here\r\n"));
  EXPECT_FALSE(parse_http_head("HTTP/1.1 200 OK\r\n: empty name\r\n"));
  EXPECT_FALSE(parse_http_head(std::string(kMaxHttpHeadSize + 1, 'x')));
}

}  // namespace
}  // namespace steward::vpn::cstp
