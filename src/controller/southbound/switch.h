// The controller's view of one forwarding switch: what the engine and the reconciler may ask of
// it, whatever speaks to the real device (OVSDB for Open vSwitch; a fake in unit tests).
//
// Threading: every method is called on, and every callback runs on, the daemon's io_context
// thread. Callbacks are invoked exactly once, never from inside the call that registered them.
#pragma once

#include "controller/model/model.h"
#include "core/result.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace steward::controller {

// external_ids keys that mark a row as Steward's. Steward deletes only rows whose
// `kOwnerKey` equals its own owner name, so rows created by others on the same bridge survive.
inline constexpr const char* kOwnerKey = "steward-owner";
inline constexpr const char* kVmKey = "steward-vm";
inline constexpr const char* kInterfaceKey = "steward-iface";

// One Steward-owned interface as found on a switch: the rows and the configuration read back.
struct ObservedInterface {
  std::string port_uuid;
  std::string interface_uuid;
  std::string qos_uuid;  // empty when the port has no QoS row
  std::string vm_id;
  Interface config;  // id, device, mac, ips, vlan, trunks, policing, max-rate, extra external_ids
};

// Steward-owned interfaces on one switch, by VM id.
using OwnedRows = std::map<std::string, std::vector<ObservedInterface>>;

enum class SwitchState {
  kDisconnected,  // no connection; retrying with backoff
  kConnecting,    // connected, waiting for the first full view of the owned rows
  kReady,         // connected and the owned-rows view is current
};
const char* to_string(SwitchState state);

using StatusCallback = std::function<void(Status)>;
using OwnedRowsCallback = std::function<void(Result<OwnedRows>)>;

class SwitchClient {
 public:
  virtual ~SwitchClient() = default;

  virtual const Switch& spec() const = 0;
  virtual SwitchState state() const = 0;
  // Human-readable reason of the last connection failure, empty when connected.
  virtual std::string last_error() const = 0;

  // Starts connecting (and reconnecting forever, with backoff) until stop().
  virtual void start() = 0;
  // Closes the connection; pending callbacks complete with kUnavailable.
  virtual void stop() = 0;

  // Makes the switch hold exactly `vm`'s interfaces as Steward-owned rows in the bridge:
  // creates what is missing, updates what differs in place (no port flap), removes owned
  // interfaces of this VM that are no longer configured. Completes with ok() only once the
  // switch committed the change (checked against its reply). Fails with kUnavailable when the
  // switch cannot be reached, kConflict when a port of the same name exists and is not
  // Steward's, kInternal when the switch rejected the transaction.
  virtual void install(const Vm& vm, StatusCallback done) = 0;

  // Removes every Steward-owned row of `vm_id` from the bridge; rows owned by anyone else are
  // never touched. Ok (without a transaction) when there is nothing to remove.
  virtual void remove(const std::string& vm_id, StatusCallback done) = 0;

  // The owned rows as last seen through the monitor; nullptr unless state() is kReady.
  virtual const OwnedRows* owned() const = 0;

  // Reads the owned rows afresh from the switch (not from the monitor view), for verify.
  virtual void read_owned(OwnedRowsCallback done) = 0;

  // Called (on the io_context) after every state change and every change of owned rows.
  virtual void set_listener(std::function<void()> on_change) = 0;
};

// Whether the interfaces found on a switch are exactly those configured for `vm`.
bool matches(const Vm& vm, const std::vector<ObservedInterface>& observed);

}  // namespace steward::controller
