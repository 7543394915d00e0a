// IPv4 fragments after the first carry no ports, so the flow check (policy/flow_check.h) cannot
// match them to a socket. They follow the decision taken for the first fragment of their
// datagram (same source, destination, protocol and identification), which the kernel writes to
// the TUN before the others when it fragments a local packet to the TUN's MTU.
// IPv6 fragments are not handled: IPv6 is tunnelled only when the gateway gives an IPv6
// address, and the kernel sizes IPv6 to the path MTU at the source instead.
// Not thread-safe: the TUN reader owns it.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>

namespace steward::vpn {

class FragmentDecisions {
 public:
  // For a later IPv4 fragment (offset > 0): whether its first fragment passed. A later fragment
  // whose first one was never seen (or was forgotten) is refused. nullopt for every other
  // packet: the flow check decides those.
  std::optional<bool> later_fragment(std::span<const uint8_t> packet) const;

  // Records the decision for a first fragment (offset 0, more-fragments set); other packets
  // are ignored. The newest 256 datagrams are remembered.
  void first_fragment(std::span<const uint8_t> packet, bool pass);

  size_t remembered() const { return decisions_.size(); }

 private:
  using Key = std::array<uint8_t, 11>;  // source, destination, protocol, identification
  std::map<Key, bool> decisions_;
  std::deque<Key> order_;
};

}  // namespace steward::vpn
