#include "agent/executors/linux_executor.h"

#include "agent/executors/process.h"

#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace steward::agent {
namespace {

namespace fs = std::filesystem;

std::string rule_text(const std::string& module) {
  return fmt::format(
      "# Written by the steward agent: {} is disabled by policy. Removed when revoked.\n"
      "install {} /bin/false\nblacklist {}\n",
      module, module, module);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::optional<LinuxExecutor::ModuleRule> LinuxExecutor::rule_for(const std::string& type) const {
  if (type == "usb_storage") {
    return ModuleRule{"usb-storage", options_.modprobe_dir + "/steward-usb-storage.conf",
                      &options_.unload_usb_storage};
  }
  if (type == "camera") {
    return ModuleRule{"uvcvideo", options_.modprobe_dir + "/steward-camera.conf",
                      &options_.unload_camera};
  }
  return std::nullopt;
}

Outcome LinuxExecutor::execute(const Instruction& instruction) {
  if (instruction.is_setting()) {
    if (auto rule = rule_for(instruction.type)) return apply_module_rule(*rule, instruction.revoke);
  } else if (instruction.type == "lock") {
    return run(options_.lock_sessions, false);
  }
  return Outcome{false, std::nullopt, "",
                 fmt::format("the built-in linux executor does not know {} {}",
                             to_string(instruction.kind), instruction.type)};
}

Outcome LinuxExecutor::apply_module_rule(const ModuleRule& rule, bool revoke) {
  if (options_.dry_run) {
    std::string would = revoke ? fmt::format("dry run: would remove {}", rule.file)
                               : fmt::format("dry run: would write {} and run {}", rule.file,
                                             fmt::join(*rule.unload, " "));
    return Outcome{true, std::nullopt, would + "\n", "dry run"};
  }
  std::error_code ec;
  if (revoke) {
    fs::remove(rule.file, ec);
    if (ec)
      return Outcome{false, std::nullopt, "", "cannot remove " + rule.file + ": " + ec.message()};
    return Outcome{true, std::nullopt, "removed " + rule.file + "\n", ""};
  }
  // Write the rule atomically, then unload the module (it may not be loaded: tolerated).
  fs::create_directories(options_.modprobe_dir, ec);
  std::string temporary = rule.file + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << rule_text(rule.module);
    if (!out.flush()) return Outcome{false, std::nullopt, "", "cannot write " + temporary};
  }
  fs::rename(temporary, rule.file, ec);
  if (ec)
    return Outcome{false, std::nullopt, "", "cannot write " + rule.file + ": " + ec.message()};
  Outcome unloaded = run(*rule.unload, true);
  unloaded.output = "wrote " + rule.file + "\n" + unloaded.output;
  return unloaded;
}

Outcome LinuxExecutor::run(const std::vector<std::string>& argv, bool tolerate_failure) {
  if (options_.dry_run) {
    return Outcome{true, std::nullopt, fmt::format("dry run: would run {}\n", fmt::join(argv, " ")),
                   "dry run"};
  }
  ProcessOptions process;
  process.timeout = options_.timeout;
  auto ran = run_process(argv, process);
  if (!ran) return Outcome{false, std::nullopt, "", ran.error().message};
  bool success = ran->exit_code == 0 || tolerate_failure;
  std::string detail = ran->timed_out    ? "timed out"
                       : !ran->exit_code ? "killed by a signal"
                                         : fmt::format("exit {}", *ran->exit_code);
  return Outcome{success, ran->exit_code, ran->output, detail};
}

std::optional<bool> LinuxExecutor::in_force(const Instruction& setting) {
  auto rule = rule_for(setting.type);
  if (!rule || options_.dry_run) return std::nullopt;
  bool present = read_file(rule->file) == rule_text(rule->module);
  return setting.revoke ? !present && !fs::exists(rule->file) : present;
}

}  // namespace steward::agent
