#include "controller/southbound/ovsdb/layout.h"

#include "controller/southbound/switch.h"

namespace steward::ovsdb {
namespace {

using enum ColumnKind;

constexpr Column kBridgeColumns[] = {{"name", kSingle}, {"ports", kSet}};
constexpr Column kPortColumns[] = {{"name", kSingle}, {"interfaces", kSet}, {"tag", kSingle},
                                   {"trunks", kSet},  {"qos", kSingle},     {"external_ids", kMap}};
constexpr Column kInterfaceColumns[] = {{"name", kSingle},
                                        {"type", kSingle},
                                        {"ingress_policing_rate", kSingle},
                                        {"ingress_policing_burst", kSingle},
                                        {"external_ids", kMap}};
constexpr Column kQosColumns[] = {
    {"type", kSingle}, {"other_config", kMap}, {"external_ids", kMap}};

}  // namespace

bool is_reserved_key(std::string_view key) {
  return key == controller::kOwnerKey || key == controller::kVmKey ||
         key == controller::kInterfaceKey || key == kAttachedMacKey || key == kIfaceIdKey ||
         key == kVmIdKey || key == kIpsKey;
}

std::span<const Column> monitored_columns(Table table) {
  switch (table) {
    case Table::kBridge:
      return kBridgeColumns;
    case Table::kPort:
      return kPortColumns;
    case Table::kInterface:
      return kInterfaceColumns;
    case Table::kQos:
      return kQosColumns;
  }
  return {};
}

ColumnKind column_kind(Table table, std::string_view column) {
  for (const Column& known : monitored_columns(table)) {
    if (known.name == column) return known.kind;
  }
  return kSingle;
}

}  // namespace steward::ovsdb
