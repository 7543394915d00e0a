// The migration engine against fake switches: ordering of steps, journal and resume, retries,
// duplicates and stale messages.
#include "support/engine_harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace steward::controller::testing {
namespace {

class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(h.directory().put_vm(make_vm("vm-a", "h1", 3)));
    ASSERT_TRUE(h.migrate("vm-a", "h1", "h1", Phase::kFull));  // no-op, nothing installed
    // The VM starts where it runs: configured on its current switch only.
    h.sw("s1").install(*h.directory().find_vm("vm-a"), [](Status) {});
    ASSERT_TRUE(h.run_until([&] { return h.sw("s1").has("vm-a"); }));
  }

  EngineHarness h;
};

TEST_F(MigrationTest, PrepareInstallsOnTargetAndKeepsSource) {
  auto decision = h.migrate("vm-a", "h1", "h2", Phase::kPrepare);
  ASSERT_TRUE(decision) << decision.error().message;
  EXPECT_EQ(decision->outcome, Decision::Outcome::kStarted);
  Migration record = h.record(decision->migration.id);
  EXPECT_EQ(record.state, MigrationState::kPrepared);
  EXPECT_GT(record.target_ready_us, 0);
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
  EXPECT_EQ(h.sw("s2").rows()["vm-a"].size(), 3u);
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h1");
}

TEST_F(MigrationTest, CompleteRemovesSourceAndMovesTheVm) {
  auto prepared = h.migrate("vm-a", "h1", "h2", Phase::kPrepare);
  ASSERT_TRUE(prepared);
  auto completed = h.migrate("vm-a", "h1", "h2", Phase::kComplete);
  ASSERT_TRUE(completed);
  EXPECT_EQ(completed->outcome, Decision::Outcome::kAdvanced);
  Migration record = h.record(prepared->migration.id);
  EXPECT_EQ(record.state, MigrationState::kCompleted);
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h2");
}

TEST_F(MigrationTest, SourceIsNeverTouchedBeforeTheTargetConfirmed) {
  h.sw("s2").stall(true);
  auto decision = h.engine().submit({"vm-a", "h1", "h2", Phase::kFull, "test", 0});
  ASSERT_TRUE(decision);
  h.run_until([&] { return h.sw("s2").held() > 0; });
  h.drain();
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.sw("s1").removes(), 0);
  EXPECT_EQ(h.record(decision->migration.id).state, MigrationState::kPreparing);
  h.sw("s2").stall(false);
  ASSERT_TRUE(h.run_until([&] { return !h.engine().active("vm-a"); }));
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
}

TEST_F(MigrationTest, RollbackAfterPrepareRemovesTargetAndKeepsSource) {
  auto prepared = h.migrate("vm-a", "h1", "h2", Phase::kPrepare);
  ASSERT_TRUE(prepared);
  ASSERT_TRUE(h.migrate("vm-a", "h1", "h2", Phase::kRollback));
  EXPECT_EQ(h.record(prepared->migration.id).state, MigrationState::kRolledBack);
  EXPECT_FALSE(h.sw("s2").has("vm-a"));
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h1");

  // Migrating again afterwards works.
  auto again = h.migrate("vm-a", "h1", "h2", Phase::kFull);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->outcome, Decision::Outcome::kStarted);
  EXPECT_EQ(h.record(again->migration.id).state, MigrationState::kCompleted);
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
}

TEST_F(MigrationTest, DuplicateMessagesAndARepeatedMigrationAreHarmless) {
  auto first = h.migrate("vm-a", "h1", "h2", Phase::kPrepare);
  auto again = h.migrate("vm-a", "h1", "h2", Phase::kPrepare);
  ASSERT_TRUE(first && again);
  EXPECT_EQ(again->outcome, Decision::Outcome::kDuplicate);
  EXPECT_EQ(again->migration.id, first->migration.id);
  ASSERT_TRUE(h.migrate("vm-a", "h1", "h2", Phase::kComplete));
  auto late = h.migrate("vm-a", "h1", "h2", Phase::kComplete);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->outcome, Decision::Outcome::kStale);
  auto repeated = h.migrate("vm-a", "h1", "h2", Phase::kFull);
  ASSERT_TRUE(repeated);
  EXPECT_EQ(repeated->outcome, Decision::Outcome::kStale);
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.sw("s2").installs(), 1);
}

TEST_F(MigrationTest, LateMessageOfAnOlderMigrationChangesNothing) {
  ASSERT_TRUE(h.migrate("vm-a", "h1", "h2", Phase::kFull));
  auto next = h.migrate("vm-a", "h2", "h3", Phase::kPrepare);
  ASSERT_TRUE(next);
  // A rollback of the first migration arrives late, while the second is in flight.
  auto late = h.migrate("vm-a", "h1", "h2", Phase::kRollback);
  ASSERT_TRUE(late) << late.error().message;
  EXPECT_EQ(late->outcome, Decision::Outcome::kStale);
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
  EXPECT_TRUE(h.sw("s3").has("vm-a"));
  EXPECT_EQ(h.record(next->migration.id).state, MigrationState::kPrepared);
}

TEST_F(MigrationTest, BackToBackMigrations) {
  ASSERT_TRUE(h.migrate("vm-a", "h1", "h2", Phase::kFull));
  ASSERT_TRUE(h.migrate("vm-a", "h2", "h3", Phase::kFull));
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
  EXPECT_FALSE(h.sw("s2").has("vm-a"));
  EXPECT_TRUE(h.sw("s3").has("vm-a"));
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h3");
}

TEST_F(MigrationTest, HostsSharingASwitchMoveTheVmWithoutRemovingItsRows) {
  ASSERT_TRUE(h.directory().put_host({"h1b", "s1"}));
  auto moved = h.migrate("vm-a", "h1", "h1b", Phase::kFull);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(h.record(moved->migration.id).state, MigrationState::kCompleted);
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h1b");

  auto prepared = h.migrate("vm-a", "h1b", "h1", Phase::kPrepare);
  ASSERT_TRUE(prepared) << prepared.error().message;
  auto rolled_back = h.migrate("vm-a", "h1b", "h1", Phase::kRollback);
  ASSERT_TRUE(rolled_back) << rolled_back.error().message;
  EXPECT_EQ(h.record(prepared->migration.id).state, MigrationState::kRolledBack);
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h1b");

  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.sw("s1").removes(), 0);
}

TEST_F(MigrationTest, SameHostIsANoop) {
  auto decision = h.migrate("vm-a", "h1", "h1", Phase::kFull);
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->outcome, Decision::Outcome::kNoop);
  EXPECT_EQ(decision->migration.id, 0);
  EXPECT_EQ(h.sw("s1").removes(), 0);
}

TEST_F(MigrationTest, UnknownVmOrHostIsRejectedAndChangesNothing) {
  auto unknown_vm = h.engine().submit({"vm-x", "h1", "h2", Phase::kFull, "test", 0});
  ASSERT_FALSE(unknown_vm);
  EXPECT_EQ(unknown_vm.error().code, ErrorCode::kNotFound);
  EXPECT_NE(unknown_vm.error().message.find("vm-x"), std::string::npos);
  auto unknown_host = h.engine().submit({"vm-a", "h1", "h9", Phase::kFull, "test", 0});
  ASSERT_FALSE(unknown_host);
  EXPECT_EQ(unknown_host.error().code, ErrorCode::kNotFound);
  EXPECT_NE(unknown_host.error().message.find("h9"), std::string::npos);
  auto listed = h.store().list_migrations("", 10);
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
}

TEST_F(MigrationTest, ASecondMigrationWhileOneIsInFlightIsAConflict) {
  ASSERT_TRUE(h.migrate("vm-a", "h1", "h2", Phase::kPrepare));
  auto other = h.engine().submit({"vm-a", "h1", "h3", Phase::kPrepare, "test", 0});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, ErrorCode::kConflict);
  EXPECT_FALSE(h.sw("s3").has("vm-a"));
}

TEST_F(MigrationTest, SourceDownDuringCompleteIsRetriedUntilItIsBack) {
  ASSERT_TRUE(h.migrate("vm-a", "h1", "h2", Phase::kPrepare));
  h.sw("s1").set_down(true);
  auto decision = h.engine().submit({"vm-a", "h1", "h2", Phase::kComplete, "test", 0});
  ASSERT_TRUE(decision);
  int64_t id = decision->migration.id;
  ASSERT_TRUE(h.run_until([&] { return h.record(id).attempts >= 3; }));
  Migration waiting = h.record(id);
  EXPECT_EQ(waiting.state, MigrationState::kCompleting);
  EXPECT_NE(waiting.last_error.find("down"), std::string::npos);
  EXPECT_TRUE(h.sw("s1").has("vm-a"));

  h.sw("s1").set_down(false);
  ASSERT_TRUE(h.run_until([&] { return h.record(id).state == MigrationState::kCompleted; }));
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.record(id).last_error, "");
}

TEST_F(MigrationTest, AMigrationTheJournalCannotRecordIsRefusedAndNeverStarts) {
  h.journal_faults().fail_writes = true;
  auto decision = h.engine().submit({"vm-a", "h1", "h2", Phase::kFull, "test", 0});
  ASSERT_TRUE(decision);  // decided at once; answered only once journaled
  std::optional<Status> journaled;
  h.engine().when_journaled("vm-a", [&](Status status) { journaled = status; });
  ASSERT_TRUE(h.run_until([&] { return journaled.has_value(); }));
  ASSERT_FALSE(*journaled);
  EXPECT_EQ(journaled->error().code, ErrorCode::kIo);
  h.drain();
  EXPECT_EQ(h.engine().active("vm-a"), nullptr);
  EXPECT_FALSE(h.sw("s2").has("vm-a"));
  EXPECT_EQ(h.sw("s2").installs(), 0);
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  auto stored = h.store().latest_migration("vm-a");
  ASSERT_TRUE(stored);
  EXPECT_FALSE(stored->has_value());

  // Once the disk takes writes again, the same message starts the migration.
  h.journal_faults().fail_writes = false;
  auto retried = h.migrate("vm-a", "h1", "h2", Phase::kFull);
  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_EQ(h.record(retried->migration.id).state, MigrationState::kCompleted);
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
}

TEST_F(MigrationTest, TheSourceIsNotTouchedUntilTheSwitchOverIsJournaled) {
  h.sw("s2").stall(true);
  auto decision = h.engine().submit({"vm-a", "h1", "h2", Phase::kFull, "test", 0});
  ASSERT_TRUE(decision);
  int64_t id = decision->migration.id;
  ASSERT_TRUE(h.run_until([&] { return h.sw("s2").held() > 0; }));
  h.journal_faults().fail_writes = true;  // the switch-over's commit will fail
  h.sw("s2").stall(false);
  ASSERT_TRUE(h.run_until([&] { return h.sw("s2").has("vm-a"); }));
  h.run_until([] { return false; }, std::chrono::milliseconds(100));  // several retries
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.sw("s1").removes(), 0);
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h1");
  auto stored = h.store().find_migration(id);
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->state, MigrationState::kPreparing);

  h.journal_faults().fail_writes = false;
  ASSERT_TRUE(h.run_until([&] { return !h.engine().active("vm-a"); }));
  EXPECT_EQ(h.record(id).state, MigrationState::kCompleted);
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h2");
}

TEST_F(MigrationTest, MigrationsDecidedInOneLoopTurnShareOneJournalCommit) {
  for (int i = 0; i < 20; ++i) {
    std::string vm = fmt::format("vm-b{}", i);
    ASSERT_TRUE(h.directory().put_vm(make_vm(vm, "h1", 1)));
  }
  h.sw("s2").stall(true);  // installs wait, so that only the journal commits run below
  int before = h.journal_faults().commits;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(
        h.engine().submit({fmt::format("vm-b{}", i), "h1", "h2", Phase::kPrepare, "test", 0}));
  }
  h.drain();  // the posted group commit runs, and the installs it allows start
  EXPECT_EQ(h.journal_faults().commits, before + 1);
  for (int i = 0; i < 20; ++i) {
    auto stored = h.store().latest_migration(fmt::format("vm-b{}", i));
    ASSERT_TRUE(stored && *stored);
  }
  ASSERT_TRUE(h.run_until([&] { return h.sw("s2").held() == 20; }));
  h.sw("s2").stall(false);
  ASSERT_TRUE(h.run_until([&] { return h.sw("s2").installs() >= 20; }));
}

TEST_F(MigrationTest, TargetRefusingTheConfigurationFailsAndKeepsTheSource) {
  h.sw("s2").fail_next(1, Error{ErrorCode::kConflict, "port taken by someone else"});
  auto decision = h.migrate("vm-a", "h1", "h2", Phase::kFull);
  ASSERT_TRUE(decision);
  Migration record = h.record(decision->migration.id);
  EXPECT_EQ(record.state, MigrationState::kFailed);
  EXPECT_NE(record.last_error.find("port taken"), std::string::npos);
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h1");
}

TEST_F(MigrationTest, RestartResumesAJournaledStep) {
  h.sw("s1").stall(true);
  auto decision = h.engine().submit({"vm-a", "h1", "h2", Phase::kFull, "test", 0});
  ASSERT_TRUE(decision);
  int64_t id = decision->migration.id;
  // The target is done, the source removal is in flight when the controller dies.
  ASSERT_TRUE(h.run_until([&] { return h.sw("s1").held() > 0; }));
  h.restart();  // the held removal is lost with the old controller
  h.sw("s1").stall(false);
  ASSERT_TRUE(h.run_until([&] { return h.record(id).state == MigrationState::kCompleted; }));
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
  EXPECT_EQ(h.directory().find_vm("vm-a")->host, "h2");
}

TEST_F(MigrationTest, OldMessageRedeliveredAfterTheMigrationFinishedIsStale) {
  auto first = h.engine().submit({"vm-a", "h1", "h2", Phase::kPrepare, "nova", 1000});
  ASSERT_TRUE(first);
  ASSERT_TRUE(h.engine().submit({"vm-a", "h1", "h2", Phase::kRollback, "nova", 2000}));
  ASSERT_TRUE(h.run_until([&] { return !h.engine().active("vm-a"); }));
  auto redelivered = h.engine().submit({"vm-a", "h1", "h2", Phase::kPrepare, "nova", 1000});
  ASSERT_TRUE(redelivered);
  EXPECT_EQ(redelivered->outcome, Decision::Outcome::kStale);
  h.drain();
  EXPECT_FALSE(h.sw("s2").has("vm-a"));
}

TEST_F(MigrationTest, PlacementCompletesAMigrationWhoseCompleteNeverCame) {
  auto prepared = h.migrate("vm-a", "h1", "h2", Phase::kPrepare);
  ASSERT_TRUE(prepared);
  auto placed = h.engine().place("vm-a", "h2");
  ASSERT_TRUE(placed);
  ASSERT_TRUE(h.run_until([&] { return !h.engine().active("vm-a"); }));
  EXPECT_EQ(h.record(prepared->migration.id).state, MigrationState::kCompleted);
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
}

}  // namespace
}  // namespace steward::controller::testing
