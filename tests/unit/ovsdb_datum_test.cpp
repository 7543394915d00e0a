// OVSDB value notation and update2 column diffs.
#include "controller/southbound/ovsdb/datum.h"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

namespace steward::ovsdb {
namespace {

json::value parse(std::string_view text) {
  return json::parse(text);
}

TEST(OvsdbDatum, ASetOfOneMayBeABareAtom) {
  EXPECT_EQ(set_elements(parse("5")).size(), 1u);
  EXPECT_EQ(set_elements(parse(R"(["uuid","u1"])")).size(), 1u);
  EXPECT_EQ(set_elements(parse(R"(["set",[1,2,3]])")).size(), 3u);
  EXPECT_TRUE(set_elements(parse(R"(["set",[]])")).empty());
  EXPECT_TRUE(set_elements(parse(R"(["map",[["a","b"]]])")).empty());
  EXPECT_TRUE(set_elements(parse("null")).empty());
  EXPECT_TRUE(set_elements(parse(R"({"set":1})")).empty());
}

TEST(OvsdbDatum, AtomsAreReadOnlyWhenTheyHaveTheRightType) {
  EXPECT_EQ(uuid_atom(parse(R"(["uuid","abc"])")), "abc");
  EXPECT_FALSE(uuid_atom(parse(R"(["named-uuid","abc"])")));
  EXPECT_FALSE(uuid_atom(parse(R"(["uuid",5])")));
  EXPECT_EQ(integer_atom(parse("42")), 42);
  EXPECT_FALSE(integer_atom(parse("18446744073709551615")));
  EXPECT_FALSE(integer_atom(parse("1.5")));
  EXPECT_EQ(string_atom(parse(R"("x")")), "x");
}

TEST(OvsdbDatum, StringMapsSkipMalformedPairs) {
  auto entries = string_map(parse(R"(["map",[["a","1"],["b"],[3,"x"],["c","3"]]])"));
  EXPECT_EQ(entries, (std::map<std::string, std::string>{{"a", "1"}, {"c", "3"}}));
  EXPECT_EQ(map_lookup(parse(R"(["map",[["a","1"]]])"), "a"), "1");
  EXPECT_FALSE(map_lookup(parse(R"(["map",[["a","1"]]])"), "b"));
}

TEST(OvsdbDatum, SingleValuedColumnsTakeTheNewValue) {
  json::value column = parse("10");
  apply_diff(ColumnKind::kSingle, column, parse("20"));
  EXPECT_EQ(column, parse("20"));
  apply_diff(ColumnKind::kSingle, column, parse(R"(["set",[]])"));
  EXPECT_EQ(column, parse(R"(["set",[]])"));
}

TEST(OvsdbDatum, SetDiffsToggleElements) {
  json::value column = parse(R"(["set",[1,2,3]])");
  apply_diff(ColumnKind::kSet, column, parse(R"(["set",[2,4]])"));
  EXPECT_EQ(column, parse(R"(["set",[1,3,4]])"));
  apply_diff(ColumnKind::kSet, column, parse("1"));
  EXPECT_EQ(column, parse(R"(["set",[3,4]])"));
  json::value absent;  // a column missing from the row is the empty default
  apply_diff(ColumnKind::kSet, absent, parse(R"(["uuid","p1"])"));
  EXPECT_EQ(absent, parse(R"(["set",[["uuid","p1"]]])"));
}

TEST(OvsdbDatum, MapDiffsAddRemoveAndReplace) {
  json::value column = parse(R"(["map",[["keep","1"],["drop","2"],["change","3"]]])");
  apply_diff(ColumnKind::kMap, column,
             parse(R"(["map",[["drop","2"],["change","4"],["new","5"]]])"));
  EXPECT_EQ(string_map(column),
            (std::map<std::string, std::string>{{"keep", "1"}, {"change", "4"}, {"new", "5"}}));
}

TEST(OvsdbDatum, BuildersWriteOvsdbNotation) {
  EXPECT_EQ(uuid_value("u"), parse(R"(["uuid","u"])"));
  EXPECT_EQ(named_uuid_value("n"), parse(R"(["named-uuid","n"])"));
  EXPECT_EQ(empty_set(), parse(R"(["set",[]])"));
  EXPECT_EQ(string_map_value({{"b", "2"}, {"a", "1"}}), parse(R"(["map",[["a","1"],["b","2"]]])"));
}

}  // namespace
}  // namespace steward::ovsdb
