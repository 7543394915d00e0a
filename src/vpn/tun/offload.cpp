#include "vpn/tun/offload.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace steward::vpn::offload {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;
constexpr size_t kUdpChecksumOffset = 6;

uint16_t load16(const uint8_t* at) {
  return static_cast<uint16_t>(at[0] << 8 | at[1]);
}

uint32_t load32(const uint8_t* at) {
  return static_cast<uint32_t>(at[0]) << 24 | static_cast<uint32_t>(at[1]) << 16 |
         static_cast<uint32_t>(at[2]) << 8 | at[3];
}

void store16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value >> 8);
  at[1] = static_cast<uint8_t>(value);
}

void store32(uint8_t* at, uint32_t value) {
  at[0] = static_cast<uint8_t>(value >> 24);
  at[1] = static_cast<uint8_t>(value >> 16);
  at[2] = static_cast<uint8_t>(value >> 8);
  at[3] = static_cast<uint8_t>(value);
}

Error refuse(std::string_view why) {
  return Error::make(ErrorCode::kInvalidArgument, "tun offload: {}", why);
}

// Where a TCP super-packet's parts are.
struct TcpLayout {
  bool v4 = true;
  size_t ip_header = 0;   // IPv4 header with options, or the fixed IPv6 header
  size_t tcp_header = 0;  // with options
  size_t headers() const { return ip_header + tcp_header; }
};

Result<TcpLayout> tcp_layout(std::span<const uint8_t> packet, bool v4) {
  TcpLayout layout;
  layout.v4 = v4;
  if (v4) {
    if (packet.size() < 20 || packet[0] >> 4 != 4) return refuse("not an IPv4 packet");
    layout.ip_header = static_cast<size_t>(packet[0] & 0x0f) * 4;
    if (layout.ip_header < 20 || packet[9] != kTcp) return refuse("not an IPv4 TCP packet");
    if ((load16(&packet[6]) & 0x3fff) != 0) return refuse("a fragment cannot be segmented");
  } else {
    if (packet.size() < 40 || packet[0] >> 4 != 6) return refuse("not an IPv6 packet");
    layout.ip_header = 40;
    if (packet[6] != kTcp) return refuse("IPv6 extension headers before TCP");
  }
  if (packet.size() < layout.ip_header + 20) return refuse("TCP header cut short");
  layout.tcp_header = static_cast<size_t>(packet[layout.ip_header + 12] >> 4) * 4;
  if (layout.tcp_header < 20 || packet.size() < layout.headers()) {
    return refuse("TCP header cut short");
  }
  return layout;
}

// The TCP checksum of one segment (headers and payload in place), pseudo-header included.
uint16_t tcp_checksum(const uint8_t* segment, const TcpLayout& layout, size_t tcp_length) {
  uint32_t sum = 0;
  if (layout.v4) {
    sum = add_to_sum(sum, std::span<const uint8_t>(segment + 12, 8));  // source, destination
  } else {
    sum = add_to_sum(sum, std::span<const uint8_t>(segment + 8, 32));
  }
  sum += kTcp;
  sum += static_cast<uint32_t>(tcp_length >> 16) + static_cast<uint32_t>(tcp_length & 0xffff);
  return fold(add_to_sum(sum, std::span<const uint8_t>(segment + layout.ip_header, tcp_length)));
}

Status segment_tcp(std::span<const uint8_t> packet, const VnetHeader& header,
                   std::vector<uint8_t>& scratch, std::vector<size_t>& ends) {
  auto layout = tcp_layout(packet, header.gso_type == kGsoTcp4);
  if (!layout) return layout.error();
  size_t mss = header.gso_size;
  if (mss == 0) return refuse("segmentation without a segment size");
  size_t headers = layout->headers();
  size_t payload = packet.size() - headers;
  if (headers + std::min(mss, payload) > 65535) return refuse("a segment would exceed 64 KiB");
  size_t count = payload == 0 ? 1 : (payload + mss - 1) / mss;
  scratch.resize(count * headers + payload);
  ends.clear();

  const uint8_t* data = packet.data() + headers;
  const uint8_t* tcp = packet.data() + layout->ip_header;
  uint32_t sequence = load32(tcp + 4);
  uint16_t id = layout->v4 ? load16(packet.data() + 4) : 0;
  uint8_t* out = scratch.data();
  for (size_t index = 0, offset = 0; index < count; ++index, offset += mss) {
    size_t length = std::min(mss, payload - std::min(offset, payload));
    std::memcpy(out, packet.data(), headers);
    std::memcpy(out + headers, data + offset, length);
    uint8_t* segment_tcp = out + layout->ip_header;
    if (layout->v4) {
      store16(out + 2, static_cast<uint16_t>(headers + length));
      store16(out + 4, static_cast<uint16_t>(id + index));
      store16(out + 10, 0);
      store16(out + 10, fold(add_to_sum(0, std::span<const uint8_t>(out, layout->ip_header))));
    } else {
      store16(out + 4, static_cast<uint16_t>(layout->tcp_header + length));
    }
    store32(segment_tcp + 4, sequence + static_cast<uint32_t>(offset));
    if (index + 1 < count) segment_tcp[13] &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (index > 0) segment_tcp[13] &= static_cast<uint8_t>(~kTcpCwr);
    store16(segment_tcp + 16, 0);
    store16(segment_tcp + 16, tcp_checksum(out, *layout, layout->tcp_header + length));
    out += headers + length;
    ends.push_back(static_cast<size_t>(out - scratch.data()));
  }
  return ok();
}

}  // namespace

uint32_t add_to_sum(uint32_t sum, std::span<const uint8_t> bytes) {
  // Native-order 64-bit words with end-around carry; the one's complement sum does not depend
  // on the byte order except for a swap at the end (RFC 1071, 2.B).
  uint64_t wide = 0;
  const uint8_t* at = bytes.data();
  size_t left = bytes.size();
  while (left >= 8) {
    uint64_t word;
    std::memcpy(&word, at, 8);
    wide += word;
    wide += wide < word ? 1 : 0;
    at += 8;
    left -= 8;
  }
  uint64_t tail = 0;
  if (left > 0)
    std::memcpy(&tail, at, left);  // an odd last byte is padded with zero, as RFC 1071 says
  wide += tail;
  wide += wide < tail ? 1 : 0;
  uint64_t folded = (wide >> 32) + (wide & 0xffffffff);
  while (folded >> 16)
    folded = (folded >> 16) + (folded & 0xffff);
  auto value = static_cast<uint16_t>(folded);
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap16(value);
  return sum + value;
}

uint16_t fold(uint32_t sum) {
  sum = (sum >> 16) + (sum & 0xffff);
  sum = (sum >> 16) + (sum & 0xffff);
  return static_cast<uint16_t>(~sum);
}

Status split_into(std::span<uint8_t> frame, std::vector<uint8_t>& scratch,
                  std::vector<size_t>& ends, std::span<const uint8_t>& single) {
  single = {};
  ends.clear();
  if (frame.size() <= kHeaderSize) return refuse("read shorter than its header");
  VnetHeader header;
  std::memcpy(&header, frame.data(), kHeaderSize);
  std::span<uint8_t> packet = frame.subspan(kHeaderSize);
  if (header.gso_type & kGsoEcn) return refuse("ECN segmentation not offered");
  switch (header.gso_type) {
    case kGsoNone:
      break;
    case kGsoTcp4:
    case kGsoTcp6:
      return segment_tcp(packet, header, scratch, ends);
    default:
      return refuse("segmentation type not offered");
  }
  if (header.flags & kNeedsChecksum) {
    size_t start = header.csum_start;
    size_t field = start + header.csum_offset;
    if (field + 2 > packet.size() || header.csum_offset % 2 != 0) {
      return refuse("checksum position outside the packet");
    }
    // The field holds the pseudo-header's sum; the checksum covers it and the rest.
    uint16_t checksum = fold(add_to_sum(0, packet.subspan(start)));
    if (checksum == 0 && header.csum_offset == kUdpChecksumOffset) checksum = 0xffff;
    store16(&packet[field], checksum);
  }
  single = packet;
  return ok();
}

}  // namespace steward::vpn::offload
