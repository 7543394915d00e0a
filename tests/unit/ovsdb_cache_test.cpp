// MonitorCache: monitor replies and update/update2 notifications become the owned-rows view.
#include "controller/southbound/ovsdb/cache.h"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

namespace steward::ovsdb {
namespace {

using Format = MonitorCache::Format;

json::value parse(std::string_view text) {
  return json::parse(text);
}

constexpr const char* kInitial = R"({
  "Bridge": {"b1": {"initial": {"name": "br-int",
                                "ports": ["set", [["uuid", "p1"], ["uuid", "foreign"]]]}}},
  "Port": {"p1": {"initial": {
      "name": "tap0", "interfaces": ["uuid", "i1"], "tag": 100,
      "trunks": ["set", [30, 10]], "qos": ["uuid", "q1"],
      "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "vm-1"],
                               ["steward-iface", "eth0"]]]}}},
  "Interface": {"i1": {"initial": {
      "name": "tap0", "ingress_policing_rate": 1000, "ingress_policing_burst": 100,
      "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "vm-1"],
                               ["steward-iface", "eth0"], ["attached-mac", "52:54:00:00:00:01"],
                               ["iface-id", "eth0"], ["vm-id", "vm-1"],
                               ["steward-ips", "10.0.0.1,fd00::1"], ["color", "blue"]]]}}},
  "QoS": {"q1": {"initial": {
      "type": "linux-htb", "other_config": ["map", [["max-rate", "5000"]]],
      "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "vm-1"]]]}}}
})";

class MonitorCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cache_.reset(parse(kInitial), Format::kUpdate2)); }

  bool apply(std::string_view updates, Format format = Format::kUpdate2) {
    auto changed = cache_.apply(parse(updates), format);
    EXPECT_TRUE(changed) << changed.error().message;
    return changed && *changed;
  }
  const controller::ObservedInterface& eth0() { return cache_.owned().at("vm-1").at(0); }

  MonitorCache cache_{"br-int", "me"};
};

TEST_F(MonitorCacheTest, TheInitialReplyBecomesTheOwnedView) {
  EXPECT_TRUE(cache_.bridge_found());
  EXPECT_EQ(cache_.bridge_uuid(), "b1");
  ASSERT_EQ(cache_.owned().size(), 1u);
  const controller::ObservedInterface& seen = eth0();
  EXPECT_EQ(seen.port_uuid, "p1");
  EXPECT_EQ(seen.interface_uuid, "i1");
  EXPECT_EQ(seen.qos_uuid, "q1");
  EXPECT_EQ(seen.vm_id, "vm-1");

  controller::Interface expected;
  expected.id = "eth0";
  expected.device = "tap0";
  expected.mac = "52:54:00:00:00:01";
  expected.ips = {"10.0.0.1", "fd00::1"};
  expected.vlan = 100;
  expected.trunks = {10, 30};
  expected.ingress_policing_rate_kbps = 1000;
  expected.ingress_policing_burst_kb = 100;
  expected.egress_max_rate_bps = 5000;
  expected.external_ids = {{"color", "blue"}};
  EXPECT_EQ(seen.config, expected);
}

TEST_F(MonitorCacheTest, ModifyDiffsChangeOnlyTheNamedColumns) {
  EXPECT_TRUE(apply(R"({"Port": {"p1": {"modify": {"tag": 200, "trunks": ["set", [10, 20]]}}}})"));
  EXPECT_EQ(eth0().config.vlan, 200);
  EXPECT_EQ(eth0().config.trunks, (std::vector<int>{20, 30}));

  EXPECT_TRUE(apply(R"({"Interface": {"i1": {"modify": {
      "external_ids": ["map", [["color", "blue"], ["tier", "web"]]],
      "ingress_policing_rate": 7}}}})"));
  EXPECT_EQ(eth0().config.external_ids, (std::map<std::string, std::string>{{"tier", "web"}}));
  EXPECT_EQ(eth0().config.ingress_policing_rate_kbps, 7);

  EXPECT_TRUE(apply(R"({"QoS": {"q1": {"modify": {
      "other_config": ["map", [["max-rate", "6000"]]]}}}})"));
  EXPECT_EQ(eth0().config.egress_max_rate_bps, 6000);
}

TEST_F(MonitorCacheTest, AQosRowOfAnotherTypeIsNotTheConfiguredMaxRate) {
  EXPECT_TRUE(apply(R"({"QoS": {"q1": {"modify": {"type": "linux-hfsc"}}}})"));
  EXPECT_EQ(eth0().qos_uuid, "q1");
  EXPECT_EQ(eth0().config.egress_max_rate_bps, 0);
  EXPECT_TRUE(apply(R"({"QoS": {"q1": {"modify": {"type": "linux-htb"}}}})"));
  EXPECT_EQ(eth0().config.egress_max_rate_bps, 5000);
}

TEST_F(MonitorCacheTest, APortThatLeavesTheBridgeLeavesTheView) {
  EXPECT_TRUE(apply(R"({"Bridge": {"b1": {"modify": {"ports": ["uuid", "p1"]}}}})"));
  EXPECT_TRUE(cache_.owned().empty());
  EXPECT_TRUE(apply(R"({"Bridge": {"b1": {"modify": {"ports": ["uuid", "p1"]}}}})"));
  EXPECT_EQ(cache_.owned().size(), 1u);
}

TEST_F(MonitorCacheTest, DeletedRowsLeaveTheView) {
  EXPECT_TRUE(apply(R"({"QoS": {"q1": {"delete": null}},
                        "Port": {"p1": {"modify": {"qos": ["set", []]}}}})"));
  EXPECT_TRUE(eth0().qos_uuid.empty());
  EXPECT_EQ(eth0().config.egress_max_rate_bps, 0);
  EXPECT_TRUE(
      apply(R"({"Port": {"p1": {"delete": null}}, "Interface": {"i1": {"delete": null}}})"));
  EXPECT_TRUE(cache_.owned().empty());
  EXPECT_EQ(cache_.row_count(), 1u);  // the bridge
}

TEST_F(MonitorCacheTest, AChangeToAForeignPortIsNotAChangeOfTheView) {
  EXPECT_FALSE(apply(R"({"Bridge": {"b1": {"modify": {"ports": ["uuid", "foreign"]}}}})"));
  EXPECT_EQ(cache_.owned().size(), 1u);
}

TEST_F(MonitorCacheTest, APortMovedToAnotherVmChangesBothVms) {
  EXPECT_TRUE(apply(R"({"Port": {"p1": {"modify": {
      "external_ids": ["map", [["steward-vm", "vm-2"]]]}}}})"));
  EXPECT_FALSE(cache_.owned().contains("vm-1"));
  ASSERT_TRUE(cache_.owned().contains("vm-2"));
}

TEST_F(MonitorCacheTest, TheDeviceIndexFollowsTheOwnedView) {
  using Owners = std::unordered_map<std::string, std::string>;
  EXPECT_EQ(cache_.vm_by_device(), (Owners{{"tap0", "vm-1"}}));
  EXPECT_TRUE(apply(R"({"Port": {"p1": {"modify": {
      "external_ids": ["map", [["steward-vm", "vm-2"]]]}}}})"));
  EXPECT_EQ(cache_.vm_by_device(), (Owners{{"tap0", "vm-2"}}));
  EXPECT_TRUE(apply(R"({"Bridge": {"b1": {"modify": {"ports": ["uuid", "p1"]}}}})"));
  EXPECT_TRUE(cache_.vm_by_device().empty());
}

TEST_F(MonitorCacheTest, ARowThatLosesTheOwnerMarkerIsDropped) {
  EXPECT_TRUE(apply(R"({"Port": {"p1": {"modify": {
      "external_ids": ["map", [["steward-owner", "someone-else"]]]}}}})"));
  // The port left the view; its QoS row is still marked Steward's and no owned port refers
  // to it: an orphan of the VM.
  ASSERT_EQ(cache_.owned().size(), 1u);
  ASSERT_EQ(cache_.owned().at("vm-1").size(), 1u);
  EXPECT_EQ(eth0().port_uuid, "");
  EXPECT_EQ(eth0().qos_uuid, "q1");
  EXPECT_TRUE(cache_.vm_by_device().empty());
  EXPECT_TRUE(apply(R"({"QoS": {"q1": {"modify": {
      "external_ids": ["map", [["steward-owner", "someone-else"]]]}}}})"));
  EXPECT_TRUE(cache_.owned().empty());
}

TEST_F(MonitorCacheTest, AQosRowWhosePortWasDeletedByHandIsTheVmsOrphan) {
  // `ovs-vsctl del-port tap0`: the Port and Interface rows go, the QoS row (a root row) stays.
  EXPECT_TRUE(apply(R"({"Bridge": {"b1": {"modify": {"ports": ["uuid", "p1"]}}},
                        "Port": {"p1": {"delete": null}},
                        "Interface": {"i1": {"delete": null}}})"));
  ASSERT_EQ(cache_.owned().at("vm-1").size(), 1u);
  EXPECT_EQ(eth0().port_uuid, "");
  EXPECT_EQ(eth0().qos_uuid, "q1");
  // Deleting it empties the view.
  EXPECT_TRUE(apply(R"({"QoS": {"q1": {"delete": null}}})"));
  EXPECT_TRUE(cache_.owned().empty());
}

TEST_F(MonitorCacheTest, TheBridgeGoingAwayIsNoticed) {
  apply(R"({"Bridge": {"b1": {"delete": null}}})");
  EXPECT_FALSE(cache_.bridge_found());
  EXPECT_TRUE(cache_.owned().empty());
}

TEST_F(MonitorCacheTest, MalformedUpdatesAreErrors) {
  for (const char* text : {R"([])", R"({"Port": []})", R"({"Port": {"p1": 5}})",
                           R"({"Port": {"p1": {"insert": 5}}})"}) {
    EXPECT_FALSE(cache_.apply(parse(text), Format::kUpdate2)) << text;
  }
  // Tables Steward does not read are ignored.
  EXPECT_TRUE(cache_.apply(parse(R"({"Mirror": {"m": {"insert": {}}}})"), Format::kUpdate2));
}

TEST(MonitorCachePlainMonitor, RowsOfOthersAreFilteredOut) {
  MonitorCache cache("br-int", "me");
  ASSERT_TRUE(cache.reset(parse(R"({
    "Bridge": {"b1": {"new": {"name": "br-int", "ports": ["set", [["uuid", "p1"], ["uuid", "p2"]]]}},
               "b2": {"new": {"name": "br-ex", "ports": ["set", []]}}},
    "Port": {"p1": {"new": {"name": "tap0", "interfaces": ["uuid", "i1"],
                            "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "v"],
                                                     ["steward-iface", "eth0"]]]}},
             "p2": {"new": {"name": "eth9", "interfaces": ["uuid", "i2"],
                            "external_ids": ["map", []]}}},
    "Interface": {"i1": {"new": {"name": "tap0",
                                 "external_ids": ["map", [["steward-owner", "me"]]]}},
                  "i2": {"new": {"name": "eth9", "external_ids": ["map", []]}}}
  })"),
                          Format::kUpdate));
  EXPECT_EQ(cache.bridge_uuid(), "b1");
  EXPECT_EQ(cache.row_count(), 3u);
  ASSERT_EQ(cache.owned().size(), 1u);

  // RFC 7047 "modify": "new" carries every column, "old" only the changed ones.
  auto changed = cache.apply(parse(R"({"Port": {"p1": {
      "old": {"tag": ["set", []]},
      "new": {"name": "tap0", "interfaces": ["uuid", "i1"], "tag": 7,
              "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "v"],
                                       ["steward-iface", "eth0"]]]}}}})"),
                             Format::kUpdate);
  ASSERT_TRUE(changed);
  EXPECT_EQ(cache.owned().at("v").at(0).config.vlan, 7);

  changed = cache.apply(parse(R"({"Port": {"p1": {"old": {"name": "tap0"}}}})"), Format::kUpdate);
  ASSERT_TRUE(changed);
  EXPECT_TRUE(cache.owned().empty());
}

TEST(MonitorCacheSelect, ASelectReplyLoadsTheSameView) {
  MonitorCache cache("br-int", "me");
  ASSERT_TRUE(cache.load_select(parse(R"([
    {"rows": [{"_uuid": ["uuid", "b1"], "name": "br-int", "ports": ["uuid", "p1"]}]},
    {"rows": [{"_uuid": ["uuid", "p1"], "name": "tap0", "interfaces": ["uuid", "i1"],
               "tag": ["set", []], "trunks": ["set", [5]], "qos": ["set", []],
               "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "v"],
                                        ["steward-iface", "eth0"]]]}]},
    {"rows": [{"_uuid": ["uuid", "i1"], "name": "tap0", "type": "",
               "ingress_policing_rate": 0, "ingress_policing_burst": 0,
               "external_ids": ["map", [["steward-owner", "me"]]]}]},
    {"rows": []}
  ])")));
  ASSERT_EQ(cache.owned().size(), 1u);
  EXPECT_EQ(cache.owned().at("v").at(0).config.trunks, std::vector<int>{5});
  EXPECT_FALSE(cache.owned().at("v").at(0).config.vlan);

  EXPECT_FALSE(cache.load_select(parse(R"([{"rows": []}])")));
  EXPECT_FALSE(cache.load_select(parse(R"([{"rows": [{"name": "x"}]}, {}, {}, {}])")));
}

}  // namespace
}  // namespace steward::ovsdb
