// An engine wired to fake switches and a store file in a temporary directory: the unit-test
// harness for the migration engine and the reconciler. Three hosts h1..h3 on switches s1..s3.
#pragma once

#include "controller/engine/engine.h"
#include "controller/engine/vm_locks.h"
#include "controller/inventory/directory.h"
#include "controller/southbound/switch_pool.h"
#include "controller/store/store.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "support/fake_switch.h"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace steward::controller::testing {

// A VM with `interfaces` interfaces on access VLANs 100, 101, ...
Vm make_vm(const std::string& id, const std::string& host, int interfaces = 2);

// The store of the harness: the real SQLite store, with journal commits that can be made to
// fail (a full disk) and counted.
struct JournalFaults {
  std::unique_ptr<Store> inner;
  bool fail_writes = false;
  int commits = 0;
  Status write_journal(const std::vector<JournalWrite>& writes);
};

class JournalFaultStore final : public Store {
 public:
  explicit JournalFaultStore(JournalFaults& faults) : f_(faults) {}
  Result<Inventory> load_inventory() override { return f_.inner->load_inventory(); }
  Result<std::vector<Migration>> load_active_migrations() override {
    return f_.inner->load_active_migrations();
  }
  Status put_switch(const Switch& value) override { return f_.inner->put_switch(value); }
  Status put_host(const Host& value) override { return f_.inner->put_host(value); }
  Status put_vm(const Vm& value) override { return f_.inner->put_vm(value); }
  Status delete_switch(const std::string& id) override { return f_.inner->delete_switch(id); }
  Status delete_host(const std::string& id) override { return f_.inner->delete_host(id); }
  Status delete_vm(const std::string& id) override { return f_.inner->delete_vm(id); }
  Result<int64_t> next_migration_id() override { return f_.inner->next_migration_id(); }
  Status write_journal(const std::vector<JournalWrite>& writes) override {
    return f_.write_journal(writes);
  }
  Result<std::optional<Migration>> find_migration(int64_t id) override {
    return f_.inner->find_migration(id);
  }
  Result<std::optional<Migration>> latest_migration(const std::string& vm,
                                                    const std::string& source_host,
                                                    const std::string& target_host) override {
    return f_.inner->latest_migration(vm, source_host, target_host);
  }
  Result<std::optional<Migration>> latest_migration(const std::string& vm) override {
    return f_.inner->latest_migration(vm);
  }
  Result<std::vector<Migration>> list_migrations(const std::string& vm, int limit) override {
    return f_.inner->list_migrations(vm, limit);
  }

 private:
  JournalFaults& f_;
};

class EngineHarness {
 public:
  EngineHarness();
  ~EngineHarness();

  // Rebuilds directory, pool and engine from the same store file, as after a crash; fake
  // switches keep their rows (they are the real world).
  void restart();

  // Runs the io_context until `done()` holds or `limit` passes; returns done().
  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds limit = std::chrono::seconds(5));
  // Runs until nothing is left to do right now (no ready handlers).
  void drain();

  // Submits and runs until the migration settles.
  Result<Decision> migrate(const std::string& vm, const std::string& from, const std::string& to,
                           Phase phase);
  Migration record(int64_t id);

  FakeSwitch& sw(const std::string& id) { return *fakes_.at(id); }
  Engine& engine() { return *engine_; }
  Directory& directory() { return *directory_; }
  Store& store() { return *store_; }
  JournalFaults& journal_faults() { return faults_; }
  VmLocks& locks() { return locks_; }
  SwitchPool& pool() { return *pool_; }
  boost::asio::io_context& io() { return *io_; }
  metrics::Registry& metrics() { return metrics_; }

 private:
  void build();

  std::filesystem::path dir_;
  std::unique_ptr<boost::asio::io_context> io_ = std::make_unique<boost::asio::io_context>();
  SystemClock clock_;
  metrics::Registry metrics_;
  VmLocks locks_;
  std::map<std::string, std::unique_ptr<FakeSwitch>> fakes_;
  JournalFaults faults_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<SwitchPool> pool_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace steward::controller::testing
