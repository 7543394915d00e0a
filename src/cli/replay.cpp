// `steward controller replay-nova FILE`: feeds a file of Nova notifications (one JSON document
// per line) to the controller in order, as the message bus would, and prints one line per
// migration once it finished.
#include "cli/api_client.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace steward::cli {
namespace json = boost::json;

namespace {

struct ReplayTally {
  size_t events = 0;
  size_t ignored = 0;
  size_t rejected = 0;
  std::map<std::string, size_t> outcomes;  // migration state -> count
};

std::string field(const json::value& value, std::string_view key) {
  const json::value* found = value.is_object() ? value.as_object().if_contains(key) : nullptr;
  if (!found || found->is_null()) return "";
  if (found->is_string()) return std::string(found->get_string());
  return json::serialize(*found);
}

std::string millis(const json::value& value, std::string_view key) {
  const json::value* found = value.is_object() ? value.as_object().if_contains(key) : nullptr;
  if (!found || !found->is_number()) return "      -";
  return fmt::format("{:7.2f}", found->to_number<double>());
}

bool finished(const json::value& migration) {
  std::string state = field(migration, "state");
  return state == "completed" || state == "rolled_back" || state == "failed";
}

void print_line(const std::string& progress, const json::value& m) {
  std::string vm = field(m, "vm");
  fmt::print(
      "{} migration {:>4}  vm {:<12}  {:>10} -> {:<10}  target-ready {} ms  "
      "source-cleaned {} ms  {}\n",
      progress, field(m, "id"), vm.substr(0, 12), field(m, "source_host"), field(m, "target_host"),
      millis(m, "target_ready_ms"), millis(m, "source_cleaned_ms"), field(m, "state"));
  std::fflush(stdout);
}

int replay(ClientOptions& options, const std::string& path, int wait_ms) {
  std::ifstream in(path);
  if (!in) {
    fmt::print(stderr, "steward: cannot read {}\n", path);
    return kExitFailure;
  }
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  }
  auto client = ApiClient::connect(options);
  if (!client) {
    fmt::print(stderr, "steward: {}\n", client.error().message);
    return kExitFailure;
  }

  ReplayTally tally;
  std::set<std::string> printed;
  std::set<std::string> seen;
  std::string target = fmt::format("/v1/notifications/nova?wait={}", wait_ms);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string progress = fmt::format("[{:>4}/{} events]", i + 1, lines.size());
    tally.events++;
    auto answer = (*client)->call("POST", target, lines[i]);
    if (!answer) {
      tally.rejected++;
      fmt::print("{} rejected: {}\n", progress, answer.error().message);
      if (answer.error().code == ErrorCode::kUnavailable ||
          answer.error().code == ErrorCode::kUnauthenticated) {
        return kExitFailure;  // the controller is gone or refuses us: stop here
      }
      continue;
    }
    if (field(*answer, "outcome") == "ignored") {
      tally.ignored++;
      continue;
    }
    std::string id = field(*answer, "id");
    if (id.empty() || id == "0") continue;
    seen.insert(id);
    if (finished(*answer) && printed.insert(id).second) {
      tally.outcomes[field(*answer, "state")]++;
      print_line(progress, *answer);
    }
  }

  // Migrations the trace left unfinished (prepared, or still waiting on a switch).
  for (const auto& id : seen) {
    if (printed.count(id)) continue;
    auto migration = (*client)->call("GET", "/v1/migrations/" + id);
    if (!migration) continue;
    tally.outcomes[field(*migration, "state")]++;
    print_line("[     end      ]", *migration);
  }

  std::string outcomes;
  for (const auto& [state, count] : tally.outcomes)
    outcomes += fmt::format(" {}={}", state, count);
  fmt::print("replayed {} events: {} migrations ({}), {} ignored, {} rejected\n", tally.events,
             seen.size(), outcomes.empty() ? "none" : outcomes.substr(1), tally.ignored,
             tally.rejected);
  bool failed = tally.outcomes.count("failed") != 0;
  return failed || tally.rejected ? kExitFailure : kExitOk;
}

}  // namespace

void add_replay_command(CLI::App& controller, std::function<int()>& action, ClientOptions& client) {
  auto path = std::make_shared<std::string>();
  auto wait_ms = std::make_shared<int>(30000);
  auto* command = controller.add_subcommand(
      "replay-nova",
      "Send a file of Nova notifications (one per line) in order; print each "
      "migration as it finishes");
  command->add_option("file", *path, "Notifications, one JSON document per line")->required();
  command->add_option("--wait-ms", *wait_ms, "How long to wait for each event's step")
      ->capture_default_str();
  command->callback([&action, &client, path, wait_ms] {
    action = [&client, path, wait_ms] { return replay(client, *path, *wait_ms); };
  });
}

}  // namespace steward::cli
