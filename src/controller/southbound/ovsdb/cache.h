// MonitorCache: Steward's copy of the rows it watches on one switch — the spec's Bridge and the
// Port, Interface and QoS rows marked with the owner name — kept current from the monitor's
// initial reply and its `update` / `update2` notifications, and the per-VM view of owned
// interfaces (controller::OwnedRows) derived from them.
//
// Only rows that belong to the view are kept (the Bridge named in the spec; rows whose
// external_ids carry steward-owner=<owner>), so the same cache serves a conditional monitor
// (the server filters) and a plain RFC 7047 monitor (every row arrives, this filters). Only
// interfaces whose Port is in the Bridge's `ports` are in the view, plus, as entries with only
// `qos_uuid` set, owned QoS rows that no owned Port refers to (left behind when someone deleted
// the port by hand: QoS rows are root rows and outlive their port).
//
// Single-threaded (the switch's io_context). Pure data: no I/O, usable without a socket. Input
// comes from the network: malformed updates are reported as kInternal errors, never thrown;
// after an error the cache may be partly updated and must be reset before use.
#pragma once

#include "controller/southbound/ovsdb/layout.h"
#include "controller/southbound/switch.h"
#include "core/result.h"

#include <boost/json/object.hpp>

#include <array>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace steward::ovsdb {

using Row = json::object;
using RowsByUuid = std::unordered_map<std::string, Row>;

class MonitorCache {
 public:
  // Notification formats: RFC 7047 `update` (old/new rows) or OVS `update2` (row diffs).
  enum class Format { kUpdate, kUpdate2 };

  MonitorCache(std::string bridge, std::string owner);

  // Replaces the contents with the reply to `monitor` (kUpdate) or `monitor_cond` (kUpdate2).
  Status reset(const json::value& table_updates, Format format);
  // Applies one notification's <table-updates>. Returns whether the owned view changed.
  Result<bool> apply(const json::value& table_updates, Format format);
  // Replaces the contents with the result of the `transact` built by select_owned_params().
  Status load_select(const json::value& result);
  void clear();

  bool bridge_found() const { return !bridge_uuid_.empty(); }
  const std::string& bridge_uuid() const { return bridge_uuid_; }
  const std::string& bridge_name() const { return bridge_; }
  const std::string& owner() const { return owner_; }
  const controller::OwnedRows& owned() const { return owned_; }
  // The VM id owning each device (port name) in owned(), kept with it.
  const std::unordered_map<std::string, std::string>& vm_by_device() const { return vm_by_device_; }
  // Number of rows held, all tables together.
  std::size_t row_count() const;

 private:
  // Ports whose view may have changed while one update is applied, and their VMs.
  struct Touched {
    std::unordered_set<std::string> ports;
    std::set<std::string> vms;
  };

  Status apply_table(Table table, const json::value& row_updates, Format format, Touched& touched);
  Status apply_row(Table table, const std::string& uuid, const json::value& row_update,
                   Format format, Touched& touched);
  void put_row(Table table, const std::string& uuid, Row row, Touched& touched);
  void modify_row(Table table, const std::string& uuid, const json::object& diff, Touched& touched);
  void erase_row(Table table, const std::string& uuid, Touched& touched);
  // Before a row changes: notes the view it affects and drops it from the indexes.
  void unlink(Table table, const std::string& uuid, const Row& row, Touched& touched);
  // After a row changed: keeps and indexes it if it still belongs, drops it otherwise.
  void settle(Table table, RowsByUuid::iterator row, Touched& touched);
  void drop(Table table, RowsByUuid::iterator row, Touched& touched);
  bool belongs(Table table, const Row& row) const;

  void touch(Table table, const std::string& uuid, Touched& touched) const;
  void index_port(const std::string& uuid, const Row& row);
  void unindex_port(const std::string& uuid, const Row& row);
  void index_bridge(const std::string& uuid, Row& row, Touched& touched);
  void toggle_bridge_ports(const json::value& diff, Touched& touched);
  void rebuild(const Touched& touched);
  void rebuild_vm(const std::string& vm_id);
  void rebuild_all();
  controller::ObservedInterface observe(const std::string& port_uuid, const Row& port) const;

  std::string bridge_;
  std::string owner_;
  std::array<RowsByUuid, kTableCount> tables_;

  // Derived from the rows.
  std::string bridge_uuid_;
  std::unordered_set<std::string> bridge_ports_;
  std::unordered_map<std::string, std::set<std::string>> ports_by_vm_;
  std::unordered_map<std::string, std::string> port_by_interface_;
  std::unordered_map<std::string, std::string> port_by_qos_;
  std::unordered_map<std::string, std::set<std::string>> qos_by_vm_;  // owned QoS rows
  controller::OwnedRows owned_;
  std::unordered_map<std::string, std::string> vm_by_device_;
};

// Parses one Port row (and the Interface and QoS rows it refers to, when present in `tables`)
// into the interface configuration Steward wrote. Exposed for tests.
controller::ObservedInterface observe_port(const std::string& port_uuid, const Row& port,
                                           const RowsByUuid& interfaces, const RowsByUuid& qos);

}  // namespace steward::ovsdb
