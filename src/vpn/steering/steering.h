// Steering: the kernel state that sends admitted processes' intranet traffic into the TUN and
// keeps everything else away from the intranet.
//
//   routing table <table>  intranet prefixes  dev <tun>   (only while the tunnel is up)
//                          intranet prefixes  prohibit metric 4000   (always: fail closed)
//   rule  fwmark <mark> lookup <table>  priority <priority>      (IPv4 and IPv6)
//   rule  fwmark <mark> prohibit        priority <priority + 1>
//   nft table inet <nft_table> (chains in the order a packet meets them):
//     nat/output -100:    admitted DNS (udp/tcp 53) -> the gateway's first DNS server
//     route/output -90:   destination in intranet, socket in admitted cgroup -> mark and ct
//                         mark (restored for packets the kernel sends without a socket);
//                         only while the tunnel is up. The mark reroutes into <table>.
//     filter/output:      unmarked toward the intranet -> refused locally (tcp reset / icmp
//                         admin-prohibited): admitted ones while the tunnel is down or has no
//                         IPv6, everyone else always
//     nat/postrouting:    marked into the TUN -> masquerade to the TUN's address
//     filter/postrouting: toward the intranet, only marked packets into the TUN leave
//   The gateway's addresses and split-exclude prefixes are never touched.
//   docs/vpn-steering.md has the details and the limits.
//
// With admit_all the cgroup match is dropped from every rule: the same chains then mark, redirect
// and refuse every local socket's intranet traffic.
// A default-route intranet (gateway sent no split-include) cannot be rejected for everyone:
// then admitted traffic is tunnelled and other processes keep their normal routes.
// IPv6: tunnelled when the tunnel has an IPv6 address, else admitted IPv6 toward the intranet
// (and every IPv6 destination when the intranet is everything) is rejected.
//
// Every object is recorded in the ledger before it is created; stop() (and cleanup of a
// crashed instance from its ledger) removes exactly those.
//
// Handover: when start() finds what an earlier run left (a crash, or a Steering dropped without
// stop()), it first loads `inet <nft_table>_handover` (render_handover_ruleset), then removes
// the leftovers, sets up the new objects, and deletes the handover table last. At every instant
// one of the three nft tables refuses what the new steering refuses with the tunnel down; the
// handover is recorded in the ledger like the rest. docs/vpn-steering.md has the details.
// The admitted cgroup the earlier run left (listed in its ledger at the mount and path this
// start uses) is adopted, not replaced: its members stay admitted, and the handover refuses
// their intranet traffic and DNS too, as the new table does while the tunnel is down.
//
// A reconnect that changes the tunnel's address: set_tunnel_down(), close the TunDevice,
// create and configure a new one (the ledger already names it), set_tunnel_up(). A change of
// intranet prefixes or DNS servers needs a new plan: a new start(), which hands over from the
// old steering (dropped without stop()).
#pragma once

#include "core/result.h"
#include "vpn/cstp/tunnel_config.h"
#include "vpn/steering/cgroup.h"
#include "vpn/steering/ledger.h"

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace steward::vpn {

struct SteeringOptions {
  std::string instance = "default";  // names the ledger file
  std::string ledger_directory = "/run/steward-vpn";
  std::string tun_name = "stw0";
  int table = 7270;
  int rule_priority = 7270;
  uint32_t mark = 0x7270;
  std::string nft_table = "steward";  // created as `inet <nft_table>`
  std::string cgroup_path = "steward-vpn/admitted";
  std::string cgroup2_fallback_mount = "/run/steward-vpn/cgroup2";
  // Destinations always left alone: the gateway's own address (its TLS/DTLS traffic), and
  // any other address that must keep its normal route. Split-exclude prefixes are added.
  std::vector<boost::asio::ip::address> gateway_addresses;
  // Per-process admission off: every socket counts as admitted (the cgroup match is left out
  // of the marks, the DNS redirection and the guard), so every local process's intranet
  // traffic is tunnelled, and refused locally while the tunnel is down. The admitted cgroup
  // is still created: `run` and `admit` keep working, they just change nothing.
  bool admit_all = false;
};

// Packet counts from the nft table since start (tunnel state changes keep them), for
// status and metrics.
struct SteeringCounters {
  uint64_t tunnelled = 0;         // admitted packets that left into the TUN
  uint64_t refused_admitted = 0;  // admitted, toward the intranet, but no tunnel for them
  uint64_t refused_others = 0;    // unadmitted, toward the intranet
  uint64_t dropped_late = 0;      // caught only after routing (should stay 0)
};

// What Steward steers: derived from the gateway's TunnelConfig.
struct SteeringPlan {
  std::vector<Prefix> intranet;                 // intranet_prefixes() plus DNS server host prefixes
  std::vector<Prefix> exclude;                  // gateway addresses and split-exclude
  std::optional<boost::asio::ip::address> dns;  // first DNS server, the DNAT target
  bool tunnel_has_ipv6 = false;

  // Fails with kInvalidArgument when the config has no IPv4 address, a DNS server is an
  // unsupported family, or an intranet prefix contains a gateway address that is not excluded
  // by a more specific exclude (the tunnel would route itself).
  static Result<SteeringPlan> from(const TunnelConfig& config,
                                   const std::vector<boost::asio::ip::address>& gateways);
};

// The nftables ruleset text for a plan (pure; unit-tested). `cgroup_nft_path` is the path nft
// resolves below /sys/fs/cgroup, `cgroup_level` its depth.
std::string render_nft_ruleset(const SteeringPlan& plan, const SteeringOptions& options,
                               const std::string& cgroup_nft_path, int cgroup_level);

// The handover table's text for a plan (pure; unit-tested): everything the new steering
// will refuse with the tunnel down. Every socket is refused toward the intranet less its
// default routes (with admit_all: toward the whole intranet, and DNS anywhere); the members of
// a cgroup adopted from the earlier run (`adopted_cgroup_nft_path` as nft resolves it, and its
// level; empty when the new group is fresh) toward the whole intranet, and DNS anywhere.
// Excluded destinations are accepted.
std::string render_handover_ruleset(const SteeringPlan& plan, const SteeringOptions& options,
                                    const std::string& adopted_cgroup_nft_path = {},
                                    int adopted_cgroup_level = 0);

// "inet <nft_table>_handover".
std::string handover_table_name(const SteeringOptions& options);

// The live steering of one instance. Owned by the daemon's event loop; not thread-safe.
// Destruction without stop() leaves the kernel state in place (as a crash would), so the
// ledger, not the destructor, is the source of truth.
class Steering {
 public:
  // Cleans up whatever a previous run of this instance left (from its ledger), then sets up
  // the cgroup, rules, prohibit routes and nft table, in that order. The tunnel starts down.
  // When the ledger lists anything, the handover table refuses in the leftovers' place until
  // the new nft table is in (a fresh start makes none).
  // A cgroup the ledger lists at the cgroup2 mount and cgroup_path this start uses (and, when
  // that is the private fallback mount, which it mounts again if needed, that mount too) is
  // adopted instead of removed and made again: it keeps its id and its members, the new nft
  // table is checked to match that id, and adopted_processes() lists its members. A group at
  // that path the ledger does not list is someone else's: kAlreadyExists, as before. When the
  // group cannot be adopted (gone, unreachable, the table matches another id), the start warns
  // and makes a fresh group, as for a group it never knew.
  // On any failure it says which piece failed ("nft table inet steward: ...") and removes
  // what it had created: it never runs half set up. The exception is the handover table: once
  // the leftovers are (partly) gone it is all that refuses, so a failed start leaves it in the
  // kernel and in the ledger (`cleanup_instance` or the next start removes it); a failure to
  // load it leaves the leftovers untouched.
  static Result<std::unique_ptr<Steering>> start(const SteeringOptions& options,
                                                 const SteeringPlan& plan);

  // Adds (up) or removes (down) the routes through the TUN and turns the marks on or off.
  // While down, admitted intranet traffic is refused locally. `tun_ifindex` must name the TUN
  // (options.tun_name) in this namespace. Up twice with the same TUN is a no-op; up with a new
  // TUN (after a reconnect) moves the routes to it.
  Status set_tunnel_up(int tun_ifindex);
  Status set_tunnel_down();
  bool tunnel_up() const { return tunnel_ifindex_ != 0; }

  // Reads the nft counters; kIo when the table cannot be listed.
  Result<SteeringCounters> counters() const;

  const AdmittedCgroup& cgroup() const { return cgroup_; }
  // The processes the admitted cgroup held when start() adopted it from an earlier run; empty
  // when the group is new (or was adopted empty).
  const std::vector<pid_t>& adopted_processes() const { return adopted_processes_; }
  const SteeringPlan& plan() const { return plan_; }
  const SteeringOptions& options() const { return options_; }
  Ledger& ledger() { return ledger_; }

  // Removes everything recorded in the ledger (routes, rules, nft table, cgroup, a private
  // cgroup2 mount, a TUN recorded by the caller) and the ledger itself.
  Status stop();

 private:
  Steering(SteeringOptions options, SteeringPlan plan, Ledger ledger, AdmittedCgroup cgroup)
      : options_(std::move(options)),
        plan_(std::move(plan)),
        ledger_(std::move(ledger)),
        cgroup_(std::move(cgroup)) {}
  SteeringOptions options_;
  SteeringPlan plan_;
  Ledger ledger_;
  AdmittedCgroup cgroup_;
  Status replace_marks(bool tunnel_up);
  int tunnel_ifindex_ = 0;
  std::vector<pid_t> adopted_processes_;
  std::set<std::string> recorded_routes_;  // TUN routes already in the ledger
};

// Cleans up a crashed instance from its ledger without starting anything (`disconnect` when
// no daemon runs). Returns how many objects the ledger listed (0 when there is none).
Result<size_t> cleanup_instance(const SteeringOptions& options);

}  // namespace steward::vpn
