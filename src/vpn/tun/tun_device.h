// The TUN device the tunnel reads and writes IP packets through (IFF_TUN | IFF_NO_PI: each
// read or write is one whole IPv4 or IPv6 packet, no extra header). Created with IFF_NAPI where
// the kernel allows it, so that packets written to it pass through GRO: with a GRO flush
// timeout (set_gro_flush_timeout), consecutive segments of a TCP stream written one by one
// reach the stack as one packet, which saves most of the per-packet cost of the receive path.
//
// The device is not persistent: the kernel removes it, and every route through it, when the
// last descriptor closes (also on SIGKILL). Steering keeps `prohibit` routes beside the TUN
// routes so that admitted traffic is rejected, not leaked, while no TUN exists.
// A daemon records the device in its steering ledger (LedgerEntry::Kind::kTun) before
// create(), so cleanup after a crash also removes a device another process kept open.
#pragma once

#include "core/result.h"
#include "vpn/cstp/tunnel_config.h"

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <span>
#include <string>

namespace steward::vpn {

// One TUN device and its descriptor. Move-only; the destructor closes the descriptor, which
// removes the device. Not thread-safe: one owner (the daemon's event loop) configures it.
class TunDevice {
 public:
  // Opens /dev/net/tun and creates the device `name` (at most 15 bytes, e.g. "stw0") in the
  // calling thread's network namespace. Fails with kAlreadyExists when a link of that name
  // exists, kIo when the kernel refuses (no /dev/net/tun, no CAP_NET_ADMIN).
  //
  // With `offload`, the device also carries a virtio_net_hdr before every packet (IFF_VNET_HDR)
  // and asks the kernel for checksum and TCP segmentation offload (tun/offload.h): reads may
  // then be TCP super-packets of up to 64 KiB, which offload::split() cuts, and writes must go
  // through write_packet(). When the kernel refuses the offloads, the header stays and reads
  // are single packets.
  static Result<TunDevice> create(const std::string& name, bool offload = false);

  TunDevice(TunDevice&& other) noexcept;
  TunDevice& operator=(TunDevice&& other) noexcept;
  TunDevice(const TunDevice&) = delete;
  TunDevice& operator=(const TunDevice&) = delete;
  ~TunDevice();

  // Gives the device the tunnel's IPv4 address (and IPv6 address when the gateway sent one)
  // and MTU, and brings it up. Addresses are added without a prefix route, so nothing reaches
  // the TUN through the main table: only Steward's own routing table points at it.
  Status configure(const TunnelConfig& config);

  // Lets GRO hold packets written to the device for up to `nanoseconds` so that the next ones
  // of the same TCP stream can join them (a segment with PSH, a full 64 KiB packet, or the
  // timeout sends them on). Written to /sys/class/net/<name>/gro_flush_timeout, which must be
  // this network namespace's view (checked by ifindex). kUnavailable when the device has no
  // NAPI or the sysfs view is another namespace's; the device works the same, packet by packet.
  Status set_gro_flush_timeout(uint64_t nanoseconds);
  bool napi() const { return napi_; }
  // Whether each read and write carries a virtio_net_hdr, and whether the kernel took the
  // checksum and segmentation offloads.
  bool vnet_header() const { return vnet_header_; }
  bool offloads() const { return offloads_; }

  // Writes one IP packet (with the plain virtio_net_hdr in front when the device has one).
  // False when the kernel refused it (errno tells why).
  bool write_packet(std::span<const uint8_t> packet) const;

  Status add_address(const boost::asio::ip::address& address, int prefix_length);
  Status set_mtu(int mtu);
  Status set_up(bool up);

  // Non-blocking descriptor for reading and writing packets, e.g. with
  // boost::asio::posix::stream_descriptor (dup() it: the stream_descriptor closes what it
  // owns). Stays owned by this object.
  int fd() const { return fd_; }
  const std::string& name() const { return name_; }
  int ifindex() const { return ifindex_; }

  // Closes the descriptor now; the kernel removes the device and its routes.
  void close();

 private:
  TunDevice(int fd, std::string name, int ifindex, bool napi, bool vnet_header, bool offloads)
      : fd_(fd),
        name_(std::move(name)),
        ifindex_(ifindex),
        napi_(napi),
        vnet_header_(vnet_header),
        offloads_(offloads) {}
  int fd_ = -1;
  std::string name_;
  int ifindex_ = 0;
  bool napi_ = false;
  bool vnet_header_ = false;
  bool offloads_ = false;
};

// Deletes the link `name` if it exists (RTM_DELLINK); ok when there is none. Used by cleanup
// after a crash, for a device recorded in the ledger.
Status remove_link(const std::string& name);

}  // namespace steward::vpn
