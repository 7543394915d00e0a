#include "support/vpn_netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace steward::testing {

Result<std::string> shell(const std::string& command) {
  FILE* pipe = ::popen(("( " + command + "\n) 2>&1").c_str(), "r");
  if (!pipe) return Error::make(ErrorCode::kIo, "popen {}: {}", command, std::strerror(errno));
  std::string output;
  std::array<char, 4096> buffer;
  size_t got;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    output.append(buffer.data(), got);
  int status = ::pclose(pipe);
  if (status != 0) {
    return Error::make(ErrorCode::kIo, "'{}' failed (status {}): {}", command, status, output);
  }
  return output;
}

Result<NetnsGuard> NetnsGuard::enter(const std::string& name) {
  int original = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original < 0) return Error::make(ErrorCode::kIo, "open own netns: {}", std::strerror(errno));
  std::string path = "/run/netns/" + name;
  int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0 || ::setns(target, CLONE_NEWNET) != 0) {
    int saved = errno;
    if (target >= 0) ::close(target);
    ::close(original);
    return Error::make(ErrorCode::kIo, "enter netns {}: {}", name, std::strerror(saved));
  }
  ::close(target);
  return NetnsGuard(original);
}

NetnsGuard::NetnsGuard(NetnsGuard&& other) noexcept
    : original_(std::exchange(other.original_, -1)) {}

NetnsGuard::~NetnsGuard() {
  if (original_ < 0) return;
  (void)::setns(original_, CLONE_NEWNET);
  ::close(original_);
}

namespace {

constexpr const char* kPeerCounters = R"(table inet count {
  counter intranet {}
  counter dns {}
  counter gateway {}
  counter outside {}
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    ip daddr 198.18.4.0/24 counter name intranet
    ip6 daddr 64:ff9b::c612:400/120 counter name intranet
    ip daddr 198.18.0.1 meta l4proto { tcp, udp } th dport 53 counter name dns
    ip daddr 198.18.0.1 tcp dport 443 counter name gateway
    ip daddr 198.18.6.0/24 counter name outside
  }
})";

}  // namespace

Result<VpnNetns> VpnNetns::create(const std::string& tag) {
  std::string client = tag + "-client";
  std::string peer = tag + "-peer";
  (void)shell("ip netns del " + client);
  (void)shell("ip netns del " + peer);
  VpnNetns netns(client, peer);
  const std::string c = "ip -n " + client + " ";
  const std::string p = "ip -n " + peer + " ";
  for (const auto& command : {
           "ip netns add " + client,
           "ip netns add " + peer,
           c + "link set lo up",
           p + "link set lo up",
           c + "link add out0 type veth peer name in0 netns " + peer,
           c + "addr add 198.18.0.2/24 dev out0",
           c + "-6 addr add 64:ff9b::c612:2/120 dev out0 nodad",
           p + "addr add 198.18.0.1/24 dev in0",
           p + "-6 addr add 64:ff9b::c612:1/120 dev in0 nodad",
           c + "link set out0 up",
           p + "link set in0 up",
           c + "route add default via 198.18.0.1",
           c + "-6 route add default via 64:ff9b::c612:1",
       }) {
    if (auto done = shell(command); !done) return done.error();
  }
  auto counters =
      shell("ip netns exec " + peer + " nft -f - <<'EOF'\n" + std::string(kPeerCounters) + "\nEOF");
  if (!counters) return counters.error();
  return netns;
}

VpnNetns::VpnNetns(VpnNetns&& other) noexcept
    : client_(std::move(other.client_)), peer_(std::move(other.peer_)) {
  other.client_.clear();
  other.peer_.clear();
}

VpnNetns::~VpnNetns() {
  if (!client_.empty()) (void)shell("ip netns del " + client_);
  if (!peer_.empty()) (void)shell("ip netns del " + peer_);
}

Result<uint64_t> VpnNetns::counter(const std::string& name) const {
  auto listing = shell("ip netns exec " + peer_ + " nft list counter inet count " + name);
  if (!listing) return listing.error();
  // "counter intranet { packets 3 bytes 180 }"
  auto at = listing->find("packets ");
  if (at == std::string::npos) {
    return Error::make(ErrorCode::kInternal, "no packet count in: {}", *listing);
  }
  return std::stoull(listing->substr(at + 8));
}

Result<uint64_t> VpnNetns::intranet_packets_at_peer() const {
  return counter("intranet");
}
Result<uint64_t> VpnNetns::dns_packets_at_peer() const {
  return counter("dns");
}

Result<std::string> VpnNetns::in_client(const std::string& command) const {
  return shell("ip netns exec " + client_ + " " + command);
}

}  // namespace steward::testing
