#include "vpn/cstp/auth.h"

#include "core/log.h"
#include "vpn/cstp/auth_xml.h"
#include "vpn/cstp/https.h"

#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

namespace steward::vpn::cstp {
namespace {

namespace asio = boost::asio;

// More rounds than any password login needs; a gateway that keeps asking is refused.
constexpr int kMaxRounds = 8;

std::string post_request(const LoginOptions& options, std::string_view path,
                         const std::string& body, const std::string& context_cookie) {
  std::string request = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: {}\r\nAccept: */*\r\n"
      "Accept-Encoding: identity\r\nX-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n"
      "X-Support-HTTP-Auth: true\r\nContent-Type: application/xml; charset=utf-8\r\n"
      "Content-Length: {}\r\n",
      path, options.url.host, options.url.port, options.user_agent, body.size());
  if (!context_cookie.empty()) request += "Cookie: webvpncontext=" + context_cookie + "\r\n";
  request += "\r\n";
  request += body;
  return request;
}

Error refused(const HttpHead& head, const std::string& body) {
  auto parsed = parse_auth_response(body);
  std::string said = parsed && !parsed->error.empty() ? parsed->error : head.reason;
  return Error::make(ErrorCode::kUnauthenticated, "gateway refused the login (HTTP {}: {})",
                     head.status, said);
}

// The form's action relative to the gateway; ocserv posts to "/auth".
std::string action_path(const AuthForm& form) {
  if (form.action.empty()) return "/";
  if (form.action.starts_with("/")) return form.action;
  auto parsed = GatewayUrl::parse(form.action);
  return parsed ? parsed->path : "/" + form.action;
}

asio::awaitable<Result<SessionCookie>> exchange(TlsConnection& connection,
                                                const LoginOptions& options) {
  auto logger = log::get("vpn");
  std::string context_cookie;
  bool password_sent = false;
  std::string request = post_request(options, options.url.path,
                                     make_init_request("v9.01", options.url.to_string()), "");

  for (int round = 0; round < kMaxRounds; ++round) {
    if (auto sent = co_await write_all(connection, request); !sent) co_return sent.error();
    auto head = co_await read_head(connection);
    if (!head) co_return head.error().wrap("login");
    auto body = co_await read_body(connection, *head);
    if (!body) co_return body.error().wrap("login");
    if (head->status == 401 || head->status == 403) co_return refused(*head, *body);
    if (head->status != 200) {
      co_return Error::make(ErrorCode::kInternal, "gateway answered the login with HTTP {} {}",
                            head->status, head->reason);
    }
    if (auto context = head->set_cookie("webvpncontext")) context_cookie = *context;

    auto response = parse_auth_response(*body);
    if (!response) co_return response.error().wrap("login");
    switch (response->kind) {
      case AuthResponse::Kind::kComplete: {
        auto cookie = head->set_cookie("webvpn");
        if (!cookie && !response->session_token.empty()) cookie = response->session_token;
        if (!cookie) {
          co_return Error::make(ErrorCode::kInternal,
                                "gateway completed the login without a webvpn cookie");
        }
        logger->info("login complete gateway={} user={} cookie={}", options.url.to_string(),
                     options.credentials.username, SessionCookie(*cookie).redacted());
        co_return SessionCookie(*cookie);
      }
      case AuthResponse::Kind::kError:
        co_return Error::make(ErrorCode::kUnauthenticated, "gateway refused the login: {}",
                              response->error.empty() ? response->message : response->error);
      case AuthResponse::Kind::kForm:
        break;
    }

    // A form again after the password went out means the password was refused.
    if (password_sent || (!response->form.error.empty() && round > 0)) {
      co_return Error::make(ErrorCode::kUnauthenticated,
                            "gateway refused the login: wrong username or password{}{}",
                            response->error.empty() ? "" : ": ", response->error);
    }
    for (const auto& field : response->form.fields) {
      if (field.type == "password") password_sent = true;
    }
    auto reply = make_form_reply(
        *response, FormAnswers{options.credentials.username, options.credentials.password,
                               options.credentials.group});
    if (!reply) co_return reply.error();
    logger->debug("login form gateway={} form={} fields={}", options.url.to_string(),
                  response->form.auth_id, response->form.fields.size());
    request = post_request(options, action_path(response->form), *reply, context_cookie);

    // A gateway that closes after each reply gets a new connection for the next post.
    auto connection_header = head->find("Connection");
    if (connection_header && boost::iequals(*connection_header, "close")) {
      auto reopened = co_await connect_gateway(options.url, options.tls, options.timeout);
      if (!reopened) co_return reopened.error();
      connection = std::move(*reopened);
    }
  }
  co_return Error::make(ErrorCode::kInternal, "gateway asked more than {} login questions",
                        kMaxRounds);
}

}  // namespace

asio::awaitable<Result<SessionCookie>> login(LoginOptions options) {
  auto connection = co_await connect_gateway(options.url, options.tls, options.timeout);
  if (!connection) co_return connection.error();
  Watchdog watchdog(*connection->stream, options.timeout);
  auto cookie = co_await exchange(*connection, options);
  if (!cookie && watchdog.fired()) {
    co_return Error::make(ErrorCode::kTimeout, "login to {} took longer than {}s",
                          options.url.to_string(), options.timeout.count());
  }
  co_return cookie;
}

void async_login(asio::io_context& io, LoginOptions options, LoginDone done) {
  asio::co_spawn(
      io,
      [options = std::move(options), done]() mutable -> asio::awaitable<void> {
        done(co_await login(std::move(options)));
      },
      asio::detached);
}

}  // namespace steward::vpn::cstp
