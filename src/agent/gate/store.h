// The agent's durable state, in one SQLite file:
//   instructions  stored instructions not yet finished: `pending` (waiting for their OS) or
//                 `executing` (marked before the executor runs, so a crash can be recognised)
//   seen          every instruction id the agent accepted, with its status when accepted:
//                 duplicates are recognised by id forever, and a cancel that arrives before the
//                 instruction it cancels leaves a `cancelled` tombstone here (the final fate of
//                 a stored instruction is in its report, not here: one page less per commit)
//   settings      per OS and setting type, the newest revision known: older ones are refused
//   outbox        status reports committed with the change they report, deleted once the
//                 broker has confirmed them, so no fate is lost across a crash
//   systems       the operating systems registered, with their enrolment token
//
// Not thread-safe: the store belongs to the gate's thread. Writes happen inside a
// `sqlite::Transaction` the caller opens (`begin()`); reads may happen anywhere on that thread.
#pragma once

#include "agent/model/instruction.h"
#include "core/result.h"
#include "core/sqlite.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace steward::agent {

enum class StoredState { kPending, kExecuting };

struct StoredInstruction {
  Instruction instruction;
  StoredState state = StoredState::kPending;
  int64_t arrival = 0;  // order of arrival, breaks ties between equal sequence numbers
};

// The newest known revision of one setting on one OS.
struct SettingRevision {
  int64_t sequence = 0;
  std::string instruction;
  bool revoke = false;
  std::string state;  // "pending", "applied", "failed", "cancelled", "expired"
};

class InstructionStore {
 public:
  // Opens (creating and migrating) the store at `path`; ":memory:" for tests.
  static Result<std::unique_ptr<InstructionStore>> open(const std::string& path);

  sqlite::Database& db() { return *db_; }

  // Reads.
  Result<std::optional<ReportStatus>> seen(const std::string& id);
  Result<std::optional<SettingRevision>> setting(const std::string& target,
                                                 const std::string& type);
  Result<std::optional<StoredInstruction>> find(const std::string& id);
  // Pending instructions of one OS, in sequence order, ties by arrival.
  Result<std::vector<StoredInstruction>> pending_for(const std::string& target);
  // Every stored instruction (pending and executing), by OS then sequence.
  Result<std::vector<StoredInstruction>> stored();
  // Whether any instruction of `target` is stored (one index probe).
  Result<bool> has_stored(const std::string& target);
  Result<std::map<std::string, std::string>> systems();  // id -> enrolment

  // Writes; call inside a transaction.
  Status insert(const Instruction& instruction, StoredState state);
  Status set_state(const std::string& id, StoredState state);
  // Marks the instruction done: it no longer counts as stored. purge_done() deletes such rows.
  Status remove(const std::string& id);
  // Deletes the instruction's row at once (an instruction that ran on arrival: no neighbour
  // shares its commit, and done rows left behind would slow every later has_stored()).
  Status erase(const std::string& id);
  Status purge_done();
  Status mark_seen(const std::string& id, const std::string& target, ReportStatus status,
                   int64_t at_ms);
  Status put_setting(const std::string& target, const std::string& type,
                     const SettingRevision& revision);
  Status set_setting_state(const std::string& target, const std::string& type,
                           const std::string& instruction, const std::string& state);
  Status add_report(const Report& report);
  Status put_system(const std::string& id, const std::string& enrolment);
  // Deletes an OS's stored instructions and setting revisions; returns what was removed.
  Result<std::vector<StoredInstruction>> clear_system(const std::string& id);
  Status remove_system(const std::string& id);

  // The outbox, oldest first; `ack_report` deletes one the broker confirmed.
  Result<std::vector<std::pair<int64_t, Report>>> outbox(int limit);
  // The oldest `limit` reports with a key above `after`.
  Result<std::vector<std::pair<int64_t, Report>>> outbox_after(int64_t after, int limit);
  Status ack_report(int64_t key);

 private:
  explicit InstructionStore(std::unique_ptr<sqlite::Database> db) : db_(std::move(db)) {}
  Status migrate();
  Result<std::vector<StoredInstruction>> query(const std::string& sql, const std::string& arg);

  std::unique_ptr<sqlite::Database> db_;
  int64_t next_arrival_ = 1;
  int64_t next_outbox_key_ = 1;
};

}  // namespace steward::agent
