// Walking the messages of one netlink datagram.
#pragma once

#include <linux/netlink.h>

#include <cstdint>

namespace steward::vpn {

// NLMSG_OK for a signed remaining length (NLMSG_NEXT may take it below zero, which ends the
// walk), without the mixed-sign comparison the macro makes.
inline bool netlink_message_ok(const nlmsghdr* header, int remaining) {
  return remaining >= static_cast<int>(sizeof(nlmsghdr)) && header->nlmsg_len >= sizeof(nlmsghdr) &&
         static_cast<int64_t>(header->nlmsg_len) <= remaining;
}

}  // namespace steward::vpn
