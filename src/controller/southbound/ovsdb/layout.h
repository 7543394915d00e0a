// Names of the Open_vSwitch tables, columns and external_ids keys that make up Steward's row
// layout (described in ovsdb_switch.h), and the columns Steward reads with their diff kinds.
#pragma once

#include "controller/southbound/ovsdb/datum.h"

#include <array>
#include <span>
#include <string_view>

namespace steward::ovsdb {

inline constexpr std::string_view kDatabase = "Open_vSwitch";

// The tables Steward reads, in the order used for arrays indexed by Table.
enum class Table { kBridge = 0, kPort = 1, kInterface = 2, kQos = 3 };
inline constexpr std::size_t kTableCount = 4;
inline constexpr std::array<std::string_view, kTableCount> kTableNames = {"Bridge", "Port",
                                                                          "Interface", "QoS"};

// external_ids keys of a Steward Interface row besides the ownership markers of switch.h.
inline constexpr std::string_view kAttachedMacKey = "attached-mac";
inline constexpr std::string_view kIfaceIdKey = "iface-id";
inline constexpr std::string_view kVmIdKey = "vm-id";
inline constexpr std::string_view kIpsKey = "steward-ips";
// other_config key of a QoS row that carries the egress rate in bits per second.
inline constexpr std::string_view kMaxRateKey = "max-rate";
inline constexpr std::string_view kQosType = "linux-htb";

// Keys Steward writes itself; an Interface's extra external_ids may not use them.
bool is_reserved_key(std::string_view key);

struct Column {
  std::string_view name;
  ColumnKind kind;
};

// The columns Steward monitors and selects in `table`.
std::span<const Column> monitored_columns(Table table);
// The diff kind of a column (kSingle for columns Steward does not know).
ColumnKind column_kind(Table table, std::string_view column);

}  // namespace steward::ovsdb
