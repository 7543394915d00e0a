// How the VPN client reaches its gateway: the gateway URL, and the TLS settings that decide
// whether the server is the right one (a CA file and the host name, or a pinned public key)
// and how the client proves who it is (optional client certificate).
#pragma once

#include "core/result.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace steward::vpn::cstp {

// "https://gateway.example[:port][/group]": only https; the port defaults to 443.
struct GatewayUrl {
  std::string host;  // name or IP literal (without brackets)
  uint16_t port = 443;
  std::string path;  // "/" or the group path; sent in the init request

  static Result<GatewayUrl> parse(std::string_view url);
  std::string to_string() const;  // "https://host:port/path"
};

struct TlsOptions {
  // PEM file of the CA(s) that sign the gateway's certificate. Empty: the system store is not
  // used either; then pin_sha256 must be set (a client that trusts anything is not offered).
  std::string ca_file;
  // "pin-sha256:<base64 of SHA-256 of the server certificate's SubjectPublicKeyInfo>", the
  // form openconnect's --servercert prints. When set, the leaf key must match it; the chain is
  // then not checked against ca_file (pinning replaces the CA).
  std::string pin_sha256;
  // Name checked against the certificate and sent as SNI. Empty: the URL's host. An IP literal
  // is checked against the certificate's IP SANs and not sent as SNI.
  std::string server_name;
  // Client certificate login: PEM certificate (chain) and its key. Both or neither.
  std::string client_cert_file;
  std::string client_key_file;
};

// A TLS client context with the options applied: TLS 1.2 or newer, peer verification on, the
// client certificate loaded. Fails (kInvalidArgument) naming the file or pin that is unusable.
// Host name and pin checks are per connection: see prepare_tls_stream.
Result<boost::asio::ssl::context> make_tls_context(const TlsOptions& options);

using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

// Sets SNI and the per-connection checks (host name, or pin) on `stream` before its handshake.
// `url_host` is the gateway URL's host. When verification fails, `*failure` says which check
// failed and why ("certificate is not signed by the configured CA (...)", "host name ... does
// not match the certificate", "public key pin ... does not match"), for the error the user sees.
Status prepare_tls_stream(TlsStream& stream, const TlsOptions& options, const std::string& url_host,
                          std::shared_ptr<std::string> failure);

// The "pin-sha256:..." string of a PEM certificate file (for tests, and to show the user what to
// pin). Fails when the file cannot be read.
Result<std::string> public_key_pin_of_certificate(const std::string& pem_file);

}  // namespace steward::vpn::cstp
