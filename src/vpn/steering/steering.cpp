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
#include <string_view>

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

// The match that selects the sockets of a cgroup, with its leading space.
std::string cgroup_match(const std::string& cgroup_nft_path, int cgroup_level) {
  return fmt::format(" socket cgroupv2 level {} \"{}\"", cgroup_level, cgroup_nft_path);
}

// The rules of the mark_admitted chain: the only chain that differs between tunnel up and down,
// so a tunnel state change replaces just them (flush chain and add, one transaction).
// `admitted` is the cgroup match (empty with admit_all).
std::vector<std::string> mark_rules(const SteeringPlan& plan, const SteeringOptions& options,
                                    const std::string& admitted, bool tunnel_up) {
  const std::string mark = fmt::format("{:#x}", options.mark);
  std::vector<std::string> rules = {"ip daddr @exclude4 return", "ip6 daddr @exclude6 return"};
  if (tunnel_up) {
    rules.push_back(fmt::format("ct mark {0} ip daddr @intranet4 meta mark set {0} return", mark));
    rules.push_back(
        fmt::format("ip daddr @intranet4{0} meta mark set {1} ct mark set {1}", admitted, mark));
    if (plan.tunnel_has_ipv6) {
      rules.push_back(
          fmt::format("ct mark {0} ip6 daddr @intranet6 meta mark set {0} return", mark));
      rules.push_back(
          fmt::format("ip6 daddr @intranet6{0} meta mark set {1} ct mark set {1}", admitted, mark));
    }
  }
  return rules;
}

std::string render(const SteeringPlan& plan, const SteeringOptions& options,
                   const std::string& cgroup_nft_path, int cgroup_level, bool tunnel_up) {
  // The match that selects admitted sockets; empty when every socket is admitted.
  const std::string admitted =
      options.admit_all ? std::string() : cgroup_match(cgroup_nft_path, cgroup_level);
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
  for (const auto& rule : mark_rules(plan, options, admitted, tunnel_up))
    out += "    " + rule + "\n";
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

// The handover: the new steering's refusals with the tunnel down. Per process, everyone is
// refused toward the closed intranet, and the members of a group adopted from the previous run
// (`adopted`: its match; empty when the new group is fresh and nobody is admitted yet) toward
// the whole intranet and for DNS (which the new table redirects into it). With admit_all every
// socket counts as admitted, so everyone is refused so.
std::string render_handover(const SteeringPlan& plan, const SteeringOptions& options,
                            const std::string& adopted) {
  const bool everything = options.admit_all;
  const bool members = !everything && !adopted.empty();
  std::string out = fmt::format("table {} {{\n", handover_table_name(options));
  out += set("refused4", plan.intranet, true, !everything) +
         set("refused6", plan.intranet, false, !everything);
  if (members)
    out += set("intranet4", plan.intranet, true) + set("intranet6", plan.intranet, false);
  out += set("exclude4", plan.exclude, true) + set("exclude6", plan.exclude, false);
  out += "  counter refused {}\n";
  out += kRefuseChain;
  out += "  chain hold {\n    type filter hook output priority filter; policy accept;\n";
  out += "    ip daddr @exclude4 accept\n    ip6 daddr @exclude6 accept\n";
  if (members) {
    out += fmt::format("    ip daddr @intranet4{} counter name refused jump refuse\n", adopted);
    out += fmt::format("    ip6 daddr @intranet6{} counter name refused jump refuse\n", adopted);
  }
  out +=
      "    ip daddr @refused4 counter name refused jump refuse\n"
      "    ip6 daddr @refused6 counter name refused jump refuse\n";
  if ((everything || members) && plan.dns) {
    out += fmt::format(
        "    meta l4proto {{ tcp, udp }} th dport 53{} counter name refused jump refuse\n",
        members ? adopted : "");
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

std::string render_handover_ruleset(const SteeringPlan& plan, const SteeringOptions& options,
                                    const std::string& adopted_cgroup_nft_path,
                                    int adopted_cgroup_level) {
  return render_handover(plan, options,
                         adopted_cgroup_nft_path.empty()
                             ? std::string()
                             : cgroup_match(adopted_cgroup_nft_path, adopted_cgroup_level));
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

// A cgroup the previous run of this instance made, which this start takes over instead of
// replacing it, so that the processes admitted to it stay admitted.
struct Adoption {
  AdmittedCgroup group;
  std::vector<LedgerEntry> entries;  // the group's, and its cgroup2 mount's when listed
  bool mounted = false;              // this start mounted the private cgroup2 mount again
  bool failed = false;               // set_up_kernel could not use the group
};

// The group the ledger lists at the mount and relative path this start would use (and, for the
// private cgroup2 mount, that mount too), when it is still there; nullopt when the ledger lists
// none, or with a warning when it cannot be reached. Mounts the private cgroup2 mount again
// when the crashed run's went with its mount namespace.
std::optional<Adoption> find_adoption(const SteeringOptions& options,
                                      const std::vector<LedgerEntry>& left) {
  auto mount = find_cgroup2();
  const std::string mount_path = mount ? mount->path : options.cgroup2_fallback_mount;
  auto listed = [&](const LedgerEntry& entry) {
    return std::find(left.begin(), left.end(), entry) != left.end();
  };
  Adoption adoption{{}, {entry_of(LedgerEntry::Kind::kCgroup, mount_path, options.cgroup_path)}};
  auto mount_entry = entry_of(LedgerEntry::Kind::kCgroupMount, mount_path);
  if (!listed(adoption.entries.front())) return std::nullopt;
  if (listed(mount_entry)) adoption.entries.push_back(mount_entry);
  if (!mount && !listed(mount_entry)) return std::nullopt;

  auto logger = log::get("vpn");
  if (!mount) {
    auto mounted = find_or_mount_cgroup2(options.cgroup2_fallback_mount);
    if (!mounted) {
      logger->warn("instance={} cannot adopt the admitted cgroup: {}; a fresh one replaces it",
                   options.instance, mounted.error().message);
      return std::nullopt;
    }
    mount = *mounted;
    adoption.mounted = mounted->private_mount;
  }
  auto group = AdmittedCgroup::adopt(*mount, options.cgroup_path);
  if (!group) {
    logger->warn("instance={} cannot adopt the admitted cgroup: {}; a fresh one replaces it",
                 options.instance, group.error().message);
    if (adoption.mounted) (void)unmount_cgroup2(mount->path);
    return std::nullopt;
  }
  adoption.group = *group;
  return adoption;
}

// Gives up an adoption: its members lose their admission when the leftovers' cleanup removes
// the group; a fresh group replaces it.
void give_up_adoption(const SteeringOptions& options, std::optional<Adoption>& adoption,
                      const std::string& why) {
  log::get("vpn")->warn(
      "instance={} cannot adopt the admitted cgroup {}: {}; a fresh one replaces it and its "
      "members lose their admission",
      options.instance, adoption->group.path(), why);
  if (adoption->mounted) (void)unmount_cgroup2(options.cgroup2_fallback_mount);
  adoption.reset();
}

// Loads the handover table before anything an earlier run left is removed. A handover the
// ledger already lists is ours (a start that failed or crashed) and is replaced in the same
// transaction, so it never goes missing. `adopted`: the group this start takes over, or null.
Result<LedgerEntry> install_handover(const SteeringOptions& options, const SteeringPlan& plan,
                                     const AdmittedCgroup* adopted, Ledger& ledger) {
  const std::string name = handover_table_name(options);
  auto entry = entry_of(LedgerEntry::Kind::kNftTable, name);
  auto listed = ledger.entries();
  if (!listed) return listed.error();
  if (std::find(listed->begin(), listed->end(), entry) == listed->end()) {
    if (nft::table_exists(name)) {
      return Error::make(ErrorCode::kAlreadyExists, "nft table {}: exists and is not ours", name);
    }
    if (auto status = ledger.record(entry); !status) return status.error();
  }
  std::string members =
      adopted ? cgroup_match(nft_cgroup_path(adopted->path()), adopted->level()) : std::string();
  auto status = nft::run("table " + name + "\ndelete table " + name + "\n" +
                         render_handover(plan, options, members));
  if (!status) return status.error().wrap("nft table " + name);
  return entry;
}

// The handover for this start; when it cannot be loaded with the adopted group's refusals,
// without them (the adoption is given up).
Result<LedgerEntry> hand_over(const SteeringOptions& options, const SteeringPlan& plan,
                              std::optional<Adoption>& adoption, Ledger& ledger) {
  auto handover = install_handover(options, plan, adoption ? &adoption->group : nullptr, ledger);
  if (handover || !adoption) return handover;
  give_up_adoption(options, adoption, handover.error().message);
  return install_handover(options, plan, nullptr, ledger);
}

// The "nftables" items of one JSON listing; kIo when it cannot be listed.
Result<boost::json::array> nft_items(const std::string& command) {
  auto listing = nft::list_json(command);
  if (!listing) return listing.error();
  boost::system::error_code ec;
  auto document = boost::json::parse(*listing, ec);
  if (ec || !document.is_object()) {
    return Error::make(ErrorCode::kInternal, "nft {}: unreadable JSON", command);
  }
  const auto* items = document.as_object().if_contains("nftables");
  if (!items || !items->is_array()) return boost::json::array();
  return items->as_array();
}

// The member `key` of a JSON object; null when `value` is null or not an object.
const boost::json::value* field(const boost::json::value* value, std::string_view key) {
  return value && value->is_object() ? value->as_object().if_contains(key) : nullptr;
}

// The cgroup id the first `socket cgroupv2` match of `table` resolved to when it was loaded.
// nft lists it as the path below /sys/fs/cgroup of a group with that id, or as the number when
// it finds none (a group under a private mount).
Result<uint64_t> matched_cgroup_id(const std::string& table) {
  auto items = nft_items("list table " + table);
  if (!items) return items.error();
  for (const auto& item : *items) {
    const auto* expressions = field(field(&item, "rule"), "expr");
    if (!expressions || !expressions->is_array()) continue;
    for (const auto& expression : expressions->as_array()) {
      const auto* match = field(&expression, "match");
      const auto* key = field(field(field(match, "left"), "socket"), "key");
      if (!key || *key != "cgroupv2") continue;
      const auto* right = field(match, "right");
      if (right && right->is_int64()) return static_cast<uint64_t>(right->as_int64());
      std::string text = right && right->is_string() ? std::string(right->as_string()) : "";
      if (text.empty()) break;
      if (text.find_first_not_of("0123456789") == std::string::npos) {
        return static_cast<uint64_t>(std::stoull(text));
      }
      return cgroup_id_of("/sys/fs/cgroup/" + text);
    }
  }
  return Error::make(ErrorCode::kNotFound, "nft table {}: no socket cgroupv2 match", table);
}

// Packets counted by each named counter of `table` ("inet steward"); kIo when it cannot be
// listed.
Result<std::map<std::string, uint64_t>> counter_packets(const std::string& table) {
  auto items = nft_items("list counters table " + table);
  if (!items) return items.error();
  std::map<std::string, uint64_t> packets_by_name;
  for (const auto& item : *items) {
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

// The admitted group: the adopted one, when it is still the directory adopted (same id), else
// a fresh one on an existing cgroup2 mount or on our own. Sets adoption->failed when the adopted
// group cannot be used.
Status set_up_cgroup(const SteeringOptions& options, Ledger& ledger,
                     std::optional<Adoption>& adoption, std::optional<AdmittedCgroup>& cgroup) {
  if (adoption) {
    auto id = cgroup_id_of(adoption->group.path());
    if (!id || *id != adoption->group.id()) {
      adoption->failed = true;
      return Error::make(ErrorCode::kNotFound, "cgroup {}: gone since it was adopted",
                         adoption->group.path());
    }
    cgroup = adoption->group;
    return ok();
  }
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
  return create_recorded(ledger,
                         entry_of(LedgerEntry::Kind::kCgroup, mount->path, options.cgroup_path),
                         "cgroup " + options.cgroup_path, [&]() -> Status {
                           auto created = AdmittedCgroup::create(*mount, options.cgroup_path);
                           if (!created) return created.error();
                           cgroup = *created;
                           return ok();
                         });
}

// nft resolved the new table's cgroup match to an id when it loaded it: for an adopted group it
// must be the id the group had before the leftovers went. Sets adoption->failed when not.
Status check_adopted_match(const SteeringOptions& options, Adoption& adoption) {
  if (options.admit_all) return ok();  // no cgroup match in the table
  auto matched = matched_cgroup_id(nft_table_name(options));
  if (matched && *matched == adoption.group.id()) return ok();
  adoption.failed = true;
  return Error::make(ErrorCode::kConflict, "nft table {}: its cgroup match is {}, not {} ({})",
                     nft_table_name(options),
                     matched ? std::to_string(*matched) : matched.error().message,
                     adoption.group.id(), adoption.group.path());
}

Status set_up_kernel(const SteeringOptions& options, const SteeringPlan& plan, Ledger& ledger,
                     std::optional<Adoption>& adoption, std::optional<AdmittedCgroup>& cgroup) {
  cgroup.reset();
  auto status = set_up_cgroup(options, ledger, adoption, cgroup);
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
  status = create_recorded(
      ledger, entry_of(LedgerEntry::Kind::kNftTable, nft_table_name(options)),
      "nft table " + nft_table_name(options), [&] {
        if (nft::table_exists(nft_table_name(options))) {
          return Status(Error::make(ErrorCode::kAlreadyExists, "exists and is not ours"));
        }
        return nft::run(ruleset);
      });
  if (!status || !adoption) return status;
  return check_adopted_match(options, *adoption);
}

// Logs what the start adopted: the group and the processes it holds now.
std::vector<pid_t> log_adoption(const SteeringOptions& options, const AdmittedCgroup& group) {
  auto pids = group.processes();
  std::vector<pid_t> adopted = pids ? *pids : std::vector<pid_t>();
  log::get("vpn")->info(
      "instance={} adopted the admitted cgroup {} id={} of the previous run processes={} "
      "pids={}",
      options.instance, group.path(), group.id(), adopted.size(), fmt::join(adopted, ","));
  return adopted;
}

}  // namespace

Result<std::unique_ptr<Steering>> Steering::start(const SteeringOptions& options,
                                                  const SteeringPlan& plan) {
  auto logger = log::get("vpn");
  auto ledger = Ledger::open(options.ledger_directory, options.instance);
  if (!ledger) return ledger.error();
  auto left = ledger->entries();
  if (!left) return left.error();

  // The admitted group the earlier run left is taken over, with its members, not replaced.
  std::optional<Adoption> adoption;
  if (!left->empty()) adoption = find_adoption(options, *left);

  // What an earlier run left refuses until the handover table refuses in its place.
  std::vector<LedgerEntry> keep;
  auto handover_start = std::chrono::steady_clock::now();
  if (!left->empty()) {
    auto handover = hand_over(options, plan, adoption, *ledger);
    if (!handover) {
      if (adoption && adoption->mounted) (void)unmount_cgroup2(options.cgroup2_fallback_mount);
      return handover.error().wrap("handing over from what a previous run left");
    }
    keep.push_back(*handover);
  }
  auto kept = keep;
  if (adoption) kept.insert(kept.end(), adoption->entries.begin(), adoption->entries.end());
  if (auto status = cleanup_from_ledger(*ledger, kept); !status) {
    return status.error().wrap("cleaning up what a previous run left");
  }

  // The new objects; when the adopted group cannot be used after all, everything new and the
  // group go again (the handover stays) and the start begins afresh with a fresh group.
  std::optional<AdmittedCgroup> cgroup;
  auto status = set_up_kernel(options, plan, *ledger, adoption, cgroup);
  if (!status && adoption && adoption->failed) {
    give_up_adoption(options, adoption, status.error().message);
    (void)cleanup_from_ledger(*ledger, keep);
    status = set_up_kernel(options, plan, *ledger, adoption, cgroup);
  }
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
  std::unique_ptr<Steering> steering(new Steering(options, plan, std::move(*ledger), *cgroup));
  if (adoption) steering->adopted_processes_ = log_adoption(options, *cgroup);
  return steering;
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
  if (auto status = replace_marks(true); !status) return status.error().wrap("tunnel up");
  log::get("vpn")->info("instance={} tunnel up tun={} routes={}", options_.instance, name,
                        plan_.intranet.size());
  return ok();
}

// Only the mark chain changes, in one transaction: swapping the whole table (delete and load)
// let an intranet packet out by the normal route now and then while the new table's sets were
// not yet in use (measured: a few packets per 20 switches).
Status Steering::replace_marks(bool tunnel_up) {
  const std::string admitted = options_.admit_all
                                   ? std::string()
                                   : cgroup_match(nft_cgroup_path(cgroup_.path()), cgroup_.level());
  const std::string chain = nft_table_name(options_) + " mark_admitted";
  std::string commands = "flush chain " + chain + "\n";
  for (const auto& rule : mark_rules(plan_, options_, admitted, tunnel_up))
    commands += "add rule " + chain + " " + rule + "\n";
  if (auto status = nft::run(commands); !status) {
    return status.error().wrap("nft chain " + chain);
  }
  return ok();
}

Status Steering::set_tunnel_down() {
  // The marks stop first, so no admitted packet is steered while routes go away.
  if (auto status = replace_marks(false); !status) return status.error().wrap("tunnel down");
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
