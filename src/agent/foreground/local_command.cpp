#include "agent/foreground/local_command.h"

#include "core/log.h"
#include "core/unix_json.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>

namespace steward::agent {
namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {

// Reads and discards until the peer closes (bounded: the refusal is already sent).
void drain(std::shared_ptr<local::socket> socket, int rounds = 16) {
  auto sink = std::make_shared<std::array<char, 4096>>();
  socket->async_read_some(asio::buffer(*sink),
                          [socket, sink, rounds](boost::system::error_code ec, size_t) {
                            if (!ec && rounds > 0) drain(socket, rounds - 1);
                          });
}

}  // namespace

struct LocalCommandServer::Impl : std::enable_shared_from_this<LocalCommandServer::Impl> {
  Impl(asio::io_context& io_context, std::string socket_path, std::set<uid_t> uids,
       Handler request_handler)
      : io(io_context),
        acceptor(io_context),
        path(std::move(socket_path)),
        allowed(std::move(uids)),
        handler(std::move(request_handler)) {}

  asio::io_context& io;
  local::acceptor acceptor;
  std::string path;
  std::set<uid_t> allowed;
  Handler handler;
  std::atomic<uint64_t> refused{0};
  std::shared_ptr<spdlog::logger> log = log::get("agent");

  void accept();
  bool admitted(local::socket& socket);
  void serve(std::shared_ptr<local::socket> socket);
};

bool LocalCommandServer::Impl::admitted(local::socket& socket) {
  ucred peer{};
  socklen_t size = sizeof(peer);
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) {
    log->warn("local command: cannot read peer credentials: {}", std::strerror(errno));
    return false;
  }
  if (allowed.count(peer.uid)) return true;
  refused++;
  log->warn("local command refused pid={} uid={}: uid not allowed", peer.pid, peer.uid);
  return false;
}

void LocalCommandServer::Impl::accept() {
  acceptor.async_accept(
      [self = shared_from_this()](boost::system::error_code ec, local::socket socket) {
        if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
        if (!ec && self->admitted(socket)) {
          self->serve(std::make_shared<local::socket>(std::move(socket)));
        } else if (!ec) {
          auto turned_away = std::make_shared<local::socket>(std::move(socket));
          auto answer = std::make_shared<std::string>(
              json::serialize(
                  unix_json::failure("permission denied: this uid may not command the agent")) +
              "\n");
          asio::async_write(*turned_away, asio::buffer(*answer),
                            [turned_away, answer](boost::system::error_code, size_t) {
                              // Closing with the request unread would reset the connection before
                              // the peer reads the refusal: let the peer close first.
                              boost::system::error_code ignored;
                              turned_away->shutdown(local::socket::shutdown_send, ignored);
                              drain(turned_away);
                            });
        }
        self->accept();
      });
}

// One request line, one answer line, then the next request on the same connection.
void LocalCommandServer::Impl::serve(std::shared_ptr<local::socket> socket) {
  auto buffer = std::make_shared<asio::streambuf>(unix_json::kMaxLine);
  asio::async_read_until(
      *socket, *buffer, '\n',
      [self = shared_from_this(), socket, buffer](boost::system::error_code ec, size_t size) {
        if (ec) return;
        std::string line(asio::buffers_begin(buffer->data()),
                         asio::buffers_begin(buffer->data()) + static_cast<ptrdiff_t>(size));
        buffer->consume(size);
        boost::system::error_code parse_error;
        json::value request = json::parse(line, parse_error);
        auto respond = [self, socket](json::object answer) {
          auto text = std::make_shared<std::string>(json::serialize(answer) + "\n");
          asio::post(self->io, [self, socket, text] {
            asio::async_write(*socket, asio::buffer(*text),
                              [self, socket, text](boost::system::error_code write_error, size_t) {
                                if (!write_error) self->serve(socket);
                              });
          });
        };
        if (parse_error || !request.is_object()) {
          return respond(unix_json::failure("request must be one JSON object per line"));
        }
        self->handler(request.get_object(), respond);
      });
}

LocalCommandServer::LocalCommandServer(asio::io_context& io, std::string path,
                                       std::set<uid_t> allowed_uids, Handler handler)
    : impl_(std::make_shared<Impl>(io, std::move(path), std::move(allowed_uids),
                                   std::move(handler))) {}

LocalCommandServer::~LocalCommandServer() {
  stop();
}

Status LocalCommandServer::start() {
  if (auto status = unix_json::listen(impl_->acceptor, impl_->path, 0660); !status) return status;
  impl_->accept();
  return ok();
}

void LocalCommandServer::stop() {
  if (!impl_ || !impl_->acceptor.is_open()) return;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  ::unlink(impl_->path.c_str());
}

uint64_t LocalCommandServer::refused() const {
  return impl_->refused.load();
}

Result<json::object> local_command(const std::string& path, const json::object& request,
                                   std::chrono::milliseconds timeout) {
  return unix_json::request(path, request, timeout, "the agent");
}

}  // namespace steward::agent
