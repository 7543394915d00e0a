#include "vpn/cstp/connect_reply.h"

#include <boost/algorithm/string/predicate.hpp>

#include <charconv>

namespace steward::vpn::cstp {
namespace {

namespace ip = boost::asio::ip;

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

Error bad_header(std::string_view name, std::string_view value, std::string_view why) {
  return Error::make(ErrorCode::kInternal, "gateway sent {}: '{}': {}", name, value, why);
}

Result<int> parse_int(std::string_view name, std::string_view value, int min, int max) {
  int number = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (ec != std::errc{} || end != value.data() + value.size()) {
    return bad_header(name, value, "not a number");
  }
  if (number < min || number > max) {
    return bad_header(name, value, fmt::format("not in {}..{}", min, max));
  }
  return number;
}

Result<std::chrono::seconds> parse_seconds(std::string_view name, std::string_view value) {
  auto number = parse_int(name, value, 0, 7 * 24 * 3600);
  if (!number) return number.error();
  return std::chrono::seconds(*number);
}

Result<ip::address> parse_address(std::string_view name, std::string_view value) {
  boost::system::error_code ec;
  auto address = ip::make_address(std::string(value), ec);
  if (ec) return bad_header(name, value, "not an IP address");
  return address;
}

Result<Prefix> parse_prefix(std::string_view name, std::string_view value) {
  auto prefix = Prefix::parse(value);
  if (!prefix) return bad_header(name, value, prefix.error().message);
  return *prefix;
}

// One header applied to the configuration; unknown names are ignored.
Status apply_header(TunnelConfig& config, std::string_view name, std::string_view value) {
  auto is = [&](std::string_view known) { return boost::iequals(name, known); };

  if (is("X-CSTP-Address")) {
    auto address = parse_address(name, value);
    if (!address) return address.error();
    // Some gateways send the IPv6 address here too.
    if (address->is_v6()) {
      config.address6 = address->to_v6();
      if (!config.address6_length) config.address6_length = 128;
    } else {
      config.address = address->to_v4();
    }
  } else if (is("X-CSTP-Netmask")) {
    auto prefix = parse_prefix(name, fmt::format("0.0.0.0/{}", value));
    if (!prefix) return prefix.error();
    config.netmask_length = prefix->length;
  } else if (is("X-CSTP-Address-IP6")) {
    auto prefix = Prefix::parse(value);
    auto slash = value.find('/');
    auto address = parse_address(name, value.substr(0, slash));
    if (!prefix || !address || !address->is_v6()) {
      return bad_header(name, value, "not an IPv6 address/length");
    }
    config.address6 = address->to_v6();
    config.address6_length = prefix->length;
  } else if (is("X-CSTP-DNS") || is("X-CSTP-DNS-IP6")) {
    auto address = parse_address(name, value);
    if (!address) return address.error();
    config.dns.push_back(*address);
  } else if (is("X-CSTP-Default-Domain")) {
    config.default_domain = std::string(value);
  } else if (is("X-CSTP-Split-Include") || is("X-CSTP-Split-Include-IP6")) {
    auto prefix = parse_prefix(name, value);
    if (!prefix) return prefix.error();
    config.split_include.push_back(*prefix);
  } else if (is("X-CSTP-Split-Exclude") || is("X-CSTP-Split-Exclude-IP6")) {
    auto prefix = parse_prefix(name, value);
    if (!prefix) return prefix.error();
    config.split_exclude.push_back(*prefix);
  } else if (is("X-CSTP-MTU")) {
    auto mtu = parse_int(name, value, 576, 65535);
    if (!mtu) return mtu.error();
    config.mtu = *mtu;
  } else if (is("X-CSTP-DPD")) {
    auto seconds = parse_seconds(name, value);
    if (!seconds) return seconds.error();
    config.dpd = *seconds;
  } else if (is("X-CSTP-Keepalive")) {
    auto seconds = parse_seconds(name, value);
    if (!seconds) return seconds.error();
    config.keepalive = *seconds;
  } else if (is("X-CSTP-Idle-Timeout")) {
    // ocserv sends "none" when idle clients are never disconnected.
    if (boost::iequals(value, "none")) return ok();
    auto seconds = parse_seconds(name, value);
    if (!seconds) return seconds.error();
    config.idle_timeout = *seconds;
  } else if (is("X-CSTP-Session-Timeout")) {
    if (boost::iequals(value, "none")) return ok();
    auto seconds = parse_seconds(name, value);
    if (!seconds) return seconds.error();
    config.session_timeout = *seconds;
  } else if (is("X-CSTP-Rekey-Time")) {
    auto seconds = parse_seconds(name, value);
    if (!seconds) return seconds.error();
    config.rekey_time = *seconds;
  } else if (is("X-CSTP-Rekey-Method")) {
    config.rekey_method = std::string(value);
  } else if (is("X-DTLS-Port")) {
    auto port = parse_int(name, value, 1, 65535);
    if (!port) return port.error();
    config.dtls_port = *port;
  } else if (is("X-DTLS-App-ID") || is("X-DTLS-Session-ID")) {
    if (value.empty() || value.size() > 64 || value.size() % 2 != 0 ||
        value.find_first_not_of("0123456789abcdefABCDEF") != std::string_view::npos) {
      return bad_header(name, value, "not an even-length hex string of at most 32 bytes");
    }
    config.dtls_app_id = std::string(value);
  } else if (is("X-DTLS-CipherSuite")) {
    config.dtls_cipher_suite = std::string(value);
  } else if (is("X-DTLS-DPD")) {
    auto seconds = parse_seconds(name, value);
    if (!seconds) return seconds.error();
    config.dtls_dpd = *seconds;
  }
  return ok();
}

}  // namespace

std::optional<std::string_view> HttpHead::find(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (boost::iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::vector<std::string_view> HttpHead::find_all(std::string_view name) const {
  std::vector<std::string_view> values;
  for (const auto& [key, value] : headers) {
    if (boost::iequals(key, name)) values.emplace_back(value);
  }
  return values;
}

std::optional<std::string> HttpHead::set_cookie(std::string_view name) const {
  // A later Set-Cookie of the same name replaces an earlier one.
  std::optional<std::string> found;
  for (auto header : find_all("Set-Cookie")) {
    auto end = header.find(';');
    auto pair = trim(header.substr(0, end));
    auto equals = pair.find('=');
    if (equals == std::string_view::npos || trim(pair.substr(0, equals)) != name) continue;
    auto value = trim(pair.substr(equals + 1));
    found = value.empty() ? std::nullopt : std::optional<std::string>(value);
  }
  return found;
}

Result<HttpHead> parse_http_head(std::string_view text) {
  if (text.size() > kMaxHttpHeadSize) {
    return Error::make(ErrorCode::kInternal, "http reply head of {} bytes exceeds {}", text.size(),
                       kMaxHttpHeadSize);
  }

  // Status line: "HTTP/1.1 200 CONNECTED".
  auto line_end = text.find('\n');
  auto status_line = trim(text.substr(0, line_end));
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ') {
    return Error::make(ErrorCode::kInternal, "not an HTTP/1.x status line: '{}'",
                       status_line.substr(0, 80));
  }
  HttpHead head;
  auto code = status_line.substr(9, 3);
  auto [end, ec] = std::from_chars(code.data(), code.data() + code.size(), head.status);
  if (ec != std::errc{} || end != code.data() + 3 || head.status < 100 || head.status > 999) {
    return Error::make(ErrorCode::kInternal, "bad HTTP status code in '{}'",
                       status_line.substr(0, 80));
  }
  head.reason = std::string(trim(status_line.substr(12)));

  // Header lines up to the end or the blank line.
  while (line_end != std::string_view::npos) {
    text.remove_prefix(line_end + 1);
    line_end = text.find('\n');
    auto line = text.substr(0, line_end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Error::make(ErrorCode::kInternal, "malformed HTTP header line '{}'",
                         line.substr(0, 80));
    }
    head.headers.emplace_back(std::string(trim(line.substr(0, colon))),
                              std::string(trim(line.substr(colon + 1))));
  }
  return head;
}

Result<TunnelConfig> parse_connect_reply(const HttpHead& head) {
  TunnelConfig config;
  for (const auto& [name, value] : head.headers) {
    if (auto applied = apply_header(config, name, value); !applied) return applied.error();
  }
  if (!config.address && !config.address6) {
    return Error::make(ErrorCode::kInternal, "gateway's CONNECT reply carries no X-CSTP-Address");
  }
  if (config.mtu == 0) {
    return Error::make(ErrorCode::kInternal, "gateway's CONNECT reply carries no X-CSTP-MTU");
  }
  if (config.address && !config.netmask_length) config.netmask_length = 32;
  return config;
}

}  // namespace steward::vpn::cstp
