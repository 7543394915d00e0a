// The gate decides the fate of every control instruction that reaches the terminal: it verifies
// and de-duplicates it, refuses what cannot be honoured, runs it now when its operating system
// is in the foreground and otherwise stores it until that OS comes to the foreground.
//
// Guarantees (see docs/agent.md):
//  - durable before acknowledged: receive() returns only after the instruction, or its
//    rejection, is committed; the transport releases the broker's copy only then;
//  - at most once: ids are remembered for ever; an instruction is marked `executing` (committed)
//    before its executor runs and removed with its report in one commit after, so a crash in
//    between is recognised at recover(): a setting is checked or applied again (desired state),
//    an action is never run again and is reported `unknown`. In a replay the next
//    instruction's mark shares the previous one's final commit, so a crash right there reports
//    that next action `unknown` although it had not started (doubt, never a second run);
//  - order: an OS's stored instructions run in sequence order (ties by arrival), and only while
//    that OS is still the foreground; a failing one is reported and the next one runs;
//  - newest wins for settings: an older revision of a setting is refused, a newer one replaces
//    a stored older one; cancel and supersede remove stored instructions, also ones that arrive
//    after the cancel;
//  - every fate is reported: reports go to the store's outbox in the same commit as the change
//    they describe; `on_reports` tells the transport there is something to send.
//
// Threading: every method except announce_foreground() and counters() runs on the gate's own
// thread (the store and the executors belong to it). announce_foreground() may be called from
// any thread: a replay in progress stops before its next instruction once its OS has left the
// foreground.
#pragma once

#include "agent/executors/executor.h"
#include "agent/gate/store.h"
#include "agent/model/control_message.h"
#include "core/clock.h"
#include "core/result.h"

#include <spdlog/logger.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace steward::agent {

struct GateCounters {
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> executed{0};
  std::map<ReportStatus, std::atomic<uint64_t>> reported;

  GateCounters();
};

class Gate {
 public:
  struct Options {
    std::string terminal;
    const PublicKey* server_key = nullptr;  // when set, only signed messages are accepted
  };

  Gate(InstructionStore& store, const Clock& clock, Options options);

  // Registers an OS and the executor that acts in it. Call before recover().
  void add_system(const std::string& id, Executor& executor);
  // Called (on the gate's thread) after every commit that added reports to the outbox.
  void on_reports(std::function<void()> callback) { reports_ready_ = std::move(callback); }

  // Reconciles the registered systems with the stored ones: an OS no longer registered, or
  // registered again with another enrolment token, loses its stored instructions (reported
  // `cancelled`). Then resolves instructions a crash left `executing`. Call once at start.
  Status recover(const std::map<std::string, std::string>& enrolments);

  // One control message as it came off the wire. Returns an error only when the store failed;
  // then nothing was decided and the message must be offered again.
  Status receive(std::string_view bytes);
  Status receive(const Instruction& instruction);

  // Thread-safe: records the OS now in the foreground (nullopt: none or unknown).
  void announce_foreground(std::optional<std::string> system);
  std::optional<std::string> foreground() const;
  // Runs the stored instructions of the announced foreground OS, in order.
  Status apply_foreground();
  // Reports `expired` every stored instruction whose expiry has passed.
  Status expire_due();
  // Removes every stored instruction of an OS, reporting each `cancelled` with `why`.
  Status reset_system(const std::string& id, const std::string& why);

  const GateCounters& counters() const { return counters_; }
  InstructionStore& store() { return store_; }

 private:
  struct Claim {
    std::string id;
    std::string target;
    int64_t sequence = 0;
  };

  Status reject(const Claim& claim, const std::string& detail, bool remember);
  Status expire_on_arrival(const Instruction& instruction);
  Status accept(const Instruction& instruction);
  Status accept_cancel(const Instruction& cancel);
  Result<bool> refuse_if_stale(const Instruction& setting);
  Status replace_older_revision(const Instruction& setting);
  Status withdraw(const std::string& id, const Instruction& by, const std::string& detail,
                  std::vector<std::string>& notes);
  Status replay(const std::string& target);
  Status run(const Instruction& instruction, const Instruction* next);
  Status set_state(const Instruction& instruction, StoredState state);
  Status purge_done();
  Status finish(const Instruction& instruction, ReportStatus status, std::string detail,
                const Outcome* outcome = nullptr, const Instruction* mark_next = nullptr);
  Status resolve_interrupted(const StoredInstruction& stored);
  Status commit(sqlite::Transaction& transaction);
  Status report(const Instruction& instruction, ReportStatus status, std::string detail,
                const Outcome* outcome = nullptr);
  bool is_foreground(const std::string& target) const;
  int64_t now_ms() const { return clock_.wall_us() / 1000; }

  InstructionStore& store_;
  const Clock& clock_;
  Options options_;
  std::map<std::string, Executor*> executors_;
  std::function<void()> reports_ready_;
  bool reports_added_ = false;
  GateCounters counters_;
  mutable std::mutex foreground_mutex_;
  std::optional<std::string> foreground_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace steward::agent
