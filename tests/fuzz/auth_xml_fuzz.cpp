// Fuzz target for the gateway's config-auth XML: parsing never crashes, and a form that parses
// gives a reply that parses again as XML (field names and values are escaped or refused).
#include "vpn/cstp/auth_xml.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace steward::vpn::cstp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto response = parse_auth_response(text);
  if (!response || response->kind != AuthResponse::Kind::kForm) return 0;
  auto reply = make_form_reply(*response, {"alice", "p<&>\"'", "group"});
  if (!reply) return 0;
  // The reply must be well-formed: it is an "auth-reply", which parses as a document of an
  // unexpected type, never as "not XML".
  auto again = parse_auth_response(*reply);
  if (!again && again.error().message.find("not XML") != std::string::npos) std::abort();
  return 0;
}
