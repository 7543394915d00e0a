#include "core/http.h"

#include "core/log.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <cstdio>

namespace steward::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kBodyLimit = 4 * 1024 * 1024;
constexpr std::chrono::seconds kIdleTimeout{120};

struct Route {
  std::string method;
  std::vector<std::string> segments;
  Handler handler;
};

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) out.emplace_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

std::string percent_decode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      unsigned value = 0;
      auto hex = in.substr(i + 1, 2);
      if (std::sscanf(std::string(hex).c_str(), "%2x", &value) == 1) {
        out += static_cast<char>(value);
        i += 2;
        continue;
      }
    }
    out += in[i] == '+' ? ' ' : in[i];
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string key = percent_decode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
    if (!key.empty()) out[key] = value;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace

int status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kUnauthenticated:
      return 401;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kTimeout:
      return 504;
    case ErrorCode::kIo:
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

Response error_response(const Error& error) {
  boost::json::object body{
      {"error", boost::json::object{{"code", to_string(error.code)}, {"message", error.message}}}};
  return Response{status_for(error.code), boost::json::serialize(body) + "\n"};
}

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io_context, std::string bind_address, uint16_t bind_port)
      : io(io_context), acceptor(io_context), address(std::move(bind_address)), port(bind_port) {}

  asio::io_context& io;
  tcp::acceptor acceptor;
  std::string address;
  uint16_t port;
  std::vector<Route> routes;
  std::string token;
  std::vector<std::string> public_paths;
  std::shared_ptr<spdlog::logger> log = log::get("http");

  void accept();
  void dispatch(Request& request, const std::string& authorization, Reply reply);
};

namespace {

// One client connection: reads requests one after another and writes each answer before
// reading the next (HTTP/1.1 without pipelining).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    // A client that sends nothing for this long loses its connection (no idle sockets kept
    // forever by half-open peers).
    stream_.expires_after(kIdleTimeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

 private:
  void on_read(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {
      return write(
          Response{413, R"({"error":{"code":"invalid_argument","message":"body too large"}})"},
          false);
    }
    if (ec) return;  // closed or broken: nothing to answer
    auto& message = parser_->get();
    keep_alive_ = message.keep_alive();
    version_ = message.version();

    Request request;
    request.method = std::string(message.method_string());
    std::string_view target = message.target();
    size_t question = target.find('?');
    request.path = std::string(target.substr(0, question));
    if (question != std::string_view::npos)
      request.query = parse_query(target.substr(question + 1));
    request.body = std::move(message.body());
    std::string authorization(message[bhttp::field::authorization]);

    auto self = shared_from_this();
    auto answered = std::make_shared<bool>(false);
    server_->dispatch(request, authorization, [self, answered](Response response) {
      if (*answered) return;
      *answered = true;
      asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        self->write(std::move(response), self->keep_alive_);
      });
    });
  }

  void write(Response response, bool keep_alive) {
    auto out = std::make_shared<bhttp::response<bhttp::string_body>>(
        static_cast<bhttp::status>(response.status), version_ ? version_ : 11);
    out->set(bhttp::field::server, "steward");
    out->set(bhttp::field::content_type, response.content_type);
    out->keep_alive(keep_alive);
    out->body() = std::move(response.body);
    out->prepare_payload();
    stream_.expires_after(kIdleTimeout);
    bhttp::async_write(stream_, *out,
                       [self = shared_from_this(), out, keep_alive](beast::error_code ec, size_t) {
                         if (ec || !keep_alive) {
                           beast::error_code ignored;
                           self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                           return;
                         }
                         self->read();
                       });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Server::Impl> server_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
};

}  // namespace

void Server::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), self)->read();
    }
    self->accept();
  });
}

void Server::Impl::dispatch(Request& request, const std::string& authorization, Reply reply) {
  bool is_public =
      std::find(public_paths.begin(), public_paths.end(), request.path) != public_paths.end();
  if (!token.empty() && !is_public && authorization != "Bearer " + token) {
    return reply(error_response(
        Error::make(ErrorCode::kUnauthenticated,
                    "missing or wrong bearer token: send 'Authorization: Bearer <token>'")));
  }
  auto segments = split_path(request.path);
  bool path_known = false;
  for (const Route& route : routes) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      const std::string& want = route.segments[i];
      if (want.size() > 1 && want.front() == '{' && want.back() == '}') {
        params.push_back(percent_decode(segments[i]));
      } else {
        match = want == segments[i];
      }
    }
    if (!match) continue;
    path_known = true;
    if (route.method != request.method) continue;
    request.params = std::move(params);
    return route.handler(request, std::move(reply));
  }
  if (path_known) {
    return reply(Response{
        405, R"({"error":{"code":"invalid_argument","message":"method not allowed on this path"}})"
             "\n"});
  }
  reply(error_response(Error::make(ErrorCode::kNotFound, "no such path: {}", request.path)));
}

Server::Server(asio::io_context& io, std::string address, uint16_t port)
    : impl_(std::make_shared<Impl>(io, std::move(address), port)) {}

Server::~Server() {
  stop();
}

void Server::require_bearer_token(std::string token, std::vector<std::string> public_paths) {
  impl_->token = std::move(token);
  impl_->public_paths = std::move(public_paths);
}

void Server::route(std::string method, std::string pattern, Handler handler) {
  impl_->routes.push_back(Route{std::move(method), split_path(pattern), std::move(handler)});
}

Result<uint16_t> Server::start() {
  beast::error_code ec;
  auto address = asio::ip::make_address(impl_->address, ec);
  if (ec)
    return Error::make(ErrorCode::kInvalidArgument, "bad listen address '{}'", impl_->address);
  tcp::endpoint endpoint(address, impl_->port);
  auto& acceptor = impl_->acceptor;
  if (acceptor.open(endpoint.protocol(), ec); ec) {
    return Error::make(ErrorCode::kIo, "cannot open socket: {}", ec.message());
  }
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) {
    return Error::make(ErrorCode::kIo, "cannot listen on {}:{}: {}", impl_->address, impl_->port,
                       ec.message());
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return Error::make(ErrorCode::kIo, "cannot listen: {}", ec.message());
  }
  impl_->accept();
  return acceptor.local_endpoint().port();
}

void Server::stop() {
  beast::error_code ignored;
  if (impl_ && impl_->acceptor.is_open()) impl_->acceptor.close(ignored);
}

struct Client::Impl {
  std::string host;
  uint16_t port;
  std::string token;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  Status connect() {
    beast::error_code ec;
    tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (ec)
      return Error::make(ErrorCode::kUnavailable, "cannot resolve {}: {}", host, ec.message());
    stream.emplace(io);
    stream->connect(endpoints, ec);
    if (ec) {
      stream.reset();
      return Error::make(ErrorCode::kUnavailable, "cannot connect to {}:{}: {}", host, port,
                         ec.message());
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
    return ok();
  }

  Result<Response> once(const std::string& method, const std::string& target,
                        const std::string& body) {
    if (!stream) {
      if (auto connected = connect(); !connected) return connected.error();
    }
    bhttp::request<bhttp::string_body> request(bhttp::string_to_verb(method), target, 11);
    request.set(bhttp::field::host, host);
    request.keep_alive(true);
    if (!token.empty()) request.set(bhttp::field::authorization, "Bearer " + token);
    if (!body.empty()) request.set(bhttp::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    beast::error_code ec;
    bhttp::write(*stream, request, ec);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    if (!ec) bhttp::read(*stream, buffer, parser, ec);
    if (ec) {
      stream.reset();
      buffer.clear();
      return Error::make(ErrorCode::kUnavailable, "request {} {} to {}:{} failed: {}", method,
                         target, host, port, ec.message());
    }
    auto& message = parser.get();
    Response response{static_cast<int>(message.result_int()), std::move(message.body()),
                      std::string(message[bhttp::field::content_type])};
    if (!message.keep_alive()) stream.reset();
    return response;
  }
};

Client::Client(std::string host, uint16_t port, std::string bearer_token)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->token = std::move(bearer_token);
}

Client::~Client() = default;

Result<Response> Client::request(const std::string& method, const std::string& target,
                                 const std::string& body) {
  // A kept-alive connection may have been closed by the server meanwhile: retry once on a
  // fresh connection. Requests are idempotent or carry their own de-duplication.
  bool reused = impl_->stream.has_value();
  auto response = impl_->once(method, target, body);
  if (!response && reused) response = impl_->once(method, target, body);
  return response;
}

}  // namespace steward::http
