// Small libnl-route wrappers the TUN device and steering share: one call per kernel object,
// errors as values naming the object. Internal to src/vpn.
#pragma once

#include "core/result.h"
#include "vpn/cstp/tunnel_config.h"

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <string>

namespace steward::vpn::rtnl {

enum class RouteType { kUnicast, kProhibit };

struct Route {
  Prefix destination;
  int table = 0;
  RouteType type = RouteType::kUnicast;
  int ifindex = 0;  // kUnicast only
  uint32_t metric = 0;
};

struct Rule {
  int family = 4;  // 4 or 6
  int priority = 0;
  uint32_t mark = 0;
  int table = 0;  // 0: the rule prohibits instead of looking up a table
};

Status add_route(const Route& route);
// ok when the route does not exist.
Status delete_route(const Route& route);
Status add_rule(const Rule& rule);
// ok when the rule does not exist.
Status delete_rule(const Rule& rule);

Result<int> link_index(const std::string& name);  // kNotFound when there is no such link
Status set_link_mtu(int ifindex, int mtu);
Status set_link_up(int ifindex, bool up);
// Adds the address without a prefix route (IFA_F_NOPREFIXROUTE) and, for IPv6, without DAD.
Status add_address(int ifindex, const boost::asio::ip::address& address, int prefix_length);
// ok when there is no such link.
Status delete_link(const std::string& name);

}  // namespace steward::vpn::rtnl
