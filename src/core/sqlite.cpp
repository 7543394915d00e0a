#include "core/sqlite.h"

#include <sqlite3.h>

#include <cassert>
#include <utility>

namespace steward::sqlite {
namespace {

Error db_error(sqlite3* db, std::string_view what) {
  return Error::make(ErrorCode::kIo, "sqlite {}: {}", what, sqlite3_errmsg(db));
}

}  // namespace

Result<std::unique_ptr<Database>> Database::open(const std::string& path) {
  sqlite3* handle = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &handle, flags, nullptr) != SQLITE_OK) {
    Error error = Error::make(ErrorCode::kIo, "cannot open database {}: {}", path,
                              handle ? sqlite3_errmsg(handle) : "out of memory");
    sqlite3_close(handle);
    return error;
  }
  std::unique_ptr<Database> db(new Database(handle));
  sqlite3_busy_timeout(handle, 5000);
  if (auto status = db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                             " PRAGMA foreign_keys=ON;");
      !status) {
    return status.error().wrap(fmt::format("cannot configure database {}", path));
  }
  return db;
}

Database::~Database() {
  for (auto& [sql, statement] : cached_)
    sqlite3_finalize(statement);
  sqlite3_close_v2(handle_);
}

Status Database::exec(std::string_view sql) {
  std::string owned(sql);
  char* message = nullptr;
  if (sqlite3_exec(handle_, owned.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    Error error = Error::make(ErrorCode::kIo, "sqlite exec failed: {}", message ? message : "?");
    sqlite3_free(message);
    return error;
  }
  return ok();
}

Result<Statement> Database::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(handle_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK) {
    return db_error(handle_, fmt::format("prepare of '{}'", sql));
  }
  return Statement(stmt, handle_);
}

Result<Statement> Database::prepare_cached(std::string_view sql) {
  auto found = cached_.find(std::string(sql));
  if (found != cached_.end()) return Statement(found->second, handle_, true);
  auto prepared = prepare(sql);
  if (!prepared) return prepared.error();
  sqlite3_stmt* statement = std::exchange(prepared->handle_, nullptr);
  cached_.emplace(std::string(sql), statement);
  return Statement(statement, handle_, true);
}

int64_t Database::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(handle_);
}
int Database::changes() const {
  return sqlite3_changes(handle_);
}

Statement::Statement(Statement&& other) noexcept
    : handle_(other.handle_), db_(other.db_), borrowed_(other.borrowed_) {
  other.handle_ = nullptr;
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    release();
    handle_ = other.handle_;
    db_ = other.db_;
    borrowed_ = other.borrowed_;
    other.handle_ = nullptr;
  }
  return *this;
}

Statement::~Statement() {
  release();
}

void Statement::release() {
  if (handle_ == nullptr) return;
  if (borrowed_) {
    reset();  // back to the cache, ready for the next borrower
  } else {
    sqlite3_finalize(handle_);
  }
  handle_ = nullptr;
}

Statement& Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(handle_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(handle_, index, value);
  return *this;
}
Statement& Statement::bind(int index, double value) {
  sqlite3_bind_double(handle_, index, value);
  return *this;
}
Statement& Statement::bind_null(int index) {
  sqlite3_bind_null(handle_, index);
  return *this;
}
Statement& Statement::bind(int index, const std::optional<std::string>& text) {
  return text ? bind(index, std::string_view(*text)) : bind_null(index);
}
Statement& Statement::bind(int index, const std::optional<int64_t>& value) {
  return value ? bind(index, *value) : bind_null(index);
}

Result<bool> Statement::step() {
  int rc = sqlite3_step(handle_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_error(db_, "step");
}

Status Statement::run() {
  auto stepped = step();
  reset();
  if (!stepped) return stepped.error();
  return ok();
}

void Statement::reset() {
  sqlite3_reset(handle_);
  sqlite3_clear_bindings(handle_);
}

std::string Statement::text(int column) const {
  const unsigned char* value = sqlite3_column_text(handle_, column);
  int size = sqlite3_column_bytes(handle_, column);
  return value ? std::string(reinterpret_cast<const char*>(value), static_cast<size_t>(size))
               : std::string();
}
int64_t Statement::integer(int column) const {
  return sqlite3_column_int64(handle_, column);
}
double Statement::real(int column) const {
  return sqlite3_column_double(handle_, column);
}
bool Statement::is_null(int column) const {
  return sqlite3_column_type(handle_, column) == SQLITE_NULL;
}

Transaction::Transaction(Database& db) : db_(db), begun_(db.exec("BEGIN IMMEDIATE")) {
  open_ = static_cast<bool>(begun_);
}

Transaction::~Transaction() {
  if (open_) (void)db_.exec("ROLLBACK");
}

Status Transaction::commit() {
  assert(open_ && "commit() without an open transaction");
  auto status = db_.exec("COMMIT");
  open_ = !status;  // a failed COMMIT leaves the transaction open; the destructor rolls back
  return status;
}

}  // namespace steward::sqlite
