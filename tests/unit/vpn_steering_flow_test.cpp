// Flow keys from raw packets, and the per-flow decisions of the flow check with a fake socket
// table and a manual clock.
#include "vpn/policy/flow_check.h"

#include <gtest/gtest.h>

#include <netinet/in.h>

#include <vector>

namespace steward::vpn {
namespace {

namespace ip = boost::asio::ip;
using namespace std::chrono_literals;

std::vector<uint8_t> ipv4_packet(uint8_t protocol, uint16_t source_port,
                                 uint16_t destination_port) {
  std::vector<uint8_t> packet(40, 0);
  packet[0] = 0x45;
  packet[9] = protocol;
  const uint8_t source[] = {198, 18, 8, 10};
  const uint8_t destination[] = {198, 18, 4, 1};
  std::copy(std::begin(source), std::end(source), packet.begin() + 12);
  std::copy(std::begin(destination), std::end(destination), packet.begin() + 16);
  packet[20] = static_cast<uint8_t>(source_port >> 8);
  packet[21] = static_cast<uint8_t>(source_port);
  packet[22] = static_cast<uint8_t>(destination_port >> 8);
  packet[23] = static_cast<uint8_t>(destination_port);
  return packet;
}

TEST(FlowOfPacket, ReadsTheFiveTupleOfIpv4AndIpv6) {
  auto flow = flow_of_packet(ipv4_packet(IPPROTO_TCP, 40000, 80));
  ASSERT_TRUE(flow);
  EXPECT_EQ(flow->to_string(), "tcp 198.18.8.10:40000 -> 198.18.4.1:80");

  std::vector<uint8_t> v6(48, 0);
  v6[0] = 0x60;
  v6[6] = IPPROTO_UDP;
  v6[8 + 15] = 2;
  v6[24 + 15] = 1;
  v6[40] = 0x9c;
  v6[41] = 0x40;
  v6[43] = 53;
  auto flow6 = flow_of_packet(v6);
  ASSERT_TRUE(flow6);
  EXPECT_EQ(flow6->to_string(), "udp ::2:40000 -> ::1:53");
}

TEST(FlowOfPacket, RefusesTruncatedAndNonIpPackets) {
  EXPECT_FALSE(flow_of_packet({}));
  auto packet = ipv4_packet(IPPROTO_TCP, 1, 2);
  EXPECT_FALSE(flow_of_packet(std::span(packet).first(19)));
  EXPECT_FALSE(flow_of_packet(std::span(packet).first(22)));  // ports cut off
  packet[0] = 0x55;
  EXPECT_FALSE(flow_of_packet(packet));
}

class FlowCheckDecisions : public ::testing::Test {
 protected:
  static constexpr uint64_t kAdmitted = 4242;
  FlowCheck make() {
    return FlowCheck(kAdmitted, clock_, 60s,
                     [this](const FlowKey& flow) -> Result<std::optional<SocketOwner>> {
                       ++lookups_;
                       if (fail_) return Error::make(ErrorCode::kIo, "netlink down");
                       auto owner = owners_.find(flow.source_port);
                       if (owner == owners_.end()) return std::optional<SocketOwner>();
                       return std::optional<SocketOwner>(SocketOwner{owner->second, 1, 0});
                     });
  }
  ManualClock clock_;
  std::map<uint16_t, uint64_t> owners_;
  bool fail_ = false;
  int lookups_ = 0;
};

TEST_F(FlowCheckDecisions, PassesAdmittedFlowsAndDropsOthersLookingEachUpOnce) {
  owners_ = {{40000, kAdmitted}, {40001, 99}};
  auto check = make();
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40000, 80)), FlowCheck::Decision::kPass);
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40000, 80)), FlowCheck::Decision::kPass);
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40001, 80)), FlowCheck::Decision::kDrop);
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_UDP, 40002, 53)), FlowCheck::Decision::kDrop);
  EXPECT_EQ(lookups_, 3);
  EXPECT_EQ(check.cached_flows(), 3u);
  EXPECT_EQ(check.dropped(), 2u);
}

TEST_F(FlowCheckDecisions, ALookupFailureDropsWithoutCaching) {
  owners_ = {{40000, kAdmitted}};
  auto check = make();
  fail_ = true;
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40000, 80)), FlowCheck::Decision::kDrop);
  fail_ = false;
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40000, 80)), FlowCheck::Decision::kPass);
  EXPECT_EQ(lookups_, 2);
}

TEST_F(FlowCheckDecisions, IdleFlowsExpireAndAreLookedUpAgain) {
  owners_ = {{40000, kAdmitted}};
  auto check = make();
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40000, 80)), FlowCheck::Decision::kPass);
  owners_[40000] = 7;  // the port now belongs to someone else
  clock_.advance(61s);
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40000, 80)), FlowCheck::Decision::kDrop);
  EXPECT_EQ(lookups_, 2);
}

TEST_F(FlowCheckDecisions, AdmittingEverythingPassesEveryPacketWithoutLookingUpItsSocket) {
  owners_ = {{40001, 99}};
  auto check = FlowCheck::admitting_everything(clock_);
  EXPECT_TRUE(check.admits_everything());
  EXPECT_FALSE(make().admits_everything());
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_TCP, 40001, 80)), FlowCheck::Decision::kPass);
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_UDP, 40002, 53)), FlowCheck::Decision::kPass);
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_ICMP, 0, 0)), FlowCheck::Decision::kPass);
  EXPECT_EQ(lookups_, 0);
  EXPECT_EQ(check.lookups(), 0u);
  EXPECT_EQ(check.dropped(), 0u);
  EXPECT_EQ(check.cached_flows(), 0u);
}

TEST_F(FlowCheckDecisions, ProtocolsWithoutASocketToCheckAreDropped) {
  auto check = make();
  EXPECT_EQ(check.check(ipv4_packet(IPPROTO_ICMP, 0, 0)), FlowCheck::Decision::kDrop);
  EXPECT_EQ(check.check(std::vector<uint8_t>{0x45}), FlowCheck::Decision::kDrop);
}

}  // namespace
}  // namespace steward::vpn
