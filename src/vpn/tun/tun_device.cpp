#include "vpn/tun/tun_device.h"

#include "core/log.h"
#include "vpn/steering/rtnl.h"
#include "vpn/tun/offload.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <unistd.h>
#include <fstream>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

namespace steward::vpn {
namespace {

// Replies come back from the gateway through the TUN, but the main table routes their
// source out the normal interface; strict reverse-path filtering would drop them.
// Without an IPv6 address the TUN would still send router and multicast listener
// solicitations into the tunnel.
void disable_ipv6(const std::string& name) {
  std::ofstream file("/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6");
  file << "1\n";
  if (!file) log::get("vpn")->warn("tun={} IPv6 could not be disabled", name);
}

void loosen_reverse_path_filter(const std::string& name) {
  std::ofstream file("/proc/sys/net/ipv4/conf/" + name + "/rp_filter");
  file << "2\n";
  if (!file) log::get("vpn")->warn("tun={} rp_filter could not be set to loose", name);
}

}  // namespace

Result<TunDevice> TunDevice::create(const std::string& name, bool offload) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Error::make(ErrorCode::kInvalidArgument, "TUN name '{}' must be 1..{} bytes", name,
                       IFNAMSIZ - 1);
  }
  if (rtnl::link_index(name)) {
    return Error::make(ErrorCode::kAlreadyExists, "TUN {}: a link of that name exists", name);
  }
  int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return Error::make(ErrorCode::kIo, "TUN {}: cannot open /dev/net/tun: {}", name,
                       std::strerror(errno));
  }
  ifreq request{};
  const short vnet = offload ? IFF_VNET_HDR : 0;
  request.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_NAPI | vnet;
  std::memcpy(request.ifr_name, name.data(), name.size());
  int created = ::ioctl(fd, TUNSETIFF, &request);
  bool napi = created == 0;
  if (created < 0 && (errno == EINVAL || errno == EPERM)) {
    // A kernel without IFF_NAPI (before 4.15), or not allowed: packet by packet.
    request.ifr_flags = IFF_TUN | IFF_NO_PI | vnet;
    created = ::ioctl(fd, TUNSETIFF, &request);
  }
  if (created < 0) {
    int saved = errno;
    ::close(fd);
    return Error::make(ErrorCode::kIo, "TUN {}: TUNSETIFF: {}", name, std::strerror(saved));
  }
  bool offloads = false;
  if (offload) {
    // Checksums and IPv4 TCP segmentation left to the reader; no UDP segmentation, no ECN, and
    // no IPv6 segmentation (a socket with IPv6 extension headers would hand over super-packets
    // this reader does not cut: the kernel keeps segmenting IPv6).
    unsigned long wanted = TUN_F_CSUM | TUN_F_TSO4;
    offloads = ::ioctl(fd, TUNSETOFFLOAD, wanted) == 0;
    if (!offloads) {
      log::get("vpn")->info("tun={} no segmentation offload ({}): packet by packet", name,
                            std::strerror(errno));
    }
  }
  auto index = rtnl::link_index(name);
  if (!index) {
    ::close(fd);
    return index.error().wrap("TUN " + name);
  }
  return TunDevice(fd, name, *index, napi, offload, offloads);
}

Status TunDevice::set_gro_flush_timeout(uint64_t nanoseconds) {
  if (!napi_) return Error::make(ErrorCode::kUnavailable, "TUN {} has no NAPI", name_);
  std::string dir = "/sys/class/net/" + name_;
  int shown = -1;
  std::ifstream(dir + "/ifindex") >> shown;
  if (shown != ifindex_) {
    return Error::make(ErrorCode::kUnavailable, "{} is not this network namespace's view", dir);
  }
  std::ofstream knob(dir + "/gro_flush_timeout");
  knob << nanoseconds << "\n";
  knob.flush();
  if (!knob) {
    return Error::make(ErrorCode::kIo, "cannot write {}/gro_flush_timeout", dir);
  }
  return ok();
}

TunDevice::TunDevice(TunDevice&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      name_(std::move(other.name_)),
      ifindex_(std::exchange(other.ifindex_, 0)),
      napi_(std::exchange(other.napi_, false)),
      vnet_header_(std::exchange(other.vnet_header_, false)),
      offloads_(std::exchange(other.offloads_, false)) {}

TunDevice& TunDevice::operator=(TunDevice&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    name_ = std::move(other.name_);
    ifindex_ = std::exchange(other.ifindex_, 0);
    napi_ = std::exchange(other.napi_, false);
    vnet_header_ = std::exchange(other.vnet_header_, false);
    offloads_ = std::exchange(other.offloads_, false);
  }
  return *this;
}

TunDevice::~TunDevice() {
  close();
}

bool TunDevice::write_packet(std::span<const uint8_t> packet) const {
  if (!vnet_header_) return ::write(fd_, packet.data(), packet.size()) >= 0;
  std::array<iovec, 2> pieces{
      iovec{const_cast<offload::VnetHeader*>(&offload::kPlainHeader), offload::kHeaderSize},
      iovec{const_cast<uint8_t*>(packet.data()), packet.size()}};
  return ::writev(fd_, pieces.data(), static_cast<int>(pieces.size())) >= 0;
}

void TunDevice::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status TunDevice::configure(const TunnelConfig& config) {
  if (!config.address) {
    return Error::make(ErrorCode::kInvalidArgument, "TUN {}: the tunnel has no IPv4 address",
                       name_);
  }
  if (config.mtu > 0) {
    if (auto status = set_mtu(config.mtu); !status) return status;
  }
  if (auto status = add_address(*config.address, config.netmask_length.value_or(32)); !status) {
    return status;
  }
  if (!config.address6) disable_ipv6(name_);
  if (config.address6) {
    auto status = add_address(*config.address6, config.address6_length.value_or(128));
    if (!status) return status;
  }
  loosen_reverse_path_filter(name_);
  return set_up(true);
}

Status TunDevice::add_address(const boost::asio::ip::address& address, int prefix_length) {
  return rtnl::add_address(ifindex_, address, prefix_length);
}

Status TunDevice::set_mtu(int mtu) {
  if (mtu < 576 || mtu > 65535) {
    return Error::make(ErrorCode::kInvalidArgument, "TUN {}: MTU {} is not in 576..65535", name_,
                       mtu);
  }
  return rtnl::set_link_mtu(ifindex_, mtu);
}

Status TunDevice::set_up(bool up) {
  return rtnl::set_link_up(ifindex_, up);
}

Status remove_link(const std::string& name) {
  if (!rtnl::link_index(name)) return ok();
  return rtnl::delete_link(name);
}

}  // namespace steward::vpn
