// The ledger file: what is recorded survives reopening, a torn last line is ignored, and an
// entry for an object that turned out to exist already can be forgotten.
#include "vpn/steering/cgroup.h"
#include "vpn/steering/ledger.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace steward::vpn {
namespace {

class LedgerFile : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ =
        std::filesystem::temp_directory_path() / ("steward-ledger-" + std::to_string(::getpid()));
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  static LedgerEntry route(const std::string& prefix) {
    LedgerEntry entry;
    entry.kind = LedgerEntry::Kind::kRoute;
    entry.text = prefix;
    entry.table = 7270;
    entry.priority = 4000;
    return entry;
  }
  std::filesystem::path directory_;
};

TEST_F(LedgerFile, EntriesSurviveReopeningInOrder) {
  LedgerEntry rule;
  rule.kind = LedgerEntry::Kind::kRule;
  rule.table = 7270;
  rule.priority = 7270;
  rule.mark = 0x7270;
  rule.family = 6;
  {
    auto ledger = Ledger::open(directory_, "work");
    ASSERT_TRUE(ledger);
    ASSERT_TRUE(ledger->record(rule));
    ASSERT_TRUE(ledger->record(route("198.18.4.0/24")));
  }

  auto again = Ledger::open(directory_, "work");
  ASSERT_TRUE(again);
  auto entries = again->entries();
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0], rule);
  EXPECT_EQ((*entries)[1], route("198.18.4.0/24"));
}

TEST_F(LedgerFile, ATornLastLineIsIgnored) {
  auto ledger = Ledger::open(directory_, "work");
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->record(route("198.18.4.0/24")));
  std::ofstream(ledger->path(), std::ios::app) << "route\t\t198.18.6";
  auto entries = ledger->entries();
  ASSERT_TRUE(entries);
  EXPECT_EQ(entries->size(), 1u);
}

TEST_F(LedgerFile, ForgetLastDropsOnlyTheNewestEntry) {
  auto ledger = Ledger::open(directory_, "work");
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->record(route("198.18.4.0/24")));
  ASSERT_TRUE(ledger->record(route("198.18.6.0/24")));
  ASSERT_TRUE(ledger->forget_last());
  auto entries = ledger->entries();
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ(entries->front().text, "198.18.4.0/24");
}

TEST_F(LedgerFile, ForgetDropsEveryCopyOfOneEntryAndKeepsTheOrderOfTheRest) {
  auto ledger = Ledger::open(directory_, "work");
  ASSERT_TRUE(ledger);
  for (const char* prefix : {"198.18.4.0/24", "198.18.6.0/24", "198.18.4.0/24", "198.18.7.0/24"})
    ASSERT_TRUE(ledger->record(route(prefix)));
  ASSERT_TRUE(ledger->forget(route("198.18.4.0/24")));
  ASSERT_TRUE(ledger->forget(route("198.18.9.0/24")));  // not listed: nothing changes
  auto entries = ledger->entries();
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0], route("198.18.6.0/24"));
  EXPECT_EQ((*entries)[1], route("198.18.7.0/24"));
  EXPECT_FALSE(std::filesystem::exists(ledger->path() + ".new"));
}

TEST_F(LedgerFile, CleanupLeavesAKeptEntryListedAndRemovesTheRest) {
  // nft tables that do not exist: removing them is a no-op that succeeds.
  auto table = [](const std::string& name) {
    LedgerEntry entry;
    entry.kind = LedgerEntry::Kind::kNftTable;
    entry.name = "inet " + name;
    return entry;
  };
  auto ledger = Ledger::open(directory_, "work");
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->record(table("steward_unit_absent")));
  ASSERT_TRUE(ledger->record(table("steward_unit_absent_handover")));
  ASSERT_TRUE(ledger->record(table("steward_unit_absent_2")));
  EXPECT_TRUE(cleanup_from_ledger(*ledger, {table("steward_unit_absent_handover")}));
  auto entries = ledger->entries();
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ(entries->front(), table("steward_unit_absent_handover"));

  EXPECT_TRUE(cleanup_from_ledger(*ledger));
  EXPECT_FALSE(std::filesystem::exists(ledger->path()));
}

TEST(CgroupPath, OnlyPathsStrictlyBelowTheMountAreGroups) {
  for (const char* good : {"steward-vpn/admitted", "a", "a.b/c_d/e-f", "..a/b.."})
    EXPECT_TRUE(is_group_path(good)) << good;
  for (const char* bad : {"", ".", "..", "/", "/steward", "a/../b", "a//b", "a/", "./a", "a/.",
                          "a b", "a\tb", "a/..", "steward-vpn/ad\nmitted"})
    EXPECT_FALSE(is_group_path(bad)) << bad;
}

TEST_F(LedgerFile, ACgroupThatIsNotAGroupPathIsNeverRemoved) {
  // "" is the hierarchy's root: removing it would move every process to the root and delete
  // every empty group. A plain directory stands in for the mount; nothing in it may go.
  std::filesystem::create_directories(directory_ / "mount" / "victim");
  const std::string mount = (directory_ / "mount").string();
  for (const char* path : {"", "..", "victim/.."}) {
    auto refused = remove_cgroup(mount, path);
    ASSERT_FALSE(refused) << path;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_TRUE(std::filesystem::exists(directory_ / "mount" / "victim"));

  // A ledger that lists such a group (an older build recorded it before refusing to create it)
  // drops the entry with a warning instead of acting on it, and the instance can start again.
  auto ledger = Ledger::open(directory_, "work");
  ASSERT_TRUE(ledger);
  LedgerEntry group;
  group.kind = LedgerEntry::Kind::kCgroup;
  group.name = mount;
  group.text = "";
  ASSERT_TRUE(ledger->record(group));
  EXPECT_TRUE(cleanup_from_ledger(*ledger));
  EXPECT_FALSE(std::filesystem::exists(ledger->path()));
  EXPECT_TRUE(std::filesystem::exists(directory_ / "mount" / "victim"));
}

TEST_F(LedgerFile, CleanupOfAnEmptyLedgerSucceedsAndRemovesTheFile) {
  auto ledger = Ledger::open(directory_, "work");
  ASSERT_TRUE(ledger);
  EXPECT_TRUE(cleanup_from_ledger(*ledger));
  EXPECT_FALSE(std::filesystem::exists(ledger->path()));
}

TEST_F(LedgerFile, AnInstanceIsHeldByOneLedgerAtATime) {
  auto first = Ledger::open(directory_, "work");
  ASSERT_TRUE(first);
  auto second = Ledger::open(directory_, "work");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kConflict);
  EXPECT_TRUE(Ledger::open(directory_, "other"));
  first = Ledger::open(directory_, "other");  // the move releases "work"
  ASSERT_TRUE(first);
  EXPECT_TRUE(Ledger::open(directory_, "work"));
}

TEST_F(LedgerFile, RefusesAnInstanceNameThatIsNotAFileName) {
  EXPECT_FALSE(Ledger::open(directory_, "../escape"));
  EXPECT_FALSE(Ledger::open(directory_, ""));
  EXPECT_FALSE(std::filesystem::exists(directory_));
}

}  // namespace
}  // namespace steward::vpn
