// Logging in to an OpenConnect gateway: one TLS connection, the config-auth exchange of
// auth_xml.h over HTTP/1.1 (username/password forms, or a client certificate alone), and its
// result, the `webvpn` session cookie that opens (and reopens) the tunnel.
#pragma once

#include "core/result.h"
#include "vpn/cstp/tls.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace steward::vpn::cstp {

// What the user proves identity with. The password is a secret: Steward never logs it, never
// takes it from the command line, and never keeps it longer than the session that needs it
// (it is used again only to re-authenticate when the gateway refuses the cookie).
struct Credentials {
  std::string username;
  std::string password;
  std::string group;  // auth group to pick when the gateway offers a list; empty: its default
};

// The `webvpn` cookie. A secret bearer token: formatting it prints a redaction, only value()
// gives the bytes, and only to put them in a Cookie header.
class SessionCookie {
 public:
  SessionCookie() = default;
  explicit SessionCookie(std::string value) : value_(std::move(value)) {}
  const std::string& value() const { return value_; }
  bool empty() const { return value_.empty(); }
  std::string redacted() const { return value_.empty() ? "<none>" : "<redacted>"; }

 private:
  std::string value_;
};

struct LoginOptions {
  GatewayUrl url;
  TlsOptions tls;  // set client_cert_file/client_key_file for certificate login
  Credentials credentials;
  // ocserv treats clients by agent: an unknown one gets no IPv6 routes or DNS.
  std::string user_agent = "Open AnyConnect VPN Agent v9.01";
  std::chrono::seconds timeout{20};  // for the whole exchange
};

using LoginDone = std::function<void(Result<SessionCookie>)>;

// Logs in on `io` and calls `done` once, on the io_context thread, with the cookie or with why
// not: kUnauthenticated (wrong username or password, certificate refused: the gateway's message
// is included), kUnavailable (cannot connect; TLS verification failures say which check failed:
// CA, host name or pin), kTimeout, kInternal (the gateway answered something not understood),
// kInvalidArgument (the gateway asks for a field the credentials cannot fill).
void async_login(boost::asio::io_context& io, LoginOptions options, LoginDone done);

// The same as a coroutine, for callers that are coroutines themselves (the session).
boost::asio::awaitable<Result<SessionCookie>> login(LoginOptions options);

}  // namespace steward::vpn::cstp
