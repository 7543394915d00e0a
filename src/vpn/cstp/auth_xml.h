// The XML documents of the OpenConnect (AnyConnect "aggregate auth") login, parsed with
// libxml2: the requests the client posts and the gateway's answers (a form to fill in, a
// completed login, or an error). No I/O here; auth.h runs the exchange.
#pragma once

#include "core/result.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace steward::vpn::cstp {

// One input of a login form.
struct FormField {
  std::string type;  // "text", "password", "hidden", "select", ...
  std::string name;
  std::string label;
  std::string value;                 // preset value (hidden fields, select default)
  std::vector<std::string> options;  // values of a "select"
};

struct AuthForm {
  std::string action;   // where to post the reply ("/auth"); relative to the gateway
  std::string method;   // "post"
  std::string auth_id;  // <auth id="...">: "main", "passwd", ...
  std::string message;  // text the gateway shows the user
  std::string error;    // text of an <error> element: the previous reply was refused
  std::vector<FormField> fields;
};

// What a config-auth document from the gateway says.
struct AuthResponse {
  enum class Kind { kForm, kComplete, kError };
  Kind kind = Kind::kError;
  AuthForm form;              // kForm
  std::string message;        // kComplete / kError: the gateway's text, if any
  std::string error;          // kError: the <error> text
  std::string opaque;         // <opaque> element, serialized: echoed back in replies
  std::string session_token;  // <session-token> of kComplete (a secret: never log it)
};

// Parses the body of a gateway reply. A document that is not XML, is not `config-auth`, or is
// an `auth-request` without a form is an error (kInternal) saying which.
Result<AuthResponse> parse_auth_response(std::string_view xml);

// The first document the client posts: type "init", with the version string and the URL the
// user typed (its group path selects the gateway's auth group).
std::string make_init_request(std::string_view version, std::string_view group_access_url);

// Field values for a form reply, by field name. Hidden fields keep their preset values.
struct FormAnswers {
  std::string username;
  std::string password;  // a secret: the result of make_form_reply must not be logged
  std::string group;     // for a "group_list" select, if the gateway shows one
};

// The "auth-reply" document answering `form`. Fails (kInvalidArgument) when the form asks for a
// field the answers cannot fill (an unknown text or password field), naming the field, so that
// the caller reports it instead of posting an empty value.
Result<std::string> make_form_reply(const AuthResponse& response, const FormAnswers& answers);

}  // namespace steward::vpn::cstp
