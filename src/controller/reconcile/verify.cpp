#include "controller/reconcile/verify.h"

#include <boost/json.hpp>

#include <memory>

namespace steward::controller {

VerifyReport compare(const Directory& directory, const std::map<std::string, OwnedRows>& rows,
                     const std::map<std::string, std::string>& unreadable, const Engine* engine) {
  VerifyReport report;
  for (const auto& [id, reason] : unreadable) {
    report.switches[id] = reason;
    report.problems.push_back({"", "switch_unreadable", id, reason});
  }
  for (const auto& [id, owned] : rows)
    report.switches[id] = "ok";

  for (const auto& [vm_id, vm] : directory.vms()) {
    report.vms_checked++;
    if (engine && engine->active(vm_id)) {
      report.in_flight.push_back(vm_id);
      continue;
    }
    auto home = directory.switch_of_host(vm.host);
    if (!home) {
      report.problems.push_back({vm_id, "missing", "", home.error().message});
      continue;
    }
    const std::string& home_id = (*home)->id;
    if (unreadable.count(home_id)) continue;  // already reported as unreadable
    std::vector<std::string> elsewhere;
    const std::vector<ObservedInterface>* at_home = nullptr;
    for (const auto& [switch_id, owned] : rows) {
      auto found = owned.find(vm_id);
      if (found == owned.end()) continue;
      if (switch_id == home_id) {
        at_home = &found->second;
      } else {
        elsewhere.push_back(switch_id);
      }
    }
    bool expected_here = !vm.interfaces.empty();
    if (expected_here && !at_home) {
      report.problems.push_back({vm_id, elsewhere.empty() ? "missing" : "stale", home_id,
                                 elsewhere.empty()
                                     ? fmt::format("not on {} (host {})", home_id, vm.host)
                                     : fmt::format("on {} instead of {} (host {})",
                                                   fmt::join(elsewhere, ","), home_id, vm.host)});
      continue;
    }
    for (const auto& other : elsewhere) {
      report.problems.push_back({vm_id, "duplicated", other,
                                 fmt::format("also on {} while it runs on {}", other, vm.host)});
    }
    if (at_home && !matches(vm, *at_home)) {
      report.problems.push_back(
          {vm_id, "differs", home_id, "rows on the switch differ from the inventory"});
    }
  }

  for (const auto& [switch_id, owned] : rows) {
    for (const auto& [vm_id, observed] : owned) {
      if (!directory.find_vm(vm_id)) {
        report.problems.push_back(
            {vm_id, "orphan", switch_id, "owned rows of a VM not in the inventory"});
      }
    }
  }
  return report;
}

boost::json::value to_json(const VerifyReport& report) {
  boost::json::array problems;
  for (const auto& problem : report.problems) {
    problems.push_back(boost::json::object{{"vm", problem.vm},
                                           {"kind", problem.kind},
                                           {"switch", problem.switch_id},
                                           {"detail", problem.detail}});
  }
  boost::json::array in_flight;
  for (const auto& vm : report.in_flight)
    in_flight.emplace_back(vm);
  boost::json::object switches;
  for (const auto& [id, state] : report.switches)
    switches[id] = state;
  return boost::json::object{{"clean", report.clean()},
                             {"vms_checked", report.vms_checked},
                             {"problems", std::move(problems)},
                             {"in_flight", std::move(in_flight)},
                             {"switches", std::move(switches)}};
}

void verify(const Directory& directory, SwitchPool& pool, const Engine* engine,
            std::function<void(VerifyReport)> done) {
  struct Gather {
    std::map<std::string, OwnedRows> rows;
    std::map<std::string, std::string> unreadable;
    size_t pending = 0;
    std::function<void(VerifyReport)> done;
  };
  auto gather = std::make_shared<Gather>();
  gather->done = std::move(done);
  gather->pending = pool.clients().size();
  auto finish = [gather, &directory, engine] {
    if (--gather->pending == 0) {
      gather->done(compare(directory, gather->rows, gather->unreadable, engine));
    }
  };
  if (gather->pending == 0) {
    gather->pending = 1;
    return finish();
  }
  for (const auto& [id, client] : pool.clients()) {
    client->read_owned([gather, finish, id = id](Result<OwnedRows> rows) {
      if (rows) {
        gather->rows[id] = std::move(*rows);
      } else {
        gather->unreadable[id] = rows.error().message;
      }
      finish();
    });
  }
}

}  // namespace steward::controller
