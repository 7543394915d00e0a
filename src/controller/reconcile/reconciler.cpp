#include "controller/reconcile/reconciler.h"

#include <set>

namespace steward::controller {

const char* to_string(Drift::Kind kind) {
  switch (kind) {
    case Drift::Kind::kMissing:
      return "missing";
    case Drift::Kind::kDiffers:
      return "differs";
    case Drift::Kind::kStale:
      return "stale";
    case Drift::Kind::kOrphan:
      return "orphan";
  }
  return "unknown";
}

namespace {

// The drift of one VM across every switch whose view is known.
void find_vm_drift(const Directory& directory,
                   const std::map<std::string, const OwnedRows*>& rows_by_switch,
                   const Engine* engine, const std::string& vm_id, std::vector<Drift>& out) {
  if (engine && engine->active(vm_id)) return;
  const Vm* vm = directory.find_vm(vm_id);
  std::string home_id;
  if (vm) {
    if (auto home = directory.switch_of_host(vm->host)) home_id = (*home)->id;
  }
  for (const auto& [switch_id, rows] : rows_by_switch) {
    if (!rows) continue;
    auto found = rows->find(vm_id);
    if (found == rows->end()) {
      if (vm && switch_id == home_id && !vm->interfaces.empty()) {
        out.push_back({Drift::Kind::kMissing, vm_id, switch_id});
      }
    } else if (!vm) {
      out.push_back({Drift::Kind::kOrphan, vm_id, switch_id});
    } else if (switch_id != home_id) {
      out.push_back({Drift::Kind::kStale, vm_id, switch_id});
    } else if (!matches(*vm, found->second)) {
      out.push_back({Drift::Kind::kDiffers, vm_id, switch_id});
    }
  }
}

}  // namespace

std::vector<Drift> find_drift(const Directory& directory,
                              const std::map<std::string, const OwnedRows*>& rows_by_switch,
                              const Engine* engine) {
  // Every VM the inventory knows, and every VM some switch holds rows of.
  std::set<std::string> vms;
  for (const auto& [vm_id, vm] : directory.vms())
    vms.insert(vm_id);
  for (const auto& [switch_id, rows] : rows_by_switch) {
    if (!rows) continue;
    for (const auto& [vm_id, observed] : *rows)
      vms.insert(vm_id);
  }
  std::vector<Drift> drift;
  for (const auto& vm_id : vms)
    find_vm_drift(directory, rows_by_switch, engine, vm_id, drift);
  return drift;
}

Reconciler::Reconciler(boost::asio::io_context& io, Directory& directory, SwitchPool& switches,
                       Engine& engine, VmLocks& locks, metrics::Registry& metrics,
                       ReconcilerOptions options)
    : io_(io),
      directory_(directory),
      switches_(switches),
      engine_(engine),
      locks_(locks),
      options_(options),
      log_(log::get("reconcile")),
      periodic_(io),
      soon_(io),
      repairs_(metrics.counter("steward_reconcile_repairs_total",
                               "Repairs started by the reconciler, by kind of drift")),
      drift_gauge_(metrics.gauge("steward_reconcile_drift",
                                 "Differences seen by the last reconciler pass")) {}

void Reconciler::start() {
  running_ = true;
  arm_periodic();
  request();
}

void Reconciler::stop() {
  running_ = false;
  periodic_.cancel();
  soon_.cancel();
}

void Reconciler::arm_periodic() {
  periodic_.expires_after(options_.interval);
  periodic_.async_wait([this](boost::system::error_code ec) {
    if (ec || !running_) return;
    pass();
    arm_periodic();
  });
}

void Reconciler::request() {
  if (!running_ || soon_armed_) return;
  soon_armed_ = true;
  requested_at_ = std::chrono::steady_clock::now();
  arm_soon();
}

void Reconciler::arm_soon() {
  soon_.expires_after(options_.debounce);
  soon_.async_wait([this](boost::system::error_code ec) {
    if (ec || !running_) {
      soon_armed_ = false;
      return;
    }
    bool busy = engine_.working_count() > 0;
    if (busy && std::chrono::steady_clock::now() - requested_at_ < options_.busy_defer_max) {
      return arm_soon();
    }
    soon_armed_ = false;
    pass();
  });
}

size_t Reconciler::pass() {
  std::map<std::string, const OwnedRows*> rows_by_switch;
  for (const auto& [id, client] : switches_.clients()) {
    if (client->state() == SwitchState::kReady) rows_by_switch[id] = client->owned();
  }
  auto drift = find_drift(directory_, rows_by_switch, &engine_);
  drift_gauge_.set({}, static_cast<double>(drift.size()));

  // Keep only drift that was already there one settle period ago.
  auto now = std::chrono::steady_clock::now();
  decltype(first_seen_) seen;
  size_t started = 0;
  bool waiting = false;
  for (const Drift& item : drift) {
    auto key = std::make_tuple(static_cast<int>(item.kind), item.vm, item.switch_id);
    auto found = first_seen_.find(key);
    auto since = found == first_seen_.end() ? now : found->second;
    seen[key] = since;
    if (now - since < options_.settle) {
      waiting = true;
      continue;
    }
    if (!locks_.try_lock(item.vm)) continue;
    repair(item);
    started++;
  }
  first_seen_ = std::move(seen);
  if (waiting && running_) {
    // Look again once the newest drift has settled.
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, options_.settle);
    timer->async_wait([this, timer](boost::system::error_code ec) {
      if (!ec) request();
    });
  }
  return started;
}

void Reconciler::reconcile_vm(const std::string& vm) {
  std::map<std::string, const OwnedRows*> rows_by_switch;
  for (const auto& [id, client] : switches_.clients()) {
    if (client->state() == SwitchState::kReady) rows_by_switch[id] = client->owned();
  }
  std::vector<Drift> drift;
  find_vm_drift(directory_, rows_by_switch, &engine_, vm, drift);
  for (const Drift& item : drift) {
    if (!locks_.try_lock(vm)) return request();
    repair(item, true);
  }
}

void Reconciler::repair(const Drift& drift, bool known_change) {
  SwitchClient* client = switches_.find(drift.switch_id);
  const Vm* vm = directory_.find_vm(drift.vm);
  if (known_change) {
    log_->debug("apply vm={} switch={} change={}", drift.vm, drift.switch_id,
                to_string(drift.kind));
  } else {
    repairs_.inc({{"kind", to_string(drift.kind)}});
    log_->info("repair vm={} switch={} drift={}", drift.vm, drift.switch_id, to_string(drift.kind));
  }
  auto done = [this, drift](Status status) {
    locks_.unlock(drift.vm);
    if (!status) {
      log_->warn("repair vm={} switch={} drift={} result=failed error=\"{}\"", drift.vm,
                 drift.switch_id, to_string(drift.kind), status.error().message);
    }
  };
  bool install = drift.kind == Drift::Kind::kMissing || drift.kind == Drift::Kind::kDiffers;
  if (!client || (install && !vm)) return done(ok());
  if (install) return client->install(*vm, done);
  client->remove(drift.vm, done);
}

}  // namespace steward::controller
