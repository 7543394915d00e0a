#include "controller/northbound/nova.h"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace steward::controller {
namespace {

// The migration every payload under tests/data/nova describes.
constexpr const char* kInstance = "4c1f2a9e-7b3d-4e8a-a1c5-9d2e6f0b3a71";
constexpr const char* kSource = "compute-1";
constexpr const char* kTarget = "compute-2";

std::string read_text(const std::string& relative_path) {
  std::ifstream in(std::string(STEWARD_SOURCE_DIR) + "/" + relative_path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << relative_path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string sample(const std::string& name) {
  return read_text("tests/data/nova/" + name + ".json");
}

NovaEvent load(const std::string& name) {
  auto event = parse_nova_notification(sample(name));
  if (!event) {
    ADD_FAILURE() << name << ": " << event.error().message;
    return {};
  }
  return *event;
}

// A notification with `field` of the pre.start sample replaced; `path` walks objects.
std::string pre_start_with(const std::vector<std::string>& path, boost::json::value value) {
  boost::json::value root = boost::json::parse(sample("live_migration_pre_start"));
  boost::json::object* object = &root.as_object();
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    object = &(*object)[path[i]].as_object();
  }
  (*object)[path.back()] = std::move(value);
  return boost::json::serialize(root);
}

std::string pre_start_without(const std::vector<std::string>& path) {
  boost::json::value root = boost::json::parse(sample("live_migration_pre_start"));
  boost::json::object* object = &root.as_object();
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    object = &(*object)[path[i]].as_object();
  }
  object->erase(path.back());
  return boost::json::serialize(root);
}

void expect_invalid(std::string_view text, std::string_view mentions) {
  auto event = parse_nova_notification(text);
  ASSERT_FALSE(event) << "parsed: " << text.substr(0, 200);
  EXPECT_EQ(event.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(event.error().message.find(mentions), std::string::npos) << event.error().message;
}

// A correlator whose controller has recorded nothing (or what a test puts in `recorded`).
struct Harness {
  std::map<std::string, KnownMigration> recorded;
  NovaCorrelator correlator{[this](const std::string& vm) -> std::optional<KnownMigration> {
    auto it = recorded.find(vm);
    if (it == recorded.end()) {
      return std::nullopt;
    }
    return it->second;
  }};

  // The request for `name`'s sample; fails the test on an error.
  std::optional<MigrationRequest> feed(const std::string& name, std::string* reason = nullptr) {
    auto request = correlator.on_event(load(name), reason);
    if (!request) {
      ADD_FAILURE() << name << ": " << request.error().message;
      return std::nullopt;
    }
    return *request;
  }
};

void expect_request(const std::optional<MigrationRequest>& request, Phase phase,
                    const std::string& source, const std::string& target) {
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->vm, kInstance);
  EXPECT_EQ(request->phase, phase) << to_string(request->phase);
  EXPECT_EQ(request->source_host, source);
  EXPECT_EQ(request->target_host, target);
}

// ---------------------------------------------------------------------------------------------
// Parsing

TEST(NovaAdapter, ParsesTheFieldsOfAVersionedNotification) {
  NovaEvent event = load("live_migration_pre_start");
  EXPECT_EQ(event.kind, NovaEventKind::kPreStart);
  EXPECT_EQ(event.event_type, "instance.live_migration_pre.start");
  EXPECT_EQ(event.instance, kInstance);
  EXPECT_EQ(event.payload_host, kSource);
  EXPECT_EQ(event.publisher_host, kTarget);
  EXPECT_EQ(event.timestamp, "2026-12-04 10:15:02.318000");
  EXPECT_FALSE(event.message_id.empty());
}

TEST(NovaAdapter, RecognisesEveryLiveMigrationEventType) {
  const std::map<std::string, NovaEventKind> expected = {
      {"live_migration_pre_start", NovaEventKind::kPreStart},
      {"live_migration_pre_end", NovaEventKind::kPreEnd},
      {"live_migration_post_start", NovaEventKind::kPostStart},
      {"live_migration_post_end", NovaEventKind::kPostEnd},
      {"live_migration_post_dest_start", NovaEventKind::kPostDestStart},
      {"live_migration_post_dest_end", NovaEventKind::kPostDestEnd},
      {"live_migration_rollback_start", NovaEventKind::kRollbackStart},
      {"live_migration_rollback_end", NovaEventKind::kRollbackEnd},
      {"live_migration_rollback_dest_start", NovaEventKind::kRollbackDestStart},
      {"live_migration_rollback_dest_end", NovaEventKind::kRollbackDestEnd},
      {"live_migration_abort_start", NovaEventKind::kAbortStart},
      {"live_migration_abort_end", NovaEventKind::kAbortEnd},
      {"live_migration_force_complete_start", NovaEventKind::kForceComplete},
  };
  for (const auto& [name, kind] : expected) {
    NovaEvent event = load(name);
    EXPECT_EQ(event.kind, kind) << name << " parsed as " << to_string(event.kind);
    EXPECT_EQ(event.instance, kInstance) << name;
  }
}

TEST(NovaAdapter, PostDestEndCarriesTheDestinationAsPayloadHost) {
  NovaEvent event = load("live_migration_post_dest_end");
  EXPECT_EQ(event.payload_host, kTarget);
  EXPECT_EQ(event.publisher_host, kTarget);
}

TEST(NovaAdapter, UnwrapsTheOsloMessagingEnvelope) {
  NovaEvent event = load("oslo_envelope_post_dest_end");
  EXPECT_EQ(event.kind, NovaEventKind::kPostDestEnd);
  EXPECT_EQ(event.instance, kInstance);
  EXPECT_EQ(event.payload_host, kTarget);
  EXPECT_EQ(event.publisher_host, kTarget);
}

TEST(NovaAdapter, ReadsLegacyUnversionedNotifications) {
  NovaEvent pre = load("legacy_pre_start");
  EXPECT_EQ(pre.kind, NovaEventKind::kPreStart);
  EXPECT_EQ(pre.instance, kInstance);
  EXPECT_EQ(pre.payload_host, kSource);
  EXPECT_EQ(pre.publisher_host, kTarget);  // legacy publisher_id "compute.<host>"

  EXPECT_EQ(load("legacy_post_start").kind, NovaEventKind::kPostStart);
  EXPECT_EQ(load("legacy_post_dest_end").kind, NovaEventKind::kPostDestEnd);
  EXPECT_EQ(load("legacy_rollback_start").kind, NovaEventKind::kRollbackStart);
  EXPECT_EQ(load("legacy_rollback_dest_end").kind, NovaEventKind::kRollbackDestEnd);
}

TEST(NovaAdapter, OtherNotificationsParseAsOtherWithoutReadingThePayload) {
  NovaEvent update = load("instance_update");
  EXPECT_EQ(update.kind, NovaEventKind::kOther);
  EXPECT_EQ(update.event_type, "instance.update");

  NovaEvent service = load("service_update");
  EXPECT_EQ(service.kind, NovaEventKind::kOther);
  EXPECT_TRUE(service.instance.empty());

  auto bare = parse_nova_notification(R"({"event_type": "compute.metrics.update"})");
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_EQ(bare->kind, NovaEventKind::kOther);
}

TEST(NovaAdapter, MalformedJsonIsInvalidArgument) {
  expect_invalid("", "not valid JSON");
  expect_invalid("{\"event_type\": \"instance.live_migration_pre.start\"", "not valid JSON");
  expect_invalid("{\"event_type\": \"x\"} trailing", "not valid JSON");
  expect_invalid("[1, 2]", "must be an object");
  expect_invalid("\"instance.live_migration_pre.start\"", "must be an object");
}

TEST(NovaAdapter, WrongTypesAreInvalidArgumentNamingTheField) {
  expect_invalid(pre_start_with({"event_type"}, 42), "'event_type' must be a string");
  expect_invalid(pre_start_with({"publisher_id"}, true), "'publisher_id' must be a string");
  expect_invalid(pre_start_with({"timestamp"}, 1.5), "'timestamp' must be a string");
  expect_invalid(pre_start_with({"message_id"}, boost::json::array{}), "'message_id'");
  expect_invalid(pre_start_with({"payload"}, boost::json::array{}), "'payload' must be an object");
  expect_invalid(pre_start_with({"payload", "nova_object.data"}, "x"),
                 "'payload.nova_object.data' must be an object");
  expect_invalid(pre_start_with({"payload", "nova_object.data", "uuid"}, 7),
                 "'payload.nova_object.data.uuid' must be a string");
  expect_invalid(pre_start_with({"payload", "nova_object.data", "host"}, nullptr),
                 "'payload.nova_object.data.host' is missing");
}

TEST(NovaAdapter, MissingUuidIsInvalidArgument) {
  expect_invalid(pre_start_without({"payload", "nova_object.data", "uuid"}),
                 "'payload.nova_object.data.uuid' is missing");
  expect_invalid(pre_start_with({"payload", "nova_object.data", "uuid"}, ""),
                 "'payload.nova_object.data.uuid' is empty");
  expect_invalid(pre_start_without({"payload"}), "'payload' is missing");
  expect_invalid(pre_start_without({"event_type"}), "'event_type' is missing");
}

TEST(NovaAdapter, LegacyPayloadWithoutInstanceIdIsInvalidArgument) {
  boost::json::value legacy = boost::json::parse(sample("legacy_post_start"));
  legacy.as_object()["payload"].as_object().erase("instance_id");
  expect_invalid(boost::json::serialize(legacy), "'payload.instance_id' is missing");
}

TEST(NovaAdapter, MigrationEventsNeedAPublisherHost) {
  expect_invalid(pre_start_with({"publisher_id"}, "nova-compute"), "names no host");
  expect_invalid(pre_start_without({"publisher_id"}), "names no host");
}

TEST(NovaAdapter, EnvelopeErrorsAreInvalidArgument) {
  expect_invalid(R"({"oslo.version": "2.0", "oslo.message": 5})",
                 "'oslo.message' must be a string");
  expect_invalid(R"({"oslo.version": "1.0", "oslo.message": "{}"})", "unsupported oslo.version");
  expect_invalid(R"({"oslo.message": "{}"})", "'oslo.version' is missing");
  expect_invalid(R"({"oslo.version": "2.0", "oslo.message": "{not json"})",
                 "'oslo.message' is not valid JSON");
  expect_invalid(R"({"oslo.version": "2.0", "oslo.message": "[]"})",
                 "'oslo.message' must be an object");
  boost::json::object nested{{"oslo.version", "2.0"},
                             {"oslo.message", sample("oslo_envelope_post_dest_end")}};
  expect_invalid(boost::json::serialize(nested), "another envelope");
}

TEST(NovaAdapter, RejectsInputLargerThanOneMebibyte) {
  std::string large = pre_start_with({"payload", "nova_object.data", "display_description"},
                                     boost::json::string(kMaxNovaNotificationBytes, 'x'));
  expect_invalid(large, "more than the 1048576 accepted");
}

TEST(NovaAdapter, RejectsDeepNesting) {
  std::string deep = std::string(1000, '[') + std::string(1000, ']');
  expect_invalid(deep, "nests deeper");
  std::string shallow_enough =
      "{\"event_type\": \"x\", \"a\": " + std::string(30, '[') + std::string(30, ']') + "}";
  EXPECT_TRUE(parse_nova_notification(shallow_enough));
}

TEST(NovaAdapter, NamesEveryKind) {
  EXPECT_STREQ(to_string(NovaEventKind::kPostDestEnd), "post_dest_end");
  EXPECT_STREQ(to_string(NovaEventKind::kOther), "other");
}

// ---------------------------------------------------------------------------------------------
// Correlation, one event at a time

TEST(NovaAdapter, PreStartPreparesThePublisherAsTarget) {
  Harness nova;
  auto request = nova.feed("live_migration_pre_start");
  expect_request(request, Phase::kPrepare, kSource, kTarget);
  EXPECT_EQ(request->origin, "nova:instance.live_migration_pre.start");
}

TEST(NovaAdapter, PostWithoutDestinationTakesItFromThePreEvent) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  expect_request(nova.feed("live_migration_post_start"), Phase::kComplete, kSource, kTarget);
}

TEST(NovaAdapter, PostTakesTheDestinationFromTheControllerAfterARestart) {
  Harness nova;
  nova.recorded[kInstance] = KnownMigration{kSource, kTarget, false};
  expect_request(nova.feed("live_migration_post_start"), Phase::kComplete, kSource, kTarget);
}

TEST(NovaAdapter, PostWithNoEarlierEventIsAClearError) {
  Harness nova;
  auto request = nova.correlator.on_event(load("live_migration_post_start"));
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().code, ErrorCode::kNotFound);
  EXPECT_NE(request.error().message.find(
                std::string("instance ") + kInstance +
                ": destination unknown for instance.live_migration_post.start: no earlier pre or "
                "post_dest event"),
            std::string::npos)
      << request.error().message;
}

TEST(NovaAdapter, PostIgnoresARecordedMigrationFromAnotherHost) {
  Harness nova;
  nova.recorded[kInstance] = KnownMigration{"compute-3", kSource, false};
  auto request = nova.correlator.on_event(load("live_migration_post_start"));
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().code, ErrorCode::kNotFound);
  EXPECT_NE(request.error().message.find("compute-3->compute-1"), std::string::npos);
}

TEST(NovaAdapter, PostOfAMigrationTheControllerFinishedIsIgnored) {
  Harness nova;
  nova.recorded[kInstance] = KnownMigration{kSource, kTarget, true};
  std::string reason;
  EXPECT_FALSE(nova.feed("live_migration_post_end", &reason).has_value());
  EXPECT_NE(reason.find("finished"), std::string::npos) << reason;
}

TEST(NovaAdapter, PostDestStartCompletesOnThePublisher) {
  Harness nova;  // nothing known: the payload host is still the source
  expect_request(nova.feed("live_migration_post_dest_start"), Phase::kComplete, kSource, kTarget);
}

TEST(NovaAdapter, PostDestEndTakesTheSourceFromTheControllersRecord) {
  Harness nova;
  nova.recorded[kInstance] = KnownMigration{kSource, kTarget, false};
  expect_request(nova.feed("live_migration_post_dest_end"), Phase::kComplete, kSource, kTarget);
}

TEST(NovaAdapter, PostDestEndWithNoEarlierEventIsAnError) {
  Harness nova;
  nova.recorded[kInstance] = KnownMigration{kSource, "compute-3", false};  // another target
  auto request = nova.correlator.on_event(load("live_migration_post_dest_end"));
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().code, ErrorCode::kNotFound);
  EXPECT_NE(request.error().message.find("source unknown"), std::string::npos);
}

TEST(NovaAdapter, RollbackTakesTheDestinationFromThePreEvent) {
  Harness nova;
  nova.feed("live_migration_pre_end");
  expect_request(nova.feed("live_migration_rollback_start"), Phase::kRollback, kSource, kTarget);
}

TEST(NovaAdapter, RollbackDestNamesBothHostsItself) {
  Harness nova;
  expect_request(nova.feed("live_migration_rollback_dest_start"), Phase::kRollback, kSource,
                 kTarget);
}

TEST(NovaAdapter, AbortEndRollsBack) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  expect_request(nova.feed("live_migration_abort_end"), Phase::kRollback, kSource, kTarget);
}

TEST(NovaAdapter, AbortStartAndForceCompleteChangeNothing) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  std::string reason;
  EXPECT_FALSE(nova.feed("live_migration_abort_start", &reason).has_value());
  EXPECT_NE(reason.find("does not change"), std::string::npos) << reason;
  EXPECT_FALSE(nova.feed("live_migration_force_complete_start", &reason).has_value());
  EXPECT_NE(reason.find("does not change"), std::string::npos) << reason;
}

TEST(NovaAdapter, NonMigrationEventIsIgnored) {
  Harness nova;
  std::string reason;
  EXPECT_FALSE(nova.feed("instance_update", &reason).has_value());
  EXPECT_EQ(reason, "not a live-migration event");
  EXPECT_EQ(nova.correlator.remembered_instances(), 0u);
}

TEST(NovaAdapter, RedeliveredNotificationIsIgnored) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  std::string reason;
  EXPECT_FALSE(nova.feed("live_migration_pre_start", &reason).has_value());
  EXPECT_NE(reason.find("duplicate of message"), std::string::npos) << reason;
}

TEST(NovaAdapter, SameHostMigrationIsIgnored) {
  Harness nova;
  std::string reason;
  auto request = nova.correlator.on_event(
      *parse_nova_notification(pre_start_with({"publisher_id"}, "nova-compute:compute-1")),
      &reason);
  ASSERT_TRUE(request);
  EXPECT_FALSE(request->has_value());
  EXPECT_NE(reason.find("nothing moves"), std::string::npos) << reason;
}

TEST(NovaAdapter, HandBuiltEventWithoutInstanceIsInvalidArgument) {
  Harness nova;
  NovaEvent event;
  event.kind = NovaEventKind::kPreStart;
  event.event_type = "instance.live_migration_pre.start";
  auto request = nova.correlator.on_event(event);
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().code, ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Correlation, whole sequences

TEST(NovaAdapter, FullSequencePreparesThenCompletes) {
  Harness nova;
  expect_request(nova.feed("live_migration_pre_start"), Phase::kPrepare, kSource, kTarget);
  expect_request(nova.feed("live_migration_pre_end"), Phase::kPrepare, kSource, kTarget);
  expect_request(nova.feed("live_migration_post_start"), Phase::kComplete, kSource, kTarget);
  expect_request(nova.feed("live_migration_post_dest_start"), Phase::kComplete, kSource, kTarget);
  expect_request(nova.feed("live_migration_post_dest_end"), Phase::kComplete, kSource, kTarget);
  expect_request(nova.feed("live_migration_post_end"), Phase::kComplete, kSource, kTarget);
}

TEST(NovaAdapter, RollbackSequencePreparesThenRollsBack) {
  Harness nova;
  expect_request(nova.feed("live_migration_pre_start"), Phase::kPrepare, kSource, kTarget);
  expect_request(nova.feed("live_migration_pre_end"), Phase::kPrepare, kSource, kTarget);
  expect_request(nova.feed("live_migration_rollback_start"), Phase::kRollback, kSource, kTarget);
  expect_request(nova.feed("live_migration_rollback_dest_start"), Phase::kRollback, kSource,
                 kTarget);
  expect_request(nova.feed("live_migration_rollback_dest_end"), Phase::kRollback, kSource, kTarget);
  expect_request(nova.feed("live_migration_rollback_end"), Phase::kRollback, kSource, kTarget);
}

TEST(NovaAdapter, AbortSequenceRollsBackAndTheRollbackEventsRepeatIt) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  nova.feed("live_migration_pre_end");
  EXPECT_FALSE(nova.feed("live_migration_abort_start").has_value());
  expect_request(nova.feed("live_migration_abort_end"), Phase::kRollback, kSource, kTarget);
  expect_request(nova.feed("live_migration_rollback_start"), Phase::kRollback, kSource, kTarget);
}

TEST(NovaAdapter, RollbackAfterCompletionIsIgnored) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  nova.feed("live_migration_post_dest_end");
  std::string reason;
  EXPECT_FALSE(nova.feed("live_migration_rollback_start", &reason).has_value());
  EXPECT_NE(reason.find("late rollback"), std::string::npos) << reason;
  EXPECT_FALSE(nova.feed("live_migration_rollback_dest_end", &reason).has_value());
  EXPECT_NE(reason.find("late rollback"), std::string::npos) << reason;
}

TEST(NovaAdapter, LatePreEndAfterRollbackIsIgnored) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  nova.feed("live_migration_rollback_start");
  std::string reason;
  EXPECT_FALSE(nova.feed("live_migration_pre_end", &reason).has_value());
  EXPECT_NE(reason.find("late pre.end"), std::string::npos) << reason;
}

TEST(NovaAdapter, LegacySequenceCorrelatesLikeTheVersionedOne) {
  Harness nova;
  expect_request(nova.feed("legacy_pre_start"), Phase::kPrepare, kSource, kTarget);
  auto post = nova.feed("legacy_post_start");
  expect_request(post, Phase::kComplete, kSource, kTarget);
  EXPECT_EQ(post->origin, "nova:compute.instance.live_migration._post.start");
  expect_request(nova.feed("legacy_post_dest_end"), Phase::kComplete, kSource, kTarget);
}

TEST(NovaAdapter, EnvelopedEventCorrelates) {
  Harness nova;
  nova.feed("live_migration_pre_start");
  expect_request(nova.feed("oslo_envelope_post_dest_end"), Phase::kComplete, kSource, kTarget);
}

TEST(NovaAdapter, ForgetsTheLeastRecentlySeenInstanceBeyondItsLimit) {
  NovaCorrelator correlator([](const std::string&) { return std::nullopt; }, 2);
  NovaEvent pre = load("live_migration_pre_start");
  ASSERT_TRUE(correlator.on_event(pre));
  for (const char* other :
       {"a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"}) {
    NovaEvent event = pre;
    event.instance = other;
    event.message_id += other;
    ASSERT_TRUE(correlator.on_event(event));
  }
  EXPECT_EQ(correlator.remembered_instances(), 2u);
  auto post = correlator.on_event(load("live_migration_post_start"));
  ASSERT_FALSE(post);
  EXPECT_EQ(post.error().code, ErrorCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// The demo trace (examples/demo), replayed against a controller that records what it is asked

// What the controller would record: the newest migration per VM and where each VM runs.
class RecordingController {
 public:
  explicit RecordingController(const boost::json::value& inventory) {
    for (const auto& vm : inventory.at("vms").as_array()) {
      placement_[std::string(vm.at("id").as_string())] = std::string(vm.at("host").as_string());
    }
  }

  std::optional<KnownMigration> newest(const std::string& vm) const {
    auto it = newest_.find(vm);
    return it == newest_.end() ? std::nullopt : std::optional<KnownMigration>(it->second);
  }

  // Applies a request; returns what is inconsistent about it, empty when nothing is.
  std::string apply(const MigrationRequest& request) {
    std::string& host = placement_.at(request.vm);
    std::string problem;
    bool from_current = request.source_host == host;
    bool already_done = request.phase == Phase::kComplete && request.target_host == host;
    if (!from_current && !already_done) {
      problem = request.vm + ": " + request.origin + " moves from " + request.source_host +
                " but the VM runs on " + host;
    }
    bool finished = request.phase != Phase::kPrepare;
    newest_[request.vm] = KnownMigration{request.source_host, request.target_host, finished};
    if (request.phase == Phase::kComplete) {
      host = request.target_host;
    }
    return problem;
  }

  const std::map<std::string, std::string>& placement() const { return placement_; }

 private:
  std::map<std::string, std::string> placement_;
  std::map<std::string, KnownMigration> newest_;
};

struct ReplayResult {
  int requests = 0;
  int ignored = 0;
  std::vector<std::string> problems;
  std::map<std::string, std::string> placement;
};

ReplayResult replay_demo_trace(std::size_t correlator_memory) {
  RecordingController controller(boost::json::parse(read_text("examples/demo/inventory.json")));
  NovaCorrelator correlator([&controller](const std::string& vm) { return controller.newest(vm); },
                            correlator_memory);
  ReplayResult result;
  std::istringstream trace(read_text("examples/demo/nova-trace.jsonl"));
  std::string line;
  while (std::getline(trace, line)) {
    auto event = parse_nova_notification(line);
    if (!event) {
      result.problems.push_back(event.error().message);
      continue;
    }
    auto request = correlator.on_event(*event);
    if (!request) {
      result.problems.push_back(request.error().message);
    } else if (!*request) {
      ++result.ignored;
    } else {
      ++result.requests;
      std::string problem = controller.apply(**request);
      if (!problem.empty()) {
        result.problems.push_back(problem);
      }
    }
  }
  result.placement = controller.placement();
  return result;
}

std::map<std::string, std::string> expected_demo_hosts() {
  std::map<std::string, std::string> hosts;
  auto expected = boost::json::parse(read_text("examples/demo/expected-hosts.json"));
  for (const auto& [vm, host] : expected.as_object()) {
    hosts[std::string(vm)] = std::string(host.as_string());
  }
  return hosts;
}

TEST(NovaAdapter, DemoTraceLeavesEveryVmWhereNovaPutIt) {
  ReplayResult result = replay_demo_trace(10'000);
  EXPECT_TRUE(result.problems.empty()) << result.problems.front();
  EXPECT_EQ(result.placement, expected_demo_hosts());
  EXPECT_GT(result.requests, 200);
  EXPECT_GE(result.ignored, 4);  // the redelivered notifications at least
}

TEST(NovaAdapter, DemoTraceNeedsOnlyTheControllersRecordWhenMemoryIsTiny) {
  // One remembered instance: concurrent migrations evict each other, so post and rollback
  // events find their destination through the controller's record instead.
  ReplayResult result = replay_demo_trace(1);
  EXPECT_TRUE(result.problems.empty()) << result.problems.front();
  EXPECT_EQ(result.placement, expected_demo_hosts());
}

}  // namespace
}  // namespace steward::controller
