// LinuxExecutor: a built-in executor for a Linux OS that really applies a few settings and
// actions, behind a dry-run switch (on by default: it then only says what it would do).
//
//   setting usb_storage  imposed: a modprobe.d rule that refuses and blacklists usb-storage, and
//                        the module unloaded; revoked: the rule removed
//   setting camera       the same for the uvcvideo (USB camera) module
//   action  lock         every session's screen locked (`loginctl lock-sessions`)
//
// Other types fail with a message saying so. in_force() reads the modprobe.d rule back.
// The commands and the modprobe.d directory are options so that tests can point them at a
// scratch directory and harmless programs.
#pragma once

#include "agent/executors/executor.h"

#include <chrono>
#include <string>
#include <vector>

namespace steward::agent {

struct LinuxExecutorOptions {
  bool dry_run = true;
  std::string modprobe_dir = "/etc/modprobe.d";
  std::vector<std::string> unload_usb_storage = {"modprobe", "-r", "usb-storage"};
  std::vector<std::string> unload_camera = {"modprobe", "-r", "uvcvideo"};
  std::vector<std::string> lock_sessions = {"loginctl", "lock-sessions"};
  std::chrono::milliseconds timeout{10000};
};

class LinuxExecutor final : public Executor {
 public:
  explicit LinuxExecutor(LinuxExecutorOptions options) : options_(std::move(options)) {}

  Outcome execute(const Instruction& instruction) override;
  std::optional<bool> in_force(const Instruction& setting) override;

 private:
  struct ModuleRule {
    std::string module;
    std::string file;
    const std::vector<std::string>* unload;
  };
  std::optional<ModuleRule> rule_for(const std::string& type) const;
  Outcome apply_module_rule(const ModuleRule& rule, bool revoke);
  Outcome run(const std::vector<std::string>& argv, bool tolerate_failure);

  LinuxExecutorOptions options_;
};

}  // namespace steward::agent
