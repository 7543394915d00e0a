// The controller's HTTP JSON API (v1), on the daemon's HTTP server:
//
//   GET  /healthz                       liveness and switch states (no token needed)
//   GET  /metrics                       Prometheus text
//   GET|POST /v1/switches               list | create-or-replace {id, endpoint, bridge, tls?}
//   GET|PUT|DELETE /v1/switches/{id}
//   GET|POST /v1/hosts, GET|PUT|DELETE /v1/hosts/{id}        {id, switch}
//   GET|POST /v1/vms,   GET|PUT|DELETE /v1/vms/{id}          {id, name, host, interfaces[]}
//   GET|PUT|DELETE /v1/vms/{id}/interfaces/{interface}      one interface's configuration
//   POST /v1/vms/{id}/placement         {host}: the VM manager says where the VM runs now
//   POST /v1/migrations                 {vm, source_host, target_host, phase?}
//   GET  /v1/migrations?vm=&limit=, GET /v1/migrations/{id}
//   POST /v1/notifications/nova         one Nova versioned notification (or its envelope)
//   GET  /v1/verify                     reads every switch, reports misplaced configuration
//   POST /v1/reconcile                  runs a reconciler pass now
//
// Every write accepts `?wait=<ms>` where it starts switch work: the answer then comes when the
// migration settled or the time is up. Errors are {"error": {"code", "message"}} with 400
// (malformed), 401 (token), 404 (unknown object), 409 (conflict), 503 (switch unreachable).
#pragma once

#include "controller/engine/engine.h"
#include "controller/inventory/directory.h"
#include "controller/northbound/nova.h"
#include "controller/reconcile/reconciler.h"
#include "controller/southbound/switch_pool.h"
#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"

#include <boost/json/value.hpp>

#include <chrono>
#include <memory>

namespace steward::controller {

boost::json::value to_json(const Migration& migration);

struct ApiContext {
  Directory& directory;
  SwitchPool& switches;
  Engine& engine;
  Reconciler& reconciler;
  NovaCorrelator& nova;
  metrics::Registry& metrics;
};

// The route handlers. Owned by the daemon; must outlive the server it registered on.
class Api {
 public:
  explicit Api(ApiContext context);
  // Registers every route above on `server`.
  void register_routes(http::Server& server);

 private:
  template <typename Parse, typename Put>
  void put_object(http::Request& request, http::Reply& reply, Parse parse, Put put,
                  const char* kind);
  void health(http::Request&, http::Reply reply);
  void put_vm_interface(http::Request& request, http::Reply reply);
  void delete_vm_interface(http::Request& request, http::Reply reply);
  void migrate(http::Request& request, http::Reply reply);
  void nova(http::Request& request, http::Reply reply);
  void answer_decision(const Result<Decision>& decision, std::chrono::milliseconds wait,
                       http::Reply reply);

  ApiContext c_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace steward::controller
