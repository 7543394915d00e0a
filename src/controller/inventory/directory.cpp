#include "controller/inventory/directory.h"

#include "controller/model/json.h"

namespace steward::controller {

Status Directory::load() {
  auto inventory = store_.load_inventory();
  if (!inventory) return inventory.error();
  for (auto& value : inventory->switches)
    switches_[value.id] = std::move(value);
  for (auto& value : inventory->hosts)
    hosts_[value.id] = std::move(value);
  for (auto& value : inventory->vms)
    vms_[value.id] = std::move(value);
  return ok();
}

const Switch* Directory::find_switch(const std::string& id) const {
  auto it = switches_.find(id);
  return it == switches_.end() ? nullptr : &it->second;
}

const Host* Directory::find_host(const std::string& id) const {
  auto it = hosts_.find(id);
  return it == hosts_.end() ? nullptr : &it->second;
}

const Vm* Directory::find_vm(const std::string& id) const {
  auto it = vms_.find(id);
  return it == vms_.end() ? nullptr : &it->second;
}

Result<const Switch*> Directory::switch_of_host(const std::string& host_id) const {
  const Host* host = find_host(host_id);
  if (!host) return Error::make(ErrorCode::kNotFound, "unknown host '{}'", host_id);
  const Switch* found = find_switch(host->switch_id);
  if (!found) {
    return Error::make(ErrorCode::kNotFound, "host {} refers to unknown switch '{}'", host_id,
                       host->switch_id);
  }
  return found;
}

Status Directory::put_switch(const Switch& value) {
  if (auto status = validate(value); !status) return status;
  if (auto status = store_.put_switch(value); !status) return status;
  switches_[value.id] = value;
  changed("switch", value.id);
  return ok();
}

Status Directory::put_host(const Host& value) {
  if (auto status = validate(value); !status) return status;
  if (!find_switch(value.switch_id)) {
    return Error::make(ErrorCode::kNotFound, "host {}: unknown switch '{}'", value.id,
                       value.switch_id);
  }
  if (auto status = store_.put_host(value); !status) return status;
  hosts_[value.id] = value;
  changed("host", value.id);
  return ok();
}

Status Directory::put_vm(const Vm& value) {
  if (auto status = validate(value); !status) return status;
  if (!find_host(value.host)) {
    return Error::make(ErrorCode::kNotFound, "vm {}: unknown host '{}'", value.id, value.host);
  }
  // A device name is a port name on the switch: two VMs sharing one would fight over it.
  for (const auto& [id, other] : vms_) {
    if (id == value.id) continue;
    for (const Interface& mine : value.interfaces) {
      for (const Interface& theirs : other.interfaces) {
        if (mine.device == theirs.device) {
          return Error::make(ErrorCode::kConflict, "vm {}: device {} is already used by vm {}",
                             value.id, mine.device, id);
        }
      }
    }
  }
  if (auto status = store_.put_vm(value); !status) return status;
  vms_[value.id] = value;
  changed("vm", value.id);
  return ok();
}

Status Directory::delete_switch(const std::string& id) {
  for (const auto& [host_id, host] : hosts_) {
    if (host.switch_id == id) {
      return Error::make(ErrorCode::kConflict, "switch {} is used by host {}: delete it first", id,
                         host_id);
    }
  }
  if (auto status = store_.delete_switch(id); !status) return status;
  switches_.erase(id);
  changed("switch", id);
  return ok();
}

Status Directory::delete_host(const std::string& id) {
  for (const auto& [vm_id, vm] : vms_) {
    if (vm.host == id) {
      return Error::make(ErrorCode::kConflict, "host {} still runs vm {}: migrate or delete it", id,
                         vm_id);
    }
  }
  if (auto status = store_.delete_host(id); !status) return status;
  hosts_.erase(id);
  changed("host", id);
  return ok();
}

Status Directory::delete_vm(const std::string& id) {
  if (auto status = store_.delete_vm(id); !status) return status;
  vms_.erase(id);
  changed("vm", id);
  return ok();
}

void Directory::set_vm_host(const std::string& vm_id, const std::string& host) {
  auto it = vms_.find(vm_id);
  if (it != vms_.end()) it->second.host = host;
}

}  // namespace steward::controller
