// A thin owner of a SQLite connection and its prepared statements. Not thread-safe: one
// connection belongs to one thread (the daemon's event loop).
#pragma once

#include "core/result.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace steward::sqlite {

class Statement;

// One open database file. Opened in WAL mode with foreign keys on; `synchronous=NORMAL`, which
// keeps every committed transaction across a process crash (SIGKILL) — only a power loss can
// drop the last commits, and none can corrupt the file.
class Database {
 public:
  // Opens (creating if missing) the database at `path`; ":memory:" for a private one.
  static Result<std::unique_ptr<Database>> open(const std::string& path);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements that return no rows.
  Status exec(std::string_view sql);
  // Prepares one statement. Errors name the statement.
  Result<Statement> prepare(std::string_view sql);
  // Like prepare(), but each distinct `sql` is compiled once and kept until the Database is
  // closed: the Statement returned borrows it, and when destroyed resets it and clears its
  // bindings instead of finalizing it. For the fixed statements a store runs on every write
  // (compiling them again each time costs more than running them). At most one borrower of
  // the same `sql` may be alive at a time.
  Result<Statement> prepare_cached(std::string_view sql);
  int64_t last_insert_rowid() const;
  int changes() const;

 private:
  explicit Database(sqlite3* handle) : handle_(handle) {}
  sqlite3* handle_;
  std::unordered_map<std::string, sqlite3_stmt*> cached_;
};

// A prepared statement. Bind parameters are 1-based, columns 0-based, as in SQLite.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  ~Statement();

  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, const std::string& text) {
    return bind(index, std::string_view(text));
  }
  Statement& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, double value);
  Statement& bind_null(int index);
  Statement& bind(int index, const std::optional<std::string>& text);
  Statement& bind(int index, const std::optional<int64_t>& value);

  // Advances to the next row: true if there is one, false when done.
  Result<bool> step();
  // Steps a statement that returns no rows, then resets it for reuse.
  Status run();
  void reset();

  std::string text(int column) const;
  int64_t integer(int column) const;
  double real(int column) const;
  bool is_null(int column) const;

 private:
  friend class Database;
  Statement(sqlite3_stmt* handle, sqlite3* db, bool borrowed = false)
      : handle_(handle), db_(db), borrowed_(borrowed) {}
  void release();
  sqlite3_stmt* handle_;
  sqlite3* db_;
  bool borrowed_;  // owned by the Database's cache: reset on release, never finalized
};

// Begins a transaction on construction (BEGIN IMMEDIATE) and rolls it back on destruction
// unless `commit()` succeeded.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // The status of BEGIN; check it before writing.
  const Status& begun() const { return begun_; }
  Status commit();

 private:
  Database& db_;
  Status begun_;
  bool open_ = false;
};

}  // namespace steward::sqlite
