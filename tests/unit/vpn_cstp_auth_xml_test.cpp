#include "vpn/cstp/auth_xml.h"

#include <gtest/gtest.h>

namespace steward::vpn::cstp {
namespace {

constexpr const char* kUsernameForm = R"(<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
<opaque is-for="sg"><tunnel-group>default</tunnel-group></opaque>
<auth id="main">
<message>Please enter your username.</message>
<form method="post" action="/auth">
<input type="text" name="username" label="Username:" />
</form></auth>
</config-auth>)";

constexpr const char* kPasswordForm = R"(<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
<auth id="passwd">
<message>Please enter your password.</message>
<form method="post" action="/auth">
<input type="password" name="password" label="Password:" />
<input type="hidden" name="token" value="t&amp;1" />
<select name="group_list" label="GROUP:">
<option>staff</option><option>admins</option>
</select>
</form></auth>
</config-auth>)";

constexpr const char* kComplete = R"(<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="complete" aggregate-auth-version="2">
<auth id="success"><banner>Welcome</banner></auth>
<session-token>tok</session-token>
</config-auth>)";

TEST(AuthXml, UsernameFormIsParsed) {
  auto response = parse_auth_response(kUsernameForm);
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->kind, AuthResponse::Kind::kForm);
  EXPECT_EQ(response->form.auth_id, "main");
  EXPECT_EQ(response->form.action, "/auth");
  EXPECT_EQ(response->form.message, "Please enter your username.");
  ASSERT_EQ(response->form.fields.size(), 1u);
  EXPECT_EQ(response->form.fields[0].type, "text");
  EXPECT_EQ(response->form.fields[0].name, "username");
  EXPECT_NE(response->opaque.find("<tunnel-group>default</tunnel-group>"), std::string::npos);
}

TEST(AuthXml, PasswordFormWithHiddenAndSelectFields) {
  auto response = parse_auth_response(kPasswordForm);
  ASSERT_TRUE(response) << response.error().message;
  ASSERT_EQ(response->form.fields.size(), 3u);
  EXPECT_EQ(response->form.fields[1].value, "t&1");
  EXPECT_EQ(response->form.fields[2].type, "select");
  EXPECT_EQ(response->form.fields[2].options, (std::vector<std::string>{"staff", "admins"}));
  EXPECT_EQ(response->form.fields[2].value, "staff");
}

TEST(AuthXml, ReplyFillsFieldsAndEscapesValues) {
  auto response = parse_auth_response(kPasswordForm);
  ASSERT_TRUE(response);
  auto reply = make_form_reply(*response, {"alice", "p<&>'\"", "admins"});
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_NE(reply->find("type=\"auth-reply\""), std::string::npos);
  EXPECT_NE(reply->find("<password>p&lt;&amp;&gt;&apos;&quot;</password>"), std::string::npos);
  EXPECT_NE(reply->find("<token>t&amp;1</token>"), std::string::npos);
  EXPECT_NE(reply->find("<group_list>admins</group_list>"), std::string::npos);
  // The reply is itself well-formed XML.
  EXPECT_TRUE(parse_auth_response(*reply).error().message.find("not XML") == std::string::npos);
}

TEST(AuthXml, OpaqueIsEchoedInTheReply) {
  auto response = parse_auth_response(kUsernameForm);
  ASSERT_TRUE(response);
  auto reply = make_form_reply(*response, {"alice", "", ""});
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->find("<opaque is-for=\"sg\">"), std::string::npos);
  EXPECT_NE(reply->find("<username>alice</username>"), std::string::npos);
}

TEST(AuthXml, FieldTheCredentialsCannotFillIsAnError) {
  auto response = parse_auth_response(R"(<config-auth type="auth-request"><auth id="otp">
<form action="/auth"><input type="text" name="otp_code" label="One-time code:"/></form>
</auth></config-auth>)");
  ASSERT_TRUE(response);
  auto reply = make_form_reply(*response, {"alice", "pw", ""});
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(reply.error().message.find("otp_code"), std::string::npos);
}

TEST(AuthXml, FieldNameThatIsNoXmlNameIsRefused) {
  auto response = parse_auth_response(R"(<config-auth type="auth-request"><auth id="x">
<form action="/auth"><input type="password" name="a&gt;b"/></form></auth></config-auth>)");
  ASSERT_TRUE(response);
  EXPECT_FALSE(make_form_reply(*response, {"alice", "pw", ""}));
}

TEST(AuthXml, CompleteCarriesTokenAndBanner) {
  auto response = parse_auth_response(kComplete);
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->kind, AuthResponse::Kind::kComplete);
  EXPECT_EQ(response->session_token, "tok");
  EXPECT_EQ(response->message, "Welcome");
}

TEST(AuthXml, ErrorInsideFormIsReported) {
  auto response = parse_auth_response(R"(<config-auth type="auth-request"><auth id="main">
<error id="e" param1="">Login failed.</error>
<form action="/auth"><input type="text" name="username"/></form></auth></config-auth>)");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->kind, AuthResponse::Kind::kForm);
  EXPECT_EQ(response->error, "Login failed.");
}

TEST(AuthXml, ErrorWithoutFormIsAnErrorResponse) {
  auto response = parse_auth_response(
      R"(<config-auth type="auth-request"><auth id="main"><error>Locked</error></auth></config-auth>)");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->kind, AuthResponse::Kind::kError);
  EXPECT_EQ(response->error, "Locked");
}

TEST(AuthXml, MalformedDocumentsAreErrors) {
  EXPECT_FALSE(parse_auth_response(""));
  EXPECT_FALSE(parse_auth_response("<config-auth type=\"complete\">"));
  EXPECT_FALSE(parse_auth_response("<html><body>hello</body></html>"));
  EXPECT_FALSE(parse_auth_response("<config-auth type=\"strange\"/>"));
  EXPECT_FALSE(parse_auth_response("<config-auth type=\"auth-request\"/>"));
  EXPECT_FALSE(parse_auth_response(
      "<config-auth type=\"auth-request\"><auth><form><input type=\"text\"/></form></auth>"
      "</config-auth>"));
  // No entity expansion from a peer's DTD.
  auto entity = parse_auth_response(
      "<?xml version=\"1.0\"?><!DOCTYPE c [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
      "<config-auth type=\"complete\"><session-token>&x;</session-token></config-auth>");
  if (entity) {
    EXPECT_EQ(entity->session_token.find("root:"), std::string::npos);
  }
}

TEST(AuthXml, InitRequestNamesGroupUrl) {
  auto init = make_init_request("v9.01", "https://198.18.1.1:443/group&x");
  EXPECT_NE(init.find("type=\"init\""), std::string::npos);
  EXPECT_NE(init.find("<group-access>https://198.18.1.1:443/group&amp;x</group-access>"),
            std::string::npos);
}

}  // namespace
}  // namespace steward::vpn::cstp
