#include "vpn/steering/rtnl.h"

#include <linux/fib_rules.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <sys/socket.h>

#include <functional>
#include <memory>

namespace steward::vpn::rtnl {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* object) const {
    if (object) Free(object);
  }
};
using Socket = std::unique_ptr<nl_sock, Deleter<nl_sock, nl_socket_free>>;
using Address = std::unique_ptr<nl_addr, Deleter<nl_addr, nl_addr_put>>;
using RouteObject = std::unique_ptr<rtnl_route, Deleter<rtnl_route, rtnl_route_put>>;
using RuleObject = std::unique_ptr<rtnl_rule, Deleter<rtnl_rule, rtnl_rule_put>>;
using LinkObject = std::unique_ptr<rtnl_link, Deleter<rtnl_link, rtnl_link_put>>;
using AddrObject = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, rtnl_addr_put>>;

Result<Socket> connect() {
  Socket socket(nl_socket_alloc());
  if (!socket) return Error::make(ErrorCode::kIo, "netlink: out of memory");
  if (int err = nl_connect(socket.get(), NETLINK_ROUTE); err < 0) {
    return Error::make(ErrorCode::kIo, "netlink: cannot connect: {}", nl_geterror(err));
  }
  return socket;
}

Result<Address> parse_address(const std::string& text, int family) {
  nl_addr* parsed = nullptr;
  if (int err = nl_addr_parse(text.c_str(), family, &parsed); err < 0) {
    return Error::make(ErrorCode::kInvalidArgument, "'{}' is not an address: {}", text,
                       nl_geterror(err));
  }
  return Address(parsed);
}

int family_of(const Prefix& prefix) {
  return prefix.is_v4() ? AF_INET : AF_INET6;
}

std::string describe(const Route& route) {
  return fmt::format("route {} table {} {}", route.destination.to_string(), route.table,
                     route.type == RouteType::kProhibit ? "prohibit" : "dev");
}

std::string describe(const Rule& rule) {
  if (rule.table == 0) {
    return fmt::format("rule (ipv{}) fwmark {:#x} prohibit priority {}", rule.family, rule.mark,
                       rule.priority);
  }
  return fmt::format("rule (ipv{}) fwmark {:#x} lookup {} priority {}", rule.family, rule.mark,
                     rule.table, rule.priority);
}

Result<RouteObject> build(const Route& route) {
  auto destination = parse_address(route.destination.to_string(), family_of(route.destination));
  if (!destination) return destination.error();
  RouteObject object(rtnl_route_alloc());
  rtnl_route_set_family(object.get(), family_of(route.destination));
  rtnl_route_set_table(object.get(), static_cast<uint32_t>(route.table));
  rtnl_route_set_dst(object.get(), destination->get());
  rtnl_route_set_priority(object.get(), route.metric);
  rtnl_route_set_protocol(object.get(), RTPROT_STATIC);
  if (route.type == RouteType::kProhibit) {
    rtnl_route_set_type(object.get(), RTN_PROHIBIT);
    rtnl_route_set_scope(object.get(), RT_SCOPE_UNIVERSE);
  } else {
    rtnl_route_set_type(object.get(), RTN_UNICAST);
    rtnl_route_set_scope(object.get(), RT_SCOPE_LINK);
    rtnl_nexthop* hop = rtnl_route_nh_alloc();
    rtnl_route_nh_set_ifindex(hop, route.ifindex);
    rtnl_route_add_nexthop(object.get(), hop);  // the route owns it now
  }
  return object;
}

RuleObject build(const Rule& rule) {
  RuleObject object(rtnl_rule_alloc());
  rtnl_rule_set_family(object.get(), rule.family == 6 ? AF_INET6 : AF_INET);
  rtnl_rule_set_prio(object.get(), static_cast<uint32_t>(rule.priority));
  rtnl_rule_set_mark(object.get(), rule.mark);
  rtnl_rule_set_mask(object.get(), 0xffffffff);
  if (rule.table == 0) {
    rtnl_rule_set_action(object.get(), FR_ACT_PROHIBIT);
  } else {
    rtnl_rule_set_action(object.get(), FR_ACT_TO_TBL);
    rtnl_rule_set_table(object.get(), static_cast<uint32_t>(rule.table));
  }
  return object;
}

bool is_absent(int err) {
  return err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV;
}

ErrorCode code_of(int err) {
  return err == -NLE_EXIST ? ErrorCode::kAlreadyExists : ErrorCode::kIo;
}

}  // namespace

Status add_route(const Route& route) {
  auto socket = connect();
  if (!socket) return socket.error();
  auto object = build(route);
  if (!object) return object.error();
  if (int err = rtnl_route_add(socket->get(), object->get(), NLM_F_EXCL); err < 0) {
    return Error::make(code_of(err), "{}: {}", describe(route), nl_geterror(err));
  }
  return ok();
}

Status delete_route(const Route& route) {
  auto socket = connect();
  if (!socket) return socket.error();
  auto object = build(route);
  if (!object) return object.error();
  int err = rtnl_route_delete(socket->get(), object->get(), 0);
  if (err < 0 && !is_absent(err)) {
    return Error::make(ErrorCode::kIo, "delete {}: {}", describe(route), nl_geterror(err));
  }
  return ok();
}

Status add_rule(const Rule& rule) {
  auto socket = connect();
  if (!socket) return socket.error();
  auto object = build(rule);
  if (int err = rtnl_rule_add(socket->get(), object.get(), NLM_F_EXCL); err < 0) {
    return Error::make(code_of(err), "{}: {}", describe(rule), nl_geterror(err));
  }
  return ok();
}

Status delete_rule(const Rule& rule) {
  auto socket = connect();
  if (!socket) return socket.error();
  auto object = build(rule);
  int err = rtnl_rule_delete(socket->get(), object.get(), 0);
  if (err < 0 && !is_absent(err)) {
    return Error::make(ErrorCode::kIo, "delete {}: {}", describe(rule), nl_geterror(err));
  }
  return ok();
}

Result<int> link_index(const std::string& name) {
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0) return Error::make(ErrorCode::kNotFound, "no link named '{}'", name);
  return static_cast<int>(index);
}

namespace {

Status change_link(int ifindex, const std::string& what,
                   const std::function<void(rtnl_link*)>& edit) {
  auto socket = connect();
  if (!socket) return socket.error();
  rtnl_link* current = nullptr;
  if (int err = rtnl_link_get_kernel(socket->get(), ifindex, nullptr, &current); err < 0) {
    return Error::make(ErrorCode::kNotFound, "link {}: {}", ifindex, nl_geterror(err));
  }
  LinkObject original(current);
  LinkObject change(rtnl_link_alloc());
  edit(change.get());
  if (int err = rtnl_link_change(socket->get(), original.get(), change.get(), 0); err < 0) {
    return Error::make(ErrorCode::kIo, "link {}: {}: {}", ifindex, what, nl_geterror(err));
  }
  return ok();
}

}  // namespace

Status set_link_mtu(int ifindex, int mtu) {
  return change_link(ifindex, fmt::format("set mtu {}", mtu), [mtu](rtnl_link* link) {
    rtnl_link_set_mtu(link, static_cast<unsigned>(mtu));
  });
}

Status set_link_up(int ifindex, bool up) {
  return change_link(ifindex, up ? "set up" : "set down", [up](rtnl_link* link) {
    if (up) {
      rtnl_link_set_flags(link, IFF_UP);
    } else {
      rtnl_link_unset_flags(link, IFF_UP);
    }
  });
}

Status add_address(int ifindex, const boost::asio::ip::address& address, int prefix_length) {
  auto socket = connect();
  if (!socket) return socket.error();
  int family = address.is_v4() ? AF_INET : AF_INET6;
  auto local = parse_address(address.to_string(), family);
  if (!local) return local.error();
  nl_addr_set_prefixlen(local->get(), prefix_length);
  AddrObject object(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(object.get(), ifindex);
  rtnl_addr_set_family(object.get(), family);
  rtnl_addr_set_local(object.get(), local->get());
  rtnl_addr_set_prefixlen(object.get(), prefix_length);
  unsigned flags = IFA_F_NOPREFIXROUTE;
  if (!address.is_v4()) flags |= IFA_F_NODAD;
  rtnl_addr_set_flags(object.get(), flags);
  if (int err = rtnl_addr_add(socket->get(), object.get(), 0); err < 0) {
    return Error::make(ErrorCode::kIo, "address {}/{} on link {}: {}", address.to_string(),
                       prefix_length, ifindex, nl_geterror(err));
  }
  return ok();
}

Status delete_link(const std::string& name) {
  auto socket = connect();
  if (!socket) return socket.error();
  LinkObject link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), name.c_str());
  int err = rtnl_link_delete(socket->get(), link.get());
  if (err < 0 && !is_absent(err)) {
    return Error::make(ErrorCode::kIo, "delete link {}: {}", name, nl_geterror(err));
  }
  return ok();
}

}  // namespace steward::vpn::rtnl
