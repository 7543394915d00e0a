#include "vpn/fragments.h"

#include <algorithm>

namespace steward::vpn {
namespace {

constexpr size_t kRemembered = 256;

int fragment_offset(std::span<const uint8_t> packet) {
  return ((packet[6] & 0x1f) << 8) | packet[7];
}

bool is_ipv4_fragment(std::span<const uint8_t> packet) {
  if (packet.size() < 20 || (packet[0] >> 4) != 4) return false;
  bool more_fragments = (packet[6] & 0x20) != 0;
  return more_fragments || fragment_offset(packet) != 0;
}

std::array<uint8_t, 11> datagram_of(std::span<const uint8_t> packet) {
  std::array<uint8_t, 11> key{};
  std::copy(packet.begin() + 12, packet.begin() + 20, key.begin());
  key[8] = packet[9];
  key[9] = packet[4];
  key[10] = packet[5];
  return key;
}

}  // namespace

std::optional<bool> FragmentDecisions::later_fragment(std::span<const uint8_t> packet) const {
  if (!is_ipv4_fragment(packet) || fragment_offset(packet) == 0) return std::nullopt;
  auto found = decisions_.find(datagram_of(packet));
  return found != decisions_.end() && found->second;
}

void FragmentDecisions::first_fragment(std::span<const uint8_t> packet, bool pass) {
  if (!is_ipv4_fragment(packet) || fragment_offset(packet) != 0) return;
  if (order_.size() >= kRemembered) {
    decisions_.erase(order_.front());
    order_.pop_front();
  }
  auto [entry, added] = decisions_.insert_or_assign(datagram_of(packet), pass);
  if (added) order_.push_back(entry->first);
}

}  // namespace steward::vpn
