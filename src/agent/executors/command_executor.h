// CommandExecutor: carries out instructions by running a configured command per instruction
// type in the context of one OS (the command itself enters that context: `ip netns exec`,
// `machinectl shell`, `virsh qemu-agent-command`, an ssh to the guest, ...).
//
// The command gets the instruction as JSON on stdin and in the environment:
//   STEWARD_INSTRUCTION_ID, STEWARD_TARGET, STEWARD_KIND, STEWARD_TYPE, STEWARD_SEQUENCE,
//   STEWARD_REVOKE (0 or 1), STEWARD_PARAMS (JSON object)
// Exit status 0 is success; anything else, a signal or the timeout is a failure. Output is
// captured into the report. A `check` command per setting type, when configured, answers
// in_force() after a crash: exit 0 in force, 1 not in force, anything else unknown.
#pragma once

#include "agent/executors/executor.h"

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace steward::agent {

struct CommandSpec {
  std::vector<std::string> run;    // argv
  std::vector<std::string> check;  // argv, optional (settings)
};

struct CommandExecutorOptions {
  std::string system;                          // the OS id, for logs
  std::map<std::string, CommandSpec> by_type;  // instruction type -> command
  CommandSpec fallback;                        // for types without their own; empty: refused
  std::chrono::milliseconds timeout{10000};
};

class CommandExecutor final : public Executor {
 public:
  explicit CommandExecutor(CommandExecutorOptions options) : options_(std::move(options)) {}

  Outcome execute(const Instruction& instruction) override;
  std::optional<bool> in_force(const Instruction& setting) override;

 private:
  const CommandSpec* spec_for(const std::string& type) const;
  CommandExecutorOptions options_;
};

}  // namespace steward::agent
