// The reconciler against fake switches: what it repairs, what it must leave alone.
#include "controller/reconcile/reconciler.h"
#include "controller/reconcile/verify.h"
#include "support/engine_harness.h"

#include <gtest/gtest.h>

namespace steward::controller::testing {
namespace {

using namespace std::chrono_literals;

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(h.directory().put_vm(make_vm("vm-a", "h1", 2)));
    ASSERT_TRUE(h.directory().put_vm(make_vm("vm-b", "h2", 1)));
    reconciler =
        std::make_unique<Reconciler>(h.io(), h.directory(), h.pool(), h.engine(), h.locks(),
                                     h.metrics(), ReconcilerOptions{50ms, 20ms, 5ms});
    reconciler->start();
  }
  void TearDown() override { reconciler->stop(); }

  bool converged() {
    VerifyReport report;
    bool done = false;
    verify(h.directory(), h.pool(), &h.engine(), [&](VerifyReport r) {
      report = std::move(r);
      done = true;
    });
    h.run_until([&] { return done; });
    return done && report.clean();
  }

  EngineHarness h;
  std::unique_ptr<Reconciler> reconciler;
};

TEST_F(ReconcilerTest, MissingConfigurationOnTheCurrentSwitchIsRecreated) {
  ASSERT_TRUE(h.run_until([&] { return h.sw("s1").has("vm-a") && h.sw("s2").has("vm-b"); }));
  h.sw("s1").rows().erase("vm-a");  // someone deleted the rows behind our back
  ASSERT_TRUE(h.run_until([&] { return h.sw("s1").has("vm-a"); }));
  EXPECT_TRUE(converged());
}

TEST_F(ReconcilerTest, OwnedRowsOnAnotherSwitchAreRemoved) {
  ASSERT_TRUE(h.run_until([&] { return h.sw("s1").has("vm-a"); }));
  h.sw("s3").install(*h.directory().find_vm("vm-a"), [](Status) {});  // a leftover
  ASSERT_TRUE(h.run_until([&] { return h.sw("s3").has("vm-a"); }));
  ASSERT_TRUE(h.run_until([&] { return !h.sw("s3").has("vm-a"); }));
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_TRUE(converged());
}

TEST_F(ReconcilerTest, RowsOfAVmNoLongerInTheInventoryAreRemoved) {
  ASSERT_TRUE(h.run_until([&] { return h.sw("s2").has("vm-b"); }));
  ASSERT_TRUE(h.directory().delete_vm("vm-b"));
  ASSERT_TRUE(h.run_until([&] { return !h.sw("s2").has("vm-b"); }));
}

TEST_F(ReconcilerTest, DifferentConfigurationIsRepaired) {
  ASSERT_TRUE(h.run_until([&] { return h.sw("s1").has("vm-a"); }));
  h.sw("s1").rows()["vm-a"][0].config.vlan = 999;  // drift on the switch
  ASSERT_TRUE(h.run_until([&] { return h.sw("s1").rows()["vm-a"][0].config.vlan == 100; }));
}

TEST_F(ReconcilerTest, AMigrationInFlightIsNeverUndone) {
  ASSERT_TRUE(h.run_until([&] { return h.sw("s1").has("vm-a"); }));
  auto prepared = h.migrate("vm-a", "h1", "h2", Phase::kPrepare);
  ASSERT_TRUE(prepared);
  // Several passes later both copies are still there: the source for the running VM, the
  // target for the one about to resume.
  h.run_until([] { return false; }, 300ms);
  EXPECT_TRUE(h.sw("s1").has("vm-a"));
  EXPECT_TRUE(h.sw("s2").has("vm-a"));
  EXPECT_EQ(h.sw("s2").removes(), 0);
}

TEST_F(ReconcilerTest, FreshDriftWaitsForTheSettleDelay) {
  reconciler->stop();
  Reconciler slow(h.io(), h.directory(), h.pool(), h.engine(), h.locks(), h.metrics(),
                  ReconcilerOptions{10s, 10s, 5ms});
  EXPECT_EQ(slow.pass(), 0u);  // vm-a and vm-b are missing, but only just
  EXPECT_FALSE(h.sw("s1").has("vm-a"));
}

TEST(Verify, ReportsMissingDuplicatedStaleAndOrphanRows) {
  EngineHarness h;
  ASSERT_TRUE(h.directory().put_vm(make_vm("vm-missing", "h1", 1)));
  ASSERT_TRUE(h.directory().put_vm(make_vm("vm-dup", "h1", 1)));
  ASSERT_TRUE(h.directory().put_vm(make_vm("vm-stale", "h1", 1)));
  std::map<std::string, OwnedRows> rows;
  auto observed = [&](const std::string& vm) {
    std::vector<ObservedInterface> out;
    for (const auto& i : h.directory().find_vm(vm)->interfaces)
      out.push_back({"p", "i", "", vm, i});
    return out;
  };
  rows["s1"]["vm-dup"] = observed("vm-dup");
  rows["s2"]["vm-dup"] = observed("vm-dup");
  rows["s3"]["vm-stale"] = observed("vm-stale");
  rows["s3"]["vm-gone"] = {};
  auto report = compare(h.directory(), rows, {}, nullptr);
  std::map<std::string, std::string> kinds;
  for (const auto& problem : report.problems)
    kinds[problem.vm] = problem.kind;
  EXPECT_EQ(kinds["vm-missing"], "missing");
  EXPECT_EQ(kinds["vm-dup"], "duplicated");
  EXPECT_EQ(kinds["vm-stale"], "stale");
  EXPECT_EQ(kinds["vm-gone"], "orphan");
  EXPECT_FALSE(report.clean());
}

}  // namespace
}  // namespace steward::controller::testing
