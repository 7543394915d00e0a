// The controller end to end: the real daemon over HTTP, three real ovsdb-server switches, and
// every switch read back with ovs-vsctl. Each test is one migration case of issue 2: what lands
// on the target, what stays on the source and when, rollback, duplicates and late messages,
// back-to-back moves, no-ops and refused input, and rows that belong to someone else.
#include "support/controller_checks.h"
#include "support/controller_fixture.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace steward::testing {
namespace {

namespace json = boost::json;

class ControllerMigration : public ControllerFixture {};

TEST_F(ControllerMigration, EveryInterfaceVlanTrunkPolicingAndQosOfAVmArrivesOnTheTarget) {
  json::object vm = rich_vm("vm-rich", 1, "tap-rich");
  add_vm(vm);
  expect_config_on(rows(1), vm);

  Answer moved = migrate("vm-rich", host(1), host(2));
  ASSERT_EQ(moved.status, 200) << moved.text;
  EXPECT_EQ(field(moved, "state"), "completed") << moved.text;

  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  EXPECT_TRUE(rows(3).ports_of_vm("vm-rich").empty());
  EXPECT_EQ(host_of("vm-rich"), host(2));
  expect_clean(verify());
}

TEST_F(ControllerMigration, TargetIsReadyAfterPrepareAndSourceKeepsItsRowsUntilComplete) {
  json::object vm = rich_vm("vm-prep", 1, "tap-prep");
  add_vm(vm);
  auto source_ports = port_uuids(rows(1), "vm-prep");

  // prepare: the target holds the whole configuration, the source is untouched.
  Answer prepared = migrate("vm-prep", host(1), host(2), "prepare");
  ASSERT_EQ(prepared.status, 200) << prepared.text;
  EXPECT_EQ(field(prepared, "state"), "prepared") << prepared.text;
  expect_config_on(rows(2), vm);
  expect_config_on(rows(1), vm);
  EXPECT_EQ(port_uuids(rows(1), "vm-prep"), source_ports);
  EXPECT_EQ(host_of("vm-prep"), host(1));

  // Neither a reconciler pass nor verify treats the two copies as drift while it is in flight.
  Answer reconciled = post("/v1/reconcile", json::object{});
  ASSERT_EQ(reconciled.status, 200) << reconciled.text;
  EXPECT_EQ(reconciled.body.at("repairs_started"), 0) << reconciled.text;
  json::value report = verify();
  EXPECT_EQ(report.at("clean"), true) << to_text(report);
  EXPECT_EQ(report.at("in_flight"), (json::array{"vm-prep"})) << to_text(report);
  EXPECT_EQ(port_uuids(rows(1), "vm-prep"), source_ports);
  auto target_ports = port_uuids(rows(2), "vm-prep");

  // complete: the source goes, the target's rows stay as they were (no port flap).
  Answer completed = migrate("vm-prep", host(1), host(2), "complete");
  ASSERT_EQ(completed.status, 200) << completed.text;
  EXPECT_EQ(field(completed, "state"), "completed") << completed.text;
  EXPECT_EQ(id_of(completed), id_of(prepared));
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(port_uuids(rows(2), "vm-prep"), target_ports);
  EXPECT_EQ(host_of("vm-prep"), host(2));
  expect_clean(verify());
}

TEST_F(ControllerMigration, RollbackAfterPrepareRemovesEverythingOnTheTargetAndKeepsTheSource) {
  json::object vm = rich_vm("vm-back", 1, "tap-back");
  add_vm(vm);
  auto source_before = rows(1).all_uuids();
  auto target_before = rows(2).all_uuids();

  Answer prepared = migrate("vm-back", host(1), host(2), "prepare");
  ASSERT_EQ(prepared.status, 200) << prepared.text;
  ASSERT_EQ(field(prepared, "state"), "prepared") << prepared.text;
  expect_config_on(rows(2), vm);

  Answer rolled_back = migrate("vm-back", host(1), host(2), "rollback");
  ASSERT_EQ(rolled_back.status, 200) << rolled_back.text;
  EXPECT_EQ(field(rolled_back, "state"), "rolled_back") << rolled_back.text;
  EXPECT_EQ(id_of(rolled_back), id_of(prepared));

  // Ports, interfaces and the QoS row are gone from the target: it is as it was before.
  SwitchRows target = rows(2);
  expect_nothing_of(target, vm);
  EXPECT_TRUE(target.owned_qos().empty());
  EXPECT_EQ(target.all_uuids(), target_before);
  EXPECT_EQ(rows(1).all_uuids(), source_before);
  expect_config_on(rows(1), vm);
  EXPECT_EQ(host_of("vm-back"), host(1));
  expect_clean(verify());

  // Migrating again afterwards works.
  Answer again = migrate("vm-back", host(1), host(2));
  ASSERT_EQ(again.status, 200) << again.text;
  EXPECT_EQ(field(again, "state"), "completed") << again.text;
  EXPECT_NE(id_of(again), id_of(prepared));
  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of("vm-back"), host(2));
  expect_clean(verify());
}

TEST_F(ControllerMigration, DuplicatePrepareAndCompleteMessagesAndARepeatedMigrationChangeNothing) {
  json::object vm = rich_vm("vm-dup", 1, "tap-dup");
  add_vm(vm);

  Answer prepared = migrate("vm-dup", host(1), host(2), "prepare");
  ASSERT_EQ(prepared.status, 200) << prepared.text;
  ASSERT_EQ(field(prepared, "state"), "prepared") << prepared.text;
  auto target_ports = port_uuids(rows(2), "vm-dup");
  auto target_uuids = rows(2).all_uuids();

  Answer prepared_again = migrate("vm-dup", host(1), host(2), "prepare");
  EXPECT_EQ(prepared_again.status, 200) << prepared_again.text;
  EXPECT_EQ(field(prepared_again, "outcome"), "duplicate") << prepared_again.text;
  EXPECT_EQ(id_of(prepared_again), id_of(prepared));
  EXPECT_EQ(rows(2).all_uuids(), target_uuids);

  Answer completed = migrate("vm-dup", host(1), host(2), "complete");
  ASSERT_EQ(completed.status, 200) << completed.text;
  ASSERT_EQ(field(completed, "state"), "completed") << completed.text;
  auto source_after = rows(1).all_uuids();

  // The same complete again, then the whole migration again: same record, same rows.
  for (const std::string phase : {"complete", ""}) {
    SCOPED_TRACE("repeated phase '" + phase + "'");
    Answer repeated = migrate("vm-dup", host(1), host(2), phase);
    EXPECT_EQ(repeated.status, 200) << repeated.text;
    EXPECT_EQ(id_of(repeated), id_of(prepared)) << repeated.text;
    EXPECT_EQ(field(repeated, "state"), "completed") << repeated.text;
  }
  EXPECT_EQ(migrations_of("vm-dup").size(), 1u);
  SwitchRows target = rows(2);
  expect_config_on(target, vm);
  EXPECT_EQ(port_uuids(target, "vm-dup"), target_ports);
  EXPECT_EQ(target.all_uuids(), target_uuids);
  EXPECT_EQ(rows(1).all_uuids(), source_after);
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of("vm-dup"), host(2));
  expect_clean(verify());
}

TEST_F(ControllerMigration, AWholeMigrationSentTwiceAtOnceRunsOnce) {
  json::object vm = rich_vm("vm-twice", 1, "tap-twice");
  add_vm(vm);

  Answer first = migrate("vm-twice", host(1), host(2), "", std::chrono::milliseconds(0));
  ASSERT_EQ(first.status, 202) << first.text;
  Answer second = migrate("vm-twice", host(1), host(2), "", std::chrono::milliseconds(0));
  EXPECT_LT(second.status, 300) << second.text;
  EXPECT_EQ(id_of(second), id_of(first)) << second.text;

  ASSERT_TRUE(reaches_state(id_of(first), "completed"));
  EXPECT_EQ(migrations_of("vm-twice").size(), 1u);
  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  expect_clean(verify());
}

TEST_F(ControllerMigration, ALateMessageForAnOlderMigrationOfTheSameVmChangesNothing) {
  json::object vm = rich_vm("vm-late", 1, "tap-late");
  add_vm(vm);
  Answer first = migrate("vm-late", host(1), host(2));
  ASSERT_EQ(field(first, "state"), "completed") << first.text;
  Answer second = migrate("vm-late", host(2), host(3), "prepare");
  ASSERT_EQ(field(second, "state"), "prepared") << second.text;

  auto snapshot = [&] {
    return std::vector<std::set<std::string>>{rows(1).all_uuids(), rows(2).all_uuids(),
                                              rows(3).all_uuids()};
  };
  auto before = snapshot();

  // While B->C is prepared: late rollback, complete and whole A->B messages.
  for (const std::string phase : {"rollback", "complete", "", "prepare"}) {
    SCOPED_TRACE("late A->B phase '" + phase + "' while B->C is prepared");
    Answer late = migrate("vm-late", host(1), host(2), phase);
    EXPECT_EQ(late.status, 200) << late.text;
    EXPECT_EQ(field(late, "outcome"), "stale") << late.text;
    EXPECT_EQ(snapshot(), before);
    EXPECT_EQ(state_of(id_of(second)), "prepared");
    EXPECT_EQ(host_of("vm-late"), host(2));
  }
  expect_config_on(rows(2), vm);
  expect_config_on(rows(3), vm);

  // B->C completes; late messages of either older migration still change nothing.
  Answer completed = migrate("vm-late", host(2), host(3), "complete");
  ASSERT_EQ(field(completed, "state"), "completed") << completed.text;
  before = snapshot();
  for (const auto& [source, target, phase] :
       std::vector<std::tuple<int, int, std::string>>{{1, 2, "rollback"},
                                                      {1, 2, "complete"},
                                                      {2, 3, "rollback"},
                                                      {2, 3, "prepare"},
                                                      {1, 2, ""}}) {
    SCOPED_TRACE(fmt::format("late {}->{} phase '{}' after B->C completed", source, target, phase));
    Answer late = migrate("vm-late", host(source), host(target), phase);
    EXPECT_EQ(late.status, 200) << late.text;
    EXPECT_EQ(field(late, "outcome"), "stale") << late.text;
    EXPECT_EQ(snapshot(), before);
  }
  EXPECT_EQ(migrations_of("vm-late").size(), 2u);
  EXPECT_EQ(host_of("vm-late"), host(3));
  EXPECT_TRUE(only_on("vm-late", 3, 3));
  expect_clean(verify());
}

TEST_F(ControllerMigration, BackToBackMigrationsAToBThenBToCLeaveTheVmOnlyOnC) {
  json::object vm = rich_vm("vm-hop", 1, "tap-hop");
  add_vm(vm);

  Answer first = migrate("vm-hop", host(1), host(2));
  ASSERT_EQ(first.status, 200) << first.text;
  EXPECT_EQ(field(first, "state"), "completed") << first.text;
  Answer second = migrate("vm-hop", host(2), host(3));
  ASSERT_EQ(second.status, 200) << second.text;
  EXPECT_EQ(field(second, "state"), "completed") << second.text;

  expect_config_on(rows(3), vm);
  expect_nothing_of(rows(1), vm);
  expect_nothing_of(rows(2), vm);
  EXPECT_EQ(host_of("vm-hop"), host(3));
  EXPECT_EQ(migrations_of("vm-hop").size(), 2u);
  expect_clean(verify());
}

TEST_F(ControllerMigration, AMigrationBetweenTwoHostsOfTheSameSwitchLeavesTheRowsInPlace) {
  // A top-of-rack switch serves several hosts: compute-1b shares sw-1 with compute-1.
  Answer added = post("/v1/hosts", json::object{{"id", "compute-1b"}, {"switch", switch_id(1)}});
  ASSERT_EQ(added.status, 201) << added.text;
  json::object vm = rich_vm("vm-rack", 1, "tap-rack");
  add_vm(vm);
  auto before = std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()};

  for (const std::string phase : {"prepare", "complete"}) {
    SCOPED_TRACE(phase);
    Answer moved = migrate("vm-rack", host(1), "compute-1b", phase);
    EXPECT_EQ(moved.status, 200) << moved.text;
    // The configuration never leaves the switch the VM runs on, not even for a moment.
    EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);
  }
  EXPECT_EQ(host_of("vm-rack"), "compute-1b");
  expect_config_on(rows(1), vm);
  expect_clean(verify());

  // A rollback between them removes nothing either.
  Answer prepared = migrate("vm-rack", "compute-1b", host(1), "prepare");
  EXPECT_EQ(field(prepared, "state"), "prepared") << prepared.text;
  Answer rolled_back = migrate("vm-rack", "compute-1b", host(1), "rollback");
  EXPECT_EQ(field(rolled_back, "state"), "rolled_back") << rolled_back.text;
  EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);
  EXPECT_EQ(host_of("vm-rack"), "compute-1b");

  // And back, in one message.
  Answer back = migrate("vm-rack", "compute-1b", host(1));
  EXPECT_EQ(back.status, 200) << back.text;
  EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);
  EXPECT_EQ(host_of("vm-rack"), host(1));
  expect_clean(verify());
}

TEST_F(ControllerMigration, ADeletedVmLeavesNoRowsBehind) {
  json::object vm = rich_vm("vm-gone", 1, "tap-gone");
  add_vm(vm);
  ASSERT_TRUE(sandbox(1).add_foreign_port("foreign0"));
  Answer deleted = call("DELETE", "/v1/vms/vm-gone");
  ASSERT_EQ(deleted.status, 204) << deleted.text;
  EXPECT_TRUE(eventually([&] { return rows(1).owned_ports().empty(); }));
  SwitchRows after = rows(1);
  expect_nothing_of(after, vm);
  EXPECT_TRUE(after.owned_qos().empty());
  EXPECT_EQ(after.ports.count("foreign0"), 1u);
  expect_clean(verify());
}

TEST_F(ControllerMigration, SameHostMigrationIsANoopAndRecordsNothing) {
  json::object vm = rich_vm("vm-stay", 1, "tap-stay");
  add_vm(vm);
  auto before = std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()};

  for (const std::string phase : {"", "prepare", "complete", "rollback"}) {
    SCOPED_TRACE("phase '" + phase + "'");
    Answer stay = migrate("vm-stay", host(1), host(1), phase);
    EXPECT_EQ(stay.status, 200) << stay.text;
    EXPECT_EQ(field(stay, "outcome"), "noop") << stay.text;
  }
  EXPECT_TRUE(migrations_of("vm-stay").empty());
  EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);
  EXPECT_EQ(host_of("vm-stay"), host(1));
  expect_clean(verify());
}

TEST_F(ControllerMigration, UnknownVmUnknownHostAndMalformedInputAreRefusedAndChangeNothing) {
  json::object vm = rich_vm("vm-known", 1, "tap-known");
  add_vm(vm);
  auto before = std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()};

  struct Refused {
    std::string target;
    std::string body;
    int status;
    std::string message_names;  // the message must contain this
  };
  std::string migrations = "/v1/migrations?wait=2000";
  std::vector<Refused> cases = {
      {migrations, R"({"vm":"vm-ghost","source_host":"compute-1","target_host":"compute-2"})", 404,
       "vm-ghost"},
      {migrations, R"({"vm":"vm-known","source_host":"compute-1","target_host":"compute-9"})", 404,
       "compute-9"},
      {migrations, R"({"vm":"vm-known","source_host":"compute-8","target_host":"compute-2"})", 404,
       "compute-8"},
      {migrations, R"({"vm":"vm-known","source_host":"compute-1",)", 400, "malformed JSON"},
      {migrations, "", 400, "malformed JSON"},
      {migrations, R"(["vm-known","compute-1","compute-2"])", 400, "object"},
      {migrations, R"({"vm":"vm-known","source_host":"compute-1"})", 400, "target_host"},
      {migrations, R"({"vm":7,"source_host":"compute-1","target_host":"compute-2"})", 400, "vm"},
      {migrations,
       R"({"vm":"vm-known","source_host":"compute-1","target_host":"compute-2","phase":"sideways"})",
       400, "phase"},
      {"/v1/migrations?wait=soon",
       R"({"vm":"vm-known","source_host":"compute-1","target_host":"compute-2"})", 400, "wait"},
      // The VM does not run on the named source: refused, not guessed.
      {migrations, R"({"vm":"vm-known","source_host":"compute-2","target_host":"compute-3"})", 409,
       "compute-1"},
      {"/v1/vms/vm-known/placement", R"({"host":"compute-9"})", 404, "compute-9"},
      {"/v1/vms/vm-ghost/placement", R"({"host":"compute-2"})", 404, "vm-ghost"},
      {"/v1/vms/vm-known/placement", R"({"where":"compute-2"})", 400, "host"},
      {"/v1/notifications/nova", "{not json", 400, "JSON"},
  };
  for (const Refused& refused : cases) {
    SCOPED_TRACE("POST " + refused.target + " " + refused.body);
    Answer answer = call("POST", refused.target, refused.body);
    EXPECT_EQ(answer.status, refused.status) << answer.text;
    EXPECT_NE(answer.error_message().find(refused.message_names), std::string::npos)
        << "the message does not name '" << refused.message_names << "': " << answer.text;
  }

  Answer recorded = get("/v1/migrations");
  EXPECT_EQ(recorded.body, json::array()) << recorded.text;
  EXPECT_EQ(get("/healthz").body.at("migrations_in_flight"), 0);
  EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);
  EXPECT_EQ(host_of("vm-known"), host(1));
  expect_clean(verify());
}

TEST_F(ControllerMigration, ATargetPortNameTakenBySomeoneElseFailsTheMigrationAndKeepsTheSource) {
  json::object vm = rich_vm("vm-clash", 1, "tap-clash");
  add_vm(vm);
  ASSERT_TRUE(sandbox(2).add_foreign_port("tap-clash1"));
  SwitchRows target_before = rows(2);
  auto source_before = rows(1).all_uuids();

  Answer refused = migrate("vm-clash", host(1), host(2));
  ASSERT_EQ(refused.status, 200) << refused.text;
  EXPECT_EQ(field(refused, "state"), "failed") << refused.text;
  EXPECT_NE(field(refused, "waiting_for").find("tap-clash1"), std::string::npos) << refused.text;

  // Nothing of the VM on the target (the transaction is all or nothing), the foreign port and
  // the source as they were, the VM still recorded on the source.
  SwitchRows target = rows(2);
  EXPECT_TRUE(target.ports_of_vm("vm-clash").empty());
  EXPECT_TRUE(target.owned_qos().empty());
  EXPECT_EQ(target.all_uuids(), target_before.all_uuids());
  EXPECT_EQ(rows(1).all_uuids(), source_before);
  EXPECT_EQ(host_of("vm-clash"), host(1));
  expect_clean(verify());

  // Once the name is free, the VM moves.
  ASSERT_TRUE(sandbox(2).vsctl({"del-port", "tap-clash1"}));
  Answer again = migrate("vm-clash", host(1), host(2));
  EXPECT_EQ(field(again, "state"), "completed") << again.text;
  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
}

TEST_F(ControllerMigration, ADeviceNameAnotherVmAlreadyUsesIsRefusedBeforeAnySwitchSeesIt) {
  // Two VMs with one tap name would fight over one Port once they meet on a switch.
  json::object resident = rich_vm("vm-resident", 2, "tap-same");
  add_vm(resident);
  json::object other = rich_vm("vm-other", 1, "tap-other");
  add_vm(other);
  auto before = std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()};

  Answer added = post("/v1/vms", rich_vm("vm-newcomer", 1, "tap-same"));
  EXPECT_EQ(added.status, 409) << added.text;
  EXPECT_NE(added.error_message().find("vm-resident"), std::string::npos) << added.text;
  json::object renamed = other.at("interfaces").as_array()[0].as_object();
  renamed["device"] = "tap-same0";
  Answer edited = call("PUT", "/v1/vms/vm-other/interfaces/eth0", json::serialize(renamed));
  EXPECT_EQ(edited.status, 409) << edited.text;

  EXPECT_EQ(get("/v1/vms/vm-newcomer").status, 404);
  EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);
  expect_config_on(rows(1), other);
  expect_config_on(rows(2), resident);
  expect_clean(verify());
}

TEST_F(ControllerMigration, CleanupOnTheSourceRemovesOnlyStewardOwnedRows) {
  json::object vm = rich_vm("vm-shared", 1, "tap-shared");
  add_vm(vm);

  // Someone else's port with its interface and QoS row on the same bridge, and a port that
  // names the VM but belongs to another controller (a different steward-owner).
  OvsSandbox& source = sandbox(1);
  ASSERT_TRUE(source.add_foreign_port("foreign0"));
  auto foreign_qos = source.add_foreign_qos();
  ASSERT_TRUE(foreign_qos) << foreign_qos.error().message;
  ASSERT_TRUE(source.vsctl({"set", "port", "foreign0", "qos=" + *foreign_qos}));
  ASSERT_TRUE(source.vsctl({"add-port", source.bridge(), "other0", "--", "set", "port", "other0",
                            "external_ids:steward-owner=other-controller",
                            "external_ids:steward-vm=vm-shared", "--", "set", "interface", "other0",
                            "external_ids:steward-owner=other-controller",
                            "external_ids:steward-vm=vm-shared"}));
  SwitchRows before = rows(1);
  ASSERT_EQ(before.ports.count("foreign0"), 1u);
  ASSERT_EQ(before.ports.count("other0"), 1u);

  Answer moved = migrate("vm-shared", host(1), host(2));
  ASSERT_EQ(moved.status, 200) << moved.text;
  ASSERT_EQ(field(moved, "state"), "completed") << moved.text;

  SwitchRows after = rows(1);
  expect_nothing_of(after, vm);
  for (const std::string name : {"foreign0", "other0"}) {
    SCOPED_TRACE(name);
    ASSERT_EQ(after.ports.count(name), 1u) << "Port " << name << " was removed";
    EXPECT_EQ(after.ports.at(name).uuid, before.ports.at(name).uuid);
    EXPECT_TRUE(after.ports.at(name).in_bridge);
    ASSERT_EQ(after.interfaces.count(name), 1u) << "Interface " << name << " was removed";
    EXPECT_EQ(after.interfaces.at(name).uuid, before.interfaces.at(name).uuid);
  }
  ASSERT_EQ(after.qos.count(*foreign_qos), 1u) << "the foreign QoS row was removed";
  EXPECT_EQ(after.ports.at("foreign0").qos, *foreign_qos);
  EXPECT_EQ(after.qos.at(*foreign_qos).other_config, before.qos.at(*foreign_qos).other_config);
  expect_config_on(rows(2), vm);
  expect_clean(verify());
}

}  // namespace
}  // namespace steward::testing
