#include "cli/api_client.h"

#include <boost/json.hpp>

#include <cstdlib>
#include <fstream>

namespace steward::cli {

Result<std::unique_ptr<ApiClient>> ApiClient::connect(const ClientOptions& options) {
  std::string url = options.url;
  if (const char* env = std::getenv("STEWARD_URL"); env && *env && url == ClientOptions{}.url) {
    url = env;
  }
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return Error::make(ErrorCode::kInvalidArgument, "url '{}' must start with http://", url);
  }
  std::string authority = url.substr(kScheme.size());
  authority = authority.substr(0, authority.find('/'));
  size_t colon = authority.rfind(':');
  std::string host = authority.substr(0, colon);
  int port = colon == std::string::npos ? 80 : std::atoi(authority.c_str() + colon + 1);
  if (host.empty() || port <= 0 || port > 65535) {
    return Error::make(ErrorCode::kInvalidArgument, "url '{}' has no usable host:port", url);
  }

  std::string token;
  if (const char* env = std::getenv("STEWARD_TOKEN"); env && *env) {
    token = env;
  } else if (!options.token_file.empty()) {
    std::ifstream in(options.token_file);
    if (!in) {
      return Error::make(ErrorCode::kInvalidArgument,
                         "cannot read token file {}: set STEWARD_TOKEN or --token-file",
                         options.token_file);
    }
    std::getline(in, token);
  }
  auto client = std::make_unique<http::Client>(host, static_cast<uint16_t>(port), token);
  return std::unique_ptr<ApiClient>(new ApiClient(std::move(client)));
}

Result<http::Response> ApiClient::raw(const std::string& method, const std::string& target,
                                      const std::string& body) {
  return client_->request(method, target, body);
}

Result<boost::json::value> ApiClient::call(const std::string& method, const std::string& target,
                                           const std::string& body) {
  auto response = client_->request(method, target, body);
  if (!response) return response.error();
  boost::system::error_code ec;
  boost::json::value parsed;
  if (!response->body.empty()) parsed = boost::json::parse(response->body, ec);
  if (response->status >= 200 && response->status < 300) {
    if (ec)
      return Error::make(ErrorCode::kInternal, "daemon sent malformed JSON: {}", ec.message());
    return parsed;
  }
  std::string message = response->body;
  if (!ec && parsed.is_object()) {
    if (auto* error = parsed.as_object().if_contains("error"); error && error->is_object()) {
      if (auto* text = error->as_object().if_contains("message"); text && text->is_string()) {
        message = std::string(text->get_string());
      }
    }
  }
  ErrorCode code = response->status == 404   ? ErrorCode::kNotFound
                   : response->status == 409 ? ErrorCode::kConflict
                   : response->status == 401 ? ErrorCode::kUnauthenticated
                   : response->status < 500  ? ErrorCode::kInvalidArgument
                                             : ErrorCode::kUnavailable;
  return Error::make(code, "HTTP {}: {}", response->status, message);
}

}  // namespace steward::cli
