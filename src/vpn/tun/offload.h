// What a TUN device with offloads (IFF_VNET_HDR, TUNSETOFFLOAD with TUN_F_CSUM | TUN_F_TSO4,
// optionally TUN_F_TSO6) hands over, turned back into the packets a wire would carry.
//
// (Steward asks for TSO4 only; the IPv6 path is kept for a device that also has TSO6.)
// With those offloads the kernel no longer cuts a local TCP stream's 64 KiB send into MTU-sized
// segments before the TUN, nor finishes checksums: each read is a virtio_net_hdr followed by
// either one ordinary packet, one packet whose TCP/UDP checksum holds only the pseudo-header
// sum (VIRTIO_NET_HDR_F_NEEDS_CSUM), or a TCP "super-packet" of up to 64 KiB with gso_size
// (the MSS) to cut it by. One read then stands for up to ~45 packets, which saves a system call,
// a socket buffer and a pass through the qdisc for each of them; the price is doing here what
// the kernel's GSO would have done: the headers of each segment (IP length, IPv4 id and header
// checksum, TCP sequence number, flags) and the TCP checksum over the segment.
//
// Writes to such a device need a virtio_net_hdr too: kPlainHeader (no offload, checksums done).
#pragma once

#include "core/result.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace steward::vpn::offload {

// struct virtio_net_hdr of <linux/virtio_net.h> (which does not compile as C++: a field is named
// `class`), in the host's byte order as a TUN device uses it by default.
struct VnetHeader {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
static_assert(sizeof(VnetHeader) == 10);
inline constexpr uint8_t kNeedsChecksum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
inline constexpr uint8_t kGsoNone = 0;        // VIRTIO_NET_HDR_GSO_NONE
inline constexpr uint8_t kGsoTcp4 = 1;        // VIRTIO_NET_HDR_GSO_TCPV4
inline constexpr uint8_t kGsoTcp6 = 4;        // VIRTIO_NET_HDR_GSO_TCPV6
inline constexpr uint8_t kGsoEcn = 0x80;      // VIRTIO_NET_HDR_GSO_ECN

inline constexpr size_t kHeaderSize = sizeof(VnetHeader);
// A whole read: the header and the largest packet the kernel hands over.
inline constexpr size_t kMaxRead = kHeaderSize + 65535 + 14;

// What a write carries before the packet: nothing to finish, nothing to cut.
inline constexpr VnetHeader kPlainHeader{};

// The Internet checksum (RFC 1071) of `bytes`, added to `sum` (a running 32-bit one's
// complement sum, not yet folded).
uint32_t add_to_sum(uint32_t sum, std::span<const uint8_t> bytes);
// Folds a running sum into the 16-bit checksum field value (complemented).
uint16_t fold(uint32_t sum);

// Cuts one read from an offloading TUN (`frame`: header and packet) into wire packets, calling
// `emit` with each in order; `scratch` holds them (reused between calls). A packet without
// offload is passed on unchanged (no copy). Returns kInvalidArgument, and emits nothing, for a
// frame that is too short, whose headers do not fit, or that asks for an offload this code does
// not do (UDP segmentation, ECN, IPv6 extension headers before TCP).
template <typename Emit>
Status split(std::span<uint8_t> frame, std::vector<uint8_t>& scratch, Emit&& emit);

// The work behind split(): fills `scratch` with the packets one after the other and `ends`
// with where each ends. Exposed for split() only.
Status split_into(std::span<uint8_t> frame, std::vector<uint8_t>& scratch,
                  std::vector<size_t>& ends, std::span<const uint8_t>& single);

template <typename Emit>
Status split(std::span<uint8_t> frame, std::vector<uint8_t>& scratch, Emit&& emit) {
  thread_local std::vector<size_t> ends;
  std::span<const uint8_t> single;
  if (auto cut = split_into(frame, scratch, ends, single); !cut) return cut;
  if (!single.empty()) {
    emit(single);
    return ok();
  }
  size_t begin = 0;
  for (size_t end : ends) {
    emit(std::span<const uint8_t>(scratch.data() + begin, end - begin));
    begin = end;
  }
  return ok();
}

}  // namespace steward::vpn::offload
