#include "controller/northbound/nova.h"

#include "core/log.h"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <iterator>
#include <utility>

namespace steward::controller {
namespace {

namespace json = boost::json;

// How many message ids per instance are kept to recognise redelivered notifications.
constexpr std::size_t kRecentMessagesPerInstance = 16;

// Versioned notifications nest the instance under payload.nova_object.data; legacy
// (unversioned) ones carry a flat payload with `instance_id`.
enum class PayloadFormat { kVersioned, kLegacy };

struct EventTypeName {
  std::string_view name;
  NovaEventKind kind;
  PayloadFormat format;
};

constexpr auto kV = PayloadFormat::kVersioned;
constexpr auto kL = PayloadFormat::kLegacy;
using K = NovaEventKind;

constexpr std::array<EventTypeName, 24> kEventTypes{{
    {"instance.live_migration_pre.start", K::kPreStart, kV},
    {"instance.live_migration_pre.end", K::kPreEnd, kV},
    {"instance.live_migration_post.start", K::kPostStart, kV},
    {"instance.live_migration_post.end", K::kPostEnd, kV},
    {"instance.live_migration_post_dest.start", K::kPostDestStart, kV},
    {"instance.live_migration_post_dest.end", K::kPostDestEnd, kV},
    {"instance.live_migration_rollback.start", K::kRollbackStart, kV},
    {"instance.live_migration_rollback.end", K::kRollbackEnd, kV},
    {"instance.live_migration_rollback_dest.start", K::kRollbackDestStart, kV},
    {"instance.live_migration_rollback_dest.end", K::kRollbackDestEnd, kV},
    {"instance.live_migration_abort.start", K::kAbortStart, kV},
    {"instance.live_migration_abort.end", K::kAbortEnd, kV},
    {"instance.live_migration_force_complete.start", K::kForceComplete, kV},
    {"instance.live_migration_force_complete.end", K::kForceComplete, kV},
    // Legacy names: note the leading underscores of _post and _rollback.
    {"compute.instance.live_migration.pre.start", K::kPreStart, kL},
    {"compute.instance.live_migration.pre.end", K::kPreEnd, kL},
    {"compute.instance.live_migration._post.start", K::kPostStart, kL},
    {"compute.instance.live_migration._post.end", K::kPostEnd, kL},
    {"compute.instance.live_migration.post.dest.start", K::kPostDestStart, kL},
    {"compute.instance.live_migration.post.dest.end", K::kPostDestEnd, kL},
    {"compute.instance.live_migration._rollback.start", K::kRollbackStart, kL},
    {"compute.instance.live_migration._rollback.end", K::kRollbackEnd, kL},
    {"compute.instance.live_migration.rollback.dest.start", K::kRollbackDestStart, kL},
    {"compute.instance.live_migration.rollback.dest.end", K::kRollbackDestEnd, kL},
}};

const EventTypeName* find_event_type(std::string_view event_type) {
  auto it = std::find_if(kEventTypes.begin(), kEventTypes.end(),
                         [&](const EventTypeName& known) { return known.name == event_type; });
  return it == kEventTypes.end() ? nullptr : &*it;
}

template <typename... Args>
Error invalid(fmt::format_string<Args...> format, Args&&... args) {
  return Error{ErrorCode::kInvalidArgument,
               "nova notification: " + fmt::format(format, std::forward<Args>(args)...)};
}

const char* kind_name(const json::value& value) {
  switch (value.kind()) {
    case json::kind::object:
      return "an object";
    case json::kind::array:
      return "an array";
    case json::kind::string:
      return "a string";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::null:
      return "null";
    default:
      return "a number";
  }
}

std::string field_path(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

// Parses `text` as JSON within the size and depth limits. `what` names it in errors.
Result<json::value> parse_json(std::string_view text, std::string_view what) {
  if (text.size() > kMaxNovaNotificationBytes) {
    return invalid("{} is {} bytes, more than the {} accepted", what, text.size(),
                   kMaxNovaNotificationBytes);
  }
  json::parse_options options;
  options.max_depth = kMaxNovaNotificationDepth;
  boost::system::error_code ec;
  json::value value = json::parse(json::string_view(text.data(), text.size()), ec, {}, options);
  if (ec) {
    return invalid("{} is not valid JSON (or nests deeper than {}): {}", what,
                   kMaxNovaNotificationDepth, ec.message());
  }
  return value;
}

Result<const json::object*> as_object(const json::value& value, std::string_view what) {
  if (!value.is_object()) {
    return invalid("{} must be an object, not {}", what, kind_name(value));
  }
  return &value.get_object();
}

// The object at `object[key]`; it must exist.
Result<const json::object*> object_field(const json::object& object, std::string_view parent,
                                         std::string_view key) {
  const json::value* value = object.if_contains(json::string_view(key.data(), key.size()));
  if (value == nullptr) {
    return invalid("field '{}' is missing", field_path(parent, key));
  }
  return as_object(*value, fmt::format("field '{}'", field_path(parent, key)));
}

enum class Presence { kRequired, kOptional };

// The string at `object[key]`. Optional fields may be absent or null (read as ""); required
// ones must be a non-empty string.
Result<std::string> string_field(const json::object& object, std::string_view parent,
                                 std::string_view key, Presence presence) {
  const json::value* value = object.if_contains(json::string_view(key.data(), key.size()));
  bool absent = value == nullptr || value->is_null();
  if (absent && presence == Presence::kOptional) {
    return std::string();
  }
  if (absent) {
    return invalid("field '{}' is missing", field_path(parent, key));
  }
  if (!value->is_string()) {
    return invalid("field '{}' must be a string, not {}", field_path(parent, key),
                   kind_name(*value));
  }
  const json::string& text = value->get_string();
  if (text.empty() && presence == Presence::kRequired) {
    return invalid("field '{}' is empty", field_path(parent, key));
  }
  return std::string(text.data(), text.size());
}

// The host part of a publisher id: "nova-compute:<host>" (versioned) or "compute.<host>"
// (legacy). Empty when there is none.
std::string publisher_host_of(std::string_view publisher_id) {
  std::size_t separator = publisher_id.find(':');
  if (separator == std::string_view::npos) {
    separator = publisher_id.find('.');
  }
  if (separator == std::string_view::npos) {
    return {};
  }
  return std::string(publisher_id.substr(separator + 1));
}

// Reads the instance uuid and host from the payload of a live-migration event.
Status read_payload(const json::object& message, PayloadFormat format, NovaEvent& event) {
  auto payload = object_field(message, "", "payload");
  if (!payload) {
    return payload.error();
  }
  const json::object* instance = *payload;
  std::string parent = "payload";
  if (format == PayloadFormat::kVersioned) {
    // The payload's class name is optional here; when present it must be a string.
    auto name = string_field(**payload, parent, "nova_object.name", Presence::kOptional);
    if (!name) {
      return name.error();
    }
    auto data = object_field(**payload, parent, "nova_object.data");
    if (!data) {
      return data.error();
    }
    instance = *data;
    parent = "payload.nova_object.data";
  }

  const char* uuid_key = format == PayloadFormat::kVersioned ? "uuid" : "instance_id";
  auto uuid = string_field(*instance, parent, uuid_key, Presence::kRequired);
  if (!uuid) {
    return uuid.error();
  }
  auto host = string_field(*instance, parent, "host", Presence::kRequired);
  if (!host) {
    return host.error();
  }
  event.instance = std::move(*uuid);
  event.payload_host = std::move(*host);
  return ok();
}

// Reads a bare (unwrapped) notification message.
Result<NovaEvent> read_message(const json::object& message) {
  NovaEvent event;

  // Envelope fields every notification has.
  auto event_type = string_field(message, "", "event_type", Presence::kRequired);
  auto publisher_id = string_field(message, "", "publisher_id", Presence::kOptional);
  auto priority = string_field(message, "", "priority", Presence::kOptional);
  auto timestamp = string_field(message, "", "timestamp", Presence::kOptional);
  auto message_id = string_field(message, "", "message_id", Presence::kOptional);
  for (const auto* field : {&event_type, &publisher_id, &priority, &timestamp, &message_id}) {
    if (!*field) {
      return field->error();
    }
  }
  event.event_type = std::move(*event_type);
  event.publisher_host = publisher_host_of(*publisher_id);
  event.timestamp = std::move(*timestamp);
  event.message_id = std::move(*message_id);

  // Anything else Nova publishes is left unread for the caller to ignore.
  const EventTypeName* known = find_event_type(event.event_type);
  if (known == nullptr) {
    return event;
  }
  event.kind = known->kind;

  // Live-migration events: who sent it and which instance on which host.
  if (event.publisher_host.empty()) {
    return invalid("{}: field 'publisher_id' ('{}') names no host", event.event_type,
                   *publisher_id);
  }
  if (auto read = read_payload(message, known->format, event); !read) {
    return read.error().wrap(event.event_type);
  }
  return event;
}

// The message inside an oslo.messaging envelope, itself parsed.
Result<json::value> unwrap_envelope(const json::object& envelope) {
  auto version = string_field(envelope, "", "oslo.version", Presence::kRequired);
  if (!version) {
    return version.error();
  }
  if (*version != "2.0") {
    return invalid("unsupported oslo.version '{}' (only 2.0 is understood)", *version);
  }
  auto text = string_field(envelope, "", "oslo.message", Presence::kRequired);
  if (!text) {
    return text.error();
  }
  return parse_json(*text, "field 'oslo.message'");
}

std::optional<Phase> phase_of(NovaEventKind kind) {
  switch (kind) {
    case K::kPreStart:
    case K::kPreEnd:
      return Phase::kPrepare;
    case K::kPostStart:
    case K::kPostEnd:
    case K::kPostDestStart:
    case K::kPostDestEnd:
      return Phase::kComplete;
    case K::kRollbackStart:
    case K::kRollbackEnd:
    case K::kRollbackDestStart:
    case K::kRollbackDestEnd:
    case K::kAbortEnd:
      return Phase::kRollback;
    default:
      return std::nullopt;
  }
}

std::string describe(const std::optional<KnownMigration>& known) {
  if (!known) {
    return "none";
  }
  return fmt::format("{}->{}{}", known->source_host, known->target_host,
                     known->finished ? " (finished)" : "");
}

}  // namespace

const char* to_string(NovaEventKind kind) {
  switch (kind) {
    case K::kPreStart:
      return "pre_start";
    case K::kPreEnd:
      return "pre_end";
    case K::kPostStart:
      return "post_start";
    case K::kPostEnd:
      return "post_end";
    case K::kPostDestStart:
      return "post_dest_start";
    case K::kPostDestEnd:
      return "post_dest_end";
    case K::kRollbackStart:
      return "rollback_start";
    case K::kRollbackEnd:
      return "rollback_end";
    case K::kRollbackDestStart:
      return "rollback_dest_start";
    case K::kRollbackDestEnd:
      return "rollback_dest_end";
    case K::kAbortStart:
      return "abort_start";
    case K::kAbortEnd:
      return "abort_end";
    case K::kForceComplete:
      return "force_complete";
    case K::kOther:
      return "other";
  }
  return "unknown";
}

Result<NovaEvent> parse_nova_notification(std::string_view text) {
  auto root = parse_json(text, "notification");
  if (!root) {
    return root.error();
  }
  auto message = as_object(*root, "notification");
  if (!message) {
    return message.error();
  }
  if (!(*message)->contains("oslo.message")) {
    return read_message(**message);
  }

  // oslo.messaging envelope: the message is a JSON document inside a string.
  auto inner = unwrap_envelope(**message);
  if (!inner) {
    return inner.error();
  }
  auto inner_message = as_object(*inner, "field 'oslo.message'");
  if (!inner_message) {
    return inner_message.error();
  }
  if ((*inner_message)->contains("oslo.message")) {
    return invalid("field 'oslo.message' holds another envelope; only one level is accepted");
  }
  return read_message(**inner_message);
}

NovaCorrelator::NovaCorrelator(KnownMigrationLookup lookup, std::size_t max_instances)
    : lookup_(std::move(lookup)), max_instances_(std::max<std::size_t>(max_instances, 1)) {}

Result<std::optional<MigrationRequest>> NovaCorrelator::on_event(const NovaEvent& event,
                                                                 std::string* ignored_reason) {
  std::string reason;
  auto request = decide(event, reason);
  if (request && event.kind != K::kOther) {
    record(event, *request);
  }
  if (ignored_reason != nullptr) {
    *ignored_reason = request && !*request ? reason : std::string();
  }
  if (!request) {
    log::get("controller")
        ->debug("nova event rejected instance={} event_type={} error={}", event.instance,
                event.event_type, request.error().message);
  } else if (!*request) {
    log::get("controller")
        ->debug("nova event ignored instance={} event_type={} reason={}", event.instance,
                event.event_type, reason);
  }
  return request;
}

Result<std::optional<MigrationRequest>> NovaCorrelator::decide(const NovaEvent& event,
                                                               std::string& reason) {
  if (event.kind == K::kOther) {
    reason = "not a live-migration event";
    return std::nullopt;
  }
  if (event.instance.empty()) {
    return Error::make(ErrorCode::kInvalidArgument, "{}: no instance uuid", event.event_type);
  }

  // Redelivered notification: the first copy was handled.
  if (const InstanceMemory* memory = recall(event.instance); memory && !event.message_id.empty()) {
    const auto& seen = memory->recent_messages;
    if (std::find(seen.begin(), seen.end(), event.message_id) != seen.end()) {
      reason = fmt::format("duplicate of message {}", event.message_id);
      return std::nullopt;
    }
  }

  auto hosts = resolve_hosts(event, reason);
  if (!hosts) {
    return hosts.error();
  }
  if (!*hosts) {
    return std::nullopt;
  }

  // A "migration" within one host moves nothing; acting on it could delete the live port.
  if ((*hosts)->source == (*hosts)->target) {
    reason = fmt::format("source and target are both {}: nothing moves", (*hosts)->source);
    return std::nullopt;
  }
  return MigrationRequest{event.instance, (*hosts)->source, (*hosts)->target, *phase_of(event.kind),
                          "nova:" + event.event_type};
}

// Who the source and the target are, by who sent the event and what its payload holds.
Result<std::optional<NovaCorrelator::Hosts>> NovaCorrelator::resolve_hosts(const NovaEvent& event,
                                                                           std::string& reason) {
  switch (event.kind) {
    case K::kPreStart:
    case K::kPreEnd:
    case K::kRollbackDestStart:
    case K::kRollbackDestEnd:
      return from_destination_event(event, reason);
    case K::kPostStart:
    case K::kPostEnd:
    case K::kRollbackStart:
    case K::kRollbackEnd:
    case K::kAbortEnd:
      return from_source_event(event, reason);
    case K::kPostDestStart:
    case K::kPostDestEnd:
      return from_post_dest_event(event);
    default:
      reason = fmt::format("{} does not change where the instance runs", event.event_type);
      return std::nullopt;
  }
}

// pre.* and rollback_dest.*: sent by the destination while the payload host is the source.
Result<std::optional<NovaCorrelator::Hosts>> NovaCorrelator::from_destination_event(
    const NovaEvent& event, std::string& reason) {
  if (event.publisher_host.empty() || event.payload_host.empty()) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "instance {}: {} needs both the publisher host and the payload host",
                       event.instance, event.event_type);
  }
  Hosts hosts{event.payload_host, event.publisher_host};
  const InstanceMemory* memory = recall(event.instance);
  if (!memory || memory->source_host != hosts.source || memory->target_host != hosts.target) {
    return hosts;
  }

  // Events that arrive after this migration ended would undo its outcome.
  bool is_rollback = phase_of(event.kind) == Phase::kRollback;
  if (is_rollback && memory->last_phase == Phase::kComplete) {
    reason = fmt::format("late rollback: {}->{} already completed", hosts.source, hosts.target);
    return std::nullopt;
  }
  bool ended = memory->last_phase == Phase::kComplete || memory->last_phase == Phase::kRollback;
  if (event.kind == K::kPreEnd && ended) {
    reason = fmt::format("late pre.end: {}->{} already {}", hosts.source, hosts.target,
                         to_string(*memory->last_phase));
    return std::nullopt;
  }
  return hosts;
}

// post.*, rollback.*, abort.end: sent by the source; nothing in them names the destination.
Result<std::optional<NovaCorrelator::Hosts>> NovaCorrelator::from_source_event(
    const NovaEvent& event, std::string& reason) {
  std::string source = event.payload_host.empty() ? event.publisher_host : event.payload_host;
  if (source.empty()) {
    return Error::make(ErrorCode::kInvalidArgument, "instance {}: {} names no source host",
                       event.instance, event.event_type);
  }
  bool is_rollback = phase_of(event.kind) == Phase::kRollback;

  // Earlier events of this instance, when they describe a migration from this host.
  const InstanceMemory* memory = recall(event.instance);
  if (memory && memory->source_host == source && !memory->target_host.empty()) {
    if (is_rollback && memory->last_phase == Phase::kComplete) {
      reason = fmt::format("late rollback: {}->{} already completed", source, memory->target_host);
      return std::nullopt;
    }
    return Hosts{source, memory->target_host};
  }

  // Else the controller's record, when it is a migration from this host.
  std::optional<KnownMigration> known = lookup_ ? lookup_(event.instance) : std::nullopt;
  if (known && known->source_host == source && !known->target_host.empty()) {
    if (known->finished) {
      reason = fmt::format("the controller recorded {} as finished", describe(known));
      return std::nullopt;
    }
    return Hosts{source, known->target_host};
  }
  return Error::make(ErrorCode::kNotFound,
                     "instance {}: destination unknown for {}: no earlier pre or post_dest event "
                     "from source {}, and the controller's newest migration is {}",
                     event.instance, event.event_type, source, describe(known));
}

// post_dest.*: sent by the destination; .end carries the destination as payload host.
Result<std::optional<NovaCorrelator::Hosts>> NovaCorrelator::from_post_dest_event(
    const NovaEvent& event) {
  std::string target = event.kind == K::kPostDestEnd ? event.payload_host : event.publisher_host;
  if (target.empty()) {
    return Error::make(ErrorCode::kInvalidArgument, "instance {}: {} names no destination host",
                       event.instance, event.event_type);
  }

  // The source of an earlier event or a recorded migration to this destination ...
  const InstanceMemory* memory = recall(event.instance);
  if (memory && memory->target_host == target && !memory->source_host.empty()) {
    return Hosts{memory->source_host, target};
  }
  std::optional<KnownMigration> known = lookup_ ? lookup_(event.instance) : std::nullopt;
  if (known && known->target_host == target && !known->source_host.empty()) {
    return Hosts{known->source_host, target};
  }

  // ... else the payload host while it still names the source (post_dest.start).
  if (!event.payload_host.empty() && event.payload_host != target) {
    return Hosts{event.payload_host, target};
  }
  return Error::make(ErrorCode::kNotFound,
                     "instance {}: source unknown for {}: no earlier event names a migration to "
                     "{}, and the controller's newest migration is {}",
                     event.instance, event.event_type, target, describe(known));
}

const NovaCorrelator::InstanceMemory* NovaCorrelator::recall(const std::string& instance) const {
  auto it = instances_.find(instance);
  return it == instances_.end() ? nullptr : &it->second.memory;
}

NovaCorrelator::InstanceMemory& NovaCorrelator::remember(const std::string& instance) {
  if (auto it = instances_.find(instance); it != instances_.end()) {
    age_order_.splice(age_order_.end(), age_order_, it->second.age);
    return it->second.memory;
  }
  if (instances_.size() >= max_instances_) {
    instances_.erase(age_order_.front());
    age_order_.pop_front();
  }
  age_order_.push_back(instance);
  auto inserted = instances_.emplace(instance, Slot{{}, std::prev(age_order_.end())});
  return inserted.first->second.memory;
}

void NovaCorrelator::record(const NovaEvent& event,
                            const std::optional<MigrationRequest>& request) {
  InstanceMemory& memory = remember(event.instance);
  if (!event.message_id.empty()) {
    memory.recent_messages.push_back(event.message_id);
    if (memory.recent_messages.size() > kRecentMessagesPerInstance) {
      memory.recent_messages.pop_front();
    }
  }
  if (!request) {
    return;
  }
  // A pre event starts a new migration; others continue it (or replace a stale one).
  bool same_migration =
      memory.source_host == request->source_host && memory.target_host == request->target_host;
  if (request->phase == Phase::kPrepare || !same_migration) {
    memory.source_host = request->source_host;
    memory.target_host = request->target_host;
  }
  memory.last_phase = request->phase;
}

}  // namespace steward::controller
