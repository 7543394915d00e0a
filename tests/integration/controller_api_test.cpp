// The controller's HTTP API end to end: bearer-token authentication on the real daemon.
#include "support/controller_checks.h"
#include "support/controller_fixture.h"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <sys/stat.h>

#include <string>
#include <vector>

namespace steward::testing {
namespace {

namespace json = boost::json;

class ControllerApi : public ControllerFixture {};

struct Route {
  std::string method;
  std::string target;
  std::string body;
};

TEST_F(ControllerApi, EveryV1PathRefusesAMissingOrWrongTokenAndHealthzNeedsNone) {
  json::object vm = rich_vm("vm-auth", 1, "tap-auth");
  add_vm(vm);
  auto before = std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()};
  const std::string migration =
      R"({"vm":"vm-auth","source_host":"compute-1","target_host":"compute-2"})";
  const std::string interface = R"({"id":"eth9","device":"tap-auth9","mac":"52:54:00:aa:00:09"})";

  // Every route of northbound/api.h, with bodies that would change something if accepted.
  const std::vector<Route> routes = {
      {"GET", "/v1/switches", ""},
      {"POST", "/v1/switches", R"({"id":"sw-9","endpoint":"unix:/nonexistent/db.sock"})"},
      {"GET", "/v1/switches/sw-1", ""},
      {"PUT", "/v1/switches/sw-1", R"({"endpoint":"unix:/nonexistent/db.sock"})"},
      {"DELETE", "/v1/switches/sw-3", ""},
      {"GET", "/v1/hosts", ""},
      {"POST", "/v1/hosts", R"({"id":"compute-9","switch":"sw-1"})"},
      {"GET", "/v1/hosts/compute-1", ""},
      {"PUT", "/v1/hosts/compute-3", R"({"switch":"sw-1"})"},
      {"DELETE", "/v1/hosts/compute-3", ""},
      {"GET", "/v1/vms", ""},
      {"POST", "/v1/vms", R"({"id":"vm-new","host":"compute-1"})"},
      {"GET", "/v1/vms/vm-auth", ""},
      {"PUT", "/v1/vms/vm-auth", R"({"host":"compute-1","interfaces":[]})"},
      {"DELETE", "/v1/vms/vm-auth", ""},
      {"GET", "/v1/vms/vm-auth/interfaces/eth0", ""},
      {"PUT", "/v1/vms/vm-auth/interfaces/eth9", interface},
      {"DELETE", "/v1/vms/vm-auth/interfaces/eth0", ""},
      {"POST", "/v1/vms/vm-auth/placement", R"({"host":"compute-2"})"},
      {"POST", "/v1/migrations", migration},
      {"POST", "/v1/migrations?wait=1000", migration},
      {"GET", "/v1/migrations", ""},
      {"GET", "/v1/migrations?vm=vm-auth", ""},
      {"GET", "/v1/migrations/1", ""},
      {"POST", "/v1/notifications/nova", R"({"event_type":"compute.instance.update"})"},
      {"GET", "/v1/verify", ""},
      {"POST", "/v1/reconcile", "{}"},
      {"GET", "/v1/no-such-path", ""},
      {"GET", "/metrics", ""},
  };
  const std::string& token = controller().token();
  const std::vector<std::pair<std::string, std::string>> wrong_tokens = {
      {"no token", ""},
      {"a wrong token", "not-the-token"},
      {"the token with a character more", token + "0"},
      {"a prefix of the token", token.substr(0, token.size() / 2)},
  };
  for (const auto& [what, wrong] : wrong_tokens) {
    auto client = controller().client_with_token(wrong);
    for (const Route& route : routes) {
      SCOPED_TRACE(what + ": " + route.method + " " + route.target);
      auto answer = client->request(route.method, route.target, route.body);
      ASSERT_TRUE(answer) << answer.error().message;
      EXPECT_EQ(answer->status, 401) << answer->body;
      EXPECT_NE(answer->body.find("bearer token"), std::string::npos) << answer->body;
    }
    auto health = client->request("GET", "/healthz");
    ASSERT_TRUE(health) << health.error().message;
    EXPECT_EQ(health->status, 200) << what << ": " << health->body;
  }

  // The token file the daemon created is readable by its owner only.
  struct stat token_file {};
  ASSERT_EQ(::stat((controller().dir() + "/controller.token").c_str(), &token_file), 0);
  EXPECT_EQ(token_file.st_mode & 0777, 0600u);

  // Nothing refused changed anything.
  EXPECT_EQ(get("/v1/switches").body.as_array().size(), 3u);
  EXPECT_EQ(get("/v1/hosts").body.as_array().size(), 3u);
  EXPECT_EQ(get("/v1/vms").body.as_array().size(), 1u);
  EXPECT_EQ(get("/v1/migrations").body, json::array());
  EXPECT_EQ((std::vector{rows(1).all_uuids(), rows(2).all_uuids(), rows(3).all_uuids()}), before);
  expect_config_on(rows(1), vm);
  EXPECT_EQ(host_of("vm-auth"), host(1));
  // And the right token is accepted on the same paths.
  EXPECT_EQ(get("/v1/verify").status, 200);
  EXPECT_EQ(get("/metrics").status, 200);
}

}  // namespace
}  // namespace steward::testing
