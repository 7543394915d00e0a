#include "support/controller_fixture.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <signal.h>

#include <cstdio>
#include <thread>

namespace steward::testing {
namespace {

namespace json = boost::json;

constexpr auto kPollStep = std::chrono::milliseconds(20);

}  // namespace

std::string to_text(const json::value& value) {
  return json::serialize(value);
}

std::string ControllerFixture::Answer::error_message() const {
  if (!body.is_object()) return "";
  const json::value* error = body.as_object().if_contains("error");
  if (!error || !error->is_object()) return "";
  const json::value* message = error->as_object().if_contains("message");
  return message && message->is_string() ? std::string(message->as_string()) : "";
}

std::string ControllerFixture::host(int n) {
  return fmt::format("compute-{}", n);
}

std::string ControllerFixture::switch_id(int n) {
  return fmt::format("sw-{}", n);
}

void ControllerFixture::SetUp() {
  for (int n = 1; n <= kSwitchCount; ++n) {
    auto sandbox = OvsSandbox::create();
    ASSERT_TRUE(sandbox) << "switch " << n << ": " << sandbox.error().message;
    sandboxes_.push_back(std::move(*sandbox));
  }
  auto started = ControllerProcess::start(controller_options());
  ASSERT_TRUE(started) << started.error().message;
  controller_ = std::move(*started);

  // Register the switches and hosts, then wait until the daemon is connected to every switch.
  for (int n = 1; n <= kSwitchCount; ++n) {
    Answer added = post("/v1/switches", json::object{{"id", switch_id(n)},
                                                     {"endpoint", sandbox(n).unix_endpoint()},
                                                     {"bridge", sandbox(n).bridge()}});
    ASSERT_EQ(added.status, 201) << added.text;
    added = post("/v1/hosts", json::object{{"id", host(n)}, {"switch", switch_id(n)}});
    ASSERT_EQ(added.status, 201) << added.text;
  }
  bool connected = eventually([&] {
    Answer health = get("/healthz");
    if (health.status != 200) return false;
    const json::object& switches = health.body.at("switches").as_object();
    if (switches.size() != kSwitchCount) return false;
    for (const auto& [id, state] : switches) {
      if (state.at("state") != "ready") return false;
    }
    return true;
  });
  ASSERT_TRUE(connected) << "switches not ready: " << get("/healthz").text;
}

void ControllerFixture::TearDown() {
  // Stop the daemon the ordinary way first, so a sanitizer build reports its leaks too.
  if (controller_ && controller_->running()) {
    EXPECT_TRUE(controller_->kill(SIGTERM)) << "the controller did not stop on SIGTERM";
  }
  if (controller_) {
    std::string report = controller_->sanitizer_report();
    EXPECT_EQ(report, "") << "the controller's sanitizer found a problem";
  }
  if (HasFailure() && controller_) {
    std::fprintf(stderr,
                 "---- controller log (tail) %s ----\n%s\n---- end of controller log ----\n",
                 controller_->log_path().c_str(), controller_->log_tail().c_str());
  }
  controller_.reset();
  sandboxes_.clear();
}

ControllerFixture::Answer ControllerFixture::call(const std::string& method,
                                                  const std::string& target,
                                                  const std::string& body) {
  auto response = controller_->client().request(method, target, body);
  if (!response) {
    ADD_FAILURE() << method << " " << target << ": " << response.error().message;
    return {};
  }
  Answer answer{response->status, nullptr, response->body};
  boost::system::error_code ec;
  json::value parsed = json::parse(response->body, ec);
  if (!ec) answer.body = std::move(parsed);
  return answer;
}

ControllerFixture::Answer ControllerFixture::post(const std::string& target,
                                                  const json::value& body) {
  return call("POST", target, json::serialize(body));
}

json::object ControllerFixture::interface(const std::string& id, const std::string& device,
                                          const std::string& mac) {
  return json::object{{"id", id}, {"device", device}, {"mac", mac}};
}

void ControllerFixture::add_vm(const json::object& vm) {
  Answer added = post("/v1/vms", vm);
  ASSERT_EQ(added.status, 201) << added.text;
  std::string id(vm.at("id").as_string());
  std::string vm_host(vm.at("host").as_string());
  int n = std::stoi(vm_host.substr(vm_host.find('-') + 1));
  size_t interfaces = vm.at("interfaces").as_array().size();
  ASSERT_TRUE(eventually([&] { return only_on(id, n, interfaces); }))
      << "vm " << id << " was not installed on " << switch_id(n);
}

ControllerFixture::Answer ControllerFixture::migrate(const std::string& vm,
                                                     const std::string& source,
                                                     const std::string& target,
                                                     const std::string& phase,
                                                     std::chrono::milliseconds wait) {
  json::object body{{"vm", vm}, {"source_host", source}, {"target_host", target}};
  if (!phase.empty()) body["phase"] = phase;
  return post(fmt::format("/v1/migrations?wait={}", wait.count()), body);
}

ControllerFixture::Answer ControllerFixture::notify_nova(const json::value& notification,
                                                         std::chrono::milliseconds wait) {
  return post(fmt::format("/v1/notifications/nova?wait={}", wait.count()), notification);
}

json::value ControllerFixture::migration(int64_t id) {
  Answer answer = get(fmt::format("/v1/migrations/{}", id));
  EXPECT_EQ(answer.status, 200) << answer.text;
  return answer.body;
}

std::string ControllerFixture::state_of(int64_t id) {
  json::value record = migration(id);
  const json::value* state = record.is_object() ? record.as_object().if_contains("state") : nullptr;
  return state && state->is_string() ? std::string(state->as_string()) : "";
}

std::string ControllerFixture::host_of(const std::string& vm) {
  Answer answer = get("/v1/vms/" + vm);
  EXPECT_EQ(answer.status, 200) << answer.text;
  if (answer.status != 200) return "";
  return std::string(answer.body.at("host").as_string());
}

json::array ControllerFixture::migrations_of(const std::string& vm) {
  Answer answer = get("/v1/migrations?vm=" + vm);
  EXPECT_EQ(answer.status, 200) << answer.text;
  return answer.body.is_array() ? answer.body.as_array() : json::array();
}

json::value ControllerFixture::verify() {
  Answer answer = get("/v1/verify");
  EXPECT_EQ(answer.status, 200) << answer.text;
  return answer.body;
}

SwitchRows ControllerFixture::rows(int n) {
  auto read = read_switch(sandbox(n));
  if (!read) {
    ADD_FAILURE() << switch_id(n) << ": " << read.error().message;
    return {};
  }
  return std::move(*read);
}

std::vector<int> ControllerFixture::switches_holding(const std::string& vm) {
  std::vector<int> holding;
  for (int n = 1; n <= kSwitchCount; ++n) {
    if (!rows(n).ports_of_vm(vm).empty()) holding.push_back(n);
  }
  return holding;
}

bool ControllerFixture::only_on(const std::string& vm, int n, size_t interfaces) {
  for (int other = 1; other <= kSwitchCount; ++other) {
    size_t ports = rows(other).ports_of_vm(vm).size();
    if (ports != (other == n ? interfaces : 0)) return false;
  }
  return true;
}

bool ControllerFixture::eventually(const std::function<bool()>& condition,
                                   std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollStep);
  }
  return true;
}

bool ControllerFixture::reaches_state(int64_t id, const std::string& state,
                                      std::chrono::milliseconds timeout) {
  return eventually([&] { return state_of(id) == state; }, timeout);
}

}  // namespace steward::testing
