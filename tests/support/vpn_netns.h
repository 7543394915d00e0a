// Network namespaces for the VPN steering tests: a client namespace joined to a peer
// ("outside": the gateway and the normal route) by a veth pair, 198.18.0.0/15 addresses only.
//
//   client  out0 198.18.0.2/24, 64:ff9b::c612:2/120   default routes via the peer
//   peer    in0  198.18.0.1/24, 64:ff9b::c612:1/120   counts, in prerouting, every packet that
//           reaches it for the intranet (198.18.4.0/24, 64:ff9b::c612:400/120), for DNS at
//           198.18.0.1, for the gateway's TLS port (198.18.0.1:443) and for an "internet" host
//           outside the split-include intranet (198.18.6.0/24)
//
// The IPv6 addresses are the NAT64 forms (RFC 6052) of 198.18.0.x and 198.18.4.x.
// Ownership: the object deletes both namespaces (and so the veth) in its destructor, also when
// a test fails. Not thread-safe.
#pragma once

#include "core/result.h"

#include <cstdint>
#include <string>

namespace steward::testing {

// Runs `command` with /bin/sh; returns its stdout, or an error with the exit status and output.
Result<std::string> shell(const std::string& command);

// Moves the calling thread into a network namespace and back when destroyed.
class NetnsGuard {
 public:
  static Result<NetnsGuard> enter(const std::string& name);
  NetnsGuard(NetnsGuard&& other) noexcept;
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  NetnsGuard& operator=(NetnsGuard&&) = delete;
  ~NetnsGuard();

 private:
  NetnsGuard(int original) : original_(original) {}
  int original_ = -1;
};

class VpnNetns {
 public:
  // Namespaces named "<tag>-client" and "<tag>-peer"; any left by an earlier run with the same
  // tag are deleted first.
  static Result<VpnNetns> create(const std::string& tag);
  VpnNetns(VpnNetns&& other) noexcept;
  VpnNetns(const VpnNetns&) = delete;
  VpnNetns& operator=(const VpnNetns&) = delete;
  VpnNetns& operator=(VpnNetns&&) = delete;
  ~VpnNetns();

  const std::string& client() const { return client_; }
  const std::string& peer() const { return peer_; }

  // Packets the peer received toward the intranet (IPv4 and IPv6 together), and UDP/TCP
  // packets to port 53 at 198.18.0.1 (the normal resolver).
  Result<uint64_t> intranet_packets_at_peer() const;
  Result<uint64_t> dns_packets_at_peer() const;
  // Any of the peer's counters: "intranet", "dns", "gateway", "outside".
  Result<uint64_t> counter(const std::string& name) const;

  // Runs `command` inside the client namespace (ip netns exec) and returns its stdout.
  Result<std::string> in_client(const std::string& command) const;

 private:
  VpnNetns(std::string client, std::string peer)
      : client_(std::move(client)), peer_(std::move(peer)) {}
  std::string client_;
  std::string peer_;
};

}  // namespace steward::testing
