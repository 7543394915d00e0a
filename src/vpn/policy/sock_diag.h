// NETLINK_SOCK_DIAG (inet_diag) in the calling thread's network namespace: list TCP and UDP
// sockets with their owner cgroup (INET_DIAG_CGROUP_ID), and destroy one (SOCK_DESTROY).
// Internal to src/vpn.
#pragma once

#include "core/result.h"

#include <boost/asio/ip/address.hpp>

#include <array>
#include <cstdint>
#include <vector>

namespace steward::vpn::diag {

struct Socket {
  int family = 0;    // AF_INET or AF_INET6
  int protocol = 0;  // IPPROTO_TCP or IPPROTO_UDP
  int state = 0;
  boost::asio::ip::address local;
  uint16_t local_port = 0;
  boost::asio::ip::address remote;  // unspecified for an unconnected socket
  uint16_t remote_port = 0;
  uint32_t interface = 0;
  std::array<uint32_t, 2> cookie{};
  uint64_t inode = 0;
  uint64_t cgroup_id = 0;
  uint32_t uid = 0;
};

// Every socket of `family` and `protocol`, in any state.
Result<std::vector<Socket>> dump(int family, int protocol);

// Aborts a TCP socket (the kernel must have CONFIG_INET_DIAG_DESTROY).
Status destroy(const Socket& socket);

}  // namespace steward::vpn::diag
