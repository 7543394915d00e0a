#include "controller/engine/engine.h"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace steward::controller {
namespace asio = boost::asio;

const char* to_string(Decision::Outcome outcome) {
  switch (outcome) {
    case Decision::Outcome::kStarted:
      return "started";
    case Decision::Outcome::kAdvanced:
      return "advanced";
    case Decision::Outcome::kDuplicate:
      return "duplicate";
    case Decision::Outcome::kStale:
      return "stale";
    case Decision::Outcome::kNoop:
      return "noop";
  }
  return "unknown";
}

namespace {

const char* step_name(int step) {
  static constexpr const char* kNames[] = {"install_target", "remove_source", "remove_target"};
  return kNames[step];
}

double seconds_between(int64_t from_us, int64_t to_us) {
  return static_cast<double>(to_us - from_us) / 1e6;
}

bool is_terminal(MigrationState state) {
  return !is_active(state);
}

}  // namespace

struct Engine::Waiter {
  std::function<void(Result<Migration>)> done;
  std::unique_ptr<asio::steady_timer> deadline;
};

struct Engine::Flight {
  Flight(asio::io_context& io, Migration migration, const EngineOptions& options)
      : record(std::move(migration)),
        backoff(options.retry_initial, options.retry_max),
        retry(io) {}

  Migration record;
  bool running = false;  // a switch operation is outstanding
  bool waiting = false;  // the retry timer is armed
  // The record changed in memory and the step it guards waits for the journal's next group
  // commit (with `moved`, the VM's new host, at a switch-over).
  bool unjournaled = false;
  bool queued = false;
  std::optional<Vm> moved;
  bool fresh = false;  // started by a message and never journaled yet
  std::vector<std::function<void(Status)>> journal_waiters;
  Step waiting_step = Step::kInstallTarget;
  Backoff backoff;
  asio::steady_timer retry;
  std::chrono::steady_clock::time_point step_started;
  std::vector<std::shared_ptr<Waiter>> waiters;
};

Engine::Engine(asio::io_context& io, Store& store, Directory& directory, SwitchPool& switches,
               VmLocks& locks, const Clock& clock, metrics::Registry& metrics,
               EngineOptions options)
    : io_(io),
      store_(store),
      directory_(directory),
      switches_(switches),
      locks_(locks),
      clock_(clock),
      options_(options),
      log_(log::get("controller")),
      outcomes_(metrics.counter("steward_migrations_total",
                                "Migrations by final outcome (completed, rolled_back, failed)")),
      messages_(metrics.counter("steward_migration_messages_total",
                                "Migration messages by what the engine made of them")),
      step_seconds_(metrics.histogram("steward_migration_step_seconds",
                                      "Duration of one switch step of a migration",
                                      metrics::latency_bounds())),
      target_ready_seconds_(
          metrics.histogram("steward_migration_target_ready_seconds",
                            "From the first message of a migration to the target switch's commit",
                            metrics::latency_bounds())),
      source_cleaned_seconds_(metrics.histogram(
          "steward_migration_source_cleaned_seconds",
          "From the complete message to the source switch's commit of the removal",
          metrics::latency_bounds())),
      retries_(metrics.counter("steward_migration_step_retries_total",
                               "Failed migration steps that will be retried, by step")),
      in_flight_(metrics.gauge("steward_migrations_in_flight", "Active migrations")) {}

Engine::~Engine() = default;

Status Engine::resume() {
  auto active = store_.load_active_migrations();
  if (!active) return active.error().wrap("cannot read the migration journal");
  for (Migration& record : *active) {
    std::string vm = record.vm;
    if (!directory_.find_vm(vm)) {
      log_->warn("migration={} vm={} resume=skipped reason=\"vm no longer in inventory\"",
                 record.id, vm);
      continue;
    }
    log_->info("migration={} vm={} resume state={} wanted={}", record.id, vm,
               to_string(record.state), to_string(record.wanted));
    flights_[vm] = std::make_unique<Flight>(io_, std::move(record), options_);
  }
  in_flight_.set({}, static_cast<double>(flights_.size()));
  for (const auto& [vm, flight] : flights_)
    asio::post(io_, [this, vm = vm] { advance(vm); });
  return ok();
}

size_t Engine::working_count() const {
  return std::count_if(flights_.begin(), flights_.end(), [](const auto& entry) {
    return entry.second->running || entry.second->unjournaled;
  });
}

Engine::Flight* Engine::flight_of(const std::string& vm) {
  auto it = flights_.find(vm);
  return it == flights_.end() ? nullptr : it->second.get();
}

const Migration* Engine::active(const std::string& vm) const {
  auto it = flights_.find(vm);
  return it == flights_.end() ? nullptr : &it->second->record;
}

Result<std::optional<Migration>> Engine::find(int64_t id) const {
  for (const auto& [vm, flight] : flights_) {
    if (flight->record.id == id) return std::optional<Migration>(flight->record);
  }
  return store_.find_migration(id);
}

Result<Decision> Engine::submit(const MigrationRequest& request) {
  if (request.vm.empty() || request.source_host.empty() || request.target_host.empty()) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "a migration needs vm, source_host and target_host");
  }
  const Vm* vm = directory_.find_vm(request.vm);
  if (!vm) return Error::make(ErrorCode::kNotFound, "unknown vm '{}'", request.vm);
  auto source_switch = directory_.switch_of_host(request.source_host);
  if (!source_switch) return source_switch.error().wrap(fmt::format("vm {}", request.vm));
  auto target_switch = directory_.switch_of_host(request.target_host);
  if (!target_switch) return target_switch.error().wrap(fmt::format("vm {}", request.vm));
  Phase wanted = request.phase == Phase::kFull ? Phase::kComplete : request.phase;

  auto decided = [&](Decision decision) {
    messages_.inc({{"outcome", to_string(decision.outcome)}});
    log_->log(decision.outcome == Decision::Outcome::kStarted ? spdlog::level::info
                                                              : spdlog::level::debug,
              "migration={} vm={} message phase={} origin={} outcome={} {}", decision.migration.id,
              request.vm, to_string(request.phase), request.origin, to_string(decision.outcome),
              decision.detail);
    return decision;
  };

  if (request.source_host == request.target_host) {
    Migration record;
    record.vm = request.vm;
    record.source_host = record.target_host = request.source_host;
    record.state = MigrationState::kCompleted;
    return decided({Decision::Outcome::kNoop, record, "source and target are the same host"});
  }

  // An active migration of this VM: the message either drives it on or clashes with it.
  if (Flight* flight = flight_of(request.vm)) {
    const Migration& record = flight->record;
    if (record.source_host == request.source_host && record.target_host == request.target_host) {
      auto decision = apply_to_active(*flight, wanted, request);
      if (!decision) return decision;
      return decided(std::move(*decision));
    }
    auto finished = store_.latest_migration(request.vm, request.source_host, request.target_host);
    if (!finished) return finished.error();
    if (*finished && is_terminal((*finished)->state)) {
      return decided({Decision::Outcome::kStale, **finished,
                      fmt::format("migration {} ({} -> {}) is active", record.id,
                                  record.source_host, record.target_host)});
    }
    return Error::make(ErrorCode::kConflict,
                       "vm {} has migration {} in flight ({} -> {}, {}): complete or roll it back "
                       "before migrating {} -> {}",
                       request.vm, record.id, record.source_host, record.target_host,
                       to_string(record.state), request.source_host, request.target_host);
  }

  // No active migration: a message for a finished one changes nothing.
  auto latest = store_.latest_migration(request.vm, request.source_host, request.target_host);
  if (!latest) return latest.error();
  if (vm->host != request.source_host) {
    if (*latest) {
      return decided(
          {Decision::Outcome::kStale, **latest,
           fmt::format("vm runs on {}; migration {} already finished", vm->host, (*latest)->id)});
    }
    return Error::make(ErrorCode::kConflict,
                       "vm {} runs on host {}, not on the source host {}: the message is stale "
                       "or the inventory is out of date",
                       request.vm, vm->host, request.source_host);
  }
  if (*latest && request.issued_us != 0 && request.issued_us <= (*latest)->last_issued_us) {
    return decided({Decision::Outcome::kStale, **latest,
                    fmt::format("message older than migration {}", (*latest)->id)});
  }
  if (*latest && wanted == Phase::kRollback && (*latest)->state == MigrationState::kRolledBack) {
    return decided({Decision::Outcome::kDuplicate, **latest, "already rolled back"});
  }
  auto decision = start_new(*vm, wanted, request, (*source_switch)->id, (*target_switch)->id);
  if (!decision) return decision;
  return decided(std::move(*decision));
}

Result<Decision> Engine::apply_to_active(Flight& flight, Phase wanted,
                                         const MigrationRequest& request) {
  Migration& record = flight.record;
  record.last_issued_us = std::max(record.last_issued_us, request.issued_us);
  if (wanted == Phase::kPrepare || wanted == record.wanted) {
    return Decision{Decision::Outcome::kDuplicate, record, "already asked"};
  }
  if (wanted == Phase::kComplete && record.wanted == Phase::kRollback) {
    return Error::make(ErrorCode::kConflict,
                       "migration {} of vm {} is rolling back; it cannot complete", record.id,
                       record.vm);
  }
  if (wanted == Phase::kRollback && record.state == MigrationState::kCompleting) {
    return Error::make(ErrorCode::kConflict,
                       "migration {} of vm {} already switched over to {}; it cannot roll back",
                       record.id, record.vm, record.target_host);
  }
  record.wanted = wanted;
  if (wanted == Phase::kComplete) record.complete_requested_us = clock_.wall_us();
  journal(flight);
  if (flight.waiting && !flight.running && wanted == Phase::kRollback) {
    // A rollback makes a pending retry of the install pointless: go now.
    flight.retry.cancel();
    flight.waiting = false;
  }
  return Decision{Decision::Outcome::kAdvanced, record, fmt::format("now {}", to_string(wanted))};
}

Result<Decision> Engine::start_new(const Vm& vm, Phase wanted, const MigrationRequest& request,
                                   const std::string& source_switch,
                                   const std::string& target_switch) {
  Migration record;
  record.vm = vm.id;
  record.source_host = request.source_host;
  record.target_host = request.target_host;
  record.source_switch = source_switch;
  record.target_switch = target_switch;
  record.wanted = wanted;
  record.state =
      wanted == Phase::kRollback ? MigrationState::kRollingBack : MigrationState::kPreparing;
  record.origin = request.origin;
  record.created_us = clock_.wall_us();
  record.last_issued_us = request.issued_us;
  if (wanted == Phase::kComplete) record.complete_requested_us = record.created_us;
  if (next_id_ == 0) {
    auto next = store_.next_migration_id();
    if (!next) return next.error().wrap("cannot read the migration journal");
    next_id_ = *next;
  }
  record.id = next_id_++;
  // Journal first: the first step runs once the group commit has made the record durable.
  auto flight = std::make_unique<Flight>(io_, record, options_);
  flight->fresh = true;
  Flight& started = *flight;
  flights_[vm.id] = std::move(flight);
  in_flight_.set({}, static_cast<double>(flights_.size()));
  journal(started);
  return Decision{Decision::Outcome::kStarted, record,
                  fmt::format("{} -> {} ({} -> {})", record.source_host, record.target_host,
                              source_switch, target_switch)};
}

Result<Decision> Engine::place(const std::string& vm_id, const std::string& host) {
  const Vm* vm = directory_.find_vm(vm_id);
  if (!vm) return Error::make(ErrorCode::kNotFound, "unknown vm '{}'", vm_id);
  if (!directory_.find_host(host))
    return Error::make(ErrorCode::kNotFound, "unknown host '{}'", host);
  MigrationRequest request{vm_id, vm->host, host, Phase::kFull, "placement", 0};
  if (const Migration* record = active(vm_id)) {
    if (record->source_host == host) {
      return Decision{Decision::Outcome::kDuplicate, *record, "vm still on the source"};
    }
    request.source_host = record->source_host;
  }
  return submit(request);
}

void Engine::advance(const std::string& vm) {
  Flight* flight = flight_of(vm);
  if (!flight || flight->running || flight->waiting) return;
  // No step runs before the record that announces it is in the journal.
  if (flight->unjournaled) return journal(*flight);
  Migration& record = flight->record;
  switch (record.state) {
    case MigrationState::kPreparing:
      if (record.wanted == Phase::kRollback) {
        record.state = MigrationState::kRollingBack;
        return journal(*flight);
      }
      return run_step(*flight, Step::kInstallTarget);
    case MigrationState::kPrepared:
      if (record.wanted == Phase::kComplete) return switch_over(*flight);
      if (record.wanted == Phase::kRollback) {
        record.state = MigrationState::kRollingBack;
        return journal(*flight);
      }
      return notify_if_settled(*flight);
    case MigrationState::kCompleting:
      return run_step(*flight, Step::kRemoveSource);
    case MigrationState::kRollingBack:
      return run_step(*flight, Step::kRemoveTarget);
    case MigrationState::kCompleted:
    case MigrationState::kRolledBack:
    case MigrationState::kFailed:
      return finish(vm);
  }
}

// The VM now runs on the target: record that, durably and together with the journal step,
// before the source is touched.
void Engine::switch_over(Flight& flight) {
  Migration& record = flight.record;
  const Vm* vm = directory_.find_vm(record.vm);
  if (!vm) {
    record.state = MigrationState::kFailed;
    record.last_error = "vm removed from the inventory during its migration";
    return journal(flight);
  }
  flight.moved = *vm;
  flight.moved->host = record.target_host;
  record.state = MigrationState::kCompleting;
  journal(flight);
}

void Engine::run_step(Flight& flight, Step step) {
  flight.running = true;
  std::string vm = flight.record.vm;
  locks_.lock(vm, [this, vm, step] {
    Flight* locked = flight_of(vm);
    if (!locked) return locks_.unlock(vm);
    const Migration& record = locked->record;
    const std::string& switch_id =
        step == Step::kRemoveSource ? record.source_switch : record.target_switch;
    SwitchClient* client = switches_.find(switch_id);
    locked->step_started = std::chrono::steady_clock::now();
    auto done = [this, vm, step](Status status) { on_step_done(vm, step, std::move(status)); };
    if (step != Step::kInstallTarget && record.source_switch == record.target_switch) {
      // Two hosts on one switch (a top-of-rack switch): the rows serve the VM on either host,
      // so removing them from the "source" or the "target" would cut off the running VM.
      return asio::post(io_, [done] { done(ok()); });
    }
    if (!client) {
      return asio::post(io_, [done, switch_id] {
        done(Error::make(ErrorCode::kUnavailable, "switch {} is not in the inventory", switch_id));
      });
    }
    log_->debug("migration={} vm={} step={} switch={} start", record.id, vm,
                step_name(static_cast<int>(step)), switch_id);
    if (step == Step::kInstallTarget) {
      const Vm* config = directory_.find_vm(vm);
      if (!config) {
        return asio::post(io_, [done] {
          done(Error{ErrorCode::kNotFound, "vm removed from the inventory"});
        });
      }
      return client->install(*config, done);
    }
    client->remove(vm, done);
  });
}

void Engine::on_step_done(const std::string& vm, Step step, Status status) {
  locks_.unlock(vm);
  Flight* flight = flight_of(vm);
  if (!flight) return;
  flight->running = false;
  Migration& record = flight->record;
  double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - flight->step_started)
          .count();
  step_seconds_.observe({{"step", step_name(static_cast<int>(step))}}, took);
  if (!status) return step_failed(*flight, step, status.error());

  int64_t now = clock_.wall_us();
  record.attempts = 0;
  record.last_error.clear();
  flight->backoff.reset();
  switch (step) {
    case Step::kInstallTarget:
      record.state = MigrationState::kPrepared;
      record.target_ready_us = now;
      target_ready_seconds_.observe({}, seconds_between(record.created_us, now));
      break;
    case Step::kRemoveSource:
      record.state = MigrationState::kCompleted;
      record.source_cleaned_us = record.finished_us = now;
      source_cleaned_seconds_.observe({}, seconds_between(record.complete_requested_us, now));
      break;
    case Step::kRemoveTarget:
      record.state = MigrationState::kRolledBack;
      record.finished_us = now;
      break;
  }
  log_->debug("migration={} vm={} step={} result=ok seconds={:.6f}", record.id, vm,
              step_name(static_cast<int>(step)), took);
  if (step == Step::kInstallTarget && record.wanted == Phase::kComplete) {
    // The switch-over's own commit records "prepared" too: one journal write instead of two.
    // A crash before it leaves "preparing", whose idempotent install simply runs again.
    return switch_over(*flight);
  }
  journal(*flight);
}

void Engine::step_failed(Flight& flight, Step step, const Error& error) {
  Migration& record = flight.record;
  record.attempts++;
  record.last_error = error.message;
  // A configuration the target refuses (a port name taken by someone else) will not succeed by
  // retrying: fail the migration and leave the source as it is. Everything else is retried.
  if (step == Step::kInstallTarget && error.code == ErrorCode::kConflict &&
      record.wanted != Phase::kRollback) {
    record.state = MigrationState::kFailed;
    record.finished_us = clock_.wall_us();
    log_->error("migration={} vm={} step={} result=failed error=\"{}\"", record.id, record.vm,
                step_name(static_cast<int>(step)), error.message);
    return journal(flight);
  }
  if (step == Step::kInstallTarget && record.wanted == Phase::kRollback) {
    // Rolled back while the install was failing: the transaction left nothing behind, but
    // removing from the target is what makes that certain.
    record.state = MigrationState::kRollingBack;
    return journal(flight);
  }
  retries_.inc({{"step", step_name(static_cast<int>(step))}});
  log_->warn("migration={} vm={} step={} attempt={} result=retrying error=\"{}\"", record.id,
             record.vm, step_name(static_cast<int>(step)), record.attempts, error.message);
  flight.waiting_step = step;
  // The record shows why the migration waits; a failed journal write only loses that detail.
  (void)store_.write_journal({JournalWrite{&record, nullptr}});
  retry_later(flight);
}

void Engine::retry_later(Flight& flight) {
  flight.waiting = true;
  flight.retry.expires_after(flight.backoff.next());
  flight.retry.async_wait([this, vm = flight.record.vm](boost::system::error_code ec) {
    Flight* waiting = flight_of(vm);
    if (!waiting) return;
    if (ec == asio::error::operation_aborted && waiting->waiting) return;  // re-armed
    waiting->waiting = false;
    advance(vm);
  });
}

void Engine::on_switch_ready(const std::string& switch_id) {
  for (auto& [vm, flight] : flights_) {
    if (!flight->waiting) continue;
    const Migration& record = flight->record;
    const std::string& wanted_switch =
        flight->waiting_step == Step::kRemoveSource ? record.source_switch : record.target_switch;
    if (wanted_switch != switch_id) continue;
    flight->waiting = false;
    flight->retry.cancel();
    asio::post(io_, [this, vm = vm] { advance(vm); });
  }
}

// Queues the flight's record for the journal's next group commit. Every record changed during
// one turn of the event loop is written by one store transaction (flush_journal), and the step
// each one announces runs only after that transaction committed.
void Engine::journal(Flight& flight) {
  flight.unjournaled = true;
  if (!flight.queued) {
    flight.queued = true;
    journal_queue_.push_back(flight.record.vm);
  }
  if (!journal_flush_posted_) {
    journal_flush_posted_ = true;
    asio::post(io_, [this] { flush_journal(); });
  }
}

void Engine::flush_journal() {
  journal_flush_posted_ = false;
  std::vector<std::string> vms = std::exchange(journal_queue_, {});
  std::vector<JournalWrite> writes;
  writes.reserve(vms.size());
  for (const std::string& vm : vms) {
    Flight* flight = flight_of(vm);
    if (!flight) continue;
    flight->queued = false;
    if (flight->unjournaled)
      writes.push_back({&flight->record, flight->moved ? &*flight->moved : nullptr});
  }
  if (writes.empty()) return;
  Status status = store_.write_journal(writes);
  if (!status) {
    log_->error("journal=failed records={} error=\"{}\"", writes.size(), status.error().message);
  }
  for (const JournalWrite& write : writes) {
    std::string vm = write.migration->vm;
    Flight& flight = *flight_of(vm);
    for (auto& waiter : std::exchange(flight.journal_waiters, {}))
      asio::post(io_, [waiter = std::move(waiter), status] { waiter(status); });
    if (!status && flight.fresh) {
      // Never journaled, so never started: the message that asked for it was refused.
      flights_.erase(vm);
      in_flight_.set({}, static_cast<double>(flights_.size()));
    } else if (!status) {
      // Without the journal entry the next step must not run: the flight tries again later
      // (advance() queues its record again).
      retry_later(flight);
    } else {
      journaled(flight);
      advance(vm);
    }
  }
}

void Engine::when_journaled(const std::string& vm, std::function<void(Status)> done) {
  Flight* flight = flight_of(vm);
  if (!flight || !flight->unjournaled) return asio::post(io_, [done] { done(ok()); });
  flight->journal_waiters.push_back(std::move(done));
}

void Engine::journaled(Flight& flight) {
  flight.unjournaled = false;
  flight.fresh = false;
  if (flight.moved) {
    directory_.set_vm_host(flight.record.vm, flight.moved->host);
    flight.moved.reset();
  }
}

bool Engine::settled(const Flight& flight) const {
  if (flight.running || flight.waiting || flight.unjournaled) return false;
  const Migration& record = flight.record;
  return is_terminal(record.state) ||
         (record.state == MigrationState::kPrepared && record.wanted == Phase::kPrepare);
}

void Engine::notify_if_settled(Flight& flight) {
  if (!settled(flight)) return;
  auto waiters = std::move(flight.waiters);
  flight.waiters.clear();
  for (auto& waiter : waiters) {
    waiter->deadline->cancel();
    asio::post(io_, [waiter, record = flight.record] {
      if (waiter->done) std::exchange(waiter->done, nullptr)(record);
    });
  }
}

void Engine::finish(const std::string& vm) {
  Flight* flight = flight_of(vm);
  if (!flight) return;
  const Migration& record = flight->record;
  outcomes_.inc({{"outcome", to_string(record.state)}});
  log_->info("migration={} vm={} finished state={} source={} target={}{}", record.id, vm,
             to_string(record.state), record.source_host, record.target_host,
             record.last_error.empty() ? "" : fmt::format(" error=\"{}\"", record.last_error));
  notify_if_settled(*flight);
  flights_.erase(vm);
  in_flight_.set({}, static_cast<double>(flights_.size()));
  if (finished_listener_) finished_listener_(vm);
}

void Engine::when_settled(int64_t id, std::chrono::milliseconds timeout,
                          std::function<void(Result<Migration>)> done) {
  for (auto& [vm, flight] : flights_) {
    if (flight->record.id != id || settled(*flight)) continue;
    auto waiter = std::make_shared<Waiter>();
    waiter->done = std::move(done);
    waiter->deadline = std::make_unique<asio::steady_timer>(io_, timeout);
    waiter->deadline->async_wait([this, waiter, vm = vm](boost::system::error_code ec) {
      if (ec || !waiter->done) return;
      const Migration* record = active(vm);
      auto result = record ? Result<Migration>(*record)
                           : Result<Migration>(Error{ErrorCode::kNotFound, "migration gone"});
      std::exchange(waiter->done, nullptr)(std::move(result));
    });
    flight->waiters.push_back(std::move(waiter));
    return;
  }
  auto found = find(id);
  asio::post(io_, [done = std::move(done), found = std::move(found), id]() {
    if (!found) return done(found.error());
    if (!*found) return done(Error::make(ErrorCode::kNotFound, "no migration {}", id));
    done(**found);
  });
}

}  // namespace steward::controller
