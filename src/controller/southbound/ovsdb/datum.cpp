#include "controller/southbound/ovsdb/datum.h"

#include <algorithm>

namespace steward::ovsdb {
namespace {

// ["<tag>", <payload>] as used by "set", "map", "uuid" and "named-uuid".
const json::value* tagged_payload(const json::value& datum, std::string_view tag) {
  const json::array* pair = datum.if_array();
  if (pair == nullptr || pair->size() != 2) return nullptr;
  const json::string* name = (*pair)[0].if_string();
  if (name == nullptr || *name != tag) return nullptr;
  return &(*pair)[1];
}

// Builds ["<tag>", <payload>].
json::value tagged(std::string_view tag, json::value payload) {
  json::array pair;
  pair.reserve(2);
  pair.emplace_back(tag);
  pair.emplace_back(std::move(payload));
  return pair;
}

bool is_atom(const json::value& datum) {
  if (datum.is_string() || datum.is_number() || datum.is_bool()) return true;
  return tagged_payload(datum, "uuid") != nullptr || tagged_payload(datum, "named-uuid") != nullptr;
}

// The [key, value] pairs of a ["map", ...] value; malformed pairs are skipped.
std::vector<const json::array*> map_pairs(const json::value& datum) {
  std::vector<const json::array*> pairs;
  const json::value* payload = tagged_payload(datum, "map");
  const json::array* entries = payload ? payload->if_array() : nullptr;
  if (entries == nullptr) return pairs;
  pairs.reserve(entries->size());
  for (const json::value& entry : *entries) {
    const json::array* pair = entry.if_array();
    if (pair != nullptr && pair->size() == 2) pairs.push_back(pair);
  }
  return pairs;
}

void apply_set_diff(json::value& column, const json::value& diff) {
  // Edits the stored ["set", [...]] in place when it has that form (the common case).
  json::value* payload = nullptr;
  if (json::array* pair = column.if_array();
      pair && pair->size() == 2 && (*pair)[0] == "set" && (*pair)[1].is_array())
    payload = &(*pair)[1];
  if (payload == nullptr) {
    json::array elements;
    for (const json::value* element : set_elements(column))
      elements.push_back(*element);
    column = set_value(std::move(elements));
    payload = &column.get_array()[1];
  }
  json::array& elements = payload->get_array();
  for (const json::value* toggled : set_elements(diff)) {
    auto found = std::find(elements.begin(), elements.end(), *toggled);
    if (found != elements.end())
      elements.erase(found);
    else
      elements.push_back(*toggled);
  }
}

void apply_map_diff(json::value& column, const json::value& diff) {
  json::array entries;
  for (const json::array* pair : map_pairs(column))
    entries.push_back(*pair);
  for (const json::array* change : map_pairs(diff)) {
    auto same_key = [&](const json::value& entry) { return entry.get_array()[0] == (*change)[0]; };
    auto found = std::find_if(entries.begin(), entries.end(), same_key);
    if (found == entries.end())
      entries.push_back(*change);
    else if (found->get_array()[1] == (*change)[1])
      entries.erase(found);
    else
      found->get_array()[1] = (*change)[1];
  }
  column = tagged("map", std::move(entries));
}

}  // namespace

std::vector<const json::value*> set_elements(const json::value& datum) {
  std::vector<const json::value*> elements;
  if (const json::value* payload = tagged_payload(datum, "set")) {
    if (const json::array* members = payload->if_array()) {
      elements.reserve(members->size());
      for (const json::value& member : *members)
        elements.push_back(&member);
    }
  } else if (is_atom(datum)) {
    elements.push_back(&datum);
  }
  return elements;
}

std::optional<std::string_view> uuid_atom(const json::value& atom) {
  const json::value* payload = tagged_payload(atom, "uuid");
  if (payload == nullptr || !payload->is_string()) return std::nullopt;
  return std::string_view(payload->get_string());
}

std::optional<std::string_view> string_atom(const json::value& atom) {
  if (const json::string* text = atom.if_string()) return std::string_view(*text);
  return std::nullopt;
}

std::optional<int64_t> integer_atom(const json::value& atom) {
  if (const int64_t* value = atom.if_int64()) return *value;
  if (const uint64_t* value = atom.if_uint64()) {
    if (*value <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(*value);
  }
  return std::nullopt;
}

std::map<std::string, std::string> string_map(const json::value& datum) {
  std::map<std::string, std::string> entries;
  for (const json::array* pair : map_pairs(datum)) {
    auto key = string_atom((*pair)[0]);
    auto value = string_atom((*pair)[1]);
    if (key && value) entries.emplace(*key, *value);
  }
  return entries;
}

std::optional<std::string_view> map_lookup(const json::value& datum, std::string_view key) {
  for (const json::array* pair : map_pairs(datum)) {
    if (string_atom((*pair)[0]) == key) return string_atom((*pair)[1]);
  }
  return std::nullopt;
}

json::value uuid_value(std::string_view uuid) {
  return tagged("uuid", json::string(uuid));
}

json::value named_uuid_value(std::string_view name) {
  return tagged("named-uuid", json::string(name));
}

json::value set_value(json::array elements) {
  return tagged("set", std::move(elements));
}

json::value empty_set() {
  return set_value({});
}

json::value string_map_value(const std::map<std::string, std::string>& entries) {
  json::array pairs;
  pairs.reserve(entries.size());
  for (const auto& [key, value] : entries)
    pairs.push_back(json::array{key, value});
  return tagged("map", std::move(pairs));
}

void apply_diff(ColumnKind kind, json::value& column, const json::value& diff) {
  switch (kind) {
    case ColumnKind::kSingle:
      column = diff;
      return;
    case ColumnKind::kSet:
      apply_set_diff(column, diff);
      return;
    case ColumnKind::kMap:
      apply_map_diff(column, diff);
      return;
  }
}

}  // namespace steward::ovsdb
