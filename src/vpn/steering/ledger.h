// The ledger: a small state file listing every kernel object one Steward VPN instance
// created, written (and fsynced) *before* each object is created. Cleanup (disconnect, normal
// stop, and the next start after a SIGKILL) removes exactly what is listed, nothing else.
#pragma once

#include "core/result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace steward::vpn {

// One created object. `kind` is one of the kinds below; the fields are what removal needs.
struct LedgerEntry {
  enum class Kind {
    kTun,         // name: link name
    kRoute,       // table, text: prefix, type ("unicast" via name / "prohibit")
    kRule,        // table, priority, mark, family (4 or 6)
    kNftTable,    // name: "inet <table>"
    kCgroup,      // name: mount path, text: relative path
    kCgroupMount  // name: mount path
  };
  Kind kind = Kind::kTun;
  std::string name;
  std::string text;
  int table = 0;
  int priority = 0;
  uint32_t mark = 0;
  int family = 4;
  friend bool operator==(const LedgerEntry&, const LedgerEntry&) = default;
};

// True when `instance` can name an instance's files in the state directory: not empty, no '/',
// not starting with '.'.
bool is_instance_name(const std::string& instance);

// The ledger file of one instance. Appends are durable (write + fsync) before returning.
// Lines are tab-separated; a torn last line (crash mid-write) is ignored on load.
// An open Ledger holds an exclusive lock (flock on <instance>.lock, close-on-exec), so a
// second start or a cleanup cannot tear down the objects of an instance that is running; the
// kernel drops the lock when the holder dies, also by SIGKILL. Move-only.
class Ledger {
 public:
  // Opens (creating if missing) <directory>/<instance>.state. The directory is created with
  // mode 0700. kConflict when another live process holds the instance.
  static Result<Ledger> open(const std::string& directory, const std::string& instance);

  Ledger(Ledger&& other) noexcept;
  Ledger& operator=(Ledger&& other) noexcept;
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;
  ~Ledger();

  Status record(const LedgerEntry& entry);
  // Drops the newest entry: its creation failed because the object already existed, so it
  // is someone else's and cleanup must leave it alone.
  Status forget_last();
  // Drops every entry equal to `entry` (the object is gone, or was never made).
  Status forget(const LedgerEntry& entry);
  // Replaces the file with `entries` (written, fsynced, renamed over it): a crash leaves the
  // old list or the new one, never a mix or none.
  Status rewrite(const std::vector<LedgerEntry>& entries);
  Result<std::vector<LedgerEntry>> entries() const;
  // Removes the file: everything it listed is gone.
  Status clear();
  const std::string& path() const { return path_; }

 private:
  Ledger(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}
  std::string path_;
  int lock_fd_ = -1;
};

// Removes every object the ledger lists, newest first, and then the ledger itself. An object
// already gone is fine; an object that cannot be removed is reported and the ledger keeps it
// (so the next cleanup retries). Entries equal to one in `keep` are neither removed nor
// forgotten (Steering::start keeps its handover table so). Returns the first failure after
// trying everything.
Status cleanup_from_ledger(Ledger& ledger, const std::vector<LedgerEntry>& keep = {});

}  // namespace steward::vpn
