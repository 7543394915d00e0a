// Fuzz target for the agent's control-message parser (envelope, signature check, instruction
// validation) and the report parser: whatever opens must survive a round trip unchanged.
#include "agent/model/control_message.h"
#include "agent/model/instruction.h"

#include <boost/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace steward::agent;

namespace {
const PublicKey& server_key() {
  static const PublicKey key = [] {
    auto generated = PrivateKey::generate();
    if (!generated) std::abort();
    auto pub = generated->public_key();
    if (!pub) std::abort();
    return *pub;
  }();
  return key;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)claimed_identity(bytes);
  // With a key, random bytes must never open (the signature cannot verify).
  if (open_control_message(bytes, &server_key())) std::abort();
  if (auto opened = open_control_message(bytes, nullptr)) {
    auto sealed = seal_control_message(*opened, nullptr);
    if (!sealed) std::abort();
    auto again = open_control_message(*sealed, nullptr);
    if (!again) std::abort();
    if (boost::json::serialize(to_json(*again)) != boost::json::serialize(to_json(*opened)))
      std::abort();
  }
  if (auto report = parse_report(bytes)) {
    auto again = report_from_json(to_json(*report));
    if (!again || !(*again == *report)) std::abort();
  }
  return 0;
}
