// OvsdbSwitch over loopback TCP and over TLS against a real ovsdb-server, with certificates made
// by the test: a matching CA works, a server certificate from another CA is refused.
#include "controller/southbound/ovsdb/ovsdb_switch.h"
#include "support/ovs_sandbox.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <optional>

namespace steward::controller {
namespace {

using steward::testing::make_test_pki;
using steward::testing::OvsSandbox;
using steward::testing::run_io_until;
using steward::testing::TestPki;

Vm one_interface_vm() {
  Vm vm;
  vm.id = "vm-tls";
  Interface interface;
  interface.id = "eth0";
  interface.device = "tap-tls0";
  interface.mac = "52:54:00:00:01:01";
  interface.vlan = 42;
  vm.interfaces = {interface};
  return vm;
}

OvsdbSwitchOptions fast_options() {
  OvsdbSwitchOptions options;
  options.connection.backoff_initial = std::chrono::milliseconds(20);
  options.connection.backoff_max = std::chrono::milliseconds(200);
  return options;
}

class OvsdbRemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_dir_ = ::testing::TempDir() + "steward-pki-XXXXXX";
    ASSERT_NE(::mkdtemp(pki_dir_.data()), nullptr);
    auto good = make_test_pki(pki_dir_, "good-");
    ASSERT_TRUE(good) << good.error().message;
    good_ = *good;
    auto other = make_test_pki(pki_dir_, "other-");
    ASSERT_TRUE(other) << other.error().message;
    other_ = *other;

    OvsSandbox::Options options;
    options.tcp = true;
    options.ssl = OvsSandbox::ServerTls{good_.server_key, good_.server_cert, good_.ca_cert};
    auto made = OvsSandbox::create(options);
    ASSERT_TRUE(made) << made.error().message;
    sandbox_ = std::move(*made);
  }
  void TearDown() override {
    sandbox_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(pki_dir_, ignored);
  }

  std::unique_ptr<OvsdbSwitch> connect(const std::string& endpoint, TlsFiles tls = {}) {
    Switch spec{"s-remote", endpoint, "br-int", std::move(tls)};
    auto client = std::make_unique<OvsdbSwitch>(io_, spec, "steward-test", fast_options());
    client->start();
    return client;
  }

  Status install(OvsdbSwitch& client, const Vm& vm) {
    std::optional<Status> result;
    client.install(vm, [&](Status status) { result = std::move(status); });
    if (!run_io_until(io_, [&] { return result.has_value(); }))
      return Error{ErrorCode::kTimeout, "install did not complete"};
    return *result;
  }

  boost::asio::io_context io_;
  std::string pki_dir_;
  TestPki good_;
  TestPki other_;
  std::unique_ptr<OvsSandbox> sandbox_;
};

TEST_F(OvsdbRemoteTest, TcpEndpointOnLoopbackWorks) {
  ASSERT_FALSE(sandbox_->tcp_endpoint().empty());
  auto client = connect(sandbox_->tcp_endpoint());

  ASSERT_TRUE(run_io_until(io_, [&] { return client->state() == SwitchState::kReady; }))
      << client->last_error();
  Vm vm = one_interface_vm();
  ASSERT_TRUE(install(*client, vm));
  ASSERT_TRUE(run_io_until(io_, [&] { return client->owned()->contains(vm.id); }));
  EXPECT_TRUE(matches(vm, client->owned()->at(vm.id)));
}

TEST_F(OvsdbRemoteTest, SslEndpointWithTheRightCaWorks) {
  ASSERT_FALSE(sandbox_->ssl_endpoint().empty());
  auto client = connect(sandbox_->ssl_endpoint(),
                        TlsFiles{good_.ca_cert, good_.client_cert, good_.client_key});

  ASSERT_TRUE(run_io_until(io_, [&] { return client->state() == SwitchState::kReady; }))
      << client->last_error();
  Vm vm = one_interface_vm();
  ASSERT_TRUE(install(*client, vm));
  auto tag = sandbox_->vsctl({"get", "port", "tap-tls0", "tag"});
  ASSERT_TRUE(tag);
  EXPECT_EQ(*tag, "42\n");
}

TEST_F(OvsdbRemoteTest, SslServerCertificateFromAnotherCaIsRefused) {
  // The client trusts only the other CA; the server's certificate was signed by the good one.
  auto client = connect(sandbox_->ssl_endpoint(),
                        TlsFiles{other_.ca_cert, good_.client_cert, good_.client_key});

  ASSERT_TRUE(run_io_until(io_, [&] {
    return client->last_error().find("certificate verify failed") != std::string::npos;
  })) << client->last_error();
  EXPECT_NE(client->state(), SwitchState::kReady);
  EXPECT_NE(client->last_error().find("tls handshake"), std::string::npos) << client->last_error();
  Status refused = install(*client, one_interface_vm());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
}

TEST_F(OvsdbRemoteTest, SslWithMissingCertificateFilesSaysWhichFile) {
  auto client = connect(sandbox_->ssl_endpoint(), TlsFiles{pki_dir_ + "/missing-ca.crt",
                                                           good_.client_cert, good_.client_key});

  ASSERT_TRUE(run_io_until(io_, [&] {
    return client->last_error().find("missing-ca.crt") != std::string::npos;
  })) << client->last_error();
  EXPECT_EQ(client->state(), SwitchState::kDisconnected);
}

TEST_F(OvsdbRemoteTest, SslSwitchReconnectsAfterRestart) {
  auto client = connect(sandbox_->ssl_endpoint(),
                        TlsFiles{good_.ca_cert, good_.client_cert, good_.client_key});
  ASSERT_TRUE(run_io_until(io_, [&] { return client->state() == SwitchState::kReady; }))
      << client->last_error();

  ASSERT_TRUE(sandbox_->stop());
  ASSERT_TRUE(run_io_until(io_, [&] { return client->state() == SwitchState::kDisconnected; }));
  ASSERT_TRUE(sandbox_->start());

  ASSERT_TRUE(run_io_until(io_, [&] { return client->state() == SwitchState::kReady; }))
      << client->last_error();
}

}  // namespace
}  // namespace steward::controller
