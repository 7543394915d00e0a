// The inventory the controller works from: switches, hosts and VMs, read from the store at
// start-up and written through to it (store first, memory after, so memory never holds what
// the disk does not). Lookups are cheap; every write is validated and checked against the
// references it makes (a host's switch, a VM's host) before anything changes.
//
// Threading: the daemon's event loop owns it.
#pragma once

#include "controller/model/model.h"
#include "controller/store/store.h"
#include "core/result.h"

#include <functional>
#include <map>
#include <string>

namespace steward::controller {

class Directory {
 public:
  explicit Directory(Store& store) : store_(store) {}

  // Loads the inventory from the store. Call once before anything else.
  Status load();

  const Switch* find_switch(const std::string& id) const;
  const Host* find_host(const std::string& id) const;
  const Vm* find_vm(const std::string& id) const;
  // The switch a host's VMs attach to; kNotFound naming what is missing.
  Result<const Switch*> switch_of_host(const std::string& host_id) const;

  const std::map<std::string, Switch>& switches() const { return switches_; }
  const std::map<std::string, Host>& hosts() const { return hosts_; }
  const std::map<std::string, Vm>& vms() const { return vms_; }

  // Writes. Errors: kInvalidArgument (validation), kNotFound (a reference is missing),
  // kConflict (deleting something still in use), kIo (the store failed). On error nothing
  // changed.
  Status put_switch(const Switch& value);
  Status put_host(const Host& value);
  Status put_vm(const Vm& value);
  Status delete_switch(const std::string& id);
  Status delete_host(const std::string& id);
  Status delete_vm(const std::string& id);
  // Records that the VM now runs on `host` (memory only; the store write happened in the
  // journal transaction of the switch-over).
  void set_vm_host(const std::string& vm_id, const std::string& host);

  // Called after every successful write with the kind ("switch", "host", "vm") and the id.
  void set_listener(std::function<void(const std::string& kind, const std::string& id)> listener) {
    listener_ = std::move(listener);
  }

 private:
  void changed(const char* kind, const std::string& id) {
    if (listener_) listener_(kind, id);
  }

  Store& store_;
  std::map<std::string, Switch> switches_;
  std::map<std::string, Host> hosts_;
  std::map<std::string, Vm> vms_;
  std::function<void(const std::string&, const std::string&)> listener_;
};

}  // namespace steward::controller
