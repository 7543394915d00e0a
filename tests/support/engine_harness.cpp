#include "support/engine_harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace steward::controller::testing {
namespace {

// Hands the pool a client that forwards to a fake switch the harness keeps across restarts.
class ForwardingSwitch final : public SwitchClient {
 public:
  explicit ForwardingSwitch(FakeSwitch& target) : target_(target) {}
  const Switch& spec() const override { return target_.spec(); }
  SwitchState state() const override { return target_.state(); }
  std::string last_error() const override { return target_.last_error(); }
  void start() override { target_.start(); }
  void stop() override { target_.set_listener(nullptr); }
  void install(const Vm& vm, StatusCallback done) override { target_.install(vm, std::move(done)); }
  void remove(const std::string& vm, StatusCallback done) override {
    target_.remove(vm, std::move(done));
  }
  const OwnedRows* owned() const override { return target_.owned(); }
  void read_owned(OwnedRowsCallback done) override { target_.read_owned(std::move(done)); }
  void set_listener(std::function<void()> listener) override {
    target_.set_listener(std::move(listener));
  }

 private:
  FakeSwitch& target_;
};

}  // namespace

Status JournalFaults::write_journal(const std::vector<JournalWrite>& writes) {
  if (fail_writes) return Error{ErrorCode::kIo, "disk I/O error (injected)"};
  ++commits;
  return inner->write_journal(writes);
}

Vm make_vm(const std::string& id, const std::string& host, int interfaces) {
  Vm vm{id, "name-" + id, host, {}};
  for (int i = 0; i < interfaces; ++i) {
    Interface interface;
    interface.id = fmt::format("eth{}", i);
    interface.device = fmt::format("tap{}-{}", id.substr(0, 8), i);
    interface.mac = fmt::format("fa:16:3e:00:{:02x}:{:02x}", id.size() % 256, i);
    interface.ips = {fmt::format("198.18.{}.{}", i, 10 + id.size())};
    interface.vlan = 100 + i;
    vm.interfaces.push_back(interface);
  }
  return vm;
}

EngineHarness::EngineHarness() {
  dir_ = std::filesystem::temp_directory_path() /
         fmt::format("steward-engine-{}-{}", ::getpid(), reinterpret_cast<uintptr_t>(this));
  std::filesystem::create_directories(dir_);
  for (int i = 1; i <= 3; ++i) {
    std::string id = fmt::format("s{}", i);
    fakes_[id] = std::make_unique<FakeSwitch>(*io_, Switch{id, "unix:/nonexistent", "br-int", {}});
  }
  build();
  for (int i = 1; i <= 3; ++i) {
    auto id = fmt::format("s{}", i);
    EXPECT_TRUE(directory_->put_switch(fakes_[id]->spec()));
    EXPECT_TRUE(directory_->put_host(Host{fmt::format("h{}", i), id}));
    pool_->ensure(fakes_[id]->spec());
  }
}

EngineHarness::~EngineHarness() {
  engine_.reset();
  pool_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void EngineHarness::build() {
  engine_.reset();
  pool_.reset();
  directory_.reset();
  store_.reset();
  auto store = open_sqlite_store((dir_ / "steward.db").string());
  ASSERT_TRUE(store) << store.error().message;
  faults_.inner = std::move(*store);
  store_ = std::make_unique<JournalFaultStore>(faults_);
  directory_ = std::make_unique<Directory>(*store_);
  ASSERT_TRUE(directory_->load());
  pool_ = std::make_unique<SwitchPool>([this](const Switch& spec) {
    return std::make_unique<ForwardingSwitch>(*fakes_.at(spec.id));
  });
  EngineOptions options;
  options.retry_initial = std::chrono::milliseconds(1);
  options.retry_max = std::chrono::milliseconds(20);
  engine_ = std::make_unique<Engine>(*io_, *store_, *directory_, *pool_, locks_, clock_, metrics_,
                                     options);
  pool_->set_listener([this](const std::string& id) {
    if (fakes_.at(id)->state() == SwitchState::kReady) engine_->on_switch_ready(id);
  });
}

void EngineHarness::restart() {
  // Everything the old controller had queued dies with it.
  engine_.reset();
  pool_.reset();
  io_ = std::make_unique<boost::asio::io_context>();
  for (auto& [id, fake] : fakes_)
    fake->crash_controller(*io_);
  locks_ = VmLocks();
  build();
  for (const auto& [id, spec] : directory_->switches())
    pool_->ensure(spec);
  ASSERT_TRUE(engine_->resume());
}

bool EngineHarness::run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io_->restart();
    io_->run_for(std::chrono::milliseconds(5));
  }
  return done();
}

void EngineHarness::drain() {
  io_->restart();
  io_->poll();
}

Result<Decision> EngineHarness::migrate(const std::string& vm, const std::string& from,
                                        const std::string& to, Phase phase) {
  auto decision = engine_->submit(MigrationRequest{vm, from, to, phase, "test", 0});
  if (!decision) return decision;
  int64_t id = decision->migration.id;
  if (id == 0) return decision;
  bool settled = false;
  engine_->when_settled(id, std::chrono::seconds(5), [&](Result<Migration>) { settled = true; });
  run_until([&] { return settled; });
  return decision;
}

Migration EngineHarness::record(int64_t id) {
  auto found = engine_->find(id);
  EXPECT_TRUE(found && *found) << "no migration " << id;
  return found && *found ? **found : Migration{};
}

}  // namespace steward::controller::testing
