#include "agent/executors/command_executor.h"

#include "agent/executors/process.h"

#include <boost/json.hpp>

namespace steward::agent {
namespace {

std::vector<std::string> environment_of(const Instruction& instruction) {
  return {"STEWARD_INSTRUCTION_ID=" + instruction.id,
          "STEWARD_TARGET=" + instruction.target,
          "STEWARD_KIND=" + std::string(to_string(instruction.kind)),
          "STEWARD_TYPE=" + instruction.type,
          "STEWARD_SEQUENCE=" + std::to_string(instruction.sequence),
          std::string("STEWARD_REVOKE=") + (instruction.revoke ? "1" : "0"),
          "STEWARD_PARAMS=" + boost::json::serialize(instruction.params)};
}

}  // namespace

const CommandSpec* CommandExecutor::spec_for(const std::string& type) const {
  auto found = options_.by_type.find(type);
  if (found != options_.by_type.end()) return &found->second;
  return options_.fallback.run.empty() ? nullptr : &options_.fallback;
}

Outcome CommandExecutor::execute(const Instruction& instruction) {
  const CommandSpec* spec = spec_for(instruction.type);
  if (!spec || spec->run.empty()) {
    return Outcome{
        false, std::nullopt, "",
        fmt::format("no command configured for type {} on {}", instruction.type, options_.system)};
  }
  ProcessOptions process;
  process.env = environment_of(instruction);
  process.input = boost::json::serialize(to_json(instruction));
  process.timeout = options_.timeout;
  auto ran = run_process(spec->run, process);
  if (!ran) return Outcome{false, std::nullopt, "", ran.error().message};
  Outcome outcome{false, ran->exit_code, ran->output, ""};
  if (ran->timed_out) {
    outcome.detail = fmt::format("timed out after {} ms", options_.timeout.count());
  } else if (!ran->exit_code) {
    outcome.detail = "killed by a signal";
  } else {
    outcome.success = *ran->exit_code == 0;
    outcome.detail = fmt::format("exit {}", *ran->exit_code);
  }
  return outcome;
}

std::optional<bool> CommandExecutor::in_force(const Instruction& setting) {
  const CommandSpec* spec = spec_for(setting.type);
  if (!spec || spec->check.empty()) return std::nullopt;
  ProcessOptions process;
  process.env = environment_of(setting);
  process.input = boost::json::serialize(to_json(setting));
  process.timeout = options_.timeout;
  auto ran = run_process(spec->check, process);
  if (!ran || ran->timed_out || !ran->exit_code) return std::nullopt;
  if (*ran->exit_code == 0) return true;
  if (*ran->exit_code == 1) return false;
  return std::nullopt;
}

}  // namespace steward::agent
