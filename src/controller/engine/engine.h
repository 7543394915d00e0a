// The migration engine: moves a VM's configuration from the source switch to the target switch
// as the VM manager announces a live migration, in journaled steps.
//
//   prepare  : journal "preparing"  -> install on the target -> journal "prepared"
//   complete : (prepare if needed)  -> journal "completing" and move the VM to the target host
//              in one store transaction -> remove from the source -> journal "completed"
//   rollback : journal "rolling_back" -> remove from the target -> journal "rolled_back"
//
// The source is never touched before the target confirmed. When both hosts attach to the same
// switch (a top-of-rack switch), nothing is ever removed: the rows serve the VM on either host.
// Every step is written to the store before it runs, and every switch operation is idempotent, so a
// controller killed at any point resumes (resume()) and converges. One migration per VM is active
// at a time; duplicates and late messages of a finished migration change nothing; a switch that
// cannot be reached is retried with backoff while the record shows why it waits.
//
// Threading: the daemon's event loop owns the engine; every method runs there.
#pragma once

#include "controller/engine/vm_locks.h"
#include "controller/inventory/directory.h"
#include "controller/model/model.h"
#include "controller/southbound/switch_pool.h"
#include "controller/store/store.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace steward::controller {

struct EngineOptions {
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
};

// What the engine made of one message.
struct Decision {
  enum class Outcome {
    kStarted,    // a new migration was journaled and its first step started
    kAdvanced,   // an active migration was asked to go further (complete or roll back)
    kDuplicate,  // the migration already does or did what the message asks: nothing changed
    kStale,      // the message belongs to a migration that finished: nothing changed
    kNoop,       // source and target are the same host: nothing to do, nothing stored
  };
  Outcome outcome = Outcome::kStarted;
  Migration migration;  // the record after the decision (id 0 for kNoop)
  std::string detail;   // why, for people
};
const char* to_string(Decision::Outcome outcome);

class Engine {
 public:
  Engine(boost::asio::io_context& io, Store& store, Directory& directory, SwitchPool& switches,
         VmLocks& locks, const Clock& clock, metrics::Registry& metrics,
         EngineOptions options = {});
  ~Engine();

  // Picks up every migration the journal shows active and drives it on. Call once at start.
  Status resume();

  // Handles one migration message. Errors (nothing changed, nothing stored):
  // kInvalidArgument for missing fields, kNotFound for an unknown VM, host or switch,
  // kConflict when another migration of the VM is in flight or the VM is not on the source.
  Result<Decision> submit(const MigrationRequest& request);

  // Calls `done` (posted) once the journal holds what the last message about `vm` changed
  // (at once when nothing waits to be written). Migration messages are answered only then:
  // submit() decides at once, and the group commit makes the decision durable at the end of
  // the loop turn. An error means it was not written (a new migration then never started).
  void when_journaled(const std::string& vm, std::function<void(Status)> done);

  // The VM manager states where the VM runs now. Completes an active migration whose target is
  // `host`; starts a full migration when the VM is recorded elsewhere; nothing when it agrees.
  Result<Decision> place(const std::string& vm, const std::string& host);

  // Calls `done` (posted, never inline) with the record once migration `id` has settled:
  // finished, failed, or prepared with nothing more asked — or when `timeout` passed, with the
  // record as it stands (still waiting on a switch, for instance).
  void when_settled(int64_t id, std::chrono::milliseconds timeout,
                    std::function<void(Result<Migration>)> done);

  Result<std::optional<Migration>> find(int64_t id) const;
  // Newest first; an empty `vm` lists every VM's migrations.
  Result<std::vector<Migration>> list(const std::string& vm, int limit) const {
    return store_.list_migrations(vm, limit);
  }
  // The active migration of `vm`, or nullptr.
  const Migration* active(const std::string& vm) const;
  size_t active_count() const { return flights_.size(); }
  // Active migrations with a switch step or a journal write under way right now (not those
  // waiting for a message, or for a switch to come back).
  size_t working_count() const;

  // A switch came (back): steps waiting to retry on it go now instead of after their backoff.
  void on_switch_ready(const std::string& switch_id);

  // Called with the VM id whenever a migration of it finished (for the reconciler).
  void set_finished_listener(std::function<void(const std::string& vm)> listener) {
    finished_listener_ = std::move(listener);
  }

 private:
  enum class Step { kInstallTarget, kRemoveSource, kRemoveTarget };
  struct Waiter;
  struct Flight;

  Result<Decision> apply_to_active(Flight& flight, Phase wanted, const MigrationRequest& request);
  Result<Decision> start_new(const Vm& vm, Phase wanted, const MigrationRequest& request,
                             const std::string& source_switch, const std::string& target_switch);
  void advance(const std::string& vm);
  void switch_over(Flight& flight);
  void run_step(Flight& flight, Step step);
  void on_step_done(const std::string& vm, Step step, Status status);
  void step_failed(Flight& flight, Step step, const Error& error);
  void retry_later(Flight& flight);
  void journal(Flight& flight);
  void flush_journal();
  void journaled(Flight& flight);
  void finish(const std::string& vm);
  void notify_if_settled(Flight& flight);
  bool settled(const Flight& flight) const;
  Flight* flight_of(const std::string& vm);

  boost::asio::io_context& io_;
  Store& store_;
  Directory& directory_;
  SwitchPool& switches_;
  VmLocks& locks_;
  const Clock& clock_;
  EngineOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, std::unique_ptr<Flight>> flights_;  // active migrations, by VM
  std::function<void(const std::string&)> finished_listener_;
  // Group commit: VMs whose record waits for the next journal transaction, and whether that
  // transaction is already posted to the loop.
  std::vector<std::string> journal_queue_;
  bool journal_flush_posted_ = false;
  int64_t next_id_ = 0;  // the next migration's id; 0 until read from the store

  metrics::Family& outcomes_;
  metrics::Family& messages_;
  metrics::Family& step_seconds_;
  metrics::Family& target_ready_seconds_;
  metrics::Family& source_cleaned_seconds_;
  metrics::Family& retries_;
  metrics::Family& in_flight_;
};

}  // namespace steward::controller
