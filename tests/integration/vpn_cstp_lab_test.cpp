// The VPN lab itself: namespaces are built, ocserv starts, listens, restarts on the same port,
// and everything is gone after the lab is destroyed.
#include "support/vpn_lab.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace steward::testing {
namespace {

TEST(VpnLab, StartsOcservAndRemovesEverythingOnTeardown) {
  std::string client_ns;
  {
    auto lab = VpnLab::create();
    ASSERT_TRUE(lab) << lab.error().message;
    client_ns = (*lab)->client_ns();
    auto started = (*lab)->start_gateway();
    ASSERT_TRUE(started) << started.error().message;
    auto reached = VpnLab::exec_in(
        (*lab)->client_ns(),
        fmt::format("timeout 5 bash -c \"exec 3<>/dev/tcp/198.18.1.1/{}\"", (*lab)->gateway_port()));
    EXPECT_TRUE(reached) << reached.error().message;
    auto restarted = (*lab)->restart_gateway({});
    ASSERT_TRUE(restarted) << restarted.error().message;
  }
  FILE* pipe = popen("ip netns list", "r");
  ASSERT_NE(pipe, nullptr);
  char line[256];
  std::string all;
  while (fgets(line, sizeof(line), pipe)) all += line;
  pclose(pipe);
  EXPECT_EQ(all.find(client_ns), std::string::npos) << all;
}

}  // namespace
}  // namespace steward::testing
