// The reconciler: compares where each VM's configuration should be (the inventory's placement)
// with the Steward-owned rows every switch actually holds, and repairs drift.
//
//  - configuration missing or different on the VM's current switch: installed again;
//  - Steward-owned rows of a VM on any other switch, or of a VM no longer in the inventory:
//    removed (rows owned by anyone else are never looked at).
//
// It never touches a VM with an active migration (the engine owns it until it finishes) and
// takes the per-VM lock for every repair. Drift must be seen for `settle` before it is repaired,
// so the short window between a switch's commit and its monitor update is not mistaken for it.
//
// Threading: the daemon's event loop.
#pragma once

#include "controller/engine/engine.h"
#include "controller/engine/vm_locks.h"
#include "controller/inventory/directory.h"
#include "controller/southbound/switch_pool.h"
#include "core/log.h"
#include "core/metrics.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace steward::controller {

struct ReconcilerOptions {
  std::chrono::milliseconds interval{5000};  // full pass at least this often
  std::chrono::milliseconds settle{500};     // drift must persist this long before repair
  std::chrono::milliseconds debounce{100};   // delay of a pass after a change was signalled
  // While migrations are at work (a storm), a signalled pass waits for them to finish, up to
  // this long: a pass skips VMs in flight anyway, and full passes would compete with them.
  std::chrono::milliseconds busy_defer_max{2000};
};

// One difference between the desired placement and a switch.
struct Drift {
  enum class Kind { kMissing, kDiffers, kStale, kOrphan };
  Kind kind;
  std::string vm;
  std::string switch_id;
};
const char* to_string(Drift::Kind kind);

// Differences between the inventory and the switches' owned rows, ignoring VMs with an active
// migration and switches that are not ready. Pure: used by the reconciler and by verify.
std::vector<Drift> find_drift(const Directory& directory,
                              const std::map<std::string, const OwnedRows*>& rows_by_switch,
                              const Engine* engine);

class Reconciler {
 public:
  Reconciler(boost::asio::io_context& io, Directory& directory, SwitchPool& switches,
             Engine& engine, VmLocks& locks, metrics::Registry& metrics,
             ReconcilerOptions options = {});

  // Starts periodic passes; stop() ends them.
  void start();
  void stop();
  // Something changed (a switch, a VM, a finished migration): pass soon.
  void request();
  // Runs one pass now; returns the number of repairs it started.
  size_t pass();
  // The inventory of `vm` changed: repair its drift now, without the settle delay (the change
  // is known, not inferred from a switch's view). Falls back to a later pass while it is locked.
  void reconcile_vm(const std::string& vm);

 private:
  void arm_periodic();
  void arm_soon();
  // `known_change`: applying an inventory change (logged at debug), not repairing drift.
  void repair(const Drift& drift, bool known_change = false);

  boost::asio::io_context& io_;
  Directory& directory_;
  SwitchPool& switches_;
  Engine& engine_;
  VmLocks& locks_;
  ReconcilerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::steady_timer periodic_;
  boost::asio::steady_timer soon_;
  bool soon_armed_ = false;
  std::chrono::steady_clock::time_point requested_at_;  // first signal of the pending pass
  bool running_ = false;
  // When each drift was first seen, keyed by (kind, vm, switch).
  std::map<std::tuple<int, std::string, std::string>, std::chrono::steady_clock::time_point>
      first_seen_;
  metrics::Family& repairs_;
  metrics::Family& drift_gauge_;
};

}  // namespace steward::controller
