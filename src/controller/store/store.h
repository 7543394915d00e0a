// Durable state of the controller: the inventory (switches, hosts, VMs with their interface
// configuration) and the migration journal. The engine writes a journal record before each
// step it runs, so a controller killed at any point resumes from the store on restart.
//
// One interface, so that a replicated engine can stand in for the embedded SQLite one when
// several controllers share state. Every method is synchronous and returns once the write is
// committed. Not thread-safe: the daemon's event loop owns the store.
#pragma once

#include "controller/model/model.h"
#include "core/result.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace steward::controller {

// One write of a group commit: a migration record, and the VM it moves (switch-over) if any.
struct JournalWrite {
  const Migration* migration = nullptr;
  const Vm* moved_vm = nullptr;
};

struct Inventory {
  std::vector<Switch> switches;
  std::vector<Host> hosts;
  std::vector<Vm> vms;
};

class Store {
 public:
  virtual ~Store() = default;

  virtual Result<Inventory> load_inventory() = 0;
  // Every migration still active (preparing, prepared, completing, rolling back), oldest first.
  virtual Result<std::vector<Migration>> load_active_migrations() = 0;

  // Inserts or replaces. Errors: kNotFound when a referenced host or switch does not exist.
  virtual Status put_switch(const Switch& value) = 0;
  virtual Status put_host(const Host& value) = 0;
  virtual Status put_vm(const Vm& value) = 0;
  // Errors: kNotFound when absent, kConflict while something still refers to it.
  virtual Status delete_switch(const std::string& id) = 0;
  virtual Status delete_host(const std::string& id) = 0;
  virtual Status delete_vm(const std::string& id) = 0;

  // Journal. Migration ids are assigned by the caller, from next_migration_id() on.
  virtual Result<int64_t> next_migration_id() = 0;
  // Inserts or updates every record (and moves every VM given) in one transaction: all or
  // none. The engine's group commit: the journal writes of one turn of its event loop share
  // one commit.
  virtual Status write_journal(const std::vector<JournalWrite>& writes) = 0;
  virtual Result<std::optional<Migration>> find_migration(int64_t id) = 0;
  // The newest migration of `vm` between these hosts, if any.
  virtual Result<std::optional<Migration>> latest_migration(const std::string& vm,
                                                            const std::string& source_host,
                                                            const std::string& target_host) = 0;
  // The newest migration of `vm`, if any.
  virtual Result<std::optional<Migration>> latest_migration(const std::string& vm) = 0;
  // Newest first; an empty vm lists all VMs.
  virtual Result<std::vector<Migration>> list_migrations(const std::string& vm, int limit) = 0;
};

// The embedded store: one SQLite file in WAL mode. ":memory:" gives a private, volatile one.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path);

}  // namespace steward::controller
