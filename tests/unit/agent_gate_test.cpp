// The gate and its store, driven by hand: an in-memory (or temporary-file) SQLite store, a
// manual clock and fake executors that record what ran where.
#include "agent/gate/gate.h"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <set>

namespace steward::agent {
namespace {

namespace json = boost::json;

struct Execution {
  std::string id;
  std::string target;
  std::optional<std::string> foreground;  // as the gate saw it when the executor ran
  bool revoke = false;
};

// Records each execution; fails the ids it is told to; may run a hook after each execution.
class FakeExecutor : public Executor {
 public:
  FakeExecutor(std::vector<Execution>& log, const Gate*& gate) : log_(log), gate_(gate) {}

  Outcome execute(const Instruction& instruction) override {
    log_.push_back({instruction.id, instruction.target, gate_->foreground(), instruction.revoke});
    if (after_) after_(instruction);
    if (failing.count(instruction.id)) return Outcome{false, 3, "boom\n", "exit 3"};
    return Outcome{true, 0, "", ""};
  }
  std::optional<bool> in_force(const Instruction&) override { return in_force_answer; }

  std::set<std::string> failing;
  std::optional<bool> in_force_answer;
  std::function<void(const Instruction&)> after_;

 private:
  std::vector<Execution>& log_;
  const Gate*& gate_;
};

class GateTest : public ::testing::Test {
 protected:
  void SetUp() override { open(":memory:"); }

  void open(const std::string& path) {
    gate_.reset();
    auto store = InstructionStore::open(path);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    make_gate();
  }

  void make_gate(const PublicKey* key = nullptr) {
    gate_ = std::make_unique<Gate>(*store_, clock_, Gate::Options{"t1", key});
    gate_view_ = gate_.get();
    for (auto& [id, executor] : executors_)
      gate_->add_system(id, executor);
    ASSERT_TRUE(gate_->recover(enrolments_));
  }

  Instruction make(const std::string& id, const std::string& target, int64_t sequence,
                   Kind kind = Kind::kAction, const std::string& type = "lock") {
    Instruction out;
    out.id = id;
    out.terminal = "t1";
    out.target = target;
    out.kind = kind;
    out.type = kind == Kind::kCancel ? "" : type;
    out.sequence = sequence;
    return out;
  }

  void deliver(const Instruction& instruction) {
    auto status = gate_->receive(instruction);
    ASSERT_TRUE(status) << status.error().message;
  }

  void deliver_bytes(const std::string& bytes) {
    auto status = gate_->receive(bytes);
    ASSERT_TRUE(status) << status.error().message;
  }

  void switch_to(const std::string& system) {
    gate_->announce_foreground(system);
    auto status = gate_->apply_foreground();
    ASSERT_TRUE(status) << status.error().message;
  }

  // Every status reported for an instruction id, in order.
  std::vector<ReportStatus> reports(const std::string& id) {
    auto outbox = store_->outbox(100000);
    EXPECT_TRUE(outbox);
    std::vector<ReportStatus> out;
    for (const auto& [key, report] : *outbox)
      if (report.instruction == id) out.push_back(report.status);
    return out;
  }

  std::vector<std::string> executed_ids() {
    std::vector<std::string> out;
    for (const auto& execution : executions_)
      out.push_back(execution.id);
    return out;
  }

  size_t stored_count() {
    auto stored = store_->stored();
    EXPECT_TRUE(stored);
    return stored->size();
  }

  ManualClock clock_;
  std::vector<Execution> executions_;
  const Gate* gate_view_ = nullptr;
  std::map<std::string, FakeExecutor> executors_{
      {"personal", FakeExecutor(executions_, gate_view_)},
      {"work", FakeExecutor(executions_, gate_view_)},
      {"guest", FakeExecutor(executions_, gate_view_)}};
  std::map<std::string, std::string> enrolments_{{"personal", "1"}, {"work", "1"}, {"guest", "1"}};
  std::unique_ptr<InstructionStore> store_;
  std::unique_ptr<Gate> gate_;
};

using Status_ = ReportStatus;

TEST_F(GateTest, InstructionForTheForegroundOsRunsAtOnceAndReportsApplied) {
  switch_to("work");
  deliver(make("a1", "work", 1));
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"a1"});
  EXPECT_EQ(reports("a1"), std::vector{Status_::kApplied});
  EXPECT_EQ(stored_count(), 0u);
}

TEST_F(GateTest, InstructionsRunOnArrivalLeaveNoRowBehindInTheQueue) {
  switch_to("work");
  for (int i = 1; i <= 50; ++i)
    deliver(make("a" + std::to_string(i), "work", i));
  EXPECT_EQ(executions_.size(), 50u);
  // Not even rows marked done: every later message would walk over them (has_stored()).
  auto rows = store_->db().prepare("SELECT count(*) FROM queue");
  ASSERT_TRUE(rows);
  ASSERT_TRUE(rows->step());
  EXPECT_EQ(rows->integer(0), 0);
}

TEST_F(GateTest, InstructionForABackgroundOsWaitsAndRunsOnceWhenItComesToTheForeground) {
  switch_to("personal");
  deliver(make("a1", "work", 1));
  EXPECT_TRUE(executions_.empty());
  EXPECT_EQ(reports("a1"), std::vector{Status_::kPending});
  EXPECT_EQ(stored_count(), 1u);

  switch_to("work");
  switch_to("personal");
  switch_to("work");
  ASSERT_EQ(executions_.size(), 1u);
  EXPECT_EQ(executions_[0].foreground, "work");
  EXPECT_EQ(reports("a1"), (std::vector{Status_::kPending, Status_::kApplied}));
  EXPECT_EQ(stored_count(), 0u);
}

TEST_F(GateTest, NothingRunsBeforeTheForegroundIsKnown) {
  deliver(make("a1", "work", 1));
  EXPECT_TRUE(executions_.empty());
  EXPECT_EQ(reports("a1"), std::vector{Status_::kPending});
}

TEST_F(GateTest, StoredInstructionsRunInSequenceOrderTiesByArrival) {
  switch_to("personal");
  deliver(make("third", "work", 30));
  deliver(make("first", "work", 10));
  deliver(make("second-a", "work", 20));
  deliver(make("second-b", "work", 20));  // same sequence: arrival order decides
  deliver(make("other-os", "guest", 5));
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"first", "second-a", "second-b", "third"}));
}

TEST_F(GateTest, TheSameInstructionDeliveredTwiceRunsOnce) {
  switch_to("personal");
  deliver(make("a1", "work", 1));
  deliver(make("a1", "work", 1));  // redelivered while stored
  switch_to("work");
  deliver(make("a1", "work", 1));  // redelivered after it ran
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"a1"});
  EXPECT_EQ(reports("a1"), (std::vector{Status_::kPending, Status_::kApplied}));
  EXPECT_EQ(gate_->counters().duplicates.load(), 2u);
}

TEST_F(GateTest, AnOlderSettingArrivingAfterANewerOneIsRefused) {
  switch_to("work");
  deliver(make("cam-5", "work", 5, Kind::kSetting, "camera"));
  deliver(make("cam-3", "work", 3, Kind::kSetting, "camera"));
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"cam-5"});
  EXPECT_EQ(reports("cam-3"), std::vector{Status_::kRejected});
  auto newest = store_->setting("work", "camera");
  ASSERT_TRUE(newest && *newest);
  EXPECT_EQ((*newest)->instruction, "cam-5");
  EXPECT_EQ((*newest)->state, "applied");
}

TEST_F(GateTest, ANewerSettingReplacesAStoredOlderRevision) {
  switch_to("personal");
  deliver(make("usb-1", "work", 1, Kind::kSetting, "usb_storage"));
  Instruction lift = make("usb-2", "work", 2, Kind::kSetting, "usb_storage");
  lift.revoke = true;
  deliver(lift);
  switch_to("work");
  ASSERT_EQ(executed_ids(), std::vector<std::string>{"usb-2"});
  EXPECT_TRUE(executions_[0].revoke);
  EXPECT_EQ(reports("usb-1"), (std::vector{Status_::kPending, Status_::kCancelled}));
}

TEST_F(GateTest, ACancelRemovesAStoredInstruction) {
  switch_to("personal");
  deliver(make("wipe", "work", 1, Kind::kAction, "wipe"));
  Instruction cancel = make("c1", "work", 2, Kind::kCancel);
  cancel.cancel = {"wipe"};
  deliver(cancel);
  EXPECT_EQ(stored_count(), 0u);
  switch_to("work");
  EXPECT_TRUE(executions_.empty());
  EXPECT_EQ(reports("wipe"), (std::vector{Status_::kPending, Status_::kCancelled}));
  EXPECT_EQ(reports("c1"), std::vector{Status_::kApplied});
}

TEST_F(GateTest, ACancelArrivingBeforeItsInstructionStillCancelsIt) {
  switch_to("work");
  Instruction cancel = make("c1", "work", 2, Kind::kCancel);
  cancel.cancel = {"late"};
  deliver(cancel);
  deliver(make("late", "work", 1));
  EXPECT_TRUE(executions_.empty());
  EXPECT_EQ(reports("late"), std::vector{Status_::kCancelled});
}

TEST_F(GateTest, ACancelLeavesOtherSystemsInstructionsAlone) {
  switch_to("personal");
  deliver(make("g1", "guest", 1));
  Instruction cancel = make("c1", "work", 2, Kind::kCancel);
  cancel.cancel = {"g1"};
  deliver(cancel);
  EXPECT_EQ(stored_count(), 1u);
}

TEST_F(GateTest, SupersedesRemovesTheStoredInstructionsItReplaces) {
  switch_to("personal");
  deliver(make("install-1", "work", 1, Kind::kAction, "install"));
  Instruction newer = make("install-2", "work", 2, Kind::kAction, "install");
  newer.supersedes = {"install-1"};
  deliver(newer);
  switch_to("work");
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"install-2"});
  EXPECT_EQ(reports("install-1"), (std::vector{Status_::kPending, Status_::kCancelled}));
}

TEST_F(GateTest, AnInstructionExpiredOnArrivalIsReportedAndNeverRun) {
  switch_to("work");
  Instruction old = make("old", "work", 1);
  old.expires_at_ms = clock_.wall_us() / 1000 - 1;
  deliver(old);
  EXPECT_TRUE(executions_.empty());
  EXPECT_EQ(reports("old"), std::vector{Status_::kExpired});
  deliver(old);  // and its redelivery is a duplicate
  EXPECT_EQ(reports("old"), std::vector{Status_::kExpired});
}

TEST_F(GateTest, AnInstructionThatExpiresWhileStoredIsReportedAndNeverRun) {
  switch_to("personal");
  Instruction soon = make("soon", "work", 1);
  soon.expires_at_ms = clock_.wall_us() / 1000 + 1000;
  deliver(soon);
  deliver(make("later", "work", 2));
  clock_.advance(std::chrono::seconds(2));
  switch_to("work");
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"later"});
  EXPECT_EQ(reports("soon"), (std::vector{Status_::kPending, Status_::kExpired}));
}

TEST_F(GateTest, ExpiryIsReportedWhenItPassesNotOnlyAtTheSwitch) {
  switch_to("personal");
  Instruction soon = make("soon", "work", 1);
  soon.expires_at_ms = clock_.wall_us() / 1000 + 1000;
  deliver(soon);
  ASSERT_TRUE(gate_->expire_due());
  EXPECT_EQ(reports("soon"), std::vector{Status_::kPending});
  clock_.advance(std::chrono::seconds(1));
  ASSERT_TRUE(gate_->expire_due());
  EXPECT_EQ(reports("soon"), (std::vector{Status_::kPending, Status_::kExpired}));
  EXPECT_EQ(stored_count(), 0u);
}

TEST_F(GateTest, UnknownSystemMalformedAndWrongTerminalAreRejectedAndNothingIsStored) {
  switch_to("work");
  deliver(make("x1", "printer", 1));
  deliver_bytes(R"({"id":"x2","terminal":"t1","target":"work","kind":"action"})");
  deliver_bytes("{not json");
  Instruction elsewhere = make("x3", "work", 1);
  elsewhere.terminal = "t2";
  deliver(elsewhere);
  EXPECT_EQ(reports("x1"), std::vector{Status_::kRejected});
  EXPECT_EQ(reports("x2"), std::vector{Status_::kRejected});
  EXPECT_EQ(reports(""), std::vector{Status_::kRejected});
  EXPECT_EQ(reports("x3"), std::vector{Status_::kRejected});
  EXPECT_TRUE(executions_.empty());
  EXPECT_EQ(stored_count(), 0u);
  // A rejected id is not remembered: a corrected message with the same id is accepted.
  deliver(make("x1", "work", 1));
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"x1"});
}

TEST_F(GateTest, WithAServerKeyUnsignedAndBadlySignedMessagesAreRejected) {
  auto server = PrivateKey::generate();
  ASSERT_TRUE(server);
  auto other = PrivateKey::generate();
  ASSERT_TRUE(other);
  auto public_key = server->public_key();
  ASSERT_TRUE(public_key);
  make_gate(&*public_key);
  switch_to("work");
  deliver_bytes(*seal_control_message(make("unsigned", "work", 1), nullptr));
  deliver_bytes(*seal_control_message(make("forged", "work", 2), &*other));
  deliver_bytes(*seal_control_message(make("good", "work", 3), &*server));
  EXPECT_EQ(reports("unsigned"), std::vector{Status_::kRejected});
  EXPECT_EQ(reports("forged"), std::vector{Status_::kRejected});
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"good"});
}

TEST_F(GateTest, AFailingInstructionDoesNotBlockTheNextOne) {
  switch_to("personal");
  executors_.at("work").failing = {"bad"};
  deliver(make("bad", "work", 1));
  deliver(make("good", "work", 2));
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"bad", "good"}));
  EXPECT_EQ(reports("bad"), (std::vector{Status_::kPending, Status_::kFailed}));
  EXPECT_EQ(reports("good"), (std::vector{Status_::kPending, Status_::kApplied}));
  auto outbox = store_->outbox(100);
  ASSERT_TRUE(outbox);
  bool found = false;
  for (const auto& [key, report] : *outbox) {
    if (report.instruction == "bad" && report.status == Status_::kFailed) {
      EXPECT_EQ(report.exit_code, 3);
      EXPECT_EQ(report.output, "boom\n");
      found = true;
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(stored_count(), 0u);
}

TEST_F(GateTest, ASwitchAwayStopsTheReplayAndNothingRunsOnTheWrongOs) {
  switch_to("personal");
  for (int i = 1; i <= 5; ++i)
    deliver(make("w" + std::to_string(i), "work", i));
  executors_.at("work").after_ = [this](const Instruction& instruction) {
    if (instruction.id == "w2") gate_->announce_foreground("guest");
  };
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(stored_count(), 3u);
  executors_.at("work").after_ = nullptr;
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"w1", "w2", "w3", "w4", "w5"}));
  for (const auto& execution : executions_)
    EXPECT_EQ(execution.target, "work");
}

TEST_F(GateTest, ReplayMarksTheNextInstructionInThePreviousCommitAndUnmarksItOnASwitch) {
  switch_to("personal");
  for (int i = 1; i <= 3; ++i)
    deliver(make("w" + std::to_string(i), "work", i));
  std::vector<std::string> states;
  gate_->on_reports([&] {
    auto next = store_->find("w2");
    ASSERT_TRUE(next);
    if (*next && executions_.size() == 1) {
      states.push_back((*next)->state == StoredState::kExecuting ? "executing" : "pending");
      gate_->announce_foreground("guest");  // right after w1's commit
    }
  });
  switch_to("work");
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"w1"});
  EXPECT_EQ(states, std::vector<std::string>{"executing"});
  auto w2 = store_->find("w2");
  ASSERT_TRUE(w2 && *w2);
  EXPECT_EQ((*w2)->state, StoredState::kPending);  // not left looking interrupted
  gate_->on_reports(nullptr);
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"w1", "w2", "w3"}));
}

class GateCrashTest : public GateTest {
 protected:
  void SetUp() override {
    path_ = fmt::format("/tmp/steward-agent-gate-{}-{}.db", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove(path_);
    open(path_);
  }
  void TearDown() override {
    gate_.reset();
    store_.reset();
    for (const char* suffix : {"", "-wal", "-shm"})
      std::filesystem::remove(path_ + suffix);
  }

  // What a crash between the `executing` mark and the final commit leaves behind.
  void leave_executing(const Instruction& instruction) {
    sqlite::Transaction transaction(store_->db());
    ASSERT_TRUE(store_->insert(instruction, StoredState::kExecuting));
    ASSERT_TRUE(store_->mark_seen(instruction.id, instruction.target, Status_::kApplied, 0));
    ASSERT_TRUE(transaction.commit());
  }

  std::string path_;
};

TEST_F(GateCrashTest, StoredInstructionsAndReportsSurviveARestart) {
  deliver(make("a1", "work", 1));
  open(path_);  // a new process on the same file
  EXPECT_EQ(stored_count(), 1u);
  EXPECT_EQ(reports("a1"), std::vector{Status_::kPending});
  switch_to("work");
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"a1"});
  open(path_);
  deliver(make("a1", "work", 1));  // redelivered after the restart
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"a1"});
}

TEST_F(GateCrashTest, FinishedInstructionsLeaveNoRowsBehindAfterAReplay) {
  for (int i = 1; i <= 5; ++i)
    deliver(make("r" + std::to_string(i), "work", i));
  switch_to("work");
  EXPECT_EQ(executions_.size(), 5u);
  EXPECT_EQ(stored_count(), 0u);
  auto rows = store_->db().prepare("SELECT count(*) FROM queue");
  ASSERT_TRUE(rows);
  ASSERT_TRUE(rows->step());
  EXPECT_EQ(rows->integer(0), 0) << "done rows were not purged";
}

TEST_F(GateCrashTest, AStoreWrittenBySchemaOneKeepsItsInstructions) {
  gate_.reset();
  store_.reset();
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(path_ + suffix);
  {
    // The layout of schema 1: instructions keyed by id, without rowid.
    auto db = sqlite::Database::open(path_);
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->exec(R"sql(
      CREATE TABLE instructions (id TEXT PRIMARY KEY, target TEXT NOT NULL,
        sequence INTEGER NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL,
        arrival INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX instructions_by_target ON instructions(target, sequence, arrival);)sql"));
    for (int i = 1; i <= 3; ++i) {
      Instruction instruction = make("old" + std::to_string(i), "work", 10 - i);
      auto insert =
          (*db)->prepare("INSERT INTO instructions VALUES (?1, 'work', ?2, 'pending', ?3, ?4)");
      ASSERT_TRUE(insert);
      insert->bind(1, instruction.id)
          .bind(2, instruction.sequence)
          .bind(3, json::serialize(to_json(instruction)))
          .bind(4, int64_t{i});
      ASSERT_TRUE(insert->run());
    }
  }
  open(path_);
  EXPECT_EQ(stored_count(), 3u);
  deliver(make("new", "work", 20));  // arrives after the moved ones
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"old3", "old2", "old1", "new"}));
}

TEST_F(GateCrashTest, AnActionInterruptedByACrashIsReportedUnknownAndNotRunAgain) {
  leave_executing(make("wipe", "work", 1, Kind::kAction, "wipe"));
  open(path_);
  switch_to("work");
  EXPECT_TRUE(executions_.empty());
  EXPECT_EQ(reports("wipe"), std::vector{Status_::kUnknown});
  EXPECT_EQ(stored_count(), 0u);
}

TEST_F(GateCrashTest, ASettingInterruptedByACrashIsVerifiedOrAppliedAgain) {
  leave_executing(make("cam", "work", 1, Kind::kSetting, "camera"));
  leave_executing(make("usb", "work", 2, Kind::kSetting, "usb_storage"));
  executors_.at("work").in_force_answer = std::nullopt;  // cannot tell: applied again
  open(path_);
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"cam", "usb"}));

  leave_executing(make("lock", "work", 3, Kind::kSetting, "screen_lock"));
  executors_.at("work").in_force_answer = true;  // verified: not applied again
  open(path_);
  switch_to("work");
  EXPECT_EQ(executed_ids(), (std::vector<std::string>{"cam", "usb"}));
  EXPECT_EQ(reports("lock"), std::vector{Status_::kApplied});
}

TEST_F(GateCrashTest, ReEnrollingOrRemovingAnOsClearsItsStoredInstructions) {
  deliver(make("w1", "work", 1));
  deliver(make("g1", "guest", 1));
  deliver(make("p1", "personal", 1));
  enrolments_["work"] = "2";
  enrolments_.erase("guest");
  open(path_);
  EXPECT_EQ(reports("w1"), (std::vector{Status_::kPending, Status_::kCancelled}));
  EXPECT_EQ(reports("g1"), (std::vector{Status_::kPending, Status_::kCancelled}));
  EXPECT_EQ(stored_count(), 1u);
  switch_to("work");
  switch_to("personal");
  EXPECT_EQ(executed_ids(), std::vector<std::string>{"p1"});
}

TEST_F(GateCrashTest, ReportsLeaveTheOutboxOnlyWhenAcknowledged) {
  deliver(make("a1", "work", 1));
  auto outbox = store_->outbox(10);
  ASSERT_TRUE(outbox);
  ASSERT_EQ(outbox->size(), 1u);
  ASSERT_TRUE(store_->ack_report(outbox->front().first));
  open(path_);
  EXPECT_TRUE(reports("a1").empty());
}

}  // namespace
}  // namespace steward::agent
