#include "vpn/control.h"

#include "core/log.h"
#include "core/unix_json.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace steward::vpn {
namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {

// Writes one answer line and closes after the peer has read it.
void answer(std::shared_ptr<local::socket> socket, const json::object& reply) {
  auto text = std::make_shared<std::string>(json::serialize(reply) + "\n");
  asio::async_write(*socket, asio::buffer(*text),
                    [socket, text](boost::system::error_code, size_t) {
                      boost::system::error_code ignored;
                      socket->shutdown(local::socket::shutdown_send, ignored);
                    });
}

}  // namespace

struct ControlServer::Impl : std::enable_shared_from_this<ControlServer::Impl> {
  Impl(asio::io_context& io_context, std::string socket_path, Handler request_handler)
      : acceptor(io_context), path(std::move(socket_path)), handler(std::move(request_handler)) {}

  local::acceptor acceptor;
  std::string path;
  Handler handler;
  std::atomic<uint64_t> refused{0};

  void accept();
  void serve(std::shared_ptr<local::socket> socket, Peer peer, bool allowed);
};

void ControlServer::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](boost::system::error_code ec,
                                                    local::socket accepted) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (!ec) {
      auto socket = std::make_shared<local::socket>(std::move(accepted));
      ucred credentials{};
      socklen_t size = sizeof(credentials);
      bool known =
          ::getsockopt(socket->native_handle(), SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0;
      bool allowed = known && (credentials.uid == 0 || credentials.uid == ::getuid());
      self->serve(socket, Peer{credentials.pid, credentials.uid}, allowed);
    }
    self->accept();
  });
}

// The request is read before any answer, a refusal too: closing a Unix socket with unread
// data resets the connection, and the peer would see that instead of the refusal.
void ControlServer::Impl::serve(std::shared_ptr<local::socket> socket, Peer peer, bool allowed) {
  auto buffer = std::make_shared<asio::streambuf>(unix_json::kMaxLine);
  asio::async_read_until(
      *socket, *buffer, '\n',
      [self = shared_from_this(), socket, buffer, peer, allowed](boost::system::error_code ec,
                                                                 size_t) {
        if (!allowed) {
          self->refused++;
          log::get("vpn")->warn(
              "control refused pid={} uid={}: only root and uid={} may command the vpn daemon",
              peer.pid, peer.uid, ::getuid());
          return answer(socket,
                        unix_json::failure("permission denied: only root and the daemon's user may "
                                           "command the vpn daemon"));
        }
        if (ec) return;
        std::string line(asio::buffers_begin(buffer->data()), asio::buffers_end(buffer->data()));
        boost::system::error_code parse_error;
        json::value request = json::parse(line, parse_error);
        if (parse_error || !request.is_object()) {
          return answer(socket, unix_json::failure("request must be one JSON object on one line"));
        }
        self->handler(peer, request.get_object(),
                      [socket](json::object reply) { answer(socket, reply); });
      });
}

ControlServer::ControlServer(asio::io_context& io, std::string path, Handler handler)
    : impl_(std::make_shared<Impl>(io, std::move(path), std::move(handler))) {}

ControlServer::~ControlServer() {
  stop();
}

Status ControlServer::start() {
  // A socket file that still answers belongs to a live daemon: never steal it.
  if (control_request(impl_->path, json::object{{"op", "ping"}}, std::chrono::milliseconds(500))) {
    return Error::make(ErrorCode::kConflict, "a vpn daemon already answers on {}", impl_->path);
  }
  if (auto status = unix_json::listen(impl_->acceptor, impl_->path, 0600); !status) {
    return status.error().wrap("control socket");
  }
  impl_->accept();
  return ok();
}

void ControlServer::stop() {
  if (!impl_ || !impl_->acceptor.is_open()) return;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  ::unlink(impl_->path.c_str());
}

uint64_t ControlServer::refused() const {
  return impl_->refused.load();
}

Result<json::object> control_request(const std::string& path, const json::object& request,
                                     std::chrono::milliseconds timeout) {
  return unix_json::request(path, request, timeout, "the vpn daemon");
}

}  // namespace steward::vpn
