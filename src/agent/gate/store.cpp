#include "agent/gate/store.h"

#include <boost/json.hpp>

namespace steward::agent {
namespace json = boost::json;
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS queue (
  arrival INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  target TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  state TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_by_target ON queue(target, sequence, arrival);
CREATE TABLE IF NOT EXISTS seen (
  id TEXT PRIMARY KEY,
  target TEXT NOT NULL,
  status TEXT NOT NULL,
  at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (
  target TEXT NOT NULL,
  type TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  instruction TEXT NOT NULL,
  revoke INTEGER NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (target, type)
);
CREATE TABLE IF NOT EXISTS outbox (
  key INTEGER PRIMARY KEY,
  body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS systems (
  id TEXT PRIMARY KEY,
  enrolment TEXT NOT NULL
);
)sql";

// Stored instructions live in `queue`, in arrival order (the rowid), as `pending` or
// `executing`. An instruction whose fate is recorded is marked `done` in place rather than
// deleted, and done rows are purged in bulk (purge_done()): a replay's commit then rewrites one
// page of neighbouring rows — the finished instruction and the next one marked executing — and
// appends its report, instead of deleting from scattered pages of the table and its indexes.
// Schema 1 kept instructions in a WITHOUT ROWID table keyed by id; open() moves them over.
const char* state_text(StoredState state) {
  return state == StoredState::kExecuting ? "executing" : "pending";
}

constexpr const char* kMoveSchema1 = R"sql(
INSERT OR IGNORE INTO queue (arrival, id, target, sequence, state, body)
  SELECT arrival, id, target, sequence, state, body FROM instructions ORDER BY arrival;
DROP TABLE instructions;
)sql";

}  // namespace

Result<std::unique_ptr<InstructionStore>> InstructionStore::open(const std::string& path) {
  auto db = sqlite::Database::open(path);
  if (!db) return db.error();
  std::unique_ptr<InstructionStore> store(new InstructionStore(std::move(*db)));
  if (auto status = store->migrate(); !status) return status.error();
  return store;
}

Status InstructionStore::migrate() {
  if (auto status = db_->exec(kSchema); !status) {
    return status.error().wrap("cannot create the agent store schema");
  }
  bool schema1 = false;
  {
    auto old =
        db_->prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'instructions'");
    if (!old) return old.error();
    auto found = old->step();
    if (!found) return found.error();
    schema1 = *found;
  }  // the statement must be finished before its table can be dropped
  if (schema1) {
    sqlite::Transaction transaction(*db_);
    if (!transaction.begun()) return transaction.begun();
    if (auto status = db_->exec(kMoveSchema1); !status) {
      return status.error().wrap("cannot move stored instructions to the new schema");
    }
    if (auto status = transaction.commit(); !status) return status;
  }
  if (auto status = purge_done(); !status) return status;
  // Arrival numbers continue from the stored ones (one writer: the gate's thread).
  auto statement = db_->prepare("SELECT coalesce(max(arrival), 0) + 1 FROM queue");
  if (!statement) return statement.error();
  auto row = statement->step();
  if (!row) return row.error();
  next_arrival_ = statement->integer(0);
  // Report keys only grow while the process lives (the transport sends by key order); at
  // start they continue from the stored ones, since every unacknowledged report is sent again.
  auto keys = db_->prepare("SELECT coalesce(max(key), 0) + 1 FROM outbox");
  if (!keys) return keys.error();
  auto key_row = keys->step();
  if (!key_row) return key_row.error();
  next_outbox_key_ = keys->integer(0);
  return ok();
}

Result<std::optional<ReportStatus>> InstructionStore::seen(const std::string& id) {
  auto statement = db_->prepare_cached("SELECT status FROM seen WHERE id = ?1");
  if (!statement) return statement.error();
  statement->bind(1, id);
  auto row = statement->step();
  if (!row) return row.error();
  if (!*row) return std::optional<ReportStatus>();
  return report_status_from_string(statement->text(0));
}

Result<std::optional<SettingRevision>> InstructionStore::setting(const std::string& target,
                                                                 const std::string& type) {
  auto statement = db_->prepare_cached(
      "SELECT sequence, instruction, revoke, state FROM settings WHERE target = ?1 AND type = ?2");
  if (!statement) return statement.error();
  statement->bind(1, target).bind(2, type);
  auto row = statement->step();
  if (!row) return row.error();
  if (!*row) return std::optional<SettingRevision>();
  return std::optional<SettingRevision>(SettingRevision{
      statement->integer(0), statement->text(1), statement->integer(2) != 0, statement->text(3)});
}

Result<std::vector<StoredInstruction>> InstructionStore::query(const std::string& sql,
                                                               const std::string& arg) {
  auto statement = db_->prepare_cached(sql);
  if (!statement) return statement.error();
  if (!arg.empty()) statement->bind(1, arg);
  std::vector<StoredInstruction> out;
  while (true) {
    auto row = statement->step();
    if (!row) return row.error();
    if (!*row) break;
    auto instruction = parse_instruction(statement->text(0));
    if (!instruction) return instruction.error().wrap("stored instruction is unreadable");
    StoredState state =
        statement->text(1) == "executing" ? StoredState::kExecuting : StoredState::kPending;
    out.push_back(StoredInstruction{std::move(*instruction), state, statement->integer(2)});
  }
  return out;
}

Result<std::optional<StoredInstruction>> InstructionStore::find(const std::string& id) {
  auto rows = query("SELECT body, state, arrival FROM queue WHERE id = ?1 AND state != 'done'", id);
  if (!rows) return rows.error();
  if (rows->empty()) return std::optional<StoredInstruction>();
  return std::optional<StoredInstruction>(std::move(rows->front()));
}

Result<std::vector<StoredInstruction>> InstructionStore::pending_for(const std::string& target) {
  return query(
      "SELECT body, state, arrival FROM queue WHERE target = ?1 AND state = 'pending'"
      " ORDER BY sequence, arrival",
      target);
}

Result<std::vector<StoredInstruction>> InstructionStore::stored() {
  return query(
      "SELECT body, state, arrival FROM queue WHERE state != 'done'"
      " ORDER BY target, sequence, arrival",
      "");
}

Result<bool> InstructionStore::has_stored(const std::string& target) {
  auto statement =
      db_->prepare_cached("SELECT 1 FROM queue WHERE target = ?1 AND state != 'done' LIMIT 1");
  if (!statement) return statement.error();
  statement->bind(1, target);
  return statement->step();
}

Result<std::map<std::string, std::string>> InstructionStore::systems() {
  auto statement = db_->prepare_cached("SELECT id, enrolment FROM systems");
  if (!statement) return statement.error();
  std::map<std::string, std::string> out;
  while (true) {
    auto row = statement->step();
    if (!row) return row.error();
    if (!*row) break;
    out[statement->text(0)] = statement->text(1);
  }
  return out;
}

Status InstructionStore::insert(const Instruction& instruction, StoredState state) {
  auto statement = db_->prepare_cached(
      "INSERT INTO queue (id, target, sequence, state, body, arrival)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!statement) return statement.error();
  statement->bind(1, instruction.id)
      .bind(2, instruction.target)
      .bind(3, instruction.sequence)
      .bind(4, state_text(state))
      .bind(5, json::serialize(to_json(instruction)))
      .bind(6, next_arrival_);
  if (auto status = statement->run(); !status) return status;
  // Only counted once the row is in (a rolled-back insert leaves a harmless gap).
  ++next_arrival_;
  return ok();
}

Status InstructionStore::set_state(const std::string& id, StoredState state) {
  auto statement = db_->prepare_cached("UPDATE queue SET state = ?2 WHERE id = ?1");
  if (!statement) return statement.error();
  statement->bind(1, id).bind(2, state_text(state));
  return statement->run();
}

Status InstructionStore::remove(const std::string& id) {
  auto statement = db_->prepare_cached("UPDATE queue SET state = 'done' WHERE id = ?1");
  if (!statement) return statement.error();
  statement->bind(1, id);
  return statement->run();
}

Status InstructionStore::erase(const std::string& id) {
  auto statement = db_->prepare_cached("DELETE FROM queue WHERE id = ?1");
  if (!statement) return statement.error();
  statement->bind(1, id);
  return statement->run();
}

Status InstructionStore::purge_done() {
  return db_->exec("DELETE FROM queue WHERE state = 'done'");
}

Status InstructionStore::mark_seen(const std::string& id, const std::string& target,
                                   ReportStatus status, int64_t at_ms) {
  auto statement = db_->prepare_cached(
      "INSERT INTO seen (id, target, status, at_ms) VALUES (?1, ?2, ?3, ?4)"
      " ON CONFLICT (id) DO UPDATE SET status = excluded.status, at_ms = excluded.at_ms");
  if (!statement) return statement.error();
  statement->bind(1, id).bind(2, target).bind(3, to_string(status)).bind(4, at_ms);
  return statement->run();
}

Status InstructionStore::put_setting(const std::string& target, const std::string& type,
                                     const SettingRevision& revision) {
  auto statement = db_->prepare_cached(
      "INSERT OR REPLACE INTO settings (target, type, sequence, instruction, revoke, state)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!statement) return statement.error();
  statement->bind(1, target)
      .bind(2, type)
      .bind(3, revision.sequence)
      .bind(4, revision.instruction)
      .bind(5, int64_t{revision.revoke})
      .bind(6, revision.state);
  return statement->run();
}

Status InstructionStore::set_setting_state(const std::string& target, const std::string& type,
                                           const std::string& instruction,
                                           const std::string& state) {
  // Only the revision that is still the newest is touched.
  auto statement = db_->prepare_cached(
      "UPDATE settings SET state = ?4 WHERE target = ?1 AND type = ?2 AND instruction = ?3");
  if (!statement) return statement.error();
  statement->bind(1, target).bind(2, type).bind(3, instruction).bind(4, state);
  return statement->run();
}

Status InstructionStore::add_report(const Report& report) {
  auto statement = db_->prepare_cached("INSERT INTO outbox (key, body) VALUES (?1, ?2)");
  if (!statement) return statement.error();
  statement->bind(1, next_outbox_key_).bind(2, json::serialize(to_json(report)));
  if (auto status = statement->run(); !status) return status;
  ++next_outbox_key_;
  return ok();
}

Status InstructionStore::put_system(const std::string& id, const std::string& enrolment) {
  auto statement =
      db_->prepare_cached("INSERT OR REPLACE INTO systems (id, enrolment) VALUES (?1, ?2)");
  if (!statement) return statement.error();
  statement->bind(1, id).bind(2, enrolment);
  return statement->run();
}

Result<std::vector<StoredInstruction>> InstructionStore::clear_system(const std::string& id) {
  auto removed =
      query("SELECT body, state, arrival FROM queue WHERE target = ?1 AND state != 'done'", id);
  if (!removed) return removed.error();
  for (const char* sql :
       {"DELETE FROM queue WHERE target = ?1", "DELETE FROM settings WHERE target = ?1"}) {
    auto statement = db_->prepare_cached(sql);
    if (!statement) return statement.error();
    statement->bind(1, id);
    if (auto status = statement->run(); !status) return status.error();
  }
  return removed;
}

Status InstructionStore::remove_system(const std::string& id) {
  auto statement = db_->prepare_cached("DELETE FROM systems WHERE id = ?1");
  if (!statement) return statement.error();
  statement->bind(1, id);
  return statement->run();
}

Result<std::vector<std::pair<int64_t, Report>>> InstructionStore::outbox(int limit) {
  return outbox_after(0, limit);
}

Result<std::vector<std::pair<int64_t, Report>>> InstructionStore::outbox_after(int64_t after,
                                                                               int limit) {
  auto statement =
      db_->prepare_cached("SELECT key, body FROM outbox WHERE key > ?1 ORDER BY key LIMIT ?2");
  if (!statement) return statement.error();
  statement->bind(1, after).bind(2, int64_t{limit});
  std::vector<std::pair<int64_t, Report>> out;
  while (true) {
    auto row = statement->step();
    if (!row) return row.error();
    if (!*row) break;
    auto report = parse_report(statement->text(1));
    if (!report) return report.error().wrap("outbox report is unreadable");
    out.emplace_back(statement->integer(0), std::move(*report));
  }
  return out;
}

Status InstructionStore::ack_report(int64_t key) {
  auto statement = db_->prepare_cached("DELETE FROM outbox WHERE key = ?1");
  if (!statement) return statement.error();
  statement->bind(1, key);
  return statement->run();
}

}  // namespace steward::agent
