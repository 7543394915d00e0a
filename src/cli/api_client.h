// How CLI commands reach a daemon's HTTP API: base URL and token resolution, and JSON calls
// whose errors come back as readable messages.
#pragma once

#include "core/http.h"
#include "core/result.h"

#include <boost/json/value.hpp>

#include <memory>
#include <string>

namespace steward::cli {

// Exit codes of every `steward` command (documented in docs/operations.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // the request failed or the daemon said no
inline constexpr int kExitUsage = 2;     // bad command line
inline constexpr int kExitProblems = 3;  // verify found misplaced configuration

struct ClientOptions {
  std::string url = "http://127.0.0.1:8470";  // STEWARD_URL overrides the default
  std::string token_file;                     // STEWARD_TOKEN overrides the file
  bool json = false;                          // print raw JSON answers
};

class ApiClient {
 public:
  static Result<std::unique_ptr<ApiClient>> connect(const ClientOptions& options);

  // Sends a request; a 2xx answer gives its JSON body (null for 204), anything else an error
  // carrying the daemon's message.
  Result<boost::json::value> call(const std::string& method, const std::string& target,
                                  const std::string& body = {});
  Result<http::Response> raw(const std::string& method, const std::string& target,
                             const std::string& body = {});

 private:
  explicit ApiClient(std::unique_ptr<http::Client> client) : client_(std::move(client)) {}
  std::unique_ptr<http::Client> client_;
};

}  // namespace steward::cli
