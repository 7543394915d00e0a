// JSON forms of the inventory, as the HTTP API and the CLI exchange them, with validation.
// Parsers never throw: malformed input yields ErrorCode::kInvalidArgument with a message that
// names the offending field. Parsed values are normalised (lower-case MAC, sorted trunks) so
// that what is stored compares equal to what is read back from a switch.
#pragma once

#include "controller/model/model.h"
#include "core/result.h"

#include <boost/json/value.hpp>

#include <string_view>

namespace steward::controller {

// Parses text into a JSON value (size- and depth-limited).
Result<boost::json::value> parse_json(std::string_view text);

Result<Switch> switch_from_json(const boost::json::value& json);
Result<Host> host_from_json(const boost::json::value& json);
Result<Vm> vm_from_json(const boost::json::value& json);
Result<Interface> interface_from_json(const boost::json::value& json);
Result<MigrationRequest> migration_request_from_json(const boost::json::value& json);

boost::json::value to_json(const Switch& value);
boost::json::value to_json(const Host& value);
boost::json::value to_json(const Vm& value);
boost::json::value to_json(const Interface& value);

// Checks rules that span fields (unique interface ids and devices, device length, VLAN
// ranges). The *_from_json parsers call these; the store calls them before every write.
Status validate(const Switch& value);
Status validate(const Host& value);
Status validate(const Vm& value);

}  // namespace steward::controller
