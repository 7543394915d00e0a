#include "vpn/policy/flow_check.h"

#include "core/log.h"
#include "vpn/policy/sock_diag.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace steward::vpn {
namespace {

namespace ip = boost::asio::ip;

uint16_t read16(std::span<const uint8_t> bytes, size_t offset) {
  return static_cast<uint16_t>(bytes[offset] << 8 | bytes[offset + 1]);
}

Error truncated() {
  return Error::make(ErrorCode::kInvalidArgument, "packet is truncated");
}

// Fills the ports when the transport header is present.
Result<FlowKey> with_ports(FlowKey key, std::span<const uint8_t> transport) {
  if (key.protocol != IPPROTO_TCP && key.protocol != IPPROTO_UDP) return key;
  if (transport.size() < 4) return truncated();
  key.source_port = read16(transport, 0);
  key.destination_port = read16(transport, 2);
  return key;
}

}  // namespace

std::string FlowKey::to_string() const {
  std::string name = protocol == IPPROTO_TCP   ? "tcp"
                     : protocol == IPPROTO_UDP ? "udp"
                                               : fmt::format("proto{}", protocol);
  return fmt::format("{} {}:{} -> {}:{}", name, source.to_string(), source_port,
                     destination.to_string(), destination_port);
}

Result<FlowKey> flow_of_packet(std::span<const uint8_t> packet) {
  if (packet.empty()) return truncated();
  FlowKey key;
  int version = packet[0] >> 4;
  if (version == 4) {
    if (packet.size() < 20) return truncated();
    size_t header_length = (packet[0] & 0x0f) * 4u;
    if (header_length < 20 || packet.size() < header_length) return truncated();
    key.protocol = packet[9];
    ip::address_v4::bytes_type source, destination;
    std::memcpy(source.data(), &packet[12], 4);
    std::memcpy(destination.data(), &packet[16], 4);
    key.source = ip::address_v4(source);
    key.destination = ip::address_v4(destination);
    bool later_fragment = (read16(packet, 6) & 0x1fff) != 0;
    if (later_fragment) return key;  // no transport header; it belongs to a checked flow
    return with_ports(key, packet.subspan(header_length));
  }
  if (version == 6) {
    if (packet.size() < 40) return truncated();
    key.protocol = packet[6];
    ip::address_v6::bytes_type source, destination;
    std::memcpy(source.data(), &packet[8], 16);
    std::memcpy(destination.data(), &packet[24], 16);
    key.source = ip::address_v6(source);
    key.destination = ip::address_v6(destination);
    return with_ports(key, packet.subspan(40));
  }
  return Error::make(ErrorCode::kInvalidArgument, "not an IP packet (version {})", version);
}

Result<std::optional<SocketOwner>> find_socket_owner(const FlowKey& flow) {
  if (flow.protocol != IPPROTO_TCP && flow.protocol != IPPROTO_UDP) {
    return std::optional<SocketOwner>();
  }
  // IPv4 sockets may also be IPv6 sockets with mapped addresses: look in both tables.
  std::optional<SocketOwner> by_port;
  bool owners_disagree = false;
  for (int family : {AF_INET, AF_INET6}) {
    auto sockets = diag::dump(family, flow.protocol);
    if (!sockets) return sockets.error();
    for (const auto& socket : *sockets) {
      if (socket.local_port != flow.source_port) continue;
      SocketOwner owner{socket.cgroup_id, socket.inode, socket.uid};
      auto remote = socket.remote;
      if (remote.is_v6() && remote.to_v6().is_v4_mapped()) {
        remote = ip::make_address_v4(ip::v4_mapped, remote.to_v6());
      }
      if (remote == flow.destination && socket.remote_port == flow.destination_port) {
        return std::optional<SocketOwner>(owner);
      }
      if (by_port && by_port->cgroup_id != owner.cgroup_id) owners_disagree = true;
      if (!by_port) by_port = owner;
    }
  }
  if (owners_disagree) return std::optional<SocketOwner>();
  return by_port;
}

FlowCheck::FlowCheck(uint64_t admitted_cgroup_id, const Clock& clock, std::chrono::seconds ttl,
                     Lookup lookup)
    : admitted_cgroup_id_(admitted_cgroup_id),
      clock_(clock),
      ttl_(ttl),
      lookup_(lookup ? std::move(lookup) : Lookup(find_socket_owner)),
      logger_(log::get("vpn")) {}

FlowCheck FlowCheck::admitting_everything(const Clock& clock) {
  FlowCheck check(0, clock);
  check.admit_all_ = true;
  return check;
}

void FlowCheck::expire(std::chrono::steady_clock::time_point now) {
  if (now - last_expiry_ < ttl_) return;
  last_expiry_ = now;
  std::erase_if(flows_, [&](const auto& flow) { return now - flow.second.last_seen > ttl_; });
}

FlowCheck::Decision FlowCheck::check(std::span<const uint8_t> packet) {
  if (admit_all_) return Decision::kPass;
  auto& logger = logger_;
  auto now = clock_.now();
  expire(now);
  auto key = flow_of_packet(packet);
  if (!key) {
    ++dropped_;
    logger->debug("flow check: dropped unparseable packet: {}", key.error().message);
    return Decision::kDrop;
  }
  if (auto cached = flows_.find(*key); cached != flows_.end()) {
    cached->second.last_seen = now;
    if (cached->second.decision == Decision::kDrop) ++dropped_;
    return cached->second.decision;
  }

  ++lookups_;
  auto owner = lookup_(*key);
  if (!owner) {
    ++dropped_;
    logger->warn("flow={} decision=drop reason=lookup-failed error={}", key->to_string(),
                 owner.error().message);
    return Decision::kDrop;
  }
  Decision decision = Decision::kDrop;
  std::string reason = "no-socket";
  if (*owner) {
    bool admitted = (*owner)->cgroup_id == admitted_cgroup_id_;
    decision = admitted ? Decision::kPass : Decision::kDrop;
    reason = fmt::format("cgroup={} inode={}", (*owner)->cgroup_id, (*owner)->inode);
  }
  flows_[*key] = Entry{decision, now};
  if (decision == Decision::kDrop) {
    ++dropped_;
    logger->warn("flow={} decision=drop {}", key->to_string(), reason);
  } else {
    logger->info("flow={} decision=pass {}", key->to_string(), reason);
  }
  return decision;
}

}  // namespace steward::vpn
