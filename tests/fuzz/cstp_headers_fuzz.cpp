// Fuzz target for the gateway's HTTP reply heads and the X-CSTP-*/X-DTLS-* configuration they
// carry: parsing never crashes, and a configuration that parses keeps its invariants.
#include "vpn/cstp/connect_reply.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace steward::vpn::cstp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto head = parse_http_head(text);
  if (!head) return 0;
  if (head->status < 100 || head->status > 999) std::abort();
  (void)head->set_cookie("webvpn");
  auto config = parse_connect_reply(*head);
  if (!config) return 0;
  if (!config->address && !config->address6) std::abort();
  if (config->mtu < 576 || config->mtu > 65535) std::abort();
  if (config->dtls_port && (*config->dtls_port < 1 || *config->dtls_port > 65535)) std::abort();
  for (const auto& prefix : config->split_include) {
    if (prefix.length < 0 || prefix.length > (prefix.is_v4() ? 32 : 128)) std::abort();
    if (!prefix.contains(prefix.network)) std::abort();
  }
  (void)config->intranet_prefixes();
  return 0;
}
