// OVSDB's JSON notation for values (RFC 7047 §5.1): atoms, ["uuid", "..."], ["named-uuid", "..."],
// ["set", [...]] and ["map", [[key, value], ...]], and the column diffs of `update2`
// notifications. Pure functions on boost::json values. Nothing here throws: malformed input reads
// as empty or std::nullopt, so every function is safe on bytes that came from the network.
#pragma once

#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace steward::ovsdb {

namespace json = boost::json;

// How a column's value changes in an `update2` "modify" (ovsdb-server(7) §4.1.14).
enum class ColumnKind {
  kSingle,  // at most one value (atomic or optional): the diff is the new value
  kSet,     // a set with more than one element allowed: the diff toggles elements
  kMap,     // a map: the diff adds, removes or replaces key-value pairs
};

// The elements of a set value; a bare atom is a set of one. Empty for anything else.
std::vector<const json::value*> set_elements(const json::value& datum);

// The uuid string of ["uuid", "..."], or nullopt.
std::optional<std::string_view> uuid_atom(const json::value& atom);
// A string atom, or nullopt.
std::optional<std::string_view> string_atom(const json::value& atom);
// An integer atom that fits int64_t, or nullopt.
std::optional<int64_t> integer_atom(const json::value& atom);

// A ["map", ...] value with string keys and values; other pairs are skipped.
std::map<std::string, std::string> string_map(const json::value& datum);
// The value of `key` in a string map, or nullopt.
std::optional<std::string_view> map_lookup(const json::value& datum, std::string_view key);

// Builders for the values Steward writes.
json::value uuid_value(std::string_view uuid);
json::value named_uuid_value(std::string_view name);
json::value set_value(json::array elements);
json::value empty_set();
json::value string_map_value(const std::map<std::string, std::string>& entries);

// Applies an `update2` diff to a stored column value (absent = the column's default).
void apply_diff(ColumnKind kind, json::value& column, const json::value& diff);

}  // namespace steward::ovsdb
