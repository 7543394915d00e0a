#include "controller/northbound/api.h"

#include "controller/model/json.h"
#include "controller/reconcile/verify.h"
#include "core/clock.h"
#include "core/log.h"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>

namespace steward::controller {
namespace json = boost::json;
using http::Reply;
using http::Request;
using http::Response;

namespace {

constexpr std::chrono::milliseconds kMaxWait{60'000};

Response json_response(int status, const json::value& body) {
  return Response{status, json::serialize(body) + "\n"};
}

Response error_of(const Error& error) {
  return http::error_response(error);
}

Response bad_request(std::string message) {
  return error_of(Error{ErrorCode::kInvalidArgument, std::move(message)});
}

// `?wait=<ms>`: 0 when absent.
Result<std::chrono::milliseconds> wait_of(const Request& request) {
  auto found = request.query.find("wait");
  if (found == request.query.end()) return std::chrono::milliseconds(0);
  int64_t ms = 0;
  const std::string& text = found->second;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (ec != std::errc() || end != text.data() + text.size() || ms < 0) {
    return Error{ErrorCode::kInvalidArgument, "wait must be a number of milliseconds"};
  }
  return std::min(std::chrono::milliseconds(ms), kMaxWait);
}

json::value us_since(int64_t from_us, int64_t to_us) {
  if (from_us == 0 || to_us == 0) return nullptr;
  return static_cast<double>(to_us - from_us) / 1000.0;
}

json::value time_or_null(int64_t us) {
  if (us == 0) return nullptr;
  return json::value(format_wall_us(us));
}

// Nova timestamps ("2026-12-04 15:04:05.123456" or ISO with 'T'), as wall microseconds.
int64_t parse_nova_timestamp(const std::string& text) {
  std::tm parts{};
  int micro = 0;
  char separator = 0;
  int fields =
      std::sscanf(text.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d.%6d", &parts.tm_year, &parts.tm_mon,
                  &parts.tm_mday, &separator, &parts.tm_hour, &parts.tm_min, &parts.tm_sec, &micro);
  if (fields < 7) return 0;
  parts.tm_year -= 1900;
  parts.tm_mon -= 1;
  time_t seconds = timegm(&parts);
  if (seconds < 0) return 0;
  return static_cast<int64_t>(seconds) * 1'000'000 + (fields == 8 ? micro : 0);
}

json::value decision_json(const Decision& decision) {
  json::value out = to_json(decision.migration);
  out.as_object()["outcome"] = to_string(decision.outcome);
  out.as_object()["detail"] = decision.detail;
  return out;
}

// Parses the body as JSON, with the path's id filled in when the body has none and refused
// when the two disagree.
Result<json::value> body_with_id(const Request& request, const char* key = "id") {
  auto parsed = parse_json(request.body);
  if (!parsed) return parsed.error();
  if (!request.params.empty()) {
    if (!parsed->is_object()) return Error{ErrorCode::kInvalidArgument, "body must be an object"};
    auto& object = parsed->as_object();
    const std::string& path_id = request.params.back();
    if (auto* given = object.if_contains(key)) {
      if (!given->is_string() || given->get_string() != path_id) {
        return Error::make(ErrorCode::kInvalidArgument, "body {} does not match the path ({})", key,
                           path_id);
      }
    } else {
      object[key] = path_id;
    }
  }
  return parsed;
}

template <typename Map>
json::array list_of(const Map& map) {
  json::array out;
  for (const auto& [id, value] : map)
    out.push_back(to_json(value));
  return out;
}

}  // namespace

Api::Api(ApiContext context) : c_(context), log_(log::get("api")) {}

template <typename Parse, typename Put>
void Api::put_object(Request& request, Reply& reply, Parse parse, Put put, const char* kind) {
  auto body = body_with_id(request);
  if (!body) return reply(error_of(body.error()));
  auto value = parse(*body);
  if (!value) return reply(error_of(value.error()));
  if (auto status = put(*value); !status) return reply(error_of(status.error()));
  log_->info("put {} id={}", kind, value->id);
  reply(json_response(request.method == "POST" ? 201 : 200, to_json(*value)));
}

void Api::health(Request&, Reply reply) {
  json::object switches;
  for (const auto& [id, client] : c_.switches.clients()) {
    json::object entry{{"state", to_string(client->state())}};
    if (!client->last_error().empty()) entry["error"] = client->last_error();
    switches[id] = std::move(entry);
  }
  reply(json_response(200, json::object{{"status", "ok"},
                                        {"migrations_in_flight", c_.engine.active_count()},
                                        {"switches", std::move(switches)}}));
}

void Api::answer_decision(const Result<Decision>& decision, std::chrono::milliseconds wait,
                          Reply reply) {
  if (!decision) return reply(error_of(decision.error()));
  bool working = decision->outcome == Decision::Outcome::kStarted ||
                 decision->outcome == Decision::Outcome::kAdvanced;
  if (!working) return reply(json_response(200, decision_json(*decision)));
  // Answered once the journal holds the decision: a message acknowledged is never lost.
  c_.engine.when_journaled(decision->migration.vm, [this, decision = *decision, wait,
                                                    reply](Status journaled) {
    if (!journaled) {
      return reply(error_of(journaled.error().wrap("cannot journal the migration")));
    }
    if (wait.count() == 0) return reply(json_response(202, decision_json(decision)));
    c_.engine.when_settled(
        decision.migration.id, wait,
        [reply, outcome = decision.outcome, detail = decision.detail](Result<Migration> record) {
          if (!record) return reply(error_of(record.error()));
          reply(json_response(200, decision_json(Decision{outcome, *record, detail})));
        });
  });
}

void Api::migrate(Request& request, Reply reply) {
  auto wait = wait_of(request);
  if (!wait) return reply(error_of(wait.error()));
  auto body = parse_json(request.body);
  if (!body) return reply(error_of(body.error()));
  auto migration = migration_request_from_json(*body);
  if (!migration) return reply(error_of(migration.error()));
  answer_decision(c_.engine.submit(*migration), *wait, std::move(reply));
}

void Api::nova(Request& request, Reply reply) {
  auto wait = wait_of(request);
  if (!wait) return reply(error_of(wait.error()));
  auto event = parse_nova_notification(request.body);
  if (!event) return reply(error_of(event.error()));
  std::string ignored;
  auto migration = c_.nova.on_event(*event, &ignored);
  if (!migration) {
    log_->warn("nova event={} instance={} result=unusable error=\"{}\"", event->event_type,
               event->instance, migration.error().message);
    return reply(error_of(migration.error()));
  }
  if (!*migration) {
    log_->debug("nova event={} instance={} result=ignored reason=\"{}\"", event->event_type,
                event->instance, ignored);
    return reply(json_response(
        200, json::object{
                 {"outcome", "ignored"}, {"event_type", event->event_type}, {"detail", ignored}}));
  }
  (*migration)->issued_us = parse_nova_timestamp(event->timestamp);
  auto decision = c_.engine.submit(**migration);
  if (!decision) {
    log_->warn("nova event={} instance={} result=rejected error=\"{}\"", event->event_type,
               event->instance, decision.error().message);
  }
  answer_decision(decision, *wait, std::move(reply));
}

void Api::put_vm_interface(Request& request, Reply reply) {
  const Vm* vm = c_.directory.find_vm(request.params[0]);
  if (!vm)
    return reply(error_of(Error::make(ErrorCode::kNotFound, "unknown vm '{}'", request.params[0])));
  auto body = body_with_id(request);
  if (!body) return reply(error_of(body.error()));
  auto interface = interface_from_json(*body);
  if (!interface) return reply(error_of(interface.error()));
  Vm updated = *vm;
  auto same = [&](const Interface& i) { return i.id == interface->id; };
  auto found = std::find_if(updated.interfaces.begin(), updated.interfaces.end(), same);
  if (found != updated.interfaces.end()) {
    *found = *interface;
  } else {
    updated.interfaces.push_back(*interface);
  }
  if (auto status = c_.directory.put_vm(updated); !status) return reply(error_of(status.error()));
  c_.reconciler.reconcile_vm(updated.id);
  reply(json_response(200, to_json(*interface)));
}

void Api::delete_vm_interface(Request& request, Reply reply) {
  const Vm* vm = c_.directory.find_vm(request.params[0]);
  if (!vm)
    return reply(error_of(Error::make(ErrorCode::kNotFound, "unknown vm '{}'", request.params[0])));
  Vm updated = *vm;
  auto removed = std::erase_if(updated.interfaces,
                               [&](const Interface& i) { return i.id == request.params[1]; });
  if (removed == 0) {
    return reply(error_of(Error::make(ErrorCode::kNotFound, "vm {} has no interface '{}'", vm->id,
                                      request.params[1])));
  }
  if (auto status = c_.directory.put_vm(updated); !status) return reply(error_of(status.error()));
  c_.reconciler.reconcile_vm(updated.id);
  reply(Response{204, ""});
}

void Api::register_routes(http::Server& server) {
  auto& d = c_.directory;
  auto route = [&](const char* method, const char* path, auto member) {
    server.route(method, path, [this, member](Request& request, Reply reply) {
      (this->*member)(request, std::move(reply));
    });
  };
  route("GET", "/healthz", &Api::health);
  server.route("GET", "/metrics", [this](Request&, Reply reply) {
    reply(Response{200, c_.metrics.render(), "text/plain; version=0.0.4"});
  });

  // Switches.
  auto put_switch = [this, &d](Request& request, Reply reply) {
    put_object(
        request, reply, switch_from_json, [&](const Switch& value) { return d.put_switch(value); },
        "switch");
  };
  server.route("GET", "/v1/switches",
               [&d](Request&, Reply reply) { reply(json_response(200, list_of(d.switches()))); });
  server.route("POST", "/v1/switches", put_switch);
  server.route("PUT", "/v1/switches/{id}", put_switch);
  server.route("GET", "/v1/switches/{id}", [&d](Request& request, Reply reply) {
    const Switch* value = d.find_switch(request.params[0]);
    if (!value)
      return reply(
          error_of(Error::make(ErrorCode::kNotFound, "unknown switch '{}'", request.params[0])));
    reply(json_response(200, to_json(*value)));
  });
  server.route("DELETE", "/v1/switches/{id}", [&d](Request& request, Reply reply) {
    auto status = d.delete_switch(request.params[0]);
    reply(status ? Response{204, ""} : error_of(status.error()));
  });

  // Hosts.
  auto put_host = [this, &d](Request& request, Reply reply) {
    auto body = body_with_id(request);
    if (!body) return reply(error_of(body.error()));
    auto value = host_from_json(*body);
    if (!value) return reply(error_of(value.error()));
    if (auto status = d.put_host(*value); !status) return reply(error_of(status.error()));
    log_->info("put host id={} switch={}", value->id, value->switch_id);
    reply(json_response(request.method == "POST" ? 201 : 200, to_json(*value)));
  };
  server.route("GET", "/v1/hosts",
               [&d](Request&, Reply reply) { reply(json_response(200, list_of(d.hosts()))); });
  server.route("POST", "/v1/hosts", put_host);
  server.route("PUT", "/v1/hosts/{id}", put_host);
  server.route("GET", "/v1/hosts/{id}", [&d](Request& request, Reply reply) {
    const Host* value = d.find_host(request.params[0]);
    if (!value)
      return reply(
          error_of(Error::make(ErrorCode::kNotFound, "unknown host '{}'", request.params[0])));
    reply(json_response(200, to_json(*value)));
  });
  server.route("DELETE", "/v1/hosts/{id}", [&d](Request& request, Reply reply) {
    auto status = d.delete_host(request.params[0]);
    reply(status ? Response{204, ""} : error_of(status.error()));
  });

  // VMs. A VM moves between hosts only through a migration or a placement.
  auto put_vm = [this, &d](Request& request, Reply reply) {
    put_object(
        request, reply, vm_from_json,
        [&](const Vm& value) -> Status {
          const Vm* existing = d.find_vm(value.id);
          if (existing && existing->host != value.host) {
            return Error::make(ErrorCode::kConflict,
                               "vm {} runs on {}: move it with POST /v1/migrations or "
                               "/v1/vms/{}/placement, not by changing its host",
                               value.id, existing->host, value.id);
          }
          auto status = d.put_vm(value);
          if (status) c_.reconciler.reconcile_vm(value.id);
          return status;
        },
        "vm");
  };
  server.route("GET", "/v1/vms",
               [&d](Request&, Reply reply) { reply(json_response(200, list_of(d.vms()))); });
  server.route("POST", "/v1/vms", put_vm);
  server.route("PUT", "/v1/vms/{id}", put_vm);
  server.route("GET", "/v1/vms/{id}", [&d](Request& request, Reply reply) {
    const Vm* value = d.find_vm(request.params[0]);
    if (!value)
      return reply(
          error_of(Error::make(ErrorCode::kNotFound, "unknown vm '{}'", request.params[0])));
    reply(json_response(200, to_json(*value)));
  });
  server.route("DELETE", "/v1/vms/{id}", [this, &d](Request& request, Reply reply) {
    if (const Migration* active = c_.engine.active(request.params[0])) {
      return reply(error_of(Error::make(ErrorCode::kConflict,
                                        "vm {} has migration {} in flight: wait for it to finish",
                                        request.params[0], active->id)));
    }
    auto status = d.delete_vm(request.params[0]);
    if (status) c_.reconciler.reconcile_vm(request.params[0]);
    reply(status ? Response{204, ""} : error_of(status.error()));
  });
  server.route("GET", "/v1/vms/{id}/interfaces/{interface}", [&d](Request& request, Reply reply) {
    const Vm* vm = d.find_vm(request.params[0]);
    if (!vm)
      return reply(
          error_of(Error::make(ErrorCode::kNotFound, "unknown vm '{}'", request.params[0])));
    for (const auto& interface : vm->interfaces) {
      if (interface.id == request.params[1]) return reply(json_response(200, to_json(interface)));
    }
    reply(error_of(Error::make(ErrorCode::kNotFound, "vm {} has no interface '{}'", vm->id,
                               request.params[1])));
  });
  route("PUT", "/v1/vms/{id}/interfaces/{interface}", &Api::put_vm_interface);
  route("DELETE", "/v1/vms/{id}/interfaces/{interface}", &Api::delete_vm_interface);
  server.route("POST", "/v1/vms/{id}/placement", [this](Request& request, Reply reply) {
    auto wait = wait_of(request);
    if (!wait) return reply(error_of(wait.error()));
    auto body = parse_json(request.body);
    if (!body) return reply(error_of(body.error()));
    auto* host = body->is_object() ? body->as_object().if_contains("host") : nullptr;
    if (!host || !host->is_string())
      return reply(bad_request("placement needs {\"host\": \"...\"}"));
    answer_decision(c_.engine.place(request.params[0], std::string(host->get_string())), *wait,
                    std::move(reply));
  });

  // Migrations and notifications.
  route("POST", "/v1/migrations", &Api::migrate);
  route("POST", "/v1/notifications/nova", &Api::nova);
  server.route("GET", "/v1/migrations/{id}", [this](Request& request, Reply reply) {
    int64_t id = 0;
    const std::string& text = request.params[0];
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return reply(bad_request("migration id must be a number"));
    }
    auto found = c_.engine.find(id);
    if (!found) return reply(error_of(found.error()));
    if (!*found) return reply(error_of(Error::make(ErrorCode::kNotFound, "no migration {}", id)));
    reply(json_response(200, to_json(**found)));
  });
  server.route("GET", "/v1/migrations", [this](Request& request, Reply reply) {
    int limit = 100;
    if (auto found = request.query.find("limit"); found != request.query.end()) {
      limit = std::clamp(std::atoi(found->second.c_str()), 1, 10'000);
    }
    std::string vm = request.query.count("vm") ? request.query.at("vm") : "";
    auto listed = c_.engine.list(vm, limit);
    if (!listed) return reply(error_of(listed.error()));
    json::array out;
    for (const auto& migration : *listed)
      out.push_back(to_json(migration));
    reply(json_response(200, out));
  });

  // Verification and repair.
  server.route("GET", "/v1/verify", [this](Request&, Reply reply) {
    verify(c_.directory, c_.switches, &c_.engine,
           [reply](VerifyReport report) { reply(json_response(200, to_json(report))); });
  });
  server.route("POST", "/v1/reconcile", [this](Request&, Reply reply) {
    size_t started = c_.reconciler.pass();
    reply(json_response(200, json::object{{"repairs_started", started}}));
  });
}

json::value to_json(const Migration& m) {
  json::object out{
      {"id", m.id},
      {"vm", m.vm},
      {"source_host", m.source_host},
      {"target_host", m.target_host},
      {"source_switch", m.source_switch},
      {"target_switch", m.target_switch},
      {"phase", to_string(m.wanted)},
      {"state", to_string(m.state)},
      {"origin", m.origin},
      {"created_at", time_or_null(m.created_us)},
      {"finished_at", time_or_null(m.finished_us)},
      {"target_ready_ms", us_since(m.created_us, m.target_ready_us)},
      {"source_cleaned_ms", us_since(m.complete_requested_us, m.source_cleaned_us)},
      {"attempts", m.attempts},
  };
  if (!m.last_error.empty()) out["waiting_for"] = m.last_error;
  return out;
}

}  // namespace steward::controller
