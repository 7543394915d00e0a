#include "agent/gate/gate.h"

#include "core/log.h"

#include <fmt/ranges.h>

#include <exception>

namespace steward::agent {
namespace {

// An expiry at or before `now` has passed.
bool expired(const Instruction& instruction, int64_t now_ms) {
  return instruction.expires_at_ms && *instruction.expires_at_ms <= now_ms;
}

std::string setting_state(ReportStatus status) {
  return std::string(to_string(status));
}

Report make_report(const std::string& terminal, const std::string& id, const std::string& target,
                   ReportStatus status, std::string detail, int64_t sequence, int64_t at_ms) {
  Report out;
  out.terminal = terminal;
  out.instruction = id;
  out.target = target;
  out.status = status;
  out.detail = std::move(detail);
  out.sequence = sequence;
  out.at_ms = at_ms;
  return out;
}

}  // namespace

GateCounters::GateCounters() {
  for (auto status : {ReportStatus::kApplied, ReportStatus::kPending, ReportStatus::kFailed,
                      ReportStatus::kExpired, ReportStatus::kRejected, ReportStatus::kCancelled,
                      ReportStatus::kUnknown}) {
    reported[status] = 0;
  }
}

Gate::Gate(InstructionStore& store, const Clock& clock, Options options)
    : store_(store), clock_(clock), options_(std::move(options)), log_(log::get("agent")) {}

void Gate::add_system(const std::string& id, Executor& executor) {
  executors_[id] = &executor;
}

Status Gate::recover(const std::map<std::string, std::string>& enrolments) {
  // Systems removed or enrolled again lose what was stored for them.
  auto stored_systems = store_.systems();
  if (!stored_systems) return stored_systems.error();
  for (const auto& [id, enrolment] : *stored_systems) {
    auto configured = enrolments.find(id);
    if (configured != enrolments.end() && configured->second == enrolment) continue;
    std::string why = configured == enrolments.end() ? "the OS was removed from this terminal"
                                                     : "the OS was enrolled again";
    if (auto status = reset_system(id, why); !status) return status;
  }
  {
    sqlite::Transaction transaction(store_.db());
    if (!transaction.begun()) return transaction.begun();
    for (const auto& [id, enrolment] : *stored_systems) {
      if (!enrolments.count(id)) {
        if (auto status = store_.remove_system(id); !status) return status;
      }
    }
    for (const auto& [id, enrolment] : enrolments) {
      if (auto status = store_.put_system(id, enrolment); !status) return status;
    }
    if (auto status = commit(transaction); !status) return status;
  }

  // Instructions a crash left between `executing` and their report.
  auto stored = store_.stored();
  if (!stored) return stored.error();
  for (const StoredInstruction& entry : *stored) {
    if (entry.state != StoredState::kExecuting) continue;
    if (auto status = resolve_interrupted(entry); !status) return status;
  }
  return ok();
}

Status Gate::resolve_interrupted(const StoredInstruction& stored) {
  const Instruction& instruction = stored.instruction;
  auto executor = executors_.find(instruction.target);
  if (instruction.is_setting() && executor != executors_.end()) {
    std::optional<bool> in_force = executor->second->in_force(instruction);
    if (in_force && *in_force) {
      Outcome verified{true, std::nullopt, "", "verified in force after the agent restarted"};
      return finish(instruction, ReportStatus::kApplied, verified.detail, &verified);
    }
    // Desired state: applying it again is safe. It runs when its OS is in the foreground.
    log_->info("instruction={} setting interrupted by a restart; will be applied again",
               instruction.id);
    sqlite::Transaction transaction(store_.db());
    if (!transaction.begun()) return transaction.begun();
    if (auto status = store_.set_state(instruction.id, StoredState::kPending); !status)
      return status;
    return commit(transaction);
  }
  log_->warn("instruction={} action interrupted by a restart; not run again, reported unknown",
             instruction.id);
  return finish(instruction, ReportStatus::kUnknown,
                "the agent stopped while this ran; it may or may not have completed, so it is "
                "not run again");
}

Status Gate::receive(std::string_view bytes) {
  counters_.received++;
  auto opened = open_control_message(bytes, options_.server_key);
  if (!opened) {
    Claimed claimed = claimed_identity(bytes);
    log_->warn("instruction={} rejected: {}", claimed.id.empty() ? "-" : claimed.id,
               opened.error().message);
    return reject(Claim{claimed.id, claimed.target, 0}, opened.error().message, false);
  }
  return receive(*opened);
}

Status Gate::receive(const Instruction& instruction) {
  Claim claim{instruction.id, instruction.target, instruction.sequence};
  if (instruction.terminal != options_.terminal) {
    return reject(claim, fmt::format("meant for terminal {}", instruction.terminal), false);
  }
  auto seen = store_.seen(instruction.id);
  if (!seen) return seen.error();
  if (*seen) {
    counters_.duplicates++;
    log_->debug("instruction={} duplicate ignored", instruction.id);
    return ok();
  }
  if (!executors_.count(instruction.target)) {
    return reject(claim, fmt::format("unknown system id {}", instruction.target), false);
  }
  if (expired(instruction, now_ms())) {
    return expire_on_arrival(instruction);
  }
  if (instruction.kind == Kind::kCancel) return accept_cancel(instruction);
  return accept(instruction);
}

Status Gate::expire_on_arrival(const Instruction& instruction) {
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();
  if (auto status =
          store_.mark_seen(instruction.id, instruction.target, ReportStatus::kExpired, now_ms());
      !status)
    return status;
  if (auto status =
          report(instruction, ReportStatus::kExpired, "expired before it reached the terminal");
      !status)
    return status;
  return commit(transaction);
}

Status Gate::reject(const Claim& claim, const std::string& detail, bool remember) {
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();
  if (remember) {
    if (auto status = store_.mark_seen(claim.id, claim.target, ReportStatus::kRejected, now_ms());
        !status)
      return status;
  }
  Report rejected = make_report(options_.terminal, claim.id, claim.target, ReportStatus::kRejected,
                                detail, claim.sequence, now_ms());
  if (auto status = store_.add_report(rejected); !status) return status;
  counters_.reported[ReportStatus::kRejected]++;
  reports_added_ = true;
  return commit(transaction);
}

Status Gate::accept(const Instruction& instruction) {
  if (instruction.is_setting()) {
    auto stale = refuse_if_stale(instruction);
    if (!stale) return stale.error();
    if (*stale) return ok();
  }
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();

  // What this instruction replaces goes first, in the same commit.
  std::vector<std::string> notes;
  for (const std::string& id : instruction.supersedes) {
    if (auto status = withdraw(id, instruction, "superseded by " + instruction.id, notes); !status)
      return status;
  }
  if (instruction.is_setting()) {
    if (auto status = replace_older_revision(instruction); !status) return status;
  }

  // Run now when its OS is in the foreground and nothing older waits for it; else store it.
  bool foreground = is_foreground(instruction.target);
  bool run_now = false;
  if (foreground) {
    auto waiting = store_.has_stored(instruction.target);
    if (!waiting) return waiting.error();
    run_now = !*waiting;
  }
  StoredState state = run_now ? StoredState::kExecuting : StoredState::kPending;
  if (auto status = store_.insert(instruction, state); !status) return status;
  ReportStatus seen_as = run_now ? ReportStatus::kApplied : ReportStatus::kPending;
  if (auto status = store_.mark_seen(instruction.id, instruction.target, seen_as, now_ms());
      !status)
    return status;
  if (!foreground) {
    std::string detail = fmt::format("stored until {} is in the foreground", instruction.target);
    if (auto status = report(instruction, ReportStatus::kPending, detail); !status) return status;
  }
  if (auto status = commit(transaction); !status) return status;
  log_->debug("instruction={} target={} stored state={}", instruction.id, instruction.target,
              run_now ? "executing" : "pending");

  if (run_now) return run(instruction, nullptr);
  if (foreground) return replay(instruction.target);
  return ok();
}

Result<bool> Gate::refuse_if_stale(const Instruction& setting) {
  auto newest = store_.setting(setting.target, setting.type);
  if (!newest) return newest.error();
  if (!*newest || (*newest)->sequence < setting.sequence) return false;
  std::string detail = fmt::format("stale: setting {} already has revision {} (sequence {})",
                                   setting.type, (*newest)->instruction, (*newest)->sequence);
  log_->info("instruction={} rejected: {}", setting.id, detail);
  if (auto status = reject(Claim{setting.id, setting.target, setting.sequence}, detail, true);
      !status)
    return status.error();
  return true;
}

Status Gate::replace_older_revision(const Instruction& setting) {
  auto newest = store_.setting(setting.target, setting.type);
  if (!newest) return newest.error();
  if (*newest && (*newest)->state == setting_state(ReportStatus::kPending)) {
    std::vector<std::string> notes;
    std::string detail =
        fmt::format("superseded by newer revision {} (sequence {})", setting.id, setting.sequence);
    if (auto status = withdraw((*newest)->instruction, setting, detail, notes); !status)
      return status;
  }
  SettingRevision revision{setting.sequence, setting.id, setting.revoke,
                           setting_state(ReportStatus::kPending)};
  return store_.put_setting(setting.target, setting.type, revision);
}

Status Gate::accept_cancel(const Instruction& cancel) {
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();
  std::vector<std::string> notes;
  for (const std::string& id : cancel.cancel) {
    if (auto status = withdraw(id, cancel, "cancelled by " + cancel.id, notes); !status)
      return status;
  }
  if (auto status = store_.mark_seen(cancel.id, cancel.target, ReportStatus::kApplied, now_ms());
      !status)
    return status;
  if (auto status =
          report(cancel, ReportStatus::kApplied, fmt::format("{}", fmt::join(notes, "; ")));
      !status)
    return status;
  return commit(transaction);
}

// Removes one stored instruction on behalf of `by` (a cancel, a supersede or a newer setting
// revision). One not yet received leaves a tombstone, so it is refused when it arrives.
Status Gate::withdraw(const std::string& id, const Instruction& by, const std::string& detail,
                      std::vector<std::string>& notes) {
  auto stored = store_.find(id);
  if (!stored) return stored.error();
  if (*stored) {
    const Instruction& victim = (*stored)->instruction;
    if (victim.target != by.target) {
      notes.push_back(fmt::format("{} targets {}: left alone", id, victim.target));
      return ok();
    }
    if (auto status = store_.remove(id); !status) return status;
    if (auto status = store_.mark_seen(id, victim.target, ReportStatus::kCancelled, now_ms());
        !status)
      return status;
    if (victim.is_setting()) {
      if (auto status = store_.set_setting_state(victim.target, victim.type, victim.id,
                                                 setting_state(ReportStatus::kCancelled));
          !status)
        return status;
    }
    notes.push_back(fmt::format("{} cancelled", id));
    return report(victim, ReportStatus::kCancelled, detail);
  }
  auto seen = store_.seen(id);
  if (!seen) return seen.error();
  if (*seen) {
    notes.push_back(fmt::format("{} already finished", id));
    return ok();
  }
  if (auto status = store_.mark_seen(id, by.target, ReportStatus::kCancelled, now_ms()); !status)
    return status;
  notes.push_back(fmt::format("{} cancelled before it arrived", id));
  Instruction tombstone;
  tombstone.id = id;
  tombstone.target = by.target;
  return report(tombstone, ReportStatus::kCancelled, detail + " before it arrived");
}

void Gate::announce_foreground(std::optional<std::string> system) {
  std::lock_guard lock(foreground_mutex_);
  foreground_ = std::move(system);
}

std::optional<std::string> Gate::foreground() const {
  std::lock_guard lock(foreground_mutex_);
  return foreground_;
}

bool Gate::is_foreground(const std::string& target) const {
  std::lock_guard lock(foreground_mutex_);
  return foreground_ && *foreground_ == target;
}

Status Gate::apply_foreground() {
  auto system = foreground();
  if (!system || !executors_.count(*system)) return ok();
  return replay(*system);
}

Status Gate::replay(const std::string& target) {
  auto pending = store_.pending_for(target);
  if (!pending) return pending.error();
  if (!pending->empty()) {
    log_->info("system={} in the foreground: running {} stored instructions", target,
               pending->size());
  }
  // Each instruction is committed `executing` before it runs. From the second on, that mark
  // rides in the commit that records the previous one's fate: one commit per instruction.
  bool marked = false;
  for (size_t i = 0; i < pending->size(); ++i) {
    const Instruction& instruction = (*pending)[i].instruction;
    // A switch away stops the replay before the next instruction; the rest waits.
    if (!is_foreground(target)) {
      log_->info("system={} left the foreground: replay stopped", target);
      return marked ? set_state(instruction, StoredState::kPending) : ok();
    }
    if (expired(instruction, now_ms())) {
      if (auto status = finish(instruction, ReportStatus::kExpired, "expired while stored");
          !status)
        return status;
      marked = false;
      continue;
    }
    if (!marked) {
      if (auto status = set_state(instruction, StoredState::kExecuting); !status) return status;
    }
    const Instruction* next = nullptr;
    if (i + 1 < pending->size() && is_foreground(target) &&
        !expired((*pending)[i + 1].instruction, now_ms())) {
      next = &(*pending)[i + 1].instruction;
    }
    if (auto status = run(instruction, next); !status) return status;
    marked = next != nullptr;
  }
  return purge_done();
}

// Done rows are deleted in bulk, after a replay and with the periodic expiry check: one
// commit for many instead of a delete in every instruction's commit.
Status Gate::purge_done() {
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();
  if (auto status = store_.purge_done(); !status) return status;
  return commit(transaction);
}

Status Gate::set_state(const Instruction& instruction, StoredState state) {
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();
  if (auto status = store_.set_state(instruction.id, state); !status) return status;
  return commit(transaction);
}

// The instruction is committed as `executing`: run it, then commit its fate with its report
// (and the `executing` mark of `next`, when given).
Status Gate::run(const Instruction& instruction, const Instruction* next) {
  Outcome outcome;
  try {
    outcome = executors_.at(instruction.target)->execute(instruction);
  } catch (const std::exception& error) {
    outcome = Outcome{false, std::nullopt, "", fmt::format("executor error: {}", error.what())};
  }
  counters_.executed++;
  ReportStatus status = outcome.success ? ReportStatus::kApplied : ReportStatus::kFailed;
  auto level = outcome.success ? spdlog::level::debug : spdlog::level::warn;
  log_->log(level, "instruction={} target={} type={} {}{}", instruction.id, instruction.target,
            instruction.type, to_string(status),
            outcome.detail.empty() ? "" : " (" + outcome.detail + ")");
  return finish(instruction, status, outcome.detail, &outcome, next);
}

// Records a final fate: the instruction leaves the store, its id stays seen, its report is
// queued, all in one commit.
Status Gate::finish(const Instruction& instruction, ReportStatus status, std::string detail,
                    const Outcome* outcome, const Instruction* mark_next) {
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();
  // Its id is in `seen` since it was accepted; the fate itself travels in the report. In a
  // replay the row is marked done next to the one marked executing (one page rewritten, the
  // rows purged in bulk afterwards); alone, it is deleted, so that done rows never pile up
  // under a stream of instructions for the foreground OS.
  if (auto removed = mark_next ? store_.remove(instruction.id) : store_.erase(instruction.id);
      !removed)
    return removed;
  if (instruction.is_setting()) {
    if (auto updated = store_.set_setting_state(instruction.target, instruction.type,
                                                instruction.id, setting_state(status));
        !updated)
      return updated;
  }
  if (auto reported = report(instruction, status, std::move(detail), outcome); !reported)
    return reported;
  if (mark_next) {
    if (auto next = store_.set_state(mark_next->id, StoredState::kExecuting); !next) return next;
  }
  return commit(transaction);
}

Status Gate::expire_due() {
  auto stored = store_.stored();
  if (!stored) return stored.error();
  int64_t now = now_ms();
  for (const StoredInstruction& entry : *stored) {
    if (entry.state != StoredState::kPending || !expired(entry.instruction, now)) continue;
    log_->info("instruction={} target={} expired while stored", entry.instruction.id,
               entry.instruction.target);
    if (auto status = finish(entry.instruction, ReportStatus::kExpired, "expired while stored");
        !status)
      return status;
  }
  return purge_done();
}

Status Gate::reset_system(const std::string& id, const std::string& why) {
  sqlite::Transaction transaction(store_.db());
  if (!transaction.begun()) return transaction.begun();
  auto removed = store_.clear_system(id);
  if (!removed) return removed.error();
  for (const StoredInstruction& entry : *removed) {
    if (auto status =
            store_.mark_seen(entry.instruction.id, id, ReportStatus::kCancelled, now_ms());
        !status)
      return status;
    if (auto status = report(entry.instruction, ReportStatus::kCancelled, why); !status)
      return status;
  }
  if (!removed->empty()) {
    log_->info("system={} reset: {} stored instructions cancelled ({})", id, removed->size(), why);
  }
  return commit(transaction);
}

Status Gate::report(const Instruction& instruction, ReportStatus status, std::string detail,
                    const Outcome* outcome) {
  Report out = make_report(options_.terminal, instruction.id, instruction.target, status,
                           std::move(detail), instruction.sequence, now_ms());
  if (outcome) {
    out.exit_code = outcome->exit_code;
    out.output = outcome->output;
  }
  if (auto added = store_.add_report(out); !added) return added;
  counters_.reported[status]++;
  reports_added_ = true;
  return ok();
}

Status Gate::commit(sqlite::Transaction& transaction) {
  if (auto status = transaction.commit(); !status) {
    reports_added_ = false;
    return status.error().wrap("cannot commit the agent store");
  }
  if (reports_added_ && reports_ready_) reports_ready_();
  reports_added_ = false;
  return ok();
}

}  // namespace steward::agent
