#include "core/unix_json.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace steward::unix_json {
namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;

json::object failure(std::string message) {
  return json::object{{"ok", false}, {"error", std::move(message)}};
}

Status listen(local::acceptor& acceptor, const std::string& path, mode_t mode) {
  ::unlink(path.c_str());
  boost::system::error_code ec;
  local::endpoint endpoint(path);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec && ::chmod(path.c_str(), mode) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
  }
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error::make(ErrorCode::kIo, "cannot listen on {}: {}", path, ec.message());
  return ok();
}

Result<json::object> request(const std::string& path, const json::object& request,
                             std::chrono::milliseconds timeout, std::string_view peer) {
  asio::io_context io;
  local::socket socket(io);
  boost::system::error_code ec;
  socket.connect(local::endpoint(path), ec);
  if (ec) {
    return Error::make(ErrorCode::kUnavailable, "cannot reach {} at {}: {}", peer, path,
                       ec.message());
  }
  // Blocking I/O with a kernel-enforced deadline on both directions.
  timeval limit{static_cast<time_t>(timeout.count() / 1000),
                static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
  std::string line = json::serialize(request) + "\n";
  asio::write(socket, asio::buffer(line), ec);
  asio::streambuf buffer(kMaxLine * 16);
  if (!ec) asio::read_until(socket, buffer, '\n', ec);
  if (ec) {
    return Error::make(ErrorCode::kUnavailable, "{} at {} did not answer: {}", peer, path,
                       ec.message());
  }
  std::string text(asio::buffers_begin(buffer.data()), asio::buffers_end(buffer.data()));
  boost::system::error_code parse_error;
  json::value answer = json::parse(text, parse_error);
  if (parse_error || !answer.is_object()) {
    return Error::make(ErrorCode::kInternal, "the answer of {} is not a JSON object", peer);
  }
  const json::value* ok_field = answer.get_object().if_contains("ok");
  if (ok_field && ok_field->is_bool() && ok_field->get_bool()) return answer.get_object();
  const json::value* message = answer.get_object().if_contains("error");
  std::string why = message && message->is_string() ? std::string(message->get_string())
                                                    : fmt::format("{} refused the request", peer);
  return Error{why.starts_with("permission denied") ? ErrorCode::kUnauthenticated
                                                    : ErrorCode::kInvalidArgument,
               why};
}

}  // namespace steward::unix_json
