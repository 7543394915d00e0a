// The reader side of TUN offloads: TCP super-packets cut into segments as the kernel's GSO
// would, partial checksums finished, plain packets passed on, malformed reads refused. Every
// checksum is verified with a separate byte-by-byte RFC 1071 sum, not with the code under test.
#include "vpn/tun/offload.h"

#include <gtest/gtest.h>

#include <netinet/in.h>

#include <cstring>
#include <vector>

namespace steward::vpn {
namespace {

using offload::VnetHeader;

// RFC 1071, the obvious way: big-endian 16-bit words, carries folded at the end.
uint32_t reference_sum(const uint8_t* bytes, size_t size, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < size; i += 2)
    sum += static_cast<uint32_t>(bytes[i] << 8 | bytes[i + 1]);
  if (size % 2 != 0) sum += static_cast<uint32_t>(bytes[size - 1] << 8);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

// A segment is valid when the sum over the checked bytes, checksum included, is 0xffff.
bool ipv4_header_valid(const std::vector<uint8_t>& packet) {
  return reference_sum(packet.data(), static_cast<size_t>(packet[0] & 0x0f) * 4) == 0xffff;
}

uint32_t pseudo_header_sum(const std::vector<uint8_t>& packet, uint8_t protocol, size_t length) {
  bool v4 = packet[0] >> 4 == 4;
  uint32_t sum = v4 ? reference_sum(&packet[12], 8) : reference_sum(&packet[8], 32);
  return sum + protocol + static_cast<uint32_t>(length >> 16) +
         static_cast<uint32_t>(length & 0xffff);
}

bool transport_checksum_valid(const std::vector<uint8_t>& packet, uint8_t protocol) {
  size_t header = packet[0] >> 4 == 4 ? static_cast<size_t>(packet[0] & 0x0f) * 4 : 40;
  size_t length = packet.size() - header;
  return reference_sum(&packet[header], length, pseudo_header_sum(packet, protocol, length)) ==
         0xffff;
}

void put16(std::vector<uint8_t>& bytes, size_t at, uint16_t value) {
  bytes[at] = static_cast<uint8_t>(value >> 8);
  bytes[at + 1] = static_cast<uint8_t>(value);
}

uint16_t get16(const std::vector<uint8_t>& bytes, size_t at) {
  return static_cast<uint16_t>(bytes[at] << 8 | bytes[at + 1]);
}

uint32_t get32(const std::vector<uint8_t>& bytes, size_t at) {
  return static_cast<uint32_t>(get16(bytes, at)) << 16 | get16(bytes, at + 2);
}

constexpr uint8_t kFin = 0x01, kPsh = 0x08, kAck = 0x10, kCwr = 0x80;

// An IPv4 or IPv6 TCP packet with 12 bytes of TCP options and `payload` bytes of data, as the
// local stack hands it to an offloading device (checksum field left as it is: ignored).
std::vector<uint8_t> tcp_packet(bool v4, size_t payload, uint8_t flags) {
  size_t ip = v4 ? 20 : 40;
  std::vector<uint8_t> packet(ip + 32 + payload);
  if (v4) {
    packet[0] = 0x45;
    put16(packet, 2, static_cast<uint16_t>(std::min<size_t>(packet.size(), 65535)));
    put16(packet, 4, 0xfff0);  // the id wraps within the segments
    put16(packet, 6, 0x4000);  // DF
    packet[8] = 64;
    packet[9] = IPPROTO_TCP;
    const uint8_t addresses[] = {198, 18, 100, 7, 198, 18, 2, 2};
    std::memcpy(&packet[12], addresses, sizeof(addresses));
  } else {
    packet[0] = 0x60;
    put16(packet, 4, static_cast<uint16_t>(32 + payload));
    packet[6] = IPPROTO_TCP;
    packet[7] = 64;
    for (size_t i = 0; i < 32; ++i)
      packet[8 + i] = static_cast<uint8_t>(0x20 + i);
  }
  put16(packet, ip, 40000);
  put16(packet, ip + 2, 5201);
  packet[ip + 4] = 0xff;  // sequence 0xfffff000: wraps within the segments
  packet[ip + 5] = 0xff;
  packet[ip + 6] = 0xf0;
  packet[ip + 7] = 0x00;
  packet[ip + 12] = 8 << 4;  // 32-byte header
  packet[ip + 13] = flags;
  put16(packet, ip + 14, 512);
  for (size_t i = 0; i < 12; ++i)
    packet[ip + 20 + i] = static_cast<uint8_t>(0xa0 + i);
  for (size_t i = 0; i < payload; ++i)
    packet[ip + 32 + i] = static_cast<uint8_t>(i * 7 + i / 251);
  return packet;
}

std::vector<uint8_t> frame_of(const VnetHeader& header, const std::vector<uint8_t>& packet) {
  std::vector<uint8_t> frame(offload::kHeaderSize + packet.size());
  std::memcpy(frame.data(), &header, offload::kHeaderSize);
  std::memcpy(frame.data() + offload::kHeaderSize, packet.data(), packet.size());
  return frame;
}

struct Split {
  Status status = ok();
  std::vector<std::vector<uint8_t>> packets;
  std::vector<const uint8_t*> where;
};

Split split(std::vector<uint8_t>& frame) {
  static std::vector<uint8_t> scratch;
  Split out;
  out.status = offload::split(frame, scratch, [&](std::span<const uint8_t> packet) {
    out.packets.emplace_back(packet.begin(), packet.end());
    out.where.push_back(packet.data());
  });
  return out;
}

TEST(TunOffloadChecksum, MatchesTheRfc1071ExampleAndTheReferenceSum) {
  const std::vector<uint8_t> example = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(offload::fold(offload::add_to_sum(0, example)), static_cast<uint16_t>(~0xddf2));
  std::vector<uint8_t> bytes(300);
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<uint8_t>(i * 131 + 17);
  for (size_t size = 0; size <= bytes.size(); ++size) {
    uint16_t expected = static_cast<uint16_t>(~reference_sum(bytes.data(), size));
    EXPECT_EQ(offload::fold(offload::add_to_sum(0, std::span(bytes.data(), size))), expected)
        << size << " bytes";
  }
}

void expect_segments(bool v4) {
  constexpr size_t kPayload = 5000, kMss = 1394;
  auto packet = tcp_packet(v4, kPayload, kPsh | kAck | kCwr | kFin);
  VnetHeader header;
  header.flags = offload::kNeedsChecksum;
  header.gso_type = v4 ? offload::kGsoTcp4 : offload::kGsoTcp6;
  header.gso_size = kMss;
  header.hdr_len = static_cast<uint16_t>((v4 ? 20 : 40) + 32);
  header.csum_start = v4 ? 20 : 40;
  header.csum_offset = 16;
  auto frame = frame_of(header, packet);
  auto cut = split(frame);
  ASSERT_TRUE(cut.status) << cut.status.error().message;
  ASSERT_EQ(cut.packets.size(), 4u);  // 3 x 1394 + 818

  size_t ip = v4 ? 20 : 40, headers = ip + 32;
  std::vector<uint8_t> data;
  for (size_t i = 0; i < cut.packets.size(); ++i) {
    const auto& segment = cut.packets[i];
    size_t length = i < 3 ? kMss : kPayload - 3 * kMss;
    SCOPED_TRACE("segment " + std::to_string(i));
    ASSERT_EQ(segment.size(), headers + length);
    if (v4) {
      EXPECT_EQ(get16(segment, 2), segment.size());
      EXPECT_EQ(get16(segment, 4), static_cast<uint16_t>(0xfff0 + i));
      EXPECT_EQ(get16(segment, 6), 0x4000);
      EXPECT_TRUE(ipv4_header_valid(segment));
    } else {
      EXPECT_EQ(get16(segment, 4), 32 + length);
    }
    EXPECT_EQ(get32(segment, ip + 4), static_cast<uint32_t>(0xfffff000u + i * kMss));
    uint8_t flags = segment[ip + 13];
    EXPECT_EQ((flags & kPsh) != 0, i == 3);
    EXPECT_EQ((flags & kFin) != 0, i == 3);
    EXPECT_EQ((flags & kCwr) != 0, i == 0);
    EXPECT_TRUE(flags & kAck);
    EXPECT_TRUE(std::equal(segment.begin() + static_cast<long>(ip) + 20,
                           segment.begin() + static_cast<long>(headers),
                           packet.begin() + static_cast<long>(ip) + 20));  // options kept
    EXPECT_TRUE(transport_checksum_valid(segment, IPPROTO_TCP));
    data.insert(data.end(), segment.begin() + static_cast<long>(headers), segment.end());
  }
  EXPECT_TRUE(std::equal(data.begin(), data.end(), packet.begin() + static_cast<long>(headers),
                         packet.end()));
}

TEST(TunOffloadSplit, CutsAnIpv4TcpSuperPacketIntoValidSegments) {
  expect_segments(true);
}

TEST(TunOffloadSplit, CutsAnIpv6TcpSuperPacketIntoValidSegments) {
  expect_segments(false);
}

TEST(TunOffloadSplit, ASuperPacketNoLargerThanOneSegmentBecomesOneValidPacket) {
  auto packet = tcp_packet(true, 100, kPsh | kAck);
  VnetHeader header;
  header.flags = offload::kNeedsChecksum;
  header.gso_type = offload::kGsoTcp4;
  header.gso_size = 1394;
  auto frame = frame_of(header, packet);
  auto cut = split(frame);
  ASSERT_TRUE(cut.status);
  ASSERT_EQ(cut.packets.size(), 1u);
  EXPECT_EQ(cut.packets[0].size(), packet.size());
  EXPECT_TRUE(ipv4_header_valid(cut.packets[0]));
  EXPECT_TRUE(transport_checksum_valid(cut.packets[0], IPPROTO_TCP));
}

TEST(TunOffloadSplit, FinishesAPartialChecksumInPlace) {
  // A UDP datagram whose checksum field holds only the pseudo-header's sum, as the kernel
  // leaves it for a device that offloads checksums.
  std::vector<uint8_t> packet(20 + 8 + 333);
  packet[0] = 0x45;
  put16(packet, 2, static_cast<uint16_t>(packet.size()));
  packet[8] = 64;
  packet[9] = IPPROTO_UDP;
  const uint8_t addresses[] = {198, 18, 100, 7, 198, 18, 2, 53};
  std::memcpy(&packet[12], addresses, sizeof(addresses));
  put16(packet, 20, 33333);
  put16(packet, 22, 53);
  put16(packet, 24, 8 + 333);
  for (size_t i = 28; i < packet.size(); ++i)
    packet[i] = static_cast<uint8_t>(i);
  uint32_t pseudo = pseudo_header_sum(packet, IPPROTO_UDP, 8 + 333);
  while (pseudo >> 16)
    pseudo = (pseudo & 0xffff) + (pseudo >> 16);
  put16(packet, 26, static_cast<uint16_t>(pseudo));
  VnetHeader header;
  header.flags = offload::kNeedsChecksum;
  header.csum_start = 20;
  header.csum_offset = 6;
  auto frame = frame_of(header, packet);
  auto cut = split(frame);
  ASSERT_TRUE(cut.status);
  ASSERT_EQ(cut.packets.size(), 1u);
  EXPECT_EQ(cut.where[0], frame.data() + offload::kHeaderSize);  // in place, not copied
  EXPECT_TRUE(transport_checksum_valid(cut.packets[0], IPPROTO_UDP));
}

TEST(TunOffloadSplit, PassesAPlainPacketOnUnchanged) {
  auto packet = tcp_packet(true, 64, kAck);
  auto frame = frame_of(VnetHeader{}, packet);
  auto cut = split(frame);
  ASSERT_TRUE(cut.status);
  ASSERT_EQ(cut.packets.size(), 1u);
  EXPECT_EQ(cut.packets[0], packet);
  EXPECT_EQ(cut.where[0], frame.data() + offload::kHeaderSize);
}

TEST(TunOffloadSplit, RefusesWhatItCannotCutAndEmitsNothing) {
  auto refused = [](std::vector<uint8_t> frame, const std::string& why) {
    auto cut = split(frame);
    ASSERT_FALSE(cut.status) << why;
    EXPECT_NE(cut.status.error().message.find("tun offload"), std::string::npos);
    EXPECT_TRUE(cut.packets.empty()) << why;
  };
  refused(std::vector<uint8_t>(offload::kHeaderSize), "header only");
  refused(std::vector<uint8_t>(3), "shorter than the header");

  VnetHeader gso;
  gso.gso_type = offload::kGsoTcp4;
  gso.gso_size = 0;
  refused(frame_of(gso, tcp_packet(true, 3000, kAck)), "no segment size");
  gso.gso_size = 1000;
  refused(frame_of(gso, tcp_packet(false, 3000, kAck)), "IPv6 packet marked as IPv4");
  auto cut_short = tcp_packet(true, 0, kAck);
  cut_short.resize(30);
  refused(frame_of(gso, cut_short), "TCP header cut short");
  auto udp = tcp_packet(true, 3000, kAck);
  udp[9] = IPPROTO_UDP;
  refused(frame_of(gso, udp), "UDP marked as TCP");
  auto fragment = tcp_packet(true, 3000, kAck);
  put16(fragment, 6, 0x2000);  // more fragments
  refused(frame_of(gso, fragment), "a fragment");
  gso.gso_type = offload::kGsoTcp4 | offload::kGsoEcn;
  refused(frame_of(gso, tcp_packet(true, 3000, kAck)), "ECN not offered");
  gso.gso_type = 3;  // VIRTIO_NET_HDR_GSO_UDP
  refused(frame_of(gso, tcp_packet(true, 3000, kAck)), "UDP fragmentation not offered");
  auto v6 = tcp_packet(false, 3000, kAck);
  v6[6] = 0;  // hop-by-hop options first
  gso.gso_type = offload::kGsoTcp6;
  refused(frame_of(gso, v6), "IPv6 extension header");

  VnetHeader partial;
  partial.flags = offload::kNeedsChecksum;
  partial.csum_start = 60;
  partial.csum_offset = 6;
  refused(frame_of(partial, tcp_packet(true, 0, kAck)), "checksum outside the packet");
}

}  // namespace
}  // namespace steward::vpn
