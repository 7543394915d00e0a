// What an OpenConnect gateway hands the client when the tunnel opens (the X-CSTP-* and X-DTLS-*
// reply headers), in the form the rest of the VPN uses: the TUN device takes the address and
// MTU, steering takes the intranet prefixes and DNS servers.
#pragma once

#include "core/result.h"

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace steward::vpn {

// An IPv4 or IPv6 network: address with the host bits cleared, and a prefix length.
struct Prefix {
  boost::asio::ip::address network;
  int length = 0;

  // Parses "198.18.4.0/24", "198.18.4.0/255.255.255.0" or "2001:db8::/32". A bare address is
  // a host prefix (/32 or /128). Host bits are cleared.
  static Result<Prefix> parse(std::string_view text);
  bool is_v4() const { return network.is_v4(); }
  bool contains(const boost::asio::ip::address& address) const;
  std::string to_string() const;  // "198.18.4.0/24"
  friend bool operator==(const Prefix&, const Prefix&) = default;
};

struct TunnelConfig {
  std::optional<boost::asio::ip::address_v4> address;   // X-CSTP-Address
  std::optional<int> netmask_length;                    // X-CSTP-Netmask
  std::optional<boost::asio::ip::address_v6> address6;  // X-CSTP-Address-IP6 (address part)
  std::optional<int> address6_length;                   // X-CSTP-Address-IP6 (prefix part)
  int mtu = 0;                                          // X-CSTP-MTU
  std::vector<boost::asio::ip::address> dns;            // X-CSTP-DNS, repeated
  std::string default_domain;                           // X-CSTP-Default-Domain
  std::vector<Prefix> split_include;  // X-CSTP-Split-Include(-IP6); empty: everything
  std::vector<Prefix> split_exclude;  // X-CSTP-Split-Exclude(-IP6)
  std::chrono::seconds dpd{0};        // X-CSTP-DPD; 0: off
  std::chrono::seconds keepalive{0};  // X-CSTP-Keepalive; 0: off
  std::chrono::seconds idle_timeout{0};
  std::chrono::seconds rekey_time{0};
  std::string rekey_method;  // "new-tunnel", "ssl" or empty
  std::chrono::seconds session_timeout{0};
  // DTLS offer; absent when the gateway offers none.
  std::optional<int> dtls_port;
  std::string dtls_app_id;  // X-DTLS-App-ID, hex as sent
  std::string dtls_cipher_suite;
  std::chrono::seconds dtls_dpd{0};

  // The intranet as routes: split_include, or 0.0.0.0/0 (and ::/0 when the tunnel has IPv6)
  // when the gateway sent none.
  std::vector<Prefix> intranet_prefixes() const;
};

}  // namespace steward::vpn
