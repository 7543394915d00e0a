// Connection: a JSON-RPC 1.0 client session with one OVSDB server (RFC 7047 §4) over `unix:`,
// `tcp:` or `ssl:`, that reconnects forever with backoff until stopped.
//
// - Requests are pipelined: any number may be in flight, matched to replies by id.
// - The server's `echo` requests are answered. After `echo_interval` without any message from
//   the server, an `echo` is sent; no message within two intervals closes the connection.
// - One incoming message is bounded (`max_message_bytes`); malformed JSON, a message that is not
//   JSON-RPC, a reply to nothing or an oversize message is a protocol error: the connection is
//   closed and opened again.
// - `ssl:` presents the client certificate and key of TlsFiles and accepts only a server whose
//   certificate chain verifies against the CA file (as ovsdb-server and ovs-vsctl do, the host
//   name is not checked: the CA is the trust anchor).
// - TCP connections disable Nagle's algorithm (requests are small and latency-bound).
//
// Ownership: the caller owns the Connection and keeps the io_context running. The handlers given
// at construction are called on the io_context and never after stop() or destruction.
// Threading: every method must be called on the io_context's thread.
// Failures: a lost connection calls `disconnected` with the reason, then fails every request in
// flight with kUnavailable naming the peer and the reason, then retries after a backoff.
#pragma once

#include "controller/model/model.h"
#include "core/result.h"

#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace steward::ovsdb {

namespace json = boost::json;

// A parsed OVSDB connection method.
struct Endpoint {
  enum class Kind { kUnix, kTcp, kSsl };
  Kind kind = Kind::kUnix;
  std::string path;  // kUnix
  std::string host;  // kTcp, kSsl
  std::string port;  // kTcp, kSsl

  // Parses "unix:/path", "tcp:host:port" or "ssl:host:port" ("[v6addr]:port" also accepted).
  static Result<Endpoint> parse(std::string_view text);
};

struct ConnectionOptions {
  std::chrono::milliseconds echo_interval{5000};  // 0 disables the liveness probe
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  std::size_t max_message_bytes = std::size_t{64} << 20;
};

class Connection {
 public:
  // The result of a request, a server error (kInternal, the server's error object as text),
  // or kUnavailable when the connection is lost or stopped before the reply.
  using ReplyHandler = std::function<void(Result<json::value>)>;

  struct Handlers {
    std::function<void()> connected;                 // a session is open
    std::function<void(const Error&)> disconnected;  // a session ended or an attempt failed
    std::function<void(std::string_view, json::value&)> notification;  // method, params
  };

  // `peer` names the switch in logs and errors. Nothing happens until start().
  Connection(boost::asio::io_context& io, std::string peer, std::string endpoint,
             controller::TlsFiles tls, ConnectionOptions options, Handlers handlers);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects now, and again after every failure until stop().
  void start();
  // Closes the connection. Requests in flight complete with kUnavailable (posted); no handler
  // given at construction is called afterwards. start() may be called again.
  void stop();
  bool connected() const;

  // Sends a request. `done` runs exactly once, never inside this call: with kUnavailable at once
  // when no session is open.
  void call(std::string_view method, const json::array& params, ReplyHandler done);
  // Treats the current session as broken (e.g. the peer sent an update that makes no sense):
  // closes it with `reason` and reconnects after a backoff.
  void fail(const Error& reason);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace steward::ovsdb
