// The VPN daemon's configuration file, its validation, the credentials file (and its refusal of
// files others can read), and the fragment decisions of the TUN reader.
#include "vpn/config.h"
#include "vpn/fragments.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace steward::vpn {
namespace {

class TempFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/steward-vpn-config-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }

  std::string dir_;
};

using VpnConfigFile = TempFiles;
using VpnCredentialsFile = TempFiles;

TEST_F(VpnConfigFile, KeysOverrideDefaultsAndTheRestKeepsThem) {
  VpnConfig config;
  auto path = write("vpn.toml",
                    "[vpn]\ngateway = \"https://vpn.example.test:8443/staff\"\n"
                    "ca_file = \"/etc/ca.pem\"\ntun_name = \"stw9\"\nmark = 0x99\n"
                    "exec_rules = [\"/usr/bin/ssh\"]\nreconnect_timeout_s = 30\ndtls = false\n");
  ASSERT_TRUE(load_config_file(path, config));
  EXPECT_EQ(config.gateway, "https://vpn.example.test:8443/staff");
  EXPECT_EQ(config.tun_name, "stw9");
  EXPECT_EQ(config.mark, 0x99u);
  EXPECT_EQ(config.exec_rules, std::vector<std::string>{"/usr/bin/ssh"});
  EXPECT_EQ(config.reconnect_timeout, std::chrono::seconds(30));
  EXPECT_FALSE(config.dtls);
  EXPECT_EQ(config.table, 7270);  // untouched default
  EXPECT_EQ(config.control_socket_path(), "/run/steward-vpn/default.sock");
  EXPECT_TRUE(validate(config));
  EXPECT_EQ(config.steering_options().tun_name, "stw9");
}

TEST_F(VpnConfigFile, UnknownKeysAndBadValuesAreRefusedWithTheirName) {
  VpnConfig config;
  auto typo = load_config_file(write("a.toml", "[vpn]\ngatway = \"x\"\n"), config);
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("vpn.gatway"), std::string::npos) << typo.error().message;
  auto port = load_config_file(write("b.toml", "[vpn]\nstatus_port = 70000\n"), config);
  ASSERT_FALSE(port);
  EXPECT_NE(port.error().message.find("status_port"), std::string::npos);
  auto rule = load_config_file(write("c.toml", "[vpn]\nexec_rules = [\"ssh\"]\n"), config);
  ASSERT_FALSE(rule);
  EXPECT_NE(rule.error().message.find("absolute"), std::string::npos);
  EXPECT_FALSE(load_config_file(write("d.toml", "[vpn\n"), config));
  EXPECT_FALSE(load_config_file(dir_ + "/missing.toml", config));
}

TEST_F(VpnConfigFile, AdmitAllIsOffByDefaultAndReachesTheSteeringWhenSet) {
  VpnConfig config;
  EXPECT_FALSE(config.admit_all);
  EXPECT_FALSE(config.steering_options().admit_all);
  ASSERT_TRUE(load_config_file(write("all.toml", "[vpn]\nadmit_all = true\n"), config));
  EXPECT_TRUE(config.admit_all);
  EXPECT_TRUE(config.steering_options().admit_all);
  auto quoted = load_config_file(write("quoted.toml", "[vpn]\nadmit_all = \"false\"\n"), config);
  ASSERT_FALSE(quoted);
  EXPECT_NE(quoted.error().message.find("vpn.admit_all"), std::string::npos)
      << quoted.error().message;
}

TEST_F(VpnConfigFile, BaseMtuComesFromThePathUnlessSet) {
  VpnConfig config;
  EXPECT_EQ(config.base_mtu, 0);
  ASSERT_TRUE(load_config_file(write("mtu.toml", "[vpn]\nbase_mtu = 1406\n"), config));
  EXPECT_EQ(config.base_mtu, 1406);
  config.gateway = "https://vpn.example.test/";
  config.pin = "pin-sha256:abc=";
  EXPECT_TRUE(validate(config));
  config.base_mtu = 1279;
  auto small = validate(config);
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("base_mtu"), std::string::npos) << small.error().message;
  EXPECT_FALSE(load_config_file(write("big.toml", "[vpn]\nbase_mtu = 70000\n"), config));
}

TEST(VpnConfig, CgroupPathsMustStayBelowTheMount) {
  VpnConfig config;
  config.gateway = "https://vpn.example.test/";
  config.pin = "pin-sha256:abc=";
  ASSERT_TRUE(validate(config));
  for (const char* bad : {"", ".", "../x", "/steward", "a//b"}) {
    config.cgroup_path = bad;
    auto refused = validate(config);
    ASSERT_FALSE(refused) << bad;
    EXPECT_NE(refused.error().message.find("cgroup_path"), std::string::npos);
  }
  config.cgroup_path = "steward-vpn/admitted";
  for (const char* bad : {"", "/", "relative", "/run/../x"}) {
    config.cgroup2_fallback_mount = bad;
    auto refused = validate(config);
    ASSERT_FALSE(refused) << bad;
    EXPECT_NE(refused.error().message.find("cgroup2_fallback_mount"), std::string::npos);
  }
}

TEST(VpnConfig, ValidationSaysWhatIsMissing) {
  VpnConfig config;
  auto no_gateway = validate(config);
  ASSERT_FALSE(no_gateway);
  EXPECT_NE(no_gateway.error().message.find("--gateway"), std::string::npos);
  config.gateway = "https://vpn.example.test/";
  auto no_trust = validate(config);
  ASSERT_FALSE(no_trust);
  EXPECT_NE(no_trust.error().message.find("--ca"), std::string::npos);
  config.pin = "sha256:abc";
  EXPECT_FALSE(validate(config));
  config.pin = "pin-sha256:abc=";
  EXPECT_TRUE(validate(config));
  config.tun_name = "a-name-longer-than-15";
  EXPECT_FALSE(validate(config));
  config.tun_name = "stw0";
  config.table = 254;
  EXPECT_FALSE(validate(config));
  config.table = 7270;
  config.gateway = "http://plain.example.test/";
  EXPECT_FALSE(validate(config));
}

TEST_F(VpnCredentialsFile, PasswordOrCertificateFromAPrivateFile) {
  auto password =
      load_credentials_file(write("p", "username = \"alice\"\npassword = \"s3cret\"\n"));
  ASSERT_TRUE(password) << password.error().message;
  EXPECT_EQ(password->credentials.username, "alice");
  EXPECT_EQ(password->credentials.password, "s3cret");
  auto certificate =
      load_credentials_file(write("c", "certificate = \"/c.pem\"\nkey = \"/c.key\"\n"));
  ASSERT_TRUE(certificate) << certificate.error().message;
  EXPECT_EQ(certificate->client_cert_file, "/c.pem");
  EXPECT_EQ(certificate->client_key_file, "/c.key");
}

TEST_F(VpnCredentialsFile, AFileOthersCanReadIsRefusedAndTheSecretIsNotRepeated) {
  auto open =
      load_credentials_file(write("p", "username = \"alice\"\npassword = \"s3cret\"\n", 0644));
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().message.find("chmod 600"), std::string::npos) << open.error().message;
  auto broken = load_credentials_file(write("b", "username = \"alice\"\npassword = s3cret\n"));
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().message.find("s3cret"), std::string::npos) << broken.error().message;
  EXPECT_FALSE(load_credentials_file(write("n", "username = \"alice\"\n")));
  EXPECT_FALSE(load_credentials_file(write("k", "certificate = \"/c.pem\"\n")));
  EXPECT_FALSE(load_credentials_file(write("u", "user = \"alice\"\npassword = \"x\"\n")));
  EXPECT_FALSE(load_credentials_file(dir_ + "/missing"));
}

TEST_F(VpnCredentialsFile, FilesAnotherUserOwnsOrEveryoneMayWriteAreRefused) {
  std::string secret = write("o", "username = \"alice\"\npassword = \"s3cret\"\n");
  std::string config_file = write("vpn.toml", "[vpn]\ngateway = \"https://vpn.example.test/\"\n");
  VpnConfig config;
  ASSERT_TRUE(load_config_file(config_file, config));
  ::chmod(config_file.c_str(), 0666);
  auto writable = load_config_file(config_file, config);
  ASSERT_FALSE(writable);
  EXPECT_NE(writable.error().message.find("chmod o-w"), std::string::npos);
  ::chmod(config_file.c_str(), 0644);
  auto missing = load_config_file(dir_ + "/missing.toml", config);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "config " + dir_ + "/missing.toml: no such file");
  auto directory = load_config_file(dir_, config);
  ASSERT_FALSE(directory);
  EXPECT_NE(directory.error().message.find("not a regular file"), std::string::npos)
      << directory.error().message;
  if (::geteuid() != 0) GTEST_SKIP() << "changing a file's owner needs root";
  ASSERT_EQ(::chown(secret.c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chown(config_file.c_str(), 65534, 65534), 0);
  auto theirs = load_credentials_file(secret);
  ASSERT_FALSE(theirs);
  EXPECT_NE(theirs.error().message.find("chown"), std::string::npos) << theirs.error().message;
  EXPECT_FALSE(load_config_file(config_file, config));
}

// An IPv4 header of a fragment: identification `id`, offset in 8-byte units, more-fragments.
std::vector<uint8_t> fragment(uint16_t id, int offset, bool more, uint8_t last_octet = 2) {
  std::vector<uint8_t> packet(28, 0);
  packet[0] = 0x45;
  packet[4] = static_cast<uint8_t>(id >> 8);
  packet[5] = static_cast<uint8_t>(id);
  packet[6] = static_cast<uint8_t>((more ? 0x20 : 0) | ((offset >> 8) & 0x1f));
  packet[7] = static_cast<uint8_t>(offset);
  packet[9] = 17;
  packet[12] = 198, packet[13] = 18, packet[14] = 100, packet[15] = 50;
  packet[16] = 198, packet[17] = 18, packet[18] = 2, packet[19] = last_octet;
  return packet;
}

TEST(VpnFragments, LaterFragmentsFollowTheirFirstFragment) {
  FragmentDecisions decisions;
  EXPECT_FALSE(decisions.later_fragment(fragment(7, 0, true)).has_value());   // a first one
  EXPECT_FALSE(decisions.later_fragment(fragment(7, 0, false)).has_value());  // no fragment
  decisions.first_fragment(fragment(7, 0, true), true);
  decisions.first_fragment(fragment(8, 0, true), false);
  EXPECT_EQ(decisions.later_fragment(fragment(7, 185, false)), true);
  EXPECT_EQ(decisions.later_fragment(fragment(8, 185, false)), false);
  // Another datagram id, or another destination, was never decided: refused.
  EXPECT_EQ(decisions.later_fragment(fragment(9, 185, true)), false);
  EXPECT_EQ(decisions.later_fragment(fragment(7, 185, false, 3)), false);
}

TEST(VpnFragments, OnlyTheNewestDatagramsAreRemembered) {
  FragmentDecisions decisions;
  for (uint16_t id = 0; id < 300; ++id)
    decisions.first_fragment(fragment(id, 0, true), true);
  EXPECT_EQ(decisions.remembered(), 256u);
  EXPECT_EQ(decisions.later_fragment(fragment(0, 185, false)), false);
  EXPECT_EQ(decisions.later_fragment(fragment(299, 185, false)), true);
}

}  // namespace
}  // namespace steward::vpn
