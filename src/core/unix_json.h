// The local command sockets of the daemons (the agent's foreground/status socket, the VPN
// daemon's control socket): Unix stream sockets carrying one JSON object per line each way,
// answered {"ok": true, ...} or {"ok": false, "error": "..."}. What both sides share: listening
// on a socket file, and the blocking client the `steward` command uses.
#pragma once

#include "core/result.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/json/object.hpp>

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

namespace steward::unix_json {

// Longest request line a server reads.
inline constexpr size_t kMaxLine = 64 * 1024;

// {"ok": false, "error": message}
boost::json::object failure(std::string message);

// Binds `acceptor` to `path` (a file already there is replaced), gives the socket file `mode`
// and listens. kIo naming the path when any step fails.
Status listen(boost::asio::local::stream_protocol::acceptor& acceptor, const std::string& path,
              mode_t mode);

// Sends `request` as one line to the server at `path` and waits (at most `timeout` each way)
// for its answer line. `peer` names the server in messages ("the agent"). Errors:
// kUnavailable when nothing answers there or it does not answer in time; kInternal when the
// answer is not a JSON object; the server's refusal ("ok": false) as kUnauthenticated when it
// starts with "permission denied", else kInvalidArgument, with the server's message.
Result<boost::json::object> request(const std::string& path, const boost::json::object& request,
                                    std::chrono::milliseconds timeout, std::string_view peer);

}  // namespace steward::unix_json
