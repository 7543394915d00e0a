// Verification: reads every switch afresh (not the monitor view) and reports each VM whose
// configuration is not on exactly its current switch — missing there, duplicated elsewhere,
// stale on another switch only, or different from the inventory — and Steward-owned rows of
// VMs the inventory no longer has. VMs with an active migration legitimately sit on two
// switches; they are listed apart and are not problems.
#pragma once

#include "controller/engine/engine.h"
#include "controller/inventory/directory.h"
#include "controller/southbound/switch_pool.h"

#include <boost/json/value.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace steward::controller {

struct VerifyProblem {
  std::string vm;
  std::string kind;  // missing, duplicated, stale, differs, orphan, switch_unreadable
  std::string switch_id;
  std::string detail;
};

struct VerifyReport {
  size_t vms_checked = 0;
  std::vector<VerifyProblem> problems;
  std::vector<std::string> in_flight;           // VMs with an active migration
  std::map<std::string, std::string> switches;  // switch id -> "ok" or why it was unreadable
  bool clean() const { return problems.empty(); }
};

boost::json::value to_json(const VerifyReport& report);

// Compares the inventory with what the switches hold. Pure; `engine` may be null.
VerifyReport compare(const Directory& directory, const std::map<std::string, OwnedRows>& rows,
                     const std::map<std::string, std::string>& unreadable, const Engine* engine);

// Reads every switch of `pool` (in parallel) and calls `done` with the report. The pool, the
// directory and the engine must outlive the call.
void verify(const Directory& directory, SwitchPool& pool, const Engine* engine,
            std::function<void(VerifyReport)> done);

}  // namespace steward::controller
