#include "cli/controller_commands.h"

#include "cli/api_client.h"
#include "controller/daemon.h"

#include <fmt/format.h>
#include <unistd.h>
#include <boost/json.hpp>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace steward::cli {
namespace json = boost::json;
using controller::ControllerConfig;

namespace {

struct Shared {
  ClientOptions client;
};

int fail(const std::string& message) {
  fmt::print(stderr, "steward: {}\n", message);
  return kExitFailure;
}

Result<std::string> read_input(const std::string& path) {
  std::stringstream buffer;
  if (path == "-") {
    buffer << std::cin.rdbuf();
    return buffer.str();
  }
  std::ifstream in(path);
  if (!in) return Error::make(ErrorCode::kInvalidArgument, "cannot read {}", path);
  buffer << in.rdbuf();
  return buffer.str();
}

std::string percent_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// Runs one API call and prints its answer (JSON with --json, else through `show`).
int call_and_print(Shared& shared, const std::string& method, const std::string& target,
                   const std::string& body,
                   const std::function<void(const json::value&)>& show = nullptr) {
  auto client = ApiClient::connect(shared.client);
  if (!client) return fail(client.error().message);
  auto answer = (*client)->call(method, target, body);
  if (!answer) return fail(answer.error().message);
  if (shared.client.json || !show) {
    if (!answer->is_null()) fmt::print("{}\n", json::serialize(*answer));
  } else {
    show(*answer);
  }
  return kExitOk;
}

std::string text_of(const json::value& value, std::string_view key) {
  if (!value.is_object()) return "";
  const json::value* found = value.as_object().if_contains(key);
  if (!found || found->is_null()) return "-";
  if (found->is_string()) return std::string(found->get_string());
  if (found->is_double()) return fmt::format("{:.2f}", found->get_double());
  return json::serialize(*found);
}

void print_migration(const json::value& m) {
  fmt::print("migration {}: vm {} {} -> {} ({} -> {})\n", text_of(m, "id"), text_of(m, "vm"),
             text_of(m, "source_host"), text_of(m, "target_host"), text_of(m, "source_switch"),
             text_of(m, "target_switch"));
  fmt::print("  state {} (asked: {}), origin {}\n", text_of(m, "state"), text_of(m, "phase"),
             text_of(m, "origin"));
  fmt::print("  target ready {} ms, source cleaned {} ms, attempts {}\n",
             text_of(m, "target_ready_ms"), text_of(m, "source_cleaned_ms"),
             text_of(m, "attempts"));
  if (m.is_object() && m.as_object().contains("waiting_for")) {
    fmt::print("  waiting for: {}\n", text_of(m, "waiting_for"));
  }
  if (m.is_object() && m.as_object().contains("outcome")) {
    fmt::print("  this message: {} ({})\n", text_of(m, "outcome"), text_of(m, "detail"));
  }
}

// --interface "id=eth0,device=tap0,mac=..,ip=..,ip=..,vlan=100,trunks=10;20,
//              ingress-rate=..,ingress-burst=..,max-rate=..,ext:key=value"
Result<json::object> parse_interface_spec(const std::string& spec) {
  json::object out;
  json::array ips;
  json::object external;
  std::stringstream parts(spec);
  std::string part;
  while (std::getline(parts, part, ',')) {
    size_t eq = part.find('=');
    if (eq == std::string::npos) {
      return Error::make(ErrorCode::kInvalidArgument, "interface spec part '{}' is not key=value",
                         part);
    }
    std::string key = part.substr(0, eq);
    std::string value = part.substr(eq + 1);
    auto number = [&]() -> Result<int64_t> {
      try {
        size_t used = 0;
        int64_t parsed = std::stoll(value, &used);
        if (used == value.size()) return parsed;
      } catch (const std::exception&) {
      }
      return Error::make(ErrorCode::kInvalidArgument, "interface {}: '{}' is not a number", key,
                         value);
    };
    static const std::map<std::string, std::string> numeric = {
        {"vlan", "vlan"},
        {"ingress-rate", "ingress_policing_rate_kbps"},
        {"ingress-burst", "ingress_policing_burst_kb"},
        {"max-rate", "egress_max_rate_bps"}};
    if (key == "id" || key == "device" || key == "mac") {
      out[key] = value;
    } else if (key == "ip") {
      ips.emplace_back(value);
    } else if (numeric.count(key)) {
      auto parsed = number();
      if (!parsed) return parsed.error();
      out[numeric.at(key)] = *parsed;
    } else if (key == "trunks") {
      json::array trunks;
      std::stringstream list(value);
      std::string item;
      while (std::getline(list, item, ';')) {
        value = item;
        auto parsed = number();
        if (!parsed) return parsed.error();
        trunks.emplace_back(*parsed);
      }
      out["trunks"] = std::move(trunks);
    } else if (key.starts_with("ext:")) {
      external[key.substr(4)] = value;
    } else {
      return Error::make(ErrorCode::kInvalidArgument, "unknown interface key '{}'", key);
    }
  }
  if (!ips.empty()) out["ips"] = std::move(ips);
  if (!external.empty()) out["external_ids"] = std::move(external);
  return out;
}

void add_run(CLI::App& controller, std::function<int()>& action) {
  auto config = std::make_shared<ControllerConfig>();
  auto config_file = std::make_shared<std::string>();
  auto* run = controller.add_subcommand("run", "Run the controller daemon in the foreground");
  run->add_option("-c,--config", *config_file, "TOML file with a [controller] table");
  auto overrides = std::make_shared<ControllerConfig>();
  run->add_option("--listen", overrides->listen_address, "Address of the HTTP API");
  run->add_option("--port", overrides->port, "Port of the HTTP API (0: any free port)");
  run->add_option("--database", overrides->database, "SQLite file of the store");
  run->add_option("--token-file", overrides->token_file, "Bearer token file (created if missing)");
  run->add_option("--port-file", overrides->port_file, "Write the bound port to this file");
  run->add_option("--owner", overrides->owner, "steward-owner marker on switch rows");
  run->add_option("--log-level", overrides->log_level, "debug, info, warn or error");
  run->callback([&action, config, config_file, overrides, run] {
    action = [config, config_file, overrides, run] {
      if (!config_file->empty()) {
        if (auto status = controller::load_config_file(*config_file, *config); !status) {
          return fail(status.error().message);
        }
      }
      // Command-line values win over the file.
      auto given = [run](const char* name) { return run->count(name) > 0; };
      if (given("--listen")) config->listen_address = overrides->listen_address;
      if (given("--port")) config->port = overrides->port;
      if (given("--database")) config->database = overrides->database;
      if (given("--token-file")) config->token_file = overrides->token_file;
      if (given("--port-file")) config->port_file = overrides->port_file;
      if (given("--owner")) config->owner = overrides->owner;
      if (given("--log-level")) config->log_level = overrides->log_level;
      return controller::run_controller(*config);
    };
  });
}

void add_inventory(CLI::App& controller, std::function<int()>& action, Shared& shared) {
  // switch
  auto* sw = controller.add_subcommand("switch", "Forwarding switches (OVSDB endpoints)");
  sw->require_subcommand(1);
  {
    auto spec = std::make_shared<std::map<std::string, std::string>>();
    auto* add = sw->add_subcommand("add", "Add or replace a switch");
    add->add_option("id", (*spec)["id"], "Switch id")->required();
    add->add_option("--endpoint", (*spec)["endpoint"], "unix:/path, tcp:host:port or ssl:host:port")
        ->required();
    (*spec)["bridge"] = "br-int";
    add->add_option("--bridge", (*spec)["bridge"], "Bridge holding VM ports")
        ->capture_default_str();
    add->add_option("--ca-cert", (*spec)["ca_cert"], "CA certificate (ssl:)");
    add->add_option("--cert", (*spec)["certificate"], "Client certificate (ssl:)");
    add->add_option("--key", (*spec)["private_key"], "Client private key (ssl:)");
    add->callback([&action, &shared, spec] {
      action = [&shared, spec] {
        json::object body{{"id", (*spec)["id"]},
                          {"endpoint", (*spec)["endpoint"]},
                          {"bridge", (*spec)["bridge"]}};
        if (!(*spec)["ca_cert"].empty()) {
          body["tls"] = json::object{{"ca_cert", (*spec)["ca_cert"]},
                                     {"certificate", (*spec)["certificate"]},
                                     {"private_key", (*spec)["private_key"]}};
        }
        return call_and_print(shared, "PUT", "/v1/switches/" + percent_encode((*spec)["id"]),
                              json::serialize(body), [](const json::value& v) {
                                fmt::print("switch {} at {} bridge {}\n", text_of(v, "id"),
                                           text_of(v, "endpoint"), text_of(v, "bridge"));
                              });
      };
    });
  }
  // host
  auto* host = controller.add_subcommand("host", "Hypervisor hosts and their switch");
  host->require_subcommand(1);
  {
    auto spec = std::make_shared<std::pair<std::string, std::string>>();
    auto* add = host->add_subcommand("add", "Add or replace a host");
    add->add_option("id", spec->first, "Host id (the VM manager's host name)")->required();
    add->add_option("--switch", spec->second, "Switch the host's VMs attach to")->required();
    add->callback([&action, &shared, spec] {
      action = [&shared, spec] {
        json::object body{{"id", spec->first}, {"switch", spec->second}};
        return call_and_print(shared, "PUT", "/v1/hosts/" + percent_encode(spec->first),
                              json::serialize(body), [](const json::value& v) {
                                fmt::print("host {} on switch {}\n", text_of(v, "id"),
                                           text_of(v, "switch"));
                              });
      };
    });
  }
  // vm
  auto* vm = controller.add_subcommand("vm", "Virtual machines and their interfaces");
  vm->require_subcommand(1);
  {
    struct VmSpec {
      std::string id, name, host, file;
      std::vector<std::string> interfaces;
    };
    auto spec = std::make_shared<VmSpec>();
    auto* add = vm->add_subcommand("add", "Add or replace a VM");
    add->add_option("id", spec->id, "VM id (the VM manager's uuid)");
    add->add_option("--name", spec->name, "VM name");
    add->add_option("--host", spec->host, "Host the VM runs on");
    add->add_option("--interface", spec->interfaces,
                    "id=eth0,device=tapX,mac=..,ip=..,vlan=N|trunks=A;B,ingress-rate=kbps,"
                    "ingress-burst=kb,max-rate=bps,ext:key=value (repeatable)");
    add->add_option("-f,--file", spec->file, "VM as JSON (- for stdin) instead of the flags");
    add->callback([&action, &shared, spec] {
      action = [&shared, spec] {
        std::string body;
        std::string id = spec->id;
        if (!spec->file.empty()) {
          auto text = read_input(spec->file);
          if (!text) return fail(text.error().message);
          body = *text;
          boost::system::error_code ec;
          auto parsed = json::parse(body, ec);
          if (ec || !parsed.is_object() || !parsed.as_object().contains("id")) {
            return fail("the VM file must be a JSON object with an id");
          }
          id = text_of(parsed, "id");
        } else {
          if (id.empty() || spec->host.empty()) return fail("vm add needs an id and --host");
          json::array interfaces;
          for (const auto& text : spec->interfaces) {
            auto parsed = parse_interface_spec(text);
            if (!parsed) return fail(parsed.error().message);
            interfaces.push_back(std::move(*parsed));
          }
          body = json::serialize(json::object{{"id", id},
                                              {"name", spec->name},
                                              {"host", spec->host},
                                              {"interfaces", std::move(interfaces)}});
        }
        return call_and_print(
            shared, "PUT", "/v1/vms/" + percent_encode(id), body, [](const json::value& v) {
              fmt::print("vm {} on host {} with {} interfaces\n", text_of(v, "id"),
                         text_of(v, "host"), v.at("interfaces").as_array().size());
            });
      };
    });
    auto place = std::make_shared<std::pair<std::string, std::string>>();
    auto* placement = vm->add_subcommand("place", "Tell the controller where a VM runs now");
    placement->add_option("id", place->first, "VM id")->required();
    placement->add_option("--host", place->second, "Host it runs on")->required();
    placement->callback([&action, &shared, place] {
      action = [&shared, place] {
        return call_and_print(
            shared, "POST", "/v1/vms/" + percent_encode(place->first) + "/placement?wait=30000",
            json::serialize(json::object{{"host", place->second}}), print_migration);
      };
    });
  }

  // list / show / delete for the three kinds.
  for (auto [command, path, noun] :
       {std::tuple{sw, "switches", "switch"}, std::tuple{host, "hosts", "host"},
        std::tuple{vm, "vms", "vm"}}) {
    std::string collection = std::string("/v1/") + path;
    auto* list = command->add_subcommand("list", fmt::format("List {}", path));
    list->callback([&action, &shared, collection] {
      action = [&shared, collection] {
        return call_and_print(shared, "GET", collection, "", [](const json::value& v) {
          for (const auto& item : v.as_array())
            fmt::print("{}\n", json::serialize(item));
        });
      };
    });
    auto id = std::make_shared<std::string>();
    auto* show = command->add_subcommand("show", fmt::format("Show one {}", noun));
    show->add_option("id", *id)->required();
    show->callback([&action, &shared, collection, id] {
      action = [&shared, collection, id] {
        return call_and_print(shared, "GET", collection + "/" + percent_encode(*id), "",
                              [](const json::value& v) { fmt::print("{}\n", json::serialize(v)); });
      };
    });
    auto* remove = command->add_subcommand("delete", fmt::format("Delete a {}", noun));
    remove->add_option("id", *id)->required();
    remove->callback([&action, &shared, collection, id, noun = std::string(noun)] {
      action = [&shared, collection, id, noun] {
        return call_and_print(
            shared, "DELETE", collection + "/" + percent_encode(*id), "",
            [&](const json::value&) { fmt::print("{} {} deleted\n", noun, *id); });
      };
    });
  }
}

void add_config(CLI::App& controller, std::function<int()>& action, Shared& shared) {
  auto* config = controller.add_subcommand("config", "Network configuration of VM interfaces");
  config->require_subcommand(1);
  auto vm = std::make_shared<std::string>();
  auto* show = config->add_subcommand("show", "Show every interface configuration of a VM");
  show->add_option("vm", *vm)->required();
  show->callback([&action, &shared, vm] {
    action = [&shared, vm] {
      return call_and_print(shared, "GET", "/v1/vms/" + percent_encode(*vm), "",
                            [](const json::value& v) {
                              for (const auto& i : v.at("interfaces").as_array()) {
                                fmt::print("{}\n", json::serialize(i));
                              }
                            });
    };
  });
  auto spec = std::make_shared<std::pair<std::string, std::string>>();
  auto* set = config->add_subcommand("set", "Create or replace one interface's configuration");
  set->add_option("vm", *vm)->required();
  set->add_option("interface", spec->second,
                  "id=eth0,device=..,mac=..,ip=..,vlan=N|trunks=A;B,ingress-rate=..,"
                  "ingress-burst=..,max-rate=..,ext:key=value")
      ->required();
  set->callback([&action, &shared, vm, spec] {
    action = [&shared, vm, spec] {
      auto parsed = parse_interface_spec(spec->second);
      if (!parsed) return fail(parsed.error().message);
      std::string id = text_of(*parsed, "id");
      return call_and_print(shared, "PUT",
                            "/v1/vms/" + percent_encode(*vm) + "/interfaces/" + percent_encode(id),
                            json::serialize(*parsed),
                            [](const json::value& v) { fmt::print("{}\n", json::serialize(v)); });
    };
  });
}

int import_inventory(Shared& shared, const std::string& file) {
  auto text = read_input(file);
  if (!text) return fail(text.error().message);
  boost::system::error_code ec;
  auto inventory = json::parse(*text, ec);
  if (ec || !inventory.is_object()) return fail(fmt::format("{}: not a JSON object", file));
  auto client = ApiClient::connect(shared.client);
  if (!client) return fail(client.error().message);
  size_t count = 0;
  // Order matters: hosts refer to switches, VMs to hosts.
  for (auto [key, path] :
       {std::pair{"switches", "/v1/switches/"}, {"hosts", "/v1/hosts/"}, {"vms", "/v1/vms/"}}) {
    auto* items = inventory.as_object().if_contains(key);
    if (!items) continue;
    if (!items->is_array()) return fail(fmt::format("{}: '{}' must be an array", file, key));
    for (const auto& item : items->as_array()) {
      std::string id = text_of(item, "id");
      auto answer = (*client)->call("PUT", path + percent_encode(id), json::serialize(item));
      if (!answer) return fail(fmt::format("{} {}: {}", key, id, answer.error().message));
      count++;
    }
  }
  fmt::print("imported {} objects from {}\n", count, file);
  return kExitOk;
}

void add_import(CLI::App& controller, std::function<int()>& action, Shared& shared) {
  auto file = std::make_shared<std::string>();
  auto* command = controller.add_subcommand(
      "import", "Load an inventory file {switches:[], hosts:[], vms:[]} (idempotent)");
  command->add_option("file", *file, "Inventory JSON (- for stdin)")->required();
  command->callback([&action, &shared, file] {
    action = [&shared, file] { return import_inventory(shared, *file); };
  });
}

void add_migrations(CLI::App& controller, std::function<int()>& action, Shared& shared) {
  struct MigrateSpec {
    std::string vm, from, to, phase;
    double wait = 30;
  };
  auto spec = std::make_shared<MigrateSpec>();
  auto* migrate = controller.add_subcommand("migrate", "Move a VM's configuration to another host");
  migrate->add_option("vm", spec->vm, "VM id")->required();
  migrate->add_option("--from", spec->from, "Source host")->required();
  migrate->add_option("--to", spec->to, "Target host")->required();
  migrate->add_option("--phase", spec->phase,
                      "prepare, complete or rollback (default: both steps)");
  migrate->add_option("--wait", spec->wait, "Seconds to wait for the result (0: return at once)")
      ->capture_default_str();
  migrate->callback([&action, &shared, spec] {
    action = [&shared, spec] {
      json::object body{{"vm", spec->vm}, {"source_host", spec->from}, {"target_host", spec->to}};
      if (!spec->phase.empty()) body["phase"] = spec->phase;
      return call_and_print(
          shared, "POST",
          fmt::format("/v1/migrations?wait={}", static_cast<int64_t>(spec->wait * 1000)),
          json::serialize(body), print_migration);
    };
  });

  auto* migration = controller.add_subcommand("migration", "Show migrations");
  migration->require_subcommand(1);
  auto id = std::make_shared<std::string>();
  auto* show = migration->add_subcommand("show", "Show one migration");
  show->add_option("id", *id)->required();
  show->callback([&action, &shared, id] {
    action = [&shared, id] {
      return call_and_print(shared, "GET", "/v1/migrations/" + percent_encode(*id), "",
                            print_migration);
    };
  });
  auto vm = std::make_shared<std::string>();
  auto* list = migration->add_subcommand("list", "List recent migrations");
  list->add_option("--vm", *vm, "Only this VM");
  list->callback([&action, &shared, vm] {
    action = [&shared, vm] {
      return call_and_print(shared, "GET", "/v1/migrations?limit=1000&vm=" + percent_encode(*vm),
                            "", [](const json::value& v) {
                              for (const auto& m : v.as_array()) {
                                fmt::print("{:>6} {:<38} {} -> {} {}\n", text_of(m, "id"),
                                           text_of(m, "vm"), text_of(m, "source_host"),
                                           text_of(m, "target_host"), text_of(m, "state"));
                              }
                            });
    };
  });
}

void add_verify(CLI::App& controller, std::function<int()>& action, Shared& shared) {
  auto* verify = controller.add_subcommand(
      "verify",
      "Read every switch; report VMs whose configuration is missing, duplicated or "
      "stale (exit 3 if any)");
  verify->callback([&action, &shared] {
    action = [&shared] {
      auto client = ApiClient::connect(shared.client);
      if (!client) return fail(client.error().message);
      auto report = (*client)->call("GET", "/v1/verify");
      if (!report) return fail(report.error().message);
      const auto& object = report->as_object();
      bool clean = object.at("clean").as_bool();
      if (shared.client.json) {
        fmt::print("{}\n", json::serialize(*report));
      } else {
        for (const auto& problem : object.at("problems").as_array()) {
          fmt::print("{:<10} vm={} switch={} {}\n", text_of(problem, "kind"),
                     text_of(problem, "vm"), text_of(problem, "switch"),
                     text_of(problem, "detail"));
        }
        fmt::print("verify: {} VMs checked on {} switches, {} problems, {} in flight: {}\n",
                   text_of(*report, "vms_checked"), object.at("switches").as_object().size(),
                   object.at("problems").as_array().size(),
                   object.at("in_flight").as_array().size(), clean ? "clean" : "NOT clean");
      }
      return clean ? kExitOk : kExitProblems;
    };
  });
}

}  // namespace

void add_replay_command(CLI::App& controller, std::function<int()>& action, ClientOptions& client);

void add_controller_commands(CLI::App& app, std::function<int()>& action) {
  static Shared shared;
  auto* controller =
      app.add_subcommand("controller", "VM network configuration follows live migration");
  controller->require_subcommand(1);
  controller->add_option("--url", shared.client.url, "Controller API (env STEWARD_URL)")
      ->capture_default_str();
  shared.client.token_file = "/var/lib/steward/controller.token";
  controller
      ->add_option("--token-file", shared.client.token_file,
                   "Bearer token file (env STEWARD_TOKEN wins)")
      ->capture_default_str();
  controller->add_flag("--json", shared.client.json, "Print raw JSON");
  add_run(*controller, action);
  add_inventory(*controller, action, shared);
  add_config(*controller, action, shared);
  add_import(*controller, action, shared);
  add_migrations(*controller, action, shared);
  add_verify(*controller, action, shared);
  add_replay_command(*controller, action, shared.client);
}

}  // namespace steward::cli
