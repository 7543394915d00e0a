#include "vpn/cstp/tunnel_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>

namespace steward::vpn {
namespace {

namespace ip = boost::asio::ip;

Result<int> parse_length(std::string_view text, int max_length) {
  int value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < 0 || value > max_length) {
    return Error::make(ErrorCode::kInvalidArgument, "prefix length '{}' is not in 0..{}", text,
                       max_length);
  }
  return value;
}

// A dotted IPv4 netmask as a prefix length; only contiguous masks are accepted.
Result<int> mask_length(const ip::address_v4& mask) {
  uint32_t bits = mask.to_uint();
  int ones = std::popcount(bits);
  uint32_t expected = ones == 0 ? 0 : ~uint32_t{0} << (32 - ones);
  if (bits != expected) {
    return Error::make(ErrorCode::kInvalidArgument, "netmask {} is not contiguous",
                       mask.to_string());
  }
  return ones;
}

ip::address clear_host_bits(const ip::address& address, int length) {
  if (address.is_v4()) {
    uint32_t mask = length == 0 ? 0 : ~uint32_t{0} << (32 - length);
    return ip::address_v4(address.to_v4().to_uint() & mask);
  }
  auto bytes = address.to_v6().to_bytes();
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(length - i * 8, 0, 8);
    bytes[i] &= static_cast<unsigned char>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  return ip::address_v6(bytes);
}

}  // namespace

Result<Prefix> Prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  boost::system::error_code ec;
  auto address = ip::make_address(std::string(text.substr(0, slash)), ec);
  if (ec) {
    return Error::make(ErrorCode::kInvalidArgument, "'{}' is not an IP address or prefix", text);
  }
  int max_length = address.is_v4() ? 32 : 128;
  int length = max_length;
  if (slash != std::string_view::npos) {
    auto rest = text.substr(slash + 1);
    if (address.is_v4() && rest.find('.') != std::string_view::npos) {
      auto mask = ip::make_address_v4(std::string(rest), ec);
      if (ec) return Error::make(ErrorCode::kInvalidArgument, "'{}' has a bad netmask", text);
      auto ones = mask_length(mask);
      if (!ones) return ones.error().wrap(std::string(text));
      length = *ones;
    } else {
      auto parsed = parse_length(rest, max_length);
      if (!parsed) return parsed.error().wrap(std::string(text));
      length = *parsed;
    }
  }
  return Prefix{clear_host_bits(address, length), length};
}

bool Prefix::contains(const ip::address& address) const {
  if (address.is_v4() != network.is_v4()) return false;
  return clear_host_bits(address, length) == network;
}

std::string Prefix::to_string() const {
  return fmt::format("{}/{}", network.to_string(), length);
}

std::vector<Prefix> TunnelConfig::intranet_prefixes() const {
  if (!split_include.empty()) return split_include;
  std::vector<Prefix> all{Prefix{ip::address_v4::any(), 0}};
  if (address6) all.push_back(Prefix{ip::address_v6::any(), 0});
  return all;
}

}  // namespace steward::vpn
