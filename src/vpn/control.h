// The VPN daemon's control socket: a Unix stream socket on which `steward vpn run`, `admit`,
// `status` and `disconnect` talk to the running daemon. One request per connection: a JSON
// object on one line, answered by one JSON object on one line ({"ok": true, ...} or
// {"ok": false, "error": "..."}).
//
// Who may ask: the peer's credentials (SO_PEERCRED) are read before the request; only root and
// the daemon's own uid are served. The handler gets the credentials too, so that it can check
// that a PID named in a request belongs to the asker.
//
// Threading: the server runs on the caller's io_context and calls the handler there; the
// handler answers through its Reply exactly once, now or later. The client is blocking.
#pragma once

#include "core/result.h"

#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace steward::vpn {

struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
};

class ControlServer {
 public:
  using Reply = std::function<void(boost::json::object)>;
  using Handler =
      std::function<void(const Peer& peer, const boost::json::object& request, Reply reply)>;

  ControlServer(boost::asio::io_context& io, std::string path, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Listens on `path` with mode 0600 (root and the owner); a stale socket file left by a dead
  // daemon is replaced. kConflict when a live daemon answers on it.
  Status start();
  // Stops accepting and removes the socket file.
  void stop();
  uint64_t refused() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Sends `request` to the daemon at `path` and waits for the answer. kUnavailable when no
// daemon listens; the daemon's refusal ("ok": false) comes back as kInvalidArgument with its
// message (kUnauthenticated for a refused uid).
Result<boost::json::object> control_request(const std::string& path,
                                            const boost::json::object& request,
                                            std::chrono::milliseconds timeout);

}  // namespace steward::vpn
