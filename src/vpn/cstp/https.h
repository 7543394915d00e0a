// Internal to vpn/cstp: the HTTPS plumbing shared by login and the tunnel (TCP + TLS connect
// with the verification of tls.h, a request writer, a reply head and body reader, and a
// watchdog that bounds a step in time). Coroutines on the caller's io_context.
#pragma once

#include "core/result.h"
#include "vpn/cstp/connect_reply.h"
#include "vpn/cstp/tls.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace steward::vpn::cstp {

// An open TLS connection to the gateway with the context it needs to stay alive.
struct TlsConnection {
  std::unique_ptr<boost::asio::ssl::context> context;
  std::unique_ptr<TlsStream> stream;
  std::string buffer;  // bytes read past the last reply head
};

// Closes the connection's socket when `timeout` passes before the watchdog is destroyed, so the
// step that is waiting on it fails; fired() then says why.
class Watchdog {
 public:
  Watchdog(TlsStream& stream, std::chrono::steady_clock::duration timeout);
  ~Watchdog();
  bool fired() const { return *fired_; }

 private:
  boost::asio::steady_timer timer_;
  std::shared_ptr<bool> fired_;
};

// Resolves and connects to the gateway, then runs the TLS handshake with the checks of
// `options`, all within `timeout`. Errors are kUnavailable and say what failed (connect, or
// which TLS check), or kTimeout.
boost::asio::awaitable<Result<TlsConnection>> connect_gateway(
    const GatewayUrl& url, const TlsOptions& options, std::chrono::steady_clock::duration timeout);

// Writes `request` (complete HTTP bytes) to the connection.
boost::asio::awaitable<Status> write_all(TlsConnection& connection, const std::string& request);

// Reads one reply head; leftover bytes stay in connection.buffer.
boost::asio::awaitable<Result<HttpHead>> read_head(TlsConnection& connection);

// Reads a body of Content-Length bytes (at most 1 MiB), or up to EOF when the head has none.
boost::asio::awaitable<Result<std::string>> read_body(TlsConnection& connection,
                                                      const HttpHead& head);

}  // namespace steward::vpn::cstp
