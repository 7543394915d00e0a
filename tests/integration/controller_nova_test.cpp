// The controller end to end fed the way a cloud feeds it: OpenStack Nova live-migration
// notifications posted to /v1/notifications/nova, and placements when the `post` message never
// arrives. The real daemon over HTTP, three real ovsdb-server switches (sw-n serves compute-n),
// every switch read back with ovs-vsctl. Notifications are the samples of tests/data/nova
// (instance 4c1f2a9e-..., compute-1 -> compute-2) and the demo trace of examples/demo.
#include "support/controller_checks.h"
#include "support/controller_fixture.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <signal.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace steward::testing {
namespace {

namespace json = boost::json;

constexpr const char* kSampleInstance = "4c1f2a9e-7b3d-4e8a-a1c5-9d2e6f0b3a71";

class ControllerNova : public ControllerFixture {};

std::string source_file(const std::string& relative) {
  std::ifstream in(std::string(STEWARD_SOURCE_DIR) + "/" + relative);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// One sample notification of tests/data/nova (`name` without .json). For another instance the
// uuid is replaced and the message id made unique to it.
json::object nova_sample(const std::string& name, const std::string& instance = kSampleInstance) {
  json::value parsed = json::parse(source_file("tests/data/nova/" + name + ".json"));
  json::object notification = parsed.as_object();
  if (instance != kSampleInstance) {
    notification["payload"].as_object()["nova_object.data"].as_object()["uuid"] = instance;
    notification["message_id"] =
        std::string(notification["message_id"].as_string()) + "-" + instance.substr(0, 8);
  }
  return notification;
}

// A VM the samples describe: on compute-1, with the two ports of the samples' ip_addresses.
json::object nova_vm(const std::string& id, const std::string& device_suffix) {
  json::object eth0 = ControllerFixture::interface("8e5d3c1a-2f4b-4a6e-9c7d-1b0a3e5f7d92",
                                                   "tap8e5d" + device_suffix, "fa:16:3e:5a:c2:19");
  eth0["ips"] = json::array{"198.18.112.24"};
  eth0["vlan"] = 112;
  eth0["egress_max_rate_bps"] = 200'000'000;
  json::object eth1 = ControllerFixture::interface("b7a9e4d2-6c1f-4d3b-8e2a-5f9c0d7b1e46",
                                                   "tapb7a9" + device_suffix, "fa:16:3e:0e:7f:d3");
  eth1["ips"] = json::array{"198.19.0.40"};
  eth1["trunks"] = json::array{112, 140};
  return json::object{{"id", id},
                      {"name", "db-07"},
                      {"host", ControllerFixture::host(1)},
                      {"interfaces", json::array{eth0, eth1}}};
}

TEST_F(ControllerNova, PostNeverArrivesAndAPlacementCompletesThePreparedMigration) {
  json::object vm = rich_vm("vm-place", 1, "tap-place");
  add_vm(vm);
  Answer prepared = migrate("vm-place", host(1), host(2), "prepare");
  ASSERT_EQ(field(prepared, "state"), "prepared") << prepared.text;

  // No complete comes; the VM manager only says where the VM runs now.
  Answer placed = post("/v1/vms/vm-place/placement?wait=10000", json::object{{"host", host(2)}});
  ASSERT_EQ(placed.status, 200) << placed.text;
  EXPECT_EQ(id_of(placed), id_of(prepared)) << placed.text;
  EXPECT_EQ(field(placed, "state"), "completed") << placed.text;

  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of("vm-place"), host(2));
  EXPECT_EQ(migrations_of("vm-place").size(), 1u);
  expect_clean(verify());
}

TEST_F(ControllerNova, APlacementAloneMovesAVmAndOneThatAgreesChangesNothing) {
  json::object vm = rich_vm("vm-where", 1, "tap-where");
  add_vm(vm);
  auto before = std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()};

  Answer agrees = post("/v1/vms/vm-where/placement?wait=10000", json::object{{"host", host(1)}});
  EXPECT_EQ(agrees.status, 200) << agrees.text;
  EXPECT_TRUE(migrations_of("vm-where").empty());
  EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);

  Answer moved = post("/v1/vms/vm-where/placement?wait=10000", json::object{{"host", host(3)}});
  ASSERT_EQ(moved.status, 200) << moved.text;
  EXPECT_EQ(field(moved, "state"), "completed") << moved.text;
  expect_config_on(rows(3), vm);
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of("vm-where"), host(3));
  expect_clean(verify());
}

TEST_F(ControllerNova, PostNeverArrivesAndAPostDestEndNotificationCompletesThePreparedMigration) {
  json::object vm = nova_vm(kSampleInstance, "0");
  add_vm(vm);
  Answer prepared = migrate(kSampleInstance, host(1), host(2), "prepare");
  ASSERT_EQ(field(prepared, "state"), "prepared") << prepared.text;

  // Only the destination's post_dest.end arrives: its payload host is the destination.
  Answer post_dest = notify_nova(nova_sample("live_migration_post_dest_end"));
  ASSERT_EQ(post_dest.status, 200) << post_dest.text;
  EXPECT_EQ(id_of(post_dest), id_of(prepared)) << post_dest.text;
  EXPECT_EQ(field(post_dest, "state"), "completed") << post_dest.text;

  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of(kSampleInstance), host(2));
  expect_clean(verify());
}

TEST_F(ControllerNova, NovaLiveMigrationNotificationsMoveTheVmStepByStep) {
  json::object vm = nova_vm(kSampleInstance, "0");
  add_vm(vm);
  auto source_ports = port_uuids(rows(1), kSampleInstance);

  // pre.start (from the destination): the target is ready, the source untouched.
  Answer pre_start = notify_nova(nova_sample("live_migration_pre_start"));
  ASSERT_EQ(pre_start.status, 200) << pre_start.text;
  EXPECT_EQ(field(pre_start, "state"), "prepared") << pre_start.text;
  int64_t id = id_of(pre_start);
  Answer pre_end = notify_nova(nova_sample("live_migration_pre_end"));
  EXPECT_EQ(pre_end.status, 200) << pre_end.text;
  expect_config_on(rows(2), vm);
  expect_config_on(rows(1), vm);
  EXPECT_EQ(port_uuids(rows(1), kSampleInstance), source_ports);
  EXPECT_EQ(host_of(kSampleInstance), host(1));

  // post.start (from the source, naming only itself): the VM runs on the destination.
  Answer post_start = notify_nova(nova_sample("live_migration_post_start"));
  ASSERT_EQ(post_start.status, 200) << post_start.text;
  EXPECT_EQ(id_of(post_start), id) << post_start.text;
  EXPECT_EQ(field(post_start, "state"), "completed") << post_start.text;
  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  auto target_uuids = rows(2).all_uuids();

  // The rest of the sequence, and a redelivered post.start, change nothing.
  for (const std::string name : {"live_migration_post_dest_start", "live_migration_post_end",
                                 "live_migration_post_dest_end", "live_migration_post_start"}) {
    SCOPED_TRACE(name);
    Answer later = notify_nova(nova_sample(name));
    EXPECT_LT(later.status, 300) << later.text;
    EXPECT_EQ(rows(2).all_uuids(), target_uuids);
  }
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of(kSampleInstance), host(2));
  EXPECT_EQ(migrations_of(kSampleInstance).size(), 1u);
  expect_clean(verify());
}

TEST_F(ControllerNova, APostStartAfterTheControllerWasKilledStillFindsTheDestination) {
  json::object vm = nova_vm(kSampleInstance, "0");
  add_vm(vm);
  Answer pre_start = notify_nova(nova_sample("live_migration_pre_start"));
  ASSERT_EQ(field(pre_start, "state"), "prepared") << pre_start.text;

  // The restarted daemon remembers no Nova event: post.start, which names only the source,
  // must be matched with the journaled migration.
  ASSERT_TRUE(controller().kill(SIGKILL));
  ASSERT_TRUE(controller().restart());
  Answer post_start = notify_nova(nova_sample("live_migration_post_start"));
  ASSERT_EQ(post_start.status, 200) << post_start.text;
  EXPECT_EQ(id_of(post_start), id_of(pre_start)) << post_start.text;
  EXPECT_EQ(field(post_start, "state"), "completed") << post_start.text;
  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of(kSampleInstance), host(2));
  expect_clean(verify());
}

TEST_F(ControllerNova, NovaRollbackAndAbortNotificationsKeepTheVmOnTheSource) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> sequences = {
      {"5a0e6d2c-1b7f-4c3a-9e8d-2f4b6a8c0e11",
       {"live_migration_rollback_start", "live_migration_rollback_dest_start",
        "live_migration_rollback_dest_end", "live_migration_rollback_end"}},
      {"6b1f7e3d-2c8a-4d4b-8f9e-3a5c7b9d1f22",
       {"live_migration_abort_start", "live_migration_abort_end", "live_migration_rollback_start",
        "live_migration_rollback_dest_end", "live_migration_rollback_end"}},
  };
  int device = 0;
  for (const auto& [instance, after_pre] : sequences) {
    SCOPED_TRACE(instance);
    json::object vm = nova_vm(instance, std::to_string(device++));
    add_vm(vm);
    auto source_uuids = rows(1).all_uuids();
    auto target_uuids = rows(2).all_uuids();

    Answer pre_start = notify_nova(nova_sample("live_migration_pre_start", instance));
    ASSERT_EQ(field(pre_start, "state"), "prepared") << pre_start.text;
    expect_config_on(rows(2), vm);
    for (const std::string& name : after_pre) {
      SCOPED_TRACE(name);
      Answer answer = notify_nova(nova_sample(name, instance));
      EXPECT_LT(answer.status, 300) << answer.text;
    }
    EXPECT_EQ(migration(id_of(pre_start)).at("state"), "rolled_back");
    expect_nothing_of(rows(2), vm);
    EXPECT_EQ(rows(2).all_uuids(), target_uuids);
    EXPECT_EQ(rows(1).all_uuids(), source_uuids);
    EXPECT_EQ(host_of(instance), host(1));
  }
  expect_clean(verify());
}

TEST_F(ControllerNova, TheDemoTraceReplayedThroughTheDaemonLeavesEveryVmOnItsExpectedHost) {
  // The demo inventory's hosts and switches are the fixture's: compute-n on sw-n.
  json::object inventory = json::parse(source_file("examples/demo/inventory.json")).as_object();
  for (const json::value& known : inventory.at("hosts").as_array()) {
    std::string id(known.at("id").as_string());
    ASSERT_EQ(json::value_to<std::string>(known.at("switch")),
              switch_id(std::stoi(id.substr(id.find('-') + 1))));
  }
  std::map<std::string, json::object> vms;
  for (const json::value& vm : inventory.at("vms").as_array()) {
    Answer added = post("/v1/vms", vm);
    ASSERT_EQ(added.status, 201) << added.text;
    vms[std::string(vm.at("id").as_string())] = vm.as_object();
  }
  auto host_number = [](const json::value& host_name) {
    std::string name(host_name.as_string());
    return std::stoi(name.substr(name.find('-') + 1));
  };
  auto all_on = [&](const std::map<std::string, int>& wanted) {
    std::vector<SwitchRows> switches = {rows(1), rows(2), rows(3)};
    for (const auto& [id, n] : wanted) {
      size_t interfaces = vms.at(id).at("interfaces").as_array().size();
      for (int other = 1; other <= kSwitchCount; ++other) {
        if (switches[other - 1].ports_of_vm(id).size() != (other == n ? interfaces : 0))
          return false;
      }
    }
    return true;
  };
  std::map<std::string, int> initial;
  for (const auto& [id, vm] : vms)
    initial[id] = host_number(vm.at("host"));
  ASSERT_TRUE(eventually([&] { return all_on(initial); })) << "demo VMs not installed";

  // Replay the trace one notification after another, each given time to settle.
  std::istringstream trace(source_file("examples/demo/nova-trace.jsonl"));
  int replayed = 0;
  for (std::string line; std::getline(trace, line);) {
    if (line.empty()) continue;
    Answer answer = call("POST", "/v1/notifications/nova?wait=10000", line);
    EXPECT_LT(answer.status, 300) << "notification " << replayed << ": " << answer.text;
    replayed++;
  }
  EXPECT_GT(replayed, 200);

  json::object expected = json::parse(source_file("examples/demo/expected-hosts.json")).as_object();
  ASSERT_EQ(expected.size(), vms.size());
  std::map<std::string, int> final_hosts;
  for (const auto& [id, host_name] : expected)
    final_hosts[std::string(id)] = host_number(host_name);
  ASSERT_TRUE(eventually([&] { return get("/healthz").body.at("migrations_in_flight") == 0; }));
  for (const auto& [id, n] : final_hosts)
    EXPECT_EQ(host_of(id), host(n)) << id;
  EXPECT_TRUE(all_on(final_hosts));
  for (const auto& [id, n] : final_hosts) {
    SCOPED_TRACE(id);
    expect_config_on(rows(n), vms.at(id));
  }
  expect_clean(verify());
}

}  // namespace
}  // namespace steward::testing
