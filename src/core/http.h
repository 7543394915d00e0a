// A small HTTP/1.1 JSON server on the daemon's io_context (Boost.Beast), and a blocking client
// for the CLI, tests and benchmarks. Handlers run on the io_context thread and answer through
// a Reply they may call later (after a step finished); each Reply must be called exactly once.
#pragma once

#include "core/result.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace steward::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query
  std::map<std::string, std::string> query;
  std::vector<std::string> params;  // values of the route's {placeholders}, in order
  std::string body;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

using Reply = std::function<void(Response)>;
using Handler = std::function<void(Request&, Reply)>;

// {"error": {"code": "...", "message": "..."}} with the HTTP status that fits the error code.
Response error_response(const Error& error);
int status_for(ErrorCode code);

class Server {
 public:
  // Listens on `address:port` (port 0 picks a free one) once start() is called.
  Server(boost::asio::io_context& io, std::string address, uint16_t port);
  ~Server();

  // Requires `Authorization: Bearer <token>` on every path except those listed as public.
  void require_bearer_token(std::string token, std::vector<std::string> public_paths);
  // Adds a route. `pattern` segments in braces ("/v1/vms/{id}") match one path segment.
  void route(std::string method, std::string pattern, Handler handler);
  // Binds and starts accepting. Returns the bound port, or why it could not bind.
  Result<uint16_t> start();
  // Stops accepting; open connections finish their current request.
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// A blocking HTTP/1.1 client on one keep-alive connection; reconnects when the server closed it.
class Client {
 public:
  Client(std::string host, uint16_t port, std::string bearer_token = {});
  ~Client();
  // Sends one request and waits for the whole answer. Transport failures are errors;
  // any HTTP status is a Response.
  Result<Response> request(const std::string& method, const std::string& target,
                           const std::string& body = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace steward::http
