#include "controller/southbound/ovsdb/connection.h"

#include "controller/southbound/ovsdb/message.h"
#include "core/backoff.h"
#include "core/log.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <optional>
#include <unordered_map>
#include <variant>
#include <vector>

namespace steward::ovsdb {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using UnixSocket = asio::local::stream_protocol::socket;
using TlsStream = asio::ssl::stream<tcp::socket>;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 64 * 1024;

// The socket of one connection attempt; every reconnect makes a new one, so handlers of an
// old attempt can tell they are stale by comparing pointers.
struct Link {
  Link(asio::io_context& io, const Endpoint& endpoint, std::unique_ptr<asio::ssl::context> tls)
      : tls_context(std::move(tls)), resolver(io), stream(make_stream(io, endpoint)) {}

  std::variant<UnixSocket, tcp::socket, TlsStream> make_stream(asio::io_context& io,
                                                               const Endpoint& endpoint) {
    switch (endpoint.kind) {
      case Endpoint::Kind::kUnix:
        return std::variant<UnixSocket, tcp::socket, TlsStream>(std::in_place_type<UnixSocket>, io);
      case Endpoint::Kind::kTcp:
        return std::variant<UnixSocket, tcp::socket, TlsStream>(std::in_place_type<tcp::socket>,
                                                                io);
      case Endpoint::Kind::kSsl:
        break;
    }
    return std::variant<UnixSocket, tcp::socket, TlsStream>(std::in_place_type<TlsStream>, io,
                                                            *tls_context);
  }

  tcp::socket& tcp_socket() {
    if (auto* tls = std::get_if<TlsStream>(&stream)) return tls->next_layer();
    return std::get<tcp::socket>(stream);
  }

  void close() {
    boost::system::error_code ignored;
    resolver.cancel();
    std::visit(
        [&](auto& socket) {
          if constexpr (std::is_same_v<std::decay_t<decltype(socket)>, TlsStream>)
            socket.lowest_layer().close(ignored);
          else
            socket.close(ignored);
        },
        stream);
  }

  std::unique_ptr<asio::ssl::context> tls_context;  // outlives the stream that uses it
  tcp::resolver resolver;
  std::variant<UnixSocket, tcp::socket, TlsStream> stream;
};

Result<std::unique_ptr<asio::ssl::context>> make_tls_context(const controller::TlsFiles& files) {
  if (files.ca_cert.empty() || files.certificate.empty() || files.private_key.empty())
    return Error{ErrorCode::kInvalidArgument,
                 "ssl: endpoint needs ca_cert, certificate and private_key files"};
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  boost::system::error_code error;
  auto failed = [&](std::string_view what, const std::string& path) {
    return Error::make(ErrorCode::kInvalidArgument, "cannot load tls {} {}: {}", what, path,
                       error.message());
  };
  context->load_verify_file(files.ca_cert, error);
  if (error) return failed("ca_cert", files.ca_cert);
  context->use_certificate_chain_file(files.certificate, error);
  if (error) return failed("certificate", files.certificate);
  context->use_private_key_file(files.private_key, asio::ssl::context::pem, error);
  if (error) return failed("private_key", files.private_key);
  context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  return context;
}

Result<Endpoint> parse_host_port(Endpoint endpoint, std::string_view rest, std::string_view text) {
  std::size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size())
    return Error::make(ErrorCode::kInvalidArgument, "endpoint '{}' needs host:port", text);
  std::string_view host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  endpoint.host = host;
  endpoint.port = rest.substr(colon + 1);
  return endpoint;
}

}  // namespace

Result<Endpoint> Endpoint::parse(std::string_view text) {
  Endpoint endpoint;
  if (text.starts_with("unix:") && text.size() > 5) {
    endpoint.kind = Kind::kUnix;
    endpoint.path = text.substr(5);
    return endpoint;
  }
  if (text.starts_with("tcp:")) {
    endpoint.kind = Kind::kTcp;
    return parse_host_port(std::move(endpoint), text.substr(4), text);
  }
  if (text.starts_with("ssl:")) {
    endpoint.kind = Kind::kSsl;
    return parse_host_port(std::move(endpoint), text.substr(4), text);
  }
  return Error::make(ErrorCode::kInvalidArgument,
                     "endpoint '{}' is not unix:<path>, tcp:<host>:<port> or ssl:<host>:<port>",
                     text);
}

struct Connection::Impl : std::enable_shared_from_this<Impl> {
  enum class Phase { kStopped, kWaiting, kConnecting, kOpen };

  Impl(asio::io_context& context, std::string peer_id, std::string endpoint_spec,
       controller::TlsFiles tls_files, ConnectionOptions connection_options,
       Handlers session_handlers);

  void start();
  void stop();
  void connect();
  void connect_stream(const std::shared_ptr<Link>& attempt);
  void on_transport_connected(const std::shared_ptr<Link>& attempt);
  void open();
  void read();
  void on_bytes(std::size_t size);
  void dispatch(json::value& value);
  void answer_request(const Message& message);
  void complete_reply(const Message& message);
  void call(std::string_view method, const json::array& params, ReplyHandler done);
  void send(std::string text);
  void flush();
  void arm_probe();
  void on_probe();
  void drop(const Error& reason);
  void schedule_retry();
  Error unavailable(std::string_view what) const;

  asio::io_context& io;
  std::string peer;
  std::string endpoint_text;
  Result<Endpoint> endpoint;
  controller::TlsFiles tls;
  ConnectionOptions options;
  Handlers handlers;
  std::shared_ptr<spdlog::logger> log;

  Phase phase = Phase::kStopped;
  std::shared_ptr<Link> link;
  asio::steady_timer retry_timer;
  asio::steady_timer connect_timer;
  asio::steady_timer probe_timer;
  Backoff backoff;
  int failed_attempts = 0;
  bool heard_from_peer = false;
  std::string last_error = "not started";

  MessageReader reader;
  std::vector<char> read_buffer;
  std::string outgoing;
  std::string writing;
  bool write_in_progress = false;
  bool flush_posted = false;  // a flush() is posted for the end of this loop turn
  std::unordered_map<uint64_t, ReplyHandler> pending;
  uint64_t next_id = 1;
  Clock::time_point last_received;
  std::optional<Clock::time_point> probe_sent;
};

Connection::Impl::Impl(asio::io_context& context, std::string peer_id, std::string endpoint_spec,
                       controller::TlsFiles tls_files, ConnectionOptions connection_options,
                       Handlers session_handlers)
    : io(context),
      peer(std::move(peer_id)),
      endpoint_text(std::move(endpoint_spec)),
      endpoint(Endpoint::parse(endpoint_text)),
      tls(std::move(tls_files)),
      options(connection_options),
      handlers(std::move(session_handlers)),
      log(log::get("ovsdb")),
      retry_timer(context),
      connect_timer(context),
      probe_timer(context),
      backoff(options.backoff_initial, options.backoff_max),
      reader(options.max_message_bytes),
      read_buffer(kReadChunk) {}

Error Connection::Impl::unavailable(std::string_view what) const {
  return Error::make(ErrorCode::kUnavailable, "switch {} {}: {}", peer, what, last_error);
}

void Connection::Impl::start() {
  if (phase != Phase::kStopped) return;
  phase = Phase::kWaiting;
  failed_attempts = 0;
  backoff.reset();
  // Never report a failure from inside start(): the caller may not be ready for callbacks.
  asio::post(io, [self = shared_from_this()] {
    if (self->phase == Phase::kWaiting) self->connect();
  });
}

void Connection::Impl::stop() {
  phase = Phase::kStopped;
  if (link) link->close();
  link.reset();
  retry_timer.cancel();
  connect_timer.cancel();
  probe_timer.cancel();
  outgoing.clear();
  write_in_progress = false;
  last_error = "connection stopped";
  Error stopped = unavailable("request not answered");
  for (auto& [id, done] : pending)
    asio::post(io, [done = std::move(done), stopped] { done(stopped); });
  pending.clear();
}

void Connection::Impl::connect() {
  if (!endpoint) {
    // A malformed endpoint cannot heal by retrying: report it and stay down.
    log->error("bad endpoint switch={} reason=\"{}\"", peer, endpoint.error().message);
    last_error = endpoint.error().message;
    handlers.disconnected(endpoint.error());
    return;
  }
  std::unique_ptr<asio::ssl::context> tls_context;
  if (endpoint->kind == Endpoint::Kind::kSsl) {
    auto made = make_tls_context(tls);
    if (!made) {
      phase = Phase::kConnecting;
      drop(made.error());
      return;
    }
    tls_context = std::move(*made);
  }
  phase = Phase::kConnecting;
  auto attempt = std::make_shared<Link>(io, *endpoint, std::move(tls_context));
  link = attempt;
  connect_timer.expires_after(options.connect_timeout);
  connect_timer.async_wait([self = shared_from_this(), attempt](boost::system::error_code error) {
    if (!error && self->link == attempt && self->phase == Phase::kConnecting)
      self->drop(Error::make(ErrorCode::kTimeout, "connect to {} timed out after {} ms",
                             self->endpoint_text, self->options.connect_timeout.count()));
  });
  connect_stream(attempt);
}

void Connection::Impl::connect_stream(const std::shared_ptr<Link>& attempt) {
  auto self = shared_from_this();
  auto failed = [self, attempt](std::string_view step, const boost::system::error_code& error) {
    if (self->link == attempt)
      self->drop(Error::make(ErrorCode::kUnavailable, "{} {} failed: {}", step, self->endpoint_text,
                             error.message()));
  };
  if (endpoint->kind == Endpoint::Kind::kUnix) {
    std::get<UnixSocket>(attempt->stream)
        .async_connect(asio::local::stream_protocol::endpoint(endpoint->path),
                       [self, attempt, failed](boost::system::error_code error) {
                         if (error) return failed("connect to", error);
                         self->on_transport_connected(attempt);
                       });
    return;
  }
  attempt->resolver.async_resolve(
      endpoint->host, endpoint->port,
      [self, attempt, failed](boost::system::error_code error, tcp::resolver::results_type found) {
        if (error) return failed("resolve", error);
        asio::async_connect(
            attempt->tcp_socket(), found,
            [self, attempt, failed](boost::system::error_code connect_error, auto&&) {
              if (connect_error) return failed("connect to", connect_error);
              self->on_transport_connected(attempt);
            });
      });
}

void Connection::Impl::on_transport_connected(const std::shared_ptr<Link>& attempt) {
  if (link != attempt) return;
  auto* tls_stream = std::get_if<TlsStream>(&attempt->stream);
  if (tls_stream == nullptr) {
    if (std::holds_alternative<tcp::socket>(attempt->stream)) {
      boost::system::error_code ignored;
      attempt->tcp_socket().set_option(tcp::no_delay(true), ignored);
    }
    return open();
  }
  boost::system::error_code ignored;
  attempt->tcp_socket().set_option(tcp::no_delay(true), ignored);
  tls_stream->async_handshake(
      asio::ssl::stream_base::client,
      [self = shared_from_this(), attempt, tls_stream](boost::system::error_code error) {
        if (self->link != attempt) return;
        if (!error) return self->open();
        std::string detail = error.message();
        long verify = SSL_get_verify_result(tls_stream->native_handle());
        if (verify != X509_V_OK)
          detail += fmt::format(" ({})", X509_verify_cert_error_string(verify));
        self->drop(Error::make(ErrorCode::kUnavailable, "tls handshake with {} failed: {}",
                               self->endpoint_text, detail));
      });
}

void Connection::Impl::open() {
  phase = Phase::kOpen;
  connect_timer.cancel();
  reader.reset();
  heard_from_peer = false;
  last_received = Clock::now();
  probe_sent.reset();
  last_error.clear();
  log->info("connected switch={} endpoint={}", peer, endpoint_text);
  read();
  arm_probe();
  handlers.connected();
}

void Connection::Impl::read() {
  auto on_read = [self = shared_from_this(), attempt = link](boost::system::error_code error,
                                                             std::size_t size) {
    if (self->link != attempt) return;
    if (error)
      return self->drop(
          Error::make(ErrorCode::kUnavailable, "connection lost: {}", error.message()));
    self->on_bytes(size);
    if (self->link == attempt) self->read();
  };
  std::visit(
      [&](auto& stream) { stream.async_read_some(asio::buffer(read_buffer), std::move(on_read)); },
      link->stream);
}

void Connection::Impl::on_bytes(std::size_t size) {
  last_received = Clock::now();
  probe_sent.reset();
  std::shared_ptr<Link> attempt = link;
  auto status = reader.feed(std::string_view(read_buffer.data(), size), [&](json::value&& value) {
    dispatch(value);
    return link == attempt;
  });
  if (!status && link == attempt) drop(status.error().wrap("protocol error"));
}

void Connection::Impl::dispatch(json::value& value) {
  auto message = classify(value);
  if (!message) return drop(message.error().wrap("protocol error"));
  if (!heard_from_peer) {
    heard_from_peer = true;
    failed_attempts = 0;
    backoff.reset();
  }
  switch (message->kind) {
    case Message::Kind::kRequest:
      return answer_request(*message);
    case Message::Kind::kNotification:
      return handlers.notification(message->method, *message->params);
    case Message::Kind::kReply:
      return complete_reply(*message);
  }
}

void Connection::Impl::answer_request(const Message& message) {
  if (message.method == "echo") return send(serialize_reply(*message.id, *message.params));
  log->debug("unknown request switch={} method={}", peer, message.method);
  json::object refusal{{"id", *message.id}, {"result", nullptr}, {"error", "unknown method"}};
  send(json::serialize(refusal));
}

void Connection::Impl::complete_reply(const Message& message) {
  auto found = message.numeric_id ? pending.find(*message.numeric_id) : pending.end();
  if (found == pending.end())
    return drop(Error::make(ErrorCode::kInternal, "protocol error: reply to unknown request {}",
                            json::serialize(*message.id)));
  ReplyHandler done = std::move(found->second);
  pending.erase(found);
  if (message.error != nullptr)
    return done(Error::make(ErrorCode::kInternal, "switch {} answered with an error: {}", peer,
                            json::serialize(*message.error)));
  done(std::move(*message.result));
}

void Connection::Impl::call(std::string_view method, const json::array& params, ReplyHandler done) {
  if (phase != Phase::kOpen) {
    asio::post(io, [done = std::move(done), error = unavailable("not connected")] { done(error); });
    return;
  }
  uint64_t id = next_id++;
  pending.emplace(id, std::move(done));
  send(serialize_request(id, method, params));
}

void Connection::Impl::send(std::string text) {
  if (outgoing.empty())
    outgoing = std::move(text);
  else
    outgoing += text;
  if (write_in_progress || flush_posted) return;
  // The write goes out at the end of this turn of the event loop, with every other request
  // made in it: a burst of migrations costs one system call (and one wake-up of the server)
  // per turn instead of one per transaction.
  flush_posted = true;
  asio::post(io, [self = shared_from_this()] {
    self->flush_posted = false;
    if (self->link && !self->write_in_progress && !self->outgoing.empty()) self->flush();
  });
}

void Connection::Impl::flush() {
  // Everything queued while the previous write was in flight goes out in one write.
  writing.swap(outgoing);
  outgoing.clear();
  write_in_progress = true;
  auto on_written = [self = shared_from_this(), attempt = link](boost::system::error_code error,
                                                                std::size_t) {
    if (self->link != attempt) return;
    self->write_in_progress = false;
    self->writing.clear();
    if (error)
      return self->drop(
          Error::make(ErrorCode::kUnavailable, "connection lost: {}", error.message()));
    if (!self->outgoing.empty()) self->flush();
  };
  std::visit(
      [&](auto& stream) {
        asio::async_write(stream, asio::buffer(writing), std::move(on_written));
      },
      link->stream);
}

void Connection::Impl::arm_probe() {
  if (options.echo_interval.count() <= 0) return;
  probe_timer.expires_after(options.echo_interval);
  probe_timer.async_wait(
      [self = shared_from_this(), attempt = link](boost::system::error_code error) {
        if (!error && self->link == attempt && self->phase == Phase::kOpen) self->on_probe();
      });
}

void Connection::Impl::on_probe() {
  Clock::time_point now = Clock::now();
  if (probe_sent && now - *probe_sent >= 2 * options.echo_interval)
    return drop(Error::make(ErrorCode::kTimeout, "no reply to echo within {} ms",
                            2 * options.echo_interval.count()));
  if (!probe_sent && now - last_received >= options.echo_interval) {
    probe_sent = now;
    uint64_t id = next_id++;
    pending.emplace(id, [](Result<json::value>) {});
    send(serialize_request(id, "echo", json::array()));
  }
  arm_probe();
}

void Connection::Impl::drop(const Error& reason) {
  if (phase == Phase::kStopped || phase == Phase::kWaiting) return;
  bool was_open = phase == Phase::kOpen;
  if (link) link->close();
  link.reset();
  phase = Phase::kWaiting;
  connect_timer.cancel();
  probe_timer.cancel();
  outgoing.clear();
  writing.clear();
  write_in_progress = false;
  last_error = reason.message;
  if (was_open)
    log->warn("connection lost switch={} endpoint={} reason=\"{}\"", peer, endpoint_text,
              reason.message);
  else if (failed_attempts == 0)
    log->warn("connect failed switch={} endpoint={} reason=\"{}\"", peer, endpoint_text,
              reason.message);
  else
    log->debug("connect failed switch={} attempt={} reason=\"{}\"", peer, failed_attempts + 1,
               reason.message);
  failed_attempts++;

  auto failed = std::move(pending);
  pending.clear();
  handlers.disconnected(reason);
  Error lost =
      Error::make(ErrorCode::kUnavailable, "switch {} connection lost: {}", peer, reason.message);
  for (auto& [id, done] : failed)
    done(lost);
  if (phase == Phase::kWaiting) schedule_retry();
}

void Connection::Impl::schedule_retry() {
  std::chrono::milliseconds delay = backoff.next();
  log->debug("reconnect scheduled switch={} delay_ms={}", peer, delay.count());
  retry_timer.expires_after(delay);
  retry_timer.async_wait([self = shared_from_this()](boost::system::error_code error) {
    if (!error && self->phase == Phase::kWaiting) self->connect();
  });
}

Connection::Connection(asio::io_context& io, std::string peer, std::string endpoint,
                       controller::TlsFiles tls, ConnectionOptions options, Handlers handlers)
    : impl_(std::make_shared<Impl>(io, std::move(peer), std::move(endpoint), std::move(tls),
                                   options, std::move(handlers))) {}

Connection::~Connection() {
  impl_->stop();
  impl_->handlers = {};
}

void Connection::start() {
  impl_->start();
}

void Connection::stop() {
  impl_->stop();
}

bool Connection::connected() const {
  return impl_->phase == Impl::Phase::kOpen;
}

void Connection::call(std::string_view method, const json::array& params, ReplyHandler done) {
  impl_->call(method, params, std::move(done));
}

void Connection::fail(const Error& reason) {
  impl_->drop(reason);
}

}  // namespace steward::ovsdb
