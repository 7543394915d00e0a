#include "vpn/steering/steering.h"

#include "core/log.h"
#include "vpn/steering/nft.h"
#include "vpn/steering/rtnl.h"

#include <net/if.h>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>

namespace steward::vpn {
namespace {

namespace ip = boost::asio::ip;

constexpr uint32_t kProhibitMetric = 4000;

// Refused locally: the application gets a TCP reset or ICMP admin-prohibited at once.
constexpr const char* kRefuseChain =
    "  chain refuse {\n"
    "    meta l4proto tcp reject with tcp reset\n"
    "    reject with icmpx type admin-prohibited\n"
    "  }\n";

Prefix host_prefix(const ip::address& address) {
  return Prefix{address, address.is_v4() ? 32 : 128};
}

void add_unique(std::vector<Prefix>& prefixes, const Prefix& prefix) {
  if (std::find(prefixes.begin(), prefixes.end(), prefix) == prefixes.end()) {
    prefixes.push_back(prefix);
  }
}

// nft resolves a cgroupv2 path below /sys/fs/cgroup; a group mounted elsewhere (a private
// mount) is reached by climbing out of it.
std::string nft_cgroup_path(const std::string& absolute) {
  const std::string base = "/sys/fs/cgroup/";
  if (absolute.starts_with(base)) return absolute.substr(base.size());
  return "../../.." + absolute;
}

std::string elements(const std::vector<Prefix>& prefixes, bool v4, bool skip_default) {
  std::string text;
  for (const auto& prefix : prefixes) {
    if (prefix.is_v4() != v4 || (skip_default && prefix.length == 0)) continue;
    if (!text.empty()) text += ", ";
    text += prefix.to_string();
  }
  return text.empty() ? "" : fmt::format(" elements = {{ {} }};", text);
}

std::string set(const std::string& name, const std::vector<Prefix>& prefixes, bool v4,
                bool skip_default = false) {
  return fmt::format("  set {} {{ type {}; flags interval; auto-merge;{} }}\n", name,
                     v4 ? "ipv4_addr" : "ipv6_addr", elements(prefixes, v4, skip_default));
}

std::string render(const SteeringPlan& plan, const SteeringOptions& options,
                   const std::string& cgroup_nft_path, int cgroup_level, bool tunnel_up) {
  // The match that selects admitted sockets, with its leading space; empty when every socket
  // is admitted.
  const std::string admitted = options.admit_all ? std::string()
                                                 : fmt::format(" socket cgroupv2 level {} \"{}\"",
                                                               cgroup_level, cgroup_nft_path);
  const std::string mark = fmt::format("{:#x}", options.mark);
  std::string out = fmt::format("table inet {} {{\n", options.nft_table);

  // Intranet (what admitted traffic is tunnelled toward), the part of it closed to everyone
  // else (a default route cannot be), and what is never touched.
  out += set("intranet4", plan.intranet, true) + set("intranet6", plan.intranet, false);
  out += set("closed4", plan.intranet, true, true) + set("closed6", plan.intranet, false, true);
  out += set("exclude4", plan.exclude, true) + set("exclude6", plan.exclude, false);

  out +=
      "  counter tunnelled {}\n  counter refused_admitted {}\n  counter refused_others {}\n"
      "  counter dropped_late {}\n";
  out += kRefuseChain;

  // Every rule tests the cheap destination before the socket's cgroup.
  // Marks, after DNS redirection (nat output is -100) so a redirected query is marked too.
  out += "  chain mark_admitted {\n    type route hook output priority -90; policy accept;\n";
  out += "    ip daddr @exclude4 return\n    ip6 daddr @exclude6 return\n";
  if (tunnel_up) {
    out += fmt::format("    ct mark {0} ip daddr @intranet4 meta mark set {0} return\n", mark);
    out += fmt::format("    ip daddr @intranet4{0} meta mark set {1} ct mark set {1}\n", admitted,
                       mark);
    if (plan.tunnel_has_ipv6) {
      out += fmt::format("    ct mark {0} ip6 daddr @intranet6 meta mark set {0} return\n", mark);
      out += fmt::format("    ip6 daddr @intranet6{0} meta mark set {1} ct mark set {1}\n",
                         admitted, mark);
    }
  }
  out += "  }\n";

  out += "  chain redirect_dns {\n    type nat hook output priority -100; policy accept;\n";
  if (plan.dns) {
    bool v4 = plan.dns->is_v4();
    out += fmt::format(
        "    meta nfproto {1} meta l4proto {{ tcp, udp }} th dport 53{0} dnat {2} to {3}\n",
        admitted, v4 ? "ipv4" : "ipv6", v4 ? "ip" : "ip6",
        v4 ? plan.dns->to_string() : "[" + plan.dns->to_string() + "]");
  }
  out += "  }\n";

  out +=
      "  chain masquerade_tunnel {\n    type nat hook postrouting priority srcnat; "
      "policy accept;\n";
  out += fmt::format("    meta mark {} oifname \"{}\" masquerade\n  }}\n", mark, options.tun_name);

  // The guard, on the way out: what heads for the intranet unmarked is refused locally.
  // (The output hook's oifname is the device chosen before the mark rerouted the packet, so
  // the device is checked again after routing, in the last chain.)
  out += "  chain guard {\n    type filter hook output priority filter; policy accept;\n";
  out += "    ip daddr @exclude4 accept\n    ip6 daddr @exclude6 accept\n";
  out += fmt::format("    meta mark {} accept\n", mark);
  out += fmt::format("    ip daddr @intranet4{} counter name refused_admitted jump refuse\n",
                     admitted);
  out += fmt::format("    ip6 daddr @intranet6{} counter name refused_admitted jump refuse\n",
                     admitted);
  if (plan.dns) {
    out += fmt::format(
        "    meta nfproto {1} meta l4proto {{ tcp, udp }} th dport 53{0} counter name "
        "refused_admitted jump refuse\n",
        admitted, plan.dns->is_v4() ? "ipv6" : "ipv4");
  }
  out +=
      "    ip daddr @closed4 counter name refused_others jump refuse\n"
      "    ip6 daddr @closed6 counter name refused_others jump refuse\n";
  out += "  }\n";

  // The last word: toward the intranet, only marked packets into the TUN leave.
  out += "  chain last_check {\n    type filter hook postrouting priority 300; policy accept;\n";
  out += "    ip daddr @exclude4 accept\n    ip6 daddr @exclude6 accept\n";
  out += fmt::format("    meta mark {} oifname \"{}\" counter name tunnelled accept\n", mark,
                     options.tun_name);
  out += fmt::format("    meta mark {} counter name dropped_late drop\n", mark);
  out +=
      "    ip daddr @closed4 counter name dropped_late drop\n"
      "    ip6 daddr @closed6 counter name dropped_late drop\n";
  out += "  }\n}\n";
  return out;
}

// The handover: the new steering's refusals with the tunnel down and nobody admitted yet (the
// crashed run's group is about to go, the new one does not exist): per-process, everyone is
// refused toward the closed intranet; with admit_all every socket counts as admitted, so the
// whole intranet and DNS (which the new table redirects into it) are refused.
std::string render_handover(const SteeringPlan& plan, const SteeringOptions& options) {
  const bool everything = options.admit_all;
  std::string out = fmt::format("table {} {{\n", handover_table_name(options));
  out += set("refused4", plan.intranet, true, !everything) +
         set("refused6", plan.intranet, false, !everything);
  out += set("exclude4", plan.exclude, true) + set("exclude6", plan.exclude, false);
  out += "  counter refused {}\n";
  out += kRefuseChain;
  out += "  chain hold {\n    type filter hook output priority filter; policy accept;\n";
  out += "    ip daddr @exclude4 accept\n    ip6 daddr @exclude6 accept\n";
  out +=
      "    ip daddr @refused4 counter name refused jump refuse\n"
      "    ip6 daddr @refused6 counter name refused jump refuse\n";
  if (everything && plan.dns) {
    out += "    meta l4proto { tcp, udp } th dport 53 counter name refused jump refuse\n";
  }
  out += "  }\n}\n";
  return out;
}

LedgerEntry entry_of(LedgerEntry::Kind kind, std::string name, std::string text = {}, int table = 0,
                     int priority = 0) {
  LedgerEntry entry;
  entry.kind = kind;
  entry.name = std::move(name);
  entry.text = std::move(text);
  entry.table = table;
  entry.priority = priority;
  return entry;
}

std::string nft_table_name(const SteeringOptions& options) {
  return "inet " + options.nft_table;
}

}  // namespace

std::string handover_table_name(const SteeringOptions& options) {
  return nft_table_name(options) + "_handover";
}

Result<SteeringPlan> SteeringPlan::from(const TunnelConfig& config,
                                        const std::vector<ip::address>& gateways) {
  if (!config.address) {
    return Error::make(ErrorCode::kInvalidArgument, "the tunnel has no IPv4 address");
  }
  SteeringPlan plan;
  plan.tunnel_has_ipv6 = config.address6.has_value();
  if (config.split_include.empty()) {
    // Everything is intranet; IPv6 too, so that without an IPv6 tunnel it is refused.
    plan.intranet = {*Prefix::parse("0.0.0.0/0"), *Prefix::parse("::/0")};
  } else {
    plan.intranet = config.split_include;
  }
  for (const auto& server : config.dns)
    add_unique(plan.intranet, host_prefix(server));
  if (!config.dns.empty()) plan.dns = config.dns.front();

  // Loopback never leaves the machine: the local routing table answers it before Steward's
  // rule, and the exclusion keeps the nft chains off it too (a full-tunnel gateway makes every
  // other destination intranet).
  add_unique(plan.exclude, *Prefix::parse("127.0.0.0/8"));
  add_unique(plan.exclude, *Prefix::parse("::1/128"));
  for (const auto& gateway : gateways)
    add_unique(plan.exclude, host_prefix(gateway));
  for (const auto& prefix : config.split_exclude)
    add_unique(plan.exclude, prefix);
  for (const auto& server : config.dns) {
    if (std::any_of(plan.exclude.begin(), plan.exclude.end(),
                    [&](const Prefix& p) { return p.contains(server); })) {
      return Error::make(ErrorCode::kInvalidArgument,
                         "DNS server {} is excluded from the tunnel (gateway or split-exclude)",
                         server.to_string());
    }
  }
  return plan;
}

std::string render_nft_ruleset(const SteeringPlan& plan, const SteeringOptions& options,
                               const std::string& cgroup_nft_path, int cgroup_level) {
  return render(plan, options, cgroup_nft_path, cgroup_level, false);
}

std::string render_handover_ruleset(const SteeringPlan& plan, const SteeringOptions& options) {
  return render_handover(plan, options);
}

Result<size_t> cleanup_instance(const SteeringOptions& options) {
  auto ledger = Ledger::open(options.ledger_directory, options.instance);
  if (!ledger) return ledger.error();
  auto listed = ledger->entries();
  if (!listed) return listed.error();
  if (auto status = cleanup_from_ledger(*ledger); !status) return status.error();
  return listed->size();
}

namespace {

// One step of start(): record, then create; the error names the piece.
Status create_recorded(Ledger& ledger, const LedgerEntry& entry, const std::string& piece,
                       const std::function<Status()>& create) {
  if (auto status = ledger.record(entry); !status) return status.error().wrap(piece);
  if (auto status = create(); !status) {
    if (status.error().code == ErrorCode::kAlreadyExists) (void)ledger.forget_last();
    return status.error().wrap(piece);
  }
  return ok();
}

// Loads the handover table before anything an earlier run left is removed. `left` is what the
// ledger listed: a handover already in it is ours (a start that failed or crashed) and is
// replaced in the same transaction, so it never goes missing.
Result<LedgerEntry> install_handover(const SteeringOptions& options, const SteeringPlan& plan,
                                     const std::vector<LedgerEntry>& left, Ledger& ledger) {
  const std::string name = handover_table_name(options);
  auto entry = entry_of(LedgerEntry::Kind::kNftTable, name);
  if (std::find(left.begin(), left.end(), entry) == left.end()) {
    if (nft::table_exists(name)) {
      return Error::make(ErrorCode::kAlreadyExists, "nft table {}: exists and is not ours", name);
    }
    if (auto status = ledger.record(entry); !status) return status.error();
  }
  auto status =
      nft::run("table " + name + "\ndelete table " + name + "\n" + render_handover(plan, options));
  if (!status) return status.error().wrap("nft table " + name);
  return entry;
}

// Packets counted by each named counter of `table` ("inet steward"); kIo when it cannot be
// listed.
Result<std::map<std::string, uint64_t>> counter_packets(const std::string& table) {
  auto listing = nft::list_json("list counters table " + table);
  if (!listing) return listing.error();
  boost::system::error_code ec;
  auto document = boost::json::parse(*listing, ec);
  if (ec || !document.is_object()) {
    return Error::make(ErrorCode::kInternal, "nft counters: unreadable JSON");
  }
  std::map<std::string, uint64_t> packets_by_name;
  const auto* items = document.as_object().if_contains("nftables");
  if (!items || !items->is_array()) return packets_by_name;
  for (const auto& item : items->as_array()) {
    const auto* counter = item.is_object() ? item.as_object().if_contains("counter") : nullptr;
    if (!counter || !counter->is_object()) continue;
    const auto* name = counter->as_object().if_contains("name");
    const auto* packets = counter->as_object().if_contains("packets");
    if (!name || !name->is_string() || !packets || !packets->is_int64()) continue;
    packets_by_name[std::string(name->as_string())] = static_cast<uint64_t>(packets->as_int64());
  }
  return packets_by_name;
}

// Deletes the handover table once the new nft table refuses on its own. A ledger that still
// lists it afterwards is harmless (deleting a missing table is fine), so only the deletion can
// fail.
Status remove_handover(const SteeringOptions& options, Ledger& ledger, const LedgerEntry& entry) {
  if (auto status = nft::delete_table(entry.name); !status) {
    return status.error().wrap("nft table " + entry.name);
  }
  if (auto forgotten = ledger.forget(entry); !forgotten) {
    log::get("vpn")->warn("instance={} ledger still lists {}: {}", options.instance, entry.name,
                          forgotten.error().message);
  }
  return ok();
}

Status set_up_kernel(const SteeringOptions& options, const SteeringPlan& plan, Ledger& ledger,
                     std::optional<AdmittedCgroup>& cgroup) {
  // cgroup2: an existing mount, or our own.
  auto mount = find_cgroup2();
  if (!mount) {
    auto status = create_recorded(
        ledger, entry_of(LedgerEntry::Kind::kCgroupMount, options.cgroup2_fallback_mount),
        "cgroup2 mount", [&]() -> Status {
          auto mounted = find_or_mount_cgroup2(options.cgroup2_fallback_mount);
          if (!mounted) return mounted.error();
          mount = *mounted;
          return ok();
        });
    if (!status) return status;
  }
  auto status = create_recorded(
      ledger, entry_of(LedgerEntry::Kind::kCgroup, mount->path, options.cgroup_path),
      "cgroup " + options.cgroup_path, [&]() -> Status {
        auto created = AdmittedCgroup::create(*mount, options.cgroup_path);
        if (!created) return created.error();
        cgroup = *created;
        return ok();
      });
  if (!status) return status;

  // Policy rules for both families: marked traffic looks up our table, and is prohibited
  // should the table not decide.
  for (int family : {4, 6}) {
    for (rtnl::Rule rule : {rtnl::Rule{family, options.rule_priority, options.mark, options.table},
                            rtnl::Rule{family, options.rule_priority + 1, options.mark, 0}}) {
      auto entry = entry_of(LedgerEntry::Kind::kRule, "", "", rule.table, rule.priority);
      entry.mark = rule.mark;
      entry.family = family;
      status = create_recorded(ledger, entry, "policy rule", [&] { return rtnl::add_rule(rule); });
      if (!status) return status;
    }
  }

  // Prohibit routes: admitted traffic finds them whenever the TUN routes are absent.
  for (const auto& prefix : plan.intranet) {
    rtnl::Route route{prefix, options.table, rtnl::RouteType::kProhibit, 0, kProhibitMetric};
    auto entry = entry_of(LedgerEntry::Kind::kRoute, "", prefix.to_string(), options.table,
                          static_cast<int>(kProhibitMetric));
    status =
        create_recorded(ledger, entry, "prohibit route", [&] { return rtnl::add_route(route); });
    if (!status) return status;
  }

  // The nft table, tunnel down.
  std::string ruleset =
      render(plan, options, nft_cgroup_path(cgroup->path()), cgroup->level(), false);
  return create_recorded(
      ledger, entry_of(LedgerEntry::Kind::kNftTable, nft_table_name(options)),
      "nft table " + nft_table_name(options), [&] {
        if (nft::table_exists(nft_table_name(options))) {
          return Status(Error::make(ErrorCode::kAlreadyExists, "exists and is not ours"));
        }
        return nft::run(ruleset);
      });
}

}  // namespace

Result<std::unique_ptr<Steering>> Steering::start(const SteeringOptions& options,
                                                  const SteeringPlan& plan) {
  auto logger = log::get("vpn");
  auto ledger = Ledger::open(options.ledger_directory, options.instance);
  if (!ledger) return ledger.error();
  auto left = ledger->entries();
  if (!left) return left.error();

  // What an earlier run left refuses until the handover table refuses in its place.
  std::vector<LedgerEntry> keep;
  auto handover_start = std::chrono::steady_clock::now();
  if (!left->empty()) {
    auto handover = install_handover(options, plan, *left, *ledger);
    if (!handover) return handover.error().wrap("handing over from what a previous run left");
    keep.push_back(*handover);
  }
  if (auto status = cleanup_from_ledger(*ledger, keep); !status) {
    return status.error().wrap("cleaning up what a previous run left");
  }

  std::optional<AdmittedCgroup> cgroup;
  auto status = set_up_kernel(options, plan, *ledger, cgroup);
  uint64_t refusals = 0;
  if (status && !keep.empty()) {
    auto packets = counter_packets(handover_table_name(options));
    if (packets && packets->contains("refused")) refusals = packets->at("refused");
    status = remove_handover(options, *ledger, keep.front());
  }
  if (!status) {
    logger->error("instance={} steering refused to start: {}{}", options.instance,
                  status.error().message,
                  keep.empty() ? "" : " (the handover table stays and refuses intranet traffic)");
    (void)cleanup_from_ledger(*ledger, keep);
    return status.error();
  }
  if (!keep.empty()) {
    auto held = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - handover_start);
    logger->info("instance={} replaced what a previous run left handover_us={} refused={}",
                 options.instance, held.count(), refusals);
  }
  logger->info("instance={} steering started table={} mark={:#x} nft=inet {} cgroup={} id={}",
               options.instance, options.table, options.mark, options.nft_table, cgroup->path(),
               cgroup->id());
  return std::unique_ptr<Steering>(new Steering(options, plan, std::move(*ledger), *cgroup));
}

Status Steering::set_tunnel_up(int tun_ifindex) {
  char name[IF_NAMESIZE] = {};
  if (tun_ifindex <= 0 || !if_indextoname(static_cast<unsigned>(tun_ifindex), name)) {
    return Error::make(ErrorCode::kNotFound, "tunnel up: no link with index {}", tun_ifindex);
  }
  if (options_.tun_name != name) {
    return Error::make(ErrorCode::kInvalidArgument, "tunnel up: link {} is not the TUN {}", name,
                       options_.tun_name);
  }
  if (tunnel_ifindex_ == tun_ifindex) return ok();
  if (tunnel_ifindex_ != 0) {
    if (auto status = set_tunnel_down(); !status) return status;
  }
  for (const auto& prefix : plan_.intranet) {
    if (!prefix.is_v4() && !plan_.tunnel_has_ipv6) continue;
    rtnl::Route route{prefix, options_.table, rtnl::RouteType::kUnicast, tun_ifindex, 0};
    // Reconnects bring the same routes up again: the ledger names each one once.
    auto entry = entry_of(LedgerEntry::Kind::kRoute, name, prefix.to_string(), options_.table);
    auto status = recorded_routes_.insert(entry.text).second
                      ? create_recorded(ledger_, entry, "tunnel route",
                                        [&] { return rtnl::add_route(route); })
                      : rtnl::add_route(route);
    if (!status) return status;
  }
  tunnel_ifindex_ = tun_ifindex;
  auto ruleset = render(plan_, options_, nft_cgroup_path(cgroup_.path()), cgroup_.level(), true);
  if (auto status = nft::run("delete table " + nft_table_name(options_) + "\n" + ruleset);
      !status) {
    return status.error().wrap("tunnel up: nft table");
  }
  log::get("vpn")->info("instance={} tunnel up tun={} routes={}", options_.instance, name,
                        plan_.intranet.size());
  return ok();
}

Status Steering::set_tunnel_down() {
  // The marks stop first, so no admitted packet is steered while routes go away.
  auto ruleset = render(plan_, options_, nft_cgroup_path(cgroup_.path()), cgroup_.level(), false);
  if (auto status = nft::run("delete table " + nft_table_name(options_) + "\n" + ruleset);
      !status) {
    return status.error().wrap("tunnel down: nft table");
  }
  Status result = ok();
  if (tunnel_ifindex_ != 0) {
    for (const auto& prefix : plan_.intranet) {
      if (!prefix.is_v4() && !plan_.tunnel_has_ipv6) continue;
      auto status = rtnl::delete_route(
          {prefix, options_.table, rtnl::RouteType::kUnicast, tunnel_ifindex_, 0});
      if (!status && result) result = status;
    }
  }
  tunnel_ifindex_ = 0;
  log::get("vpn")->info("instance={} tunnel down", options_.instance);
  return result;
}

Result<SteeringCounters> Steering::counters() const {
  auto packets = counter_packets(nft_table_name(options_));
  if (!packets) return packets.error();
  auto of = [&](const char* name) {
    auto found = packets->find(name);
    return found == packets->end() ? uint64_t{0} : found->second;
  };
  SteeringCounters counters;
  counters.tunnelled = of("tunnelled");
  counters.refused_admitted = of("refused_admitted");
  counters.refused_others = of("refused_others");
  counters.dropped_late = of("dropped_late");
  return counters;
}

Status Steering::stop() {
  tunnel_ifindex_ = 0;
  auto status = cleanup_from_ledger(ledger_);
  log::get("vpn")->info("instance={} steering stopped ok={}", options_.instance, bool(status));
  return status;
}

}  // namespace steward::vpn
