// The HTTP side of the tunnel: the head of a gateway's HTTP reply (status line and headers) and
// the X-CSTP-* / X-DTLS-* headers of the reply to `CONNECT /CSCOSSLC/tunnel`, turned into a
// TunnelConfig. Pure parsing, no I/O; fuzzed by tests/fuzz/cstp_headers_fuzz.cpp.
#pragma once

#include "core/result.h"
#include "vpn/cstp/tunnel_config.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace steward::vpn::cstp {

// A status line and headers, in order, names as sent (compare them case-insensitively).
struct HttpHead {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;

  // The first value of header `name` (case-insensitive), if present.
  std::optional<std::string_view> find(std::string_view name) const;
  // Every value of header `name`, in order.
  std::vector<std::string_view> find_all(std::string_view name) const;
  // The value of cookie `name` from the Set-Cookie headers, if set; the last one wins, and an
  // empty value counts as unset (gateways clear cookies that way).
  std::optional<std::string> set_cookie(std::string_view name) const;
};

// The largest head Steward accepts; a gateway that sends more is broken or hostile.
inline constexpr size_t kMaxHttpHeadSize = 64 * 1024;

// Parses "HTTP/1.x NNN reason\r\n" followed by header lines, up to and excluding the blank line
// (`text` may or may not include the final "\r\n\r\n"). Errors (kInternal) name the bad line.
Result<HttpHead> parse_http_head(std::string_view text);

// Turns the headers of a `200 CONNECTED` reply into the tunnel configuration. Repeated headers
// (DNS, split routes) accumulate; unknown X- headers are ignored. Fails (kInternal, naming the
// header and value) on a malformed value, when there is no address, or when the MTU is missing
// or outside 576..65535 (IPv4 minimum to the frame limit).
Result<TunnelConfig> parse_connect_reply(const HttpHead& head);

}  // namespace steward::vpn::cstp
