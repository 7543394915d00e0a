// Fuzz target for the HTTP API's JSON bodies: every inventory and migration parser, and the
// round trip through to_json for whatever parses.
#include "controller/model/json.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace steward::controller;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto json = parse_json(text);
  if (!json) return 0;
  if (auto vm = vm_from_json(*json)) {
    auto again = vm_from_json(to_json(*vm));
    if (!again || !(*again == *vm)) std::abort();  // what is stored must read back the same
  }
  if (auto sw = switch_from_json(*json)) {
    auto again = switch_from_json(to_json(*sw));
    if (!again || !(*again == *sw)) std::abort();
  }
  if (auto host = host_from_json(*json)) (void)to_json(*host);
  (void)migration_request_from_json(*json);
  return 0;
}
