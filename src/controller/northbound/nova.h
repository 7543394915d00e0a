// The OpenStack Nova northbound adapter: reads Nova's live-migration notifications and turns
// them into MigrationRequests for the engine.
//
// Two parts, both plain values and single-threaded (call them from the daemon's io_context):
//   - parse_nova_notification() reads one notification off the bus. It never throws; malformed
//     input, wrong types and missing fields come back as kInvalidArgument naming the field.
//     Notifications that are not about live migration parse as NovaEventKind::kOther.
//   - NovaCorrelator turns parsed events into requests. Nova's live-migration payloads carry no
//     destination field, so the correlator works it out from who sent the event, from earlier
//     events of the same instance, and from the migration the controller last recorded.
#pragma once

#include "controller/model/model.h"
#include "core/result.h"

#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace steward::controller {

// Input limits: a notification larger than this, or nested deeper, is rejected unread.
inline constexpr std::size_t kMaxNovaNotificationBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxNovaNotificationDepth = 32;

// The live-migration notifications Nova sends, versioned (`instance.live_migration_pre.start`)
// and legacy unversioned (`compute.instance.live_migration.pre.start`) names alike.
enum class NovaEventKind {
  kPreStart,           // destination: about to prepare for the incoming VM
  kPreEnd,             // destination: prepared
  kPostStart,          // source: the VM runs on the destination; source clean-up begins
  kPostEnd,            // source: clean-up done
  kPostDestStart,      // destination: taking the VM over
  kPostDestEnd,        // destination: the instance now belongs to it (payload host updated)
  kRollbackStart,      // source: the migration failed, the VM stays here
  kRollbackEnd,        // source: rollback done
  kRollbackDestStart,  // destination: clean-up after the failure
  kRollbackDestEnd,    // destination: clean-up done
  kAbortStart,         // source: the operator asked to abort
  kAbortEnd,           // source: the hypervisor aborted the migration
  kForceComplete,      // source: switch-over forced (start or end)
  kOther,              // anything else Nova publishes
};

const char* to_string(NovaEventKind kind);

// One notification, reduced to what placement needs.
struct NovaEvent {
  NovaEventKind kind = NovaEventKind::kOther;
  std::string event_type;      // as sent, e.g. "instance.live_migration_pre.start"
  std::string instance;        // instance uuid (versioned `uuid`, legacy `instance_id`)
  std::string payload_host;    // the payload's `host`: the instance's host as Nova saw it
  std::string publisher_host;  // the host part of `publisher_id` ("nova-compute:<host>")
  std::string timestamp;       // as sent, e.g. "2026-12-04 15:04:05.123456"
  std::string message_id;      // empty when the notification carries none
};

// Parses one notification: the bare message, or the same wrapped in an oslo.messaging envelope
// (`{"oslo.version": "2.0", "oslo.message": "<message as a JSON string>"}`).
// Fails with kInvalidArgument when the text is not JSON, is larger or deeper than the limits
// above, or a field the event needs is missing or of the wrong type; the message names the
// field. For kOther only `event_type` is required: the payload is not read.
Result<NovaEvent> parse_nova_notification(std::string_view text);

// The newest migration the controller has recorded for a VM (from its store).
struct KnownMigration {
  std::string source_host;
  std::string target_host;
  bool finished = false;  // completed or rolled back
};

// Returns the newest migration recorded for `vm`, or nullopt when there is none.
using KnownMigrationLookup = std::function<std::optional<KnownMigration>(const std::string& vm)>;

// Turns Nova events into MigrationRequests (origin "nova:<event_type>").
//
// Mapping, from who sends each event and what its payload holds
// (as documented with Nova's versioned notifications):
//   pre.start / pre.end           sent by the destination before the VM moves: target is the
//                                 publisher, source the payload host (still the source).
//                                 -> kPrepare, so the target is ready before the VM resumes.
//   post.start / post.end         sent by the source once the VM runs on the destination; the
//                                 payload names only the source. The target comes from the
//                                 same instance's earlier events, else from the controller's
//                                 newest unfinished migration, and only when its source is this
//                                 host (a migration from elsewhere is a different one).
//                                 -> kComplete.
//   post_dest.start               sent by the destination taking the VM over: target is the
//                                 publisher. -> kComplete.
//   post_dest.end                 the payload host is now the destination: target is the
//                                 payload host. -> kComplete.
//                                 For both, the source is the one of an earlier event or
//                                 recorded migration with the same target, else the payload
//                                 host when it differs from the target.
//   rollback.start / .end         sent by the source; the VM stays there. Target as for post.
//                                 -> kRollback.
//   rollback_dest.start / .end    sent by the destination: target is the publisher, source
//                                 the payload host. -> kRollback.
//   abort.end                     Nova sends it once the hypervisor abort succeeded, so the VM
//                                 stays on the source. -> kRollback (the rollback events that
//                                 follow are harmless duplicates).
//   abort.start, force_complete   ask for something that may still fail; placement does not
//                                 change yet. -> nothing.
//
// Guards against late and duplicate events:
//   - a message_id already seen for the instance is ignored (redelivery);
//   - a rollback of a migration this correlator saw complete is ignored: Nova never rolls back
//     after post, so it is late, and acting on it would remove the VM's running configuration;
//   - a pre.end of a migration this correlator saw complete or roll back is ignored (late; a
//     retry of the same move starts with a new pre.start);
//   - a post or rollback from the source whose destination is known only from a migration
//     the controller recorded as finished is ignored;
//   - an event whose source and target are the same host is ignored (nothing moves).
//
// Memory: the last `max_instances` instances seen (oldest evicted), their newest migration and
// a few recent message ids. Losing it (restart, eviction) is safe: the lookup then answers.
class NovaCorrelator {
 public:
  explicit NovaCorrelator(KnownMigrationLookup lookup, std::size_t max_instances = 10'000);

  // The request `event` calls for, or nullopt when it needs no action (then `ignored_reason`,
  // when given, says why). Fails with kNotFound when the destination or source of a migration
  // event cannot be determined, kInvalidArgument when the event lacks a host it needs.
  Result<std::optional<MigrationRequest>> on_event(const NovaEvent& event,
                                                   std::string* ignored_reason = nullptr);

  // How many instances the correlator currently remembers.
  std::size_t remembered_instances() const { return instances_.size(); }

 private:
  // What the correlator last saw of one instance's migration.
  struct InstanceMemory {
    std::string source_host;
    std::string target_host;
    std::optional<Phase> last_phase;          // of the last request issued for this migration
    std::deque<std::string> recent_messages;  // newest last, bounded
  };
  struct Slot {
    InstanceMemory memory;
    std::list<std::string>::iterator age;  // position in age_order_
  };
  struct Hosts {
    std::string source;
    std::string target;
  };

  Result<std::optional<MigrationRequest>> decide(const NovaEvent& event, std::string& reason);
  Result<std::optional<Hosts>> resolve_hosts(const NovaEvent& event, std::string& reason);
  Result<std::optional<Hosts>> from_destination_event(const NovaEvent& event, std::string& reason);
  Result<std::optional<Hosts>> from_source_event(const NovaEvent& event, std::string& reason);
  Result<std::optional<Hosts>> from_post_dest_event(const NovaEvent& event);

  const InstanceMemory* recall(const std::string& instance) const;
  InstanceMemory& remember(const std::string& instance);
  void record(const NovaEvent& event, const std::optional<MigrationRequest>& request);

  KnownMigrationLookup lookup_;
  std::size_t max_instances_;
  std::unordered_map<std::string, Slot> instances_;
  std::list<std::string> age_order_;  // instance ids, least recently seen first
};

}  // namespace steward::controller
