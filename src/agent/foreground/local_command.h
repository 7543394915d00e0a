// The agent's local command socket: a Unix stream socket on which launchers, hypervisor hooks
// and the `steward agent` command tell the agent which OS is in the foreground and ask for its
// status. One JSON object per line in each direction:
//   {"op": "foreground", "system": "work"}   ->  {"ok": true, "foreground": "work"}
//   {"op": "foreground", "system": null}     ->  no OS in the foreground
//   {"op": "status"}                          ->  {"ok": true, ...}
//   errors                                    ->  {"ok": false, "error": "..."}
// Every connection's peer credentials (SO_PEERCRED) are checked against the allowed uids before
// anything is read: a process of another user cannot switch the foreground.
//
// Threading: the server runs on the caller's io_context; the handler is called there and may
// answer later through its Reply (exactly once). The client function is blocking.
#pragma once

#include "core/result.h"

#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

namespace steward::agent {

class LocalCommandServer {
 public:
  using Reply = std::function<void(boost::json::object)>;
  using Handler = std::function<void(const boost::json::object& request, Reply reply)>;

  // Listens on `path` (an existing socket file there is replaced) with mode 0660.
  LocalCommandServer(boost::asio::io_context& io, std::string path, std::set<uid_t> allowed_uids,
                     Handler handler);
  ~LocalCommandServer();

  Status start();
  void stop();
  // Connections refused because of their credentials, for /metrics and tests.
  uint64_t refused() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Sends one request and waits for its answer. Errors when the socket cannot be reached, the
// answer is not JSON or it says "ok": false.
Result<boost::json::object> local_command(const std::string& path,
                                          const boost::json::object& request,
                                          std::chrono::milliseconds timeout);

}  // namespace steward::agent
