// Executors carry out instructions in the context of one operating system. The gate holds one
// per OS and calls it on the gate's thread, one instruction at a time; an executor may block
// (it runs commands) but must return: it enforces its own timeouts.
#pragma once

#include "agent/model/instruction.h"

#include <optional>
#include <string>

namespace steward::agent {

struct Outcome {
  bool success = false;
  std::optional<int> exit_code;  // when a process ran
  std::string output;            // captured stdout and stderr, truncated
  std::string detail;            // why, in words ("exit 3", "timed out after 10 s")
};

class Executor {
 public:
  virtual ~Executor() = default;

  // Carries out `instruction` (a setting, applied or revoked, or an action). Never throws:
  // every failure is an Outcome with success == false.
  virtual Outcome execute(const Instruction& instruction) = 0;

  // After a crash interrupted a setting: is that revision in force now? nullopt when this
  // executor cannot tell (the gate then applies the setting again, which is safe: settings
  // are desired state).
  virtual std::optional<bool> in_force(const Instruction& setting) {
    (void)setting;
    return std::nullopt;
  }
};

// Accepts every instruction and does nothing: for an OS whose policy is enforced elsewhere
// (the reports still say what reached it and when), and for benchmarks of the agent itself.
class NoopExecutor final : public Executor {
 public:
  Outcome execute(const Instruction&) override {
    return Outcome{true, std::nullopt, "", "no-op executor"};
  }
  std::optional<bool> in_force(const Instruction&) override { return true; }
};

}  // namespace steward::agent
