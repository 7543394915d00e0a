// The controller end to end when things break: a switch that is down while a migration needs it,
// and the daemon killed with SIGKILL in the middle of a burst of migrations. The real daemon over
// HTTP, three real ovsdb-server switches, every switch read back with ovs-vsctl.
#include "support/controller_checks.h"
#include "support/controller_fixture.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

namespace steward::testing {
namespace {

namespace json = boost::json;

class ControllerRecovery : public ControllerFixture {};

std::string text_at(const json::value& value, const char* key) {
  const json::value* found = value.is_object() ? value.as_object().if_contains(key) : nullptr;
  return found && found->is_string() ? std::string(found->as_string()) : "";
}

TEST_F(ControllerRecovery, SourceSwitchDownDuringCompleteIsRetriedAndCleanedOnceItIsBack) {
  json::object vm = rich_vm("vm-wait", 1, "tap-wait");
  add_vm(vm);
  Answer prepared = migrate("vm-wait", host(1), host(2), "prepare");
  ASSERT_EQ(field(prepared, "state"), "prepared") << prepared.text;
  int64_t id = id_of(prepared);

  // The source switch goes away; complete arrives.
  ASSERT_TRUE(sandbox(1).stop());
  Answer completing =
      migrate("vm-wait", host(1), host(2), "complete", std::chrono::milliseconds(0));
  ASSERT_EQ(completing.status, 202) << completing.text;
  EXPECT_EQ(id_of(completing), id);

  // The migration waits and retries, and says what it waits for.
  json::value record;
  bool waiting = eventually([&] {
    record = migration(id);
    return text_at(record, "state") == "completing" && record.at("attempts").as_int64() > 1 &&
           text_at(record, "waiting_for").find(switch_id(1)) != std::string::npos;
  });
  ASSERT_TRUE(waiting) << to_text(record);
  EXPECT_EQ(host_of("vm-wait"), host(2)) << "the VM runs on the target once complete is known";
  expect_config_on(rows(2), vm);
  json::value report = verify();
  EXPECT_EQ(report.at("in_flight"), (json::array{"vm-wait"})) << to_text(report);
  EXPECT_NE(text_at(report.at("switches"), "sw-1"), "ok") << to_text(report);

  // Back on the same database file and socket: the stale rows are removed and it completes.
  ASSERT_TRUE(sandbox(1).start());
  ASSERT_TRUE(reaches_state(id, "completed")) << to_text(migration(id));
  record = migration(id);
  EXPECT_FALSE(record.as_object().contains("waiting_for")) << to_text(record);
  expect_nothing_of(rows(1), vm);
  expect_config_on(rows(2), vm);
  EXPECT_EQ(host_of("vm-wait"), host(2));
  expect_clean(verify());
}

TEST_F(ControllerRecovery, TargetSwitchDownDuringPrepareIsRetriedAndTheSourceIsNeverTouched) {
  json::object vm = rich_vm("vm-target", 1, "tap-target");
  add_vm(vm);
  auto source_ports = port_uuids(rows(1), "vm-target");

  ASSERT_TRUE(sandbox(2).stop());
  Answer started = migrate("vm-target", host(1), host(2), "", std::chrono::milliseconds(0));
  ASSERT_EQ(started.status, 202) << started.text;
  int64_t id = id_of(started);
  json::value record;
  bool waiting = eventually([&] {
    record = migration(id);
    return text_at(record, "state") == "preparing" && record.at("attempts").as_int64() > 1 &&
           text_at(record, "waiting_for").find(switch_id(2)) != std::string::npos;
  });
  ASSERT_TRUE(waiting) << to_text(record);
  EXPECT_EQ(port_uuids(rows(1), "vm-target"), source_ports);
  EXPECT_EQ(host_of("vm-target"), host(1));

  ASSERT_TRUE(sandbox(2).start());
  ASSERT_TRUE(reaches_state(id, "completed")) << to_text(migration(id));
  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  expect_clean(verify());
}

TEST_F(ControllerRecovery, APreparedMigrationSurvivesARestartAndCompletesAfterwards) {
  json::object vm = rich_vm("vm-keep", 1, "tap-keep");
  add_vm(vm);
  Answer prepared = migrate("vm-keep", host(1), host(2), "prepare");
  ASSERT_EQ(field(prepared, "state"), "prepared") << prepared.text;
  auto source_ports = port_uuids(rows(1), "vm-keep");
  auto target_ports = port_uuids(rows(2), "vm-keep");
  std::string token = controller().token();

  for (int signal : {SIGTERM, SIGKILL}) {
    SCOPED_TRACE(signal == SIGTERM ? "after SIGTERM" : "after SIGKILL");
    ASSERT_TRUE(controller().kill(signal));
    ASSERT_TRUE(controller().restart());
    EXPECT_EQ(controller().token(), token) << "the token file was not reused";
    EXPECT_EQ(state_of(id_of(prepared)), "prepared");
    // A reconciler pass after the restart leaves both copies alone.
    Answer reconciled = post("/v1/reconcile", json::object{});
    EXPECT_EQ(reconciled.body.at("repairs_started"), 0) << reconciled.text;
    json::value report = verify();
    EXPECT_EQ(report.at("in_flight"), (json::array{"vm-keep"})) << to_text(report);
    EXPECT_EQ(report.at("clean"), true) << to_text(report);
    EXPECT_EQ(port_uuids(rows(1), "vm-keep"), source_ports);
    EXPECT_EQ(port_uuids(rows(2), "vm-keep"), target_ports);
    EXPECT_EQ(host_of("vm-keep"), host(1));
  }

  Answer completed = migrate("vm-keep", host(1), host(2), "complete");
  ASSERT_EQ(field(completed, "state"), "completed") << completed.text;
  EXPECT_EQ(id_of(completed), id_of(prepared));
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(port_uuids(rows(2), "vm-keep"), target_ports);
  expect_clean(verify());
}

// How many migrations the daemon's latest start picked up from the journal (its log says).
size_t resumed_at_last_start(const ControllerProcess& controller) {
  std::string log = controller.log_tail(std::string::npos);
  size_t resumed = 0;
  for (size_t found = log.find(" resume state=", log.rfind("=== test harness: started"));
       found != std::string::npos; found = log.find(" resume state=", found + 1))
    resumed++;
  return resumed;
}

// A burst of VMs spread over the three hosts; VM i moves to the next host. Every fourth VM has
// two interfaces, one of them with an egress max-rate.
struct BurstVm {
  std::string id;
  int home = 0;
  int target = 0;
  json::object config;
};

std::vector<BurstVm> burst_vms(int count) {
  std::vector<BurstVm> vms;
  for (int i = 0; i < count; ++i) {
    BurstVm vm{fmt::format("vm-burst-{:02}", i), i % 3 + 1, (i + 1) % 3 + 1, {}};
    json::object eth0 = ControllerFixture::interface("eth0", fmt::format("tb{:02}a", i),
                                                     fmt::format("52:54:00:bb:{:02x}:01", i));
    eth0["vlan"] = 100 + i;
    json::array interfaces{eth0};
    if (i % 4 == 0) {
      json::object eth1 = ControllerFixture::interface("eth1", fmt::format("tb{:02}b", i),
                                                       fmt::format("52:54:00:bb:{:02x}:02", i));
      eth1["trunks"] = json::array{10, 20};
      eth1["egress_max_rate_bps"] = 1'000'000 + i;
      interfaces.push_back(eth1);
    }
    vm.config = json::object{{"id", vm.id},
                             {"name", vm.id},
                             {"host", ControllerFixture::host(vm.home)},
                             {"interfaces", interfaces}};
    vms.push_back(std::move(vm));
  }
  return vms;
}

class ControllerBurst : public ControllerFixture {
 protected:
  // Registers the VMs and waits until each is on its home switch.
  void add_burst(const std::vector<BurstVm>& vms) {
    for (const BurstVm& vm : vms) {
      Answer added = post("/v1/vms", vm.config);
      ASSERT_EQ(added.status, 201) << added.text;
    }
    ASSERT_TRUE(eventually([&] { return all_on(vms, &BurstVm::home); }))
        << "the VMs were not installed on their hosts";
  }

  // Whether ovs-vsctl shows every VM on exactly the switch of host `vm.*where` and nowhere else.
  bool all_on(const std::vector<BurstVm>& vms, int BurstVm::*where) {
    std::vector<SwitchRows> switches = {rows(1), rows(2), rows(3)};
    for (const BurstVm& vm : vms) {
      size_t interfaces = vm.config.at("interfaces").as_array().size();
      for (int n = 1; n <= kSwitchCount; ++n) {
        size_t wanted = n == vm.*where ? interfaces : 0;
        if (switches[n - 1].ports_of_vm(vm.id).size() != wanted) return false;
      }
    }
    return true;
  }

  // Posts phase-less migrations of vms[from, to) without waiting for them.
  void post_burst(const std::vector<BurstVm>& vms, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      Answer started = migrate(vms[i].id, host(vms[i].home), host(vms[i].target), "",
                               std::chrono::milliseconds(0));
      ASSERT_EQ(started.status, 202) << started.text;
    }
  }

  // Waits until no migration is active, then expects every VM to have completed exactly one
  // migration to its target, a clean verify, and ovs-vsctl to agree with the recorded hosts.
  void expect_burst_converged(const std::vector<BurstVm>& vms) {
    ASSERT_TRUE(eventually([&] {
      Answer health = get("/healthz");
      return health.status == 200 && health.body.at("migrations_in_flight") == 0;
    })) << get("/healthz").text;
    Answer listed = get("/v1/migrations?limit=1000");
    ASSERT_EQ(listed.status, 200) << listed.text;
    EXPECT_EQ(listed.body.as_array().size(), vms.size()) << listed.text;
    for (const json::value& record : listed.body.as_array())
      EXPECT_EQ(text_at(record, "state"), "completed") << to_text(record);

    json::value report;
    EXPECT_TRUE(eventually([&] {
      report = verify();
      return report.is_object() && report.at("clean") == true;
    })) << to_text(report);
    expect_clean(report);
    for (const BurstVm& vm : vms)
      EXPECT_EQ(host_of(vm.id), host(vm.target)) << vm.id;
    EXPECT_TRUE(all_on(vms, &BurstVm::target));
    for (const BurstVm& vm : vms) {
      SCOPED_TRACE(vm.id);
      expect_config_on(rows(vm.target), vm.config);
    }
  }
};

TEST_F(ControllerBurst, ControllerKilledMidBurstResumesAndEveryVmEndsOnItsRecordedHost) {
  std::vector<BurstVm> vms = burst_vms(40);
  add_burst(vms);

  // The burst: phase-less migrations posted without waiting; SIGKILL right after the 25th.
  const size_t kKillAfter = 25;
  post_burst(vms, 0, kKillAfter);
  ASSERT_TRUE(controller().kill(SIGKILL));

  // Restart on the same database; the rest of the burst arrives.
  ASSERT_TRUE(controller().restart());
  std::printf("controller killed after %zu accepted migrations; %zu resumed from the journal\n",
              kKillAfter, resumed_at_last_start(controller()));
  post_burst(vms, kKillAfter, vms.size());

  // Every accepted migration was journaled before it was answered: all of them complete.
  expect_burst_converged(vms);
}

TEST_F(ControllerBurst, ControllerKilledWhileMigrationsWaitOnADownSwitchResumesThemAfterRestart) {
  // With sw-3 down, the moves 2->3 wait in preparing and 3->1 in completing; 1->2 complete.
  std::vector<BurstVm> vms = burst_vms(24);
  add_burst(vms);
  ASSERT_TRUE(sandbox(3).stop());
  post_burst(vms, 0, vms.size());
  size_t touching_sw3 = 0;
  for (const BurstVm& vm : vms)
    touching_sw3 += vm.home == 3 || vm.target == 3;
  json::value listed;
  ASSERT_TRUE(eventually([&] {
    listed = get("/v1/migrations?limit=1000").body;
    if (!listed.is_array() || listed.as_array().size() != vms.size()) return false;
    size_t waiting = 0;
    for (const json::value& record : listed.as_array()) {
      std::string state = text_at(record, "state");
      bool blocked =
          (state == "preparing" || state == "completing") && record.at("attempts").as_int64() > 0;
      if (blocked) waiting++;
      if (!blocked && state != "completed") return false;
    }
    return waiting == touching_sw3;
  })) << to_text(listed);

  ASSERT_TRUE(controller().kill(SIGKILL));
  ASSERT_TRUE(controller().restart());
  EXPECT_EQ(resumed_at_last_start(controller()), touching_sw3);
  ASSERT_TRUE(sandbox(3).start());
  expect_burst_converged(vms);
}

}  // namespace
}  // namespace steward::testing
