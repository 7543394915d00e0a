#include "controller/model/json.h"
#include "controller/store/store.h"
#include "core/sqlite.h"
#include "core/sqlite_checkpointer.h"

#include <boost/json.hpp>

namespace steward::controller {
namespace {

// Schema version 1. Inventory objects are stored as their API JSON (validated on the way in);
// the columns beside the JSON exist for foreign keys and lookups.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS switches (
  id   TEXT PRIMARY KEY,
  body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
  id        TEXT PRIMARY KEY,
  switch_id TEXT NOT NULL REFERENCES switches(id)
);
CREATE TABLE IF NOT EXISTS vms (
  id   TEXT PRIMARY KEY,
  host TEXT NOT NULL REFERENCES hosts(id),
  body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS migrations (
  id                    INTEGER PRIMARY KEY AUTOINCREMENT,
  vm                    TEXT NOT NULL,
  source_host           TEXT NOT NULL,
  target_host           TEXT NOT NULL,
  source_switch         TEXT NOT NULL,
  target_switch         TEXT NOT NULL,
  wanted                TEXT NOT NULL,
  state                 TEXT NOT NULL,
  origin                TEXT NOT NULL,
  created_us            INTEGER NOT NULL,
  last_issued_us        INTEGER NOT NULL,
  target_ready_us       INTEGER NOT NULL,
  complete_requested_us INTEGER NOT NULL,
  source_cleaned_us     INTEGER NOT NULL,
  finished_us           INTEGER NOT NULL,
  attempts              INTEGER NOT NULL,
  last_error            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS migrations_by_vm ON migrations(vm, source_host, target_host, id);
CREATE INDEX IF NOT EXISTS migrations_by_state ON migrations(state);
PRAGMA user_version = 1;
)sql";

constexpr const char* kMigrationColumns =
    "id, vm, source_host, target_host, source_switch, target_switch, wanted, state, origin, "
    "created_us, last_issued_us, target_ready_us, complete_requested_us, source_cleaned_us, "
    "finished_us, attempts, last_error";

bool is_foreign_key_error(const Error& error) {
  return error.message.find("FOREIGN KEY") != std::string::npos;
}

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(std::unique_ptr<sqlite::Database> db) : db_(std::move(db)) {}

  // Checkpoints move off the event loop (see sqlite::Checkpointer); a file store only.
  Status checkpoint_in_background(const std::string& path) {
    auto checkpointer = sqlite::Checkpointer::start(path, std::chrono::milliseconds(200));
    if (!checkpointer) return checkpointer.error();
    checkpointer_ = std::move(*checkpointer);
    return sqlite::Checkpointer::relax_auto_checkpoints(*db_);
  }

  Status migrate() { return db_->exec(kSchema); }

  Result<Inventory> load_inventory() override {
    Inventory inventory;
    auto status = each_body("SELECT body FROM switches ORDER BY id", [&](auto& json) {
      auto value = switch_from_json(json);
      if (value) inventory.switches.push_back(std::move(*value));
      return value ? ok() : Status(value.error());
    });
    if (!status) return status.error();
    auto hosts = db_->prepare("SELECT id, switch_id FROM hosts ORDER BY id");
    if (!hosts) return hosts.error();
    while (true) {
      auto row = hosts->step();
      if (!row) return row.error();
      if (!*row) break;
      inventory.hosts.push_back(Host{hosts->text(0), hosts->text(1)});
    }
    status = each_body("SELECT body FROM vms ORDER BY id", [&](auto& json) {
      auto value = vm_from_json(json);
      if (value) inventory.vms.push_back(std::move(*value));
      return value ? ok() : Status(value.error());
    });
    if (!status) return status.error();
    return inventory;
  }

  Result<std::vector<Migration>> load_active_migrations() override {
    return query_migrations(
        fmt::format("SELECT {} FROM migrations WHERE state IN "
                    "('preparing','prepared','completing','rolling_back') ORDER BY id",
                    kMigrationColumns));
  }

  Status put_switch(const Switch& value) override {
    return write("INSERT OR REPLACE INTO switches(id, body) VALUES(?1, ?2)", value.id,
                 serialize(to_json(value)));
  }

  Status put_host(const Host& value) override {
    auto status = write(
        "INSERT INTO hosts(id, switch_id) VALUES(?1, ?2) "
        "ON CONFLICT(id) DO UPDATE SET switch_id = excluded.switch_id",
        value.id, value.switch_id);
    if (!status && is_foreign_key_error(status.error())) {
      return Error::make(ErrorCode::kNotFound, "host {}: unknown switch '{}'", value.id,
                         value.switch_id);
    }
    return status;
  }

  Status put_vm(const Vm& value) override {
    auto status = write(
        "INSERT INTO vms(id, host, body) VALUES(?1, ?2, ?3) "
        "ON CONFLICT(id) DO UPDATE SET host = excluded.host, body = excluded.body",
        value.id, value.host, serialize(to_json(value)));
    if (!status && is_foreign_key_error(status.error())) {
      return Error::make(ErrorCode::kNotFound, "vm {}: unknown host '{}'", value.id, value.host);
    }
    return status;
  }

  Status delete_switch(const std::string& id) override { return erase("switches", "switch", id); }
  Status delete_host(const std::string& id) override { return erase("hosts", "host", id); }
  Status delete_vm(const std::string& id) override { return erase("vms", "vm", id); }

  Result<int64_t> next_migration_id() override {
    // The sequence outlives deleted rows (AUTOINCREMENT): an id is never handed out twice.
    auto statement = db_->prepare(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'migrations'), 0), "
        "coalesce((SELECT max(id) FROM migrations), 0)) + 1");
    if (!statement) return statement.error();
    auto row = statement->step();
    if (!row) return row.error();
    return statement->integer(0);
  }

  Status write_journal(const std::vector<JournalWrite>& writes) override {
    sqlite::Transaction transaction(*db_);
    if (!transaction.begun()) return transaction.begun();
    for (const JournalWrite& write : writes) {
      if (auto status = put_migration(*write.migration); !status) return status;
      if (write.moved_vm) {
        if (auto status = put_vm(*write.moved_vm); !status) return status;
      }
    }
    return transaction.commit();
  }

  Result<std::optional<Migration>> find_migration(int64_t id) override {
    auto statement = db_->prepare_cached(
        fmt::format("SELECT {} FROM migrations WHERE id = ?1", kMigrationColumns));
    if (!statement) return statement.error();
    statement->bind(1, id);
    return first(*statement);
  }

  Result<std::optional<Migration>> latest_migration(const std::string& vm,
                                                    const std::string& source_host,
                                                    const std::string& target_host) override {
    auto statement = db_->prepare_cached(fmt::format(
        "SELECT {} FROM migrations WHERE vm = ?1 AND source_host = ?2 AND target_host = ?3 "
        "ORDER BY id DESC LIMIT 1",
        kMigrationColumns));
    if (!statement) return statement.error();
    statement->bind(1, vm).bind(2, source_host).bind(3, target_host);
    return first(*statement);
  }

  Result<std::optional<Migration>> latest_migration(const std::string& vm) override {
    auto statement = db_->prepare_cached(fmt::format(
        "SELECT {} FROM migrations WHERE vm = ?1 ORDER BY id DESC LIMIT 1", kMigrationColumns));
    if (!statement) return statement.error();
    statement->bind(1, vm);
    return first(*statement);
  }

  Result<std::vector<Migration>> list_migrations(const std::string& vm, int limit) override {
    auto statement = db_->prepare_cached(
        fmt::format("SELECT {} FROM migrations WHERE ?1 = '' OR vm = ?1 ORDER BY id DESC LIMIT ?2",
                    kMigrationColumns));
    if (!statement) return statement.error();
    statement->bind(1, vm).bind(2, static_cast<int64_t>(limit));
    return collect(*statement);
  }

 private:
  static std::string serialize(const boost::json::value& value) {
    return boost::json::serialize(value);
  }

  template <typename... Args>
  Status write(std::string_view sql, const Args&... args) {
    auto statement = db_->prepare_cached(sql);
    if (!statement) return statement.error();
    int index = 1;
    (statement->bind(index++, std::string_view(args)), ...);
    return statement->run();
  }

  Status erase(std::string_view table, std::string_view what, const std::string& id) {
    auto status = write(fmt::format("DELETE FROM {} WHERE id = ?1", table), id);
    if (!status) {
      if (is_foreign_key_error(status.error())) {
        return Error::make(ErrorCode::kConflict,
                           "{} {} is still referred to: remove what uses it "
                           "first (hosts of a switch, VMs of a host)",
                           what, id);
      }
      return status;
    }
    if (db_->changes() == 0) return Error::make(ErrorCode::kNotFound, "no {} '{}'", what, id);
    return ok();
  }

  template <typename Visit>
  Status each_body(std::string_view sql, Visit visit) {
    auto statement = db_->prepare(sql);
    if (!statement) return statement.error();
    while (true) {
      auto row = statement->step();
      if (!row) return row.error();
      if (!*row) return ok();
      auto json = parse_json(statement->text(0));
      if (!json) return json.error().wrap("stored record unreadable");
      if (auto status = visit(*json); !status) return status.error().wrap("stored record invalid");
    }
  }

  Status put_migration(const Migration& migration) {
    if (migration.id <= 0) {
      return Error::make(ErrorCode::kInvalidArgument, "migration of vm {} has no id", migration.vm);
    }
    auto statement = db_->prepare_cached(
        "INSERT INTO migrations(id, vm, source_host, target_host, source_switch, target_switch, "
        "wanted, state, origin, created_us, last_issued_us, target_ready_us, "
        "complete_requested_us, source_cleaned_us, finished_us, attempts, last_error) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) "
        "ON CONFLICT(id) DO UPDATE SET wanted=?7, state=?8, last_issued_us=?11, "
        "target_ready_us=?12, complete_requested_us=?13, source_cleaned_us=?14, "
        "finished_us=?15, attempts=?16, last_error=?17");
    if (!statement) return statement.error();
    bind_migration(*statement, migration);
    return statement->run();
  }

  static void bind_migration(sqlite::Statement& statement, const Migration& m) {
    statement.bind(1, m.id).bind(2, m.vm).bind(3, m.source_host).bind(4, m.target_host);
    statement.bind(5, m.source_switch).bind(6, m.target_switch);
    statement.bind(7, std::string_view(to_string(m.wanted)));
    statement.bind(8, std::string_view(to_string(m.state))).bind(9, m.origin);
    statement.bind(10, m.created_us).bind(11, m.last_issued_us).bind(12, m.target_ready_us);
    statement.bind(13, m.complete_requested_us).bind(14, m.source_cleaned_us);
    statement.bind(15, m.finished_us).bind(16, static_cast<int64_t>(m.attempts));
    statement.bind(17, m.last_error);
  }

  static Migration read_migration(const sqlite::Statement& row) {
    Migration m;
    m.id = row.integer(0);
    m.vm = row.text(1);
    m.source_host = row.text(2);
    m.target_host = row.text(3);
    m.source_switch = row.text(4);
    m.target_switch = row.text(5);
    m.wanted = parse_phase(row.text(6)).value_or(Phase::kPrepare);
    m.state = parse_migration_state(row.text(7)).value_or(MigrationState::kFailed);
    m.origin = row.text(8);
    m.created_us = row.integer(9);
    m.last_issued_us = row.integer(10);
    m.target_ready_us = row.integer(11);
    m.complete_requested_us = row.integer(12);
    m.source_cleaned_us = row.integer(13);
    m.finished_us = row.integer(14);
    m.attempts = static_cast<int>(row.integer(15));
    m.last_error = row.text(16);
    return m;
  }

  Result<std::vector<Migration>> collect(sqlite::Statement& statement) {
    std::vector<Migration> out;
    while (true) {
      auto row = statement.step();
      if (!row) return row.error();
      if (!*row) return out;
      out.push_back(read_migration(statement));
    }
  }

  Result<std::vector<Migration>> query_migrations(const std::string& sql) {
    auto statement = db_->prepare(sql);
    if (!statement) return statement.error();
    return collect(*statement);
  }

  Result<std::optional<Migration>> first(sqlite::Statement& statement) {
    auto rows = collect(statement);
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<Migration>();
    return std::optional<Migration>(std::move(rows->front()));
  }

  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<sqlite::Checkpointer> checkpointer_;  // destroyed before db_
};

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path) {
  auto db = sqlite::Database::open(path);
  if (!db) return db.error();
  auto store = std::make_unique<SqliteStore>(std::move(*db));
  if (auto status = store->migrate(); !status) {
    return status.error().wrap(fmt::format("cannot create schema in {}", path));
  }
  if (path != ":memory:") {
    if (auto status = store->checkpoint_in_background(path); !status) {
      return status.error().wrap(fmt::format("cannot start checkpoints of {}", path));
    }
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace steward::controller
