// Defense in depth behind the nftables marks: the first packet of every new flow read from
// the TUN is matched to its socket through NETLINK_SOCK_DIAG (inet_diag), whose
// INET_DIAG_CGROUP_ID says which cgroup created it. Admitted cgroup -> pass; anything else
// (another cgroup, or no local socket at all) -> drop and log. Decisions are cached per flow.
#pragma once

#include "core/clock.h"
#include "core/log.h"
#include "core/result.h"

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>

namespace steward::vpn {

// A flow's 5-tuple, from the sender's side.
struct FlowKey {
  int protocol = 0;  // IPPROTO_TCP, IPPROTO_UDP, or another number (ICMP: ports are 0)
  boost::asio::ip::address source;
  uint16_t source_port = 0;
  boost::asio::ip::address destination;
  uint16_t destination_port = 0;
  friend bool operator==(const FlowKey&, const FlowKey&) = default;
  friend bool operator<(const FlowKey& a, const FlowKey& b) {
    return std::tie(a.protocol, a.source, a.source_port, a.destination, a.destination_port) <
           std::tie(b.protocol, b.source, b.source_port, b.destination, b.destination_port);
  }
  std::string to_string() const;  // "tcp 198.18.0.2:40000 -> 198.18.4.1:80"
};

// The flow a raw IPv4/IPv6 packet belongs to; kInvalidArgument for a truncated or non-IP
// packet.
Result<FlowKey> flow_of_packet(std::span<const uint8_t> packet);

// The owner of a local socket.
struct SocketOwner {
  uint64_t cgroup_id = 0;
  uint64_t inode = 0;
  uint32_t uid = 0;
};

// Looks up the TCP or UDP socket that sends `flow` with an inet_diag dump in the calling
// thread's network namespace. Packets on the TUN are masqueraded to the TUN's address (and
// DNS queries redirected), so the local address and sometimes the remote one differ from
// the socket's: a socket with the flow's source port and destination matches first; else the
// sockets holding the source port decide if they all share one cgroup. nullopt when no
// socket matches or the owners disagree.
Result<std::optional<SocketOwner>> find_socket_owner(const FlowKey& flow);

// Per-flow decisions with a cache. Not thread-safe: the TUN reader owns it.
class FlowCheck {
 public:
  enum class Decision { kPass, kDrop };
  using Lookup = std::function<Result<std::optional<SocketOwner>>(const FlowKey&)>;

  // `lookup` defaults to find_socket_owner; tests inject a fake. Entries expire after
  // `ttl` without packets.
  FlowCheck(uint64_t admitted_cgroup_id, const Clock& clock,
            std::chrono::seconds ttl = std::chrono::seconds(300), Lookup lookup = {});

  // Per-process admission off (the daemon's admit_all): every packet passes, nothing is looked
  // up or cached, nothing is counted as dropped.
  static FlowCheck admitting_everything(const Clock& clock);
  bool admits_everything() const { return admit_all_; }

  // Decides for one packet read from the TUN. Unparseable packets and protocols other than
  // TCP and UDP (no socket to check them against) are dropped. A failing lookup drops (fail
  // closed) without caching.
  Decision check(std::span<const uint8_t> packet);

  size_t cached_flows() const { return flows_.size(); }
  uint64_t lookups() const { return lookups_; }
  uint64_t dropped() const { return dropped_; }

 private:
  struct Entry {
    Decision decision;
    std::chrono::steady_clock::time_point last_seen;
  };
  void expire(std::chrono::steady_clock::time_point now);

  uint64_t admitted_cgroup_id_;
  bool admit_all_ = false;
  const Clock& clock_;
  std::chrono::seconds ttl_;
  Lookup lookup_;
  std::map<FlowKey, Entry> flows_;
  std::chrono::steady_clock::time_point last_expiry_{};
  uint64_t lookups_ = 0;
  uint64_t dropped_ = 0;
  std::shared_ptr<spdlog::logger> logger_;  // looked up once: check() runs per packet
};

}  // namespace steward::vpn
