// Control information: the instruction and report JSON forms, their validation, and the
// signed envelope (Ed25519).
#include "agent/model/control_message.h"
#include "agent/model/instruction.h"

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace steward::agent {
namespace {

namespace json = boost::json;

const char* kAction = R"({"id":"a-1","terminal":"t1","target":"work","kind":"action",
  "type":"lock","sequence":3})";

std::string with(std::string_view extra) {
  std::string text = R"({"id":"s-1","terminal":"t1","target":"work","kind":"setting",
    "type":"camera","params":{"enabled":false},"sequence":7)";
  return text + std::string(extra) + "}";
}

TEST(Instruction, ParsesAnActionWithDefaults) {
  auto parsed = parse_instruction(kAction);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->id, "a-1");
  EXPECT_EQ(parsed->target, "work");
  EXPECT_EQ(parsed->kind, Kind::kAction);
  EXPECT_EQ(parsed->type, "lock");
  EXPECT_EQ(parsed->sequence, 3);
  EXPECT_FALSE(parsed->expires_at_ms);
  EXPECT_TRUE(parsed->params.empty());
}

TEST(Instruction, ParsesASettingWithEveryOptionalField) {
  auto parsed =
      parse_instruction(with(R"(,"revoke":true,"expires_at_ms":1700000000000,"supersedes":["x"])"));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_TRUE(parsed->is_setting());
  EXPECT_TRUE(parsed->revoke);
  EXPECT_EQ(*parsed->expires_at_ms, 1700000000000);
  EXPECT_EQ(parsed->supersedes, std::vector<std::string>{"x"});
  EXPECT_EQ(json::serialize(parsed->params), R"({"enabled":false})");
}

TEST(Instruction, RoundTripsThroughJson) {
  auto parsed = parse_instruction(with(R"(,"expires_at_ms":5,"supersedes":["a","b"])"));
  ASSERT_TRUE(parsed);
  auto again = instruction_from_json(to_json(*parsed));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(json::serialize(to_json(*again)), json::serialize(to_json(*parsed)));
}

TEST(Instruction, ParsesACancel) {
  auto parsed = parse_instruction(
      R"({"id":"c-1","terminal":"t1","target":"work","kind":"cancel","cancel":["a-1"],"sequence":4})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->kind, Kind::kCancel);
  EXPECT_EQ(parsed->cancel, std::vector<std::string>{"a-1"});
}

TEST(Instruction, RejectsMalformedInputNamingTheField) {
  struct Case {
    std::string text;
    std::string names;
  };
  std::vector<Case> cases = {
      {"not json", "not JSON"},
      {"[1,2]", "object"},
      {with(R"(,"colour":"red")"), "unknown field 'colour'"},
      {R"({"terminal":"t1","target":"w","kind":"action","type":"lock","sequence":1})", "'id'"},
      {R"({"id":"a b","terminal":"t1","target":"w","kind":"action","type":"lock","sequence":1})",
       "'id'"},
      {R"({"id":"a","terminal":"t1","target":"w/x","kind":"action","type":"lock","sequence":1})",
       "'target'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"other","type":"lock","sequence":1})",
       "'kind'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"action","type":"Lock","sequence":1})",
       "'type'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"action","type":"lock"})", "'sequence'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"action","type":"lock","sequence":0})",
       "'sequence'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"action","type":"lock","sequence":"1"})",
       "'sequence'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"action","type":"lock","sequence":1,
          "revoke":true})",
       "'revoke'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"cancel","sequence":1})", "'cancel'"},
      {R"({"id":"a","terminal":"t1","target":"w","kind":"action","type":"x","sequence":1,
          "supersedes":["a"]})",
       "itself"},
      {with(R"(,"params":[1])"), "'params'"},
      {with(R"(,"expires_at_ms":-5)"), "'expires_at_ms'"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_instruction(c.text);
    ASSERT_FALSE(parsed) << c.text;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message.find(c.names), std::string::npos)
        << c.text << " -> " << parsed.error().message;
  }
}

TEST(Instruction, RejectsOversizedAndDeeplyNestedText) {
  std::string big = with(R"(,"params":{"blob":")" + std::string(70000, 'x') + "\"}");
  EXPECT_FALSE(parse_instruction(big));
  std::string deep = with(R"(,"params":)" + std::string(40, '[') + std::string(40, ']'));
  EXPECT_FALSE(parse_instruction(deep));
}

TEST(Report, RoundTripsThroughJson) {
  Report report{"t1", "a-1", "work", ReportStatus::kFailed, "exit 3", 9, 3, "oops\n", 1234};
  auto again = parse_report(json::serialize(to_json(report)));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, report);
  EXPECT_FALSE(parse_report(R"({"terminal":"t1","status":"done"})"));
}

class Signed : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = PrivateKey::generate();
    ASSERT_TRUE(key);
    server_key_ = *key;
    auto pub = server_key_.public_key();
    ASSERT_TRUE(pub);
    public_key_ = *pub;
    auto parsed = parse_instruction(kAction);
    ASSERT_TRUE(parsed);
    instruction_ = *parsed;
  }
  PrivateKey server_key_;
  PublicKey public_key_;
  Instruction instruction_;
};

TEST_F(Signed, SignedMessageOpensWithTheServerKey) {
  auto sealed = seal_control_message(instruction_, &server_key_);
  ASSERT_TRUE(sealed);
  auto opened = open_control_message(*sealed, &public_key_);
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_EQ(opened->id, "a-1");
  // An agent without a key accepts it too.
  EXPECT_TRUE(open_control_message(*sealed, nullptr));
}

TEST_F(Signed, UnsignedMessageIsRejectedWhenAKeyIsConfigured) {
  auto sealed = seal_control_message(instruction_, nullptr);
  ASSERT_TRUE(sealed);
  EXPECT_TRUE(open_control_message(*sealed, nullptr));
  auto opened = open_control_message(*sealed, &public_key_);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(Signed, TamperedOrForeignSignatureIsRejected) {
  auto sealed = seal_control_message(instruction_, &server_key_);
  ASSERT_TRUE(sealed);
  // Change the target inside the signed text.
  std::string tampered = *sealed;
  tampered.replace(tampered.find("work"), 4, "home");
  auto opened = open_control_message(tampered, &public_key_);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);

  // Signed by another key.
  auto other = PrivateKey::generate();
  ASSERT_TRUE(other);
  auto foreign = seal_control_message(instruction_, &*other);
  ASSERT_TRUE(foreign);
  EXPECT_FALSE(open_control_message(*foreign, &public_key_));

  // Envelopes with extra fields or a non-base64 signature.
  EXPECT_FALSE(open_control_message(R"({"signed":"{}","signature":"!!!!"})", &public_key_));
  EXPECT_FALSE(open_control_message(R"({"signed":"{}","signature":"","x":1})", nullptr));
}

TEST_F(Signed, KeysSurviveAPemRoundTrip) {
  auto again = PrivateKey::from_pem(server_key_.private_pem());
  ASSERT_TRUE(again);
  auto pub = PublicKey::from_pem(server_key_.public_pem());
  ASSERT_TRUE(pub);
  auto signature = again->sign("hello");
  ASSERT_TRUE(signature);
  EXPECT_TRUE(pub->verify("hello", *signature));
  EXPECT_FALSE(pub->verify("hellO", *signature));
  EXPECT_FALSE(PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"));
}

TEST(ControlMessage, ClaimedIdentityIsBestEffort) {
  EXPECT_EQ(claimed_identity(kAction).id, "a-1");
  EXPECT_EQ(claimed_identity(kAction).target, "work");
  EXPECT_EQ(claimed_identity(R"({"signed":"{\"id\":\"z\"}","signature":""})").id, "z");
  EXPECT_EQ(claimed_identity("garbage").id, "");
  EXPECT_EQ(claimed_identity(R"({"id":"has space"})").id, "");
}

TEST(Base64, RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 70; ++i) {
    auto decoded = base64_decode(base64_encode(bytes));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(*decoded, bytes);
    bytes += static_cast<char>(i * 37);
  }
  EXPECT_FALSE(base64_decode("abc"));
}

}  // namespace
}  // namespace steward::agent
