#include "controller/southbound/switch_pool.h"

namespace steward::controller {

SwitchPool::~SwitchPool() {
  stop_all();
}

void SwitchPool::ensure(const Switch& spec) {
  auto it = clients_.find(spec.id);
  if (it != clients_.end()) {
    if (it->second->spec() == spec) return;
    it->second->stop();
    clients_.erase(it);
  }
  auto client = factory_(spec);
  SwitchClient* raw = client.get();
  client->set_listener([this, id = spec.id] {
    if (listener_) listener_(id);
  });
  clients_.emplace(spec.id, std::move(client));
  raw->start();
}

void SwitchPool::drop(const std::string& id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  it->second->stop();
  clients_.erase(it);
}

void SwitchPool::stop_all() {
  for (auto& [id, client] : clients_)
    client->stop();
  clients_.clear();
}

SwitchClient* SwitchPool::find(const std::string& id) const {
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : it->second.get();
}

}  // namespace steward::controller
