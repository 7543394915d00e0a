// The connected switches, one client per switch of the inventory. Owns the clients; creates
// them through a factory (OVSDB in the daemon, fakes in tests), starts them, and stops them
// when their switch leaves the inventory. Threading: the daemon's event loop.
#pragma once

#include "controller/southbound/switch.h"

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace steward::controller {

class SwitchPool {
 public:
  using Factory = std::function<std::unique_ptr<SwitchClient>(const Switch&)>;

  explicit SwitchPool(Factory factory) : factory_(std::move(factory)) {}
  ~SwitchPool();

  // Creates and starts a client for `spec`, replacing one whose spec changed.
  void ensure(const Switch& spec);
  // Stops and drops the client of `id`, if any.
  void drop(const std::string& id);
  void stop_all();

  SwitchClient* find(const std::string& id) const;
  const std::map<std::string, std::unique_ptr<SwitchClient>>& clients() const { return clients_; }

  // Called with the switch id after any client's state or owned rows changed.
  void set_listener(std::function<void(const std::string& switch_id)> listener) {
    listener_ = std::move(listener);
  }

 private:
  Factory factory_;
  std::map<std::string, std::unique_ptr<SwitchClient>> clients_;
  std::function<void(const std::string&)> listener_;
};

}  // namespace steward::controller
