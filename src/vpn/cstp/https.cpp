#include "vpn/cstp/https.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/err.h>

#include <charconv>

namespace steward::vpn::cstp {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kMaxBody = 1 << 20;

// The reason OpenSSL gives for a failed handshake, when the verify callback gave none.
std::string handshake_reason(const boost::system::error_code& ec) {
  std::string reason = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    char text[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), text, sizeof(text));
    reason = text;
  }
  return reason;
}

}  // namespace

Watchdog::Watchdog(TlsStream& stream, std::chrono::steady_clock::duration timeout)
    : timer_(stream.get_executor(), timeout), fired_(std::make_shared<bool>(false)) {
  timer_.async_wait([fired = fired_, socket = &stream.lowest_layer()](auto ec) {
    if (ec) return;  // cancelled: the watchdog (and maybe the socket) is gone
    *fired = true;
    boost::system::error_code ignored;
    socket->close(ignored);
  });
}

Watchdog::~Watchdog() {
  timer_.cancel();
}

asio::awaitable<Result<TlsConnection>> connect_gateway(
    const GatewayUrl& url, const TlsOptions& options, std::chrono::steady_clock::duration timeout) {
  auto executor = co_await asio::this_coro::executor;
  auto context = make_tls_context(options);
  if (!context) co_return context.error();

  TlsConnection connection;
  connection.context = std::make_unique<asio::ssl::context>(std::move(*context));
  connection.stream = std::make_unique<TlsStream>(executor, *connection.context);
  Watchdog watchdog(*connection.stream, timeout);
  auto timed_out = [&] {
    return Error::make(ErrorCode::kTimeout, "gateway {}:{} did not answer within {} ms", url.host,
                       url.port,
                       std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
  };

  // TCP.
  tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] =
      co_await resolver.async_resolve(url.host, std::to_string(url.port), kTuple);
  if (resolve_ec) {
    co_return Error::make(ErrorCode::kUnavailable, "cannot resolve gateway {}: {}", url.host,
                          resolve_ec.message());
  }
  auto [connect_ec, endpoint] =
      co_await asio::async_connect(connection.stream->lowest_layer(), endpoints, kTuple);
  if (connect_ec) {
    if (watchdog.fired()) co_return timed_out();
    co_return Error::make(ErrorCode::kUnavailable, "cannot connect to gateway {}:{}: {}", url.host,
                          url.port, connect_ec.message());
  }
  connection.stream->lowest_layer().set_option(tcp::no_delay(true));

  // TLS, with the checks of `options`.
  auto failure = std::make_shared<std::string>();
  if (auto prepared = prepare_tls_stream(*connection.stream, options, url.host, failure);
      !prepared) {
    co_return prepared.error();
  }
  auto [handshake_ec] =
      co_await connection.stream->async_handshake(asio::ssl::stream_base::client, kTuple);
  if (handshake_ec) {
    if (watchdog.fired()) co_return timed_out();
    co_return Error::make(ErrorCode::kUnavailable, "TLS handshake with gateway {}:{} failed: {}",
                          url.host, url.port,
                          failure->empty() ? handshake_reason(handshake_ec) : *failure);
  }
  co_return std::move(connection);
}

asio::awaitable<Status> write_all(TlsConnection& connection, const std::string& request) {
  auto [ec, written] =
      co_await asio::async_write(*connection.stream, asio::buffer(request), kTuple);
  if (ec) {
    co_return Error::make(ErrorCode::kUnavailable, "cannot send to gateway: {}", ec.message());
  }
  co_return ok();
}

asio::awaitable<Result<HttpHead>> read_head(TlsConnection& connection) {
  while (true) {
    auto end = connection.buffer.find("\r\n\r\n");
    if (end != std::string::npos) {
      auto head = parse_http_head(std::string_view(connection.buffer).substr(0, end + 2));
      connection.buffer.erase(0, end + 4);
      co_return head;
    }
    if (connection.buffer.size() > kMaxHttpHeadSize) {
      co_return Error::make(ErrorCode::kInternal, "gateway's reply head exceeds {} bytes",
                            kMaxHttpHeadSize);
    }
    char chunk[4096];
    auto [ec, got] = co_await connection.stream->async_read_some(asio::buffer(chunk), kTuple);
    if (ec) {
      co_return Error::make(ErrorCode::kUnavailable, "gateway closed the connection: {}",
                            ec.message());
    }
    connection.buffer.append(chunk, got);
  }
}

asio::awaitable<Result<std::string>> read_body(TlsConnection& connection, const HttpHead& head) {
  std::optional<size_t> length;
  if (auto value = head.find("Content-Length")) {
    size_t parsed = 0;
    auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), parsed);
    if (ec != std::errc{} || end != value->data() + value->size() || parsed > kMaxBody) {
      co_return Error::make(ErrorCode::kInternal, "gateway sent Content-Length '{}'", *value);
    }
    length = parsed;
  }
  while (!length || connection.buffer.size() < *length) {
    char chunk[4096];
    auto [ec, got] = co_await connection.stream->async_read_some(asio::buffer(chunk), kTuple);
    if (ec) {
      if (!length) break;  // the body ends with the connection
      co_return Error::make(ErrorCode::kUnavailable, "gateway closed the connection: {}",
                            ec.message());
    }
    connection.buffer.append(chunk, got);
    if (connection.buffer.size() > kMaxBody) {
      co_return Error::make(ErrorCode::kInternal, "gateway's reply body exceeds {} bytes",
                            kMaxBody);
    }
  }
  size_t take = length ? *length : connection.buffer.size();
  std::string body = connection.buffer.substr(0, take);
  connection.buffer.erase(0, take);
  co_return body;
}

}  // namespace steward::vpn::cstp
