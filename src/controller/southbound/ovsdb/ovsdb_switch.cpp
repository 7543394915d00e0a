#include "controller/southbound/ovsdb/ovsdb_switch.h"

#include "core/log.h"

#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>

namespace steward::controller {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr std::string_view kMonitorId = "steward";

const char* action(bool remove) {
  return remove ? "remove" : "install";
}

// The select reply's op errors, if any (a select fails only on a malformed request).
Status check_select(const json::value& result) {
  const json::array* results = result.if_array();
  if (results == nullptr) return ok();
  for (const json::value& entry : *results) {
    const json::object* op = entry.if_object();
    if (op != nullptr && op->contains("error"))
      return Error::make(ErrorCode::kInternal, "switch rejected the select: {}",
                         json::serialize(*op));
  }
  return ok();
}

}  // namespace

OvsdbSwitch::OvsdbSwitch(asio::io_context& io, const Switch& spec, std::string owner_name,
                         OvsdbSwitchOptions options)
    : io_(io),
      spec_(spec),
      owner_(std::move(owner_name)),
      options_(options),
      log_(log::get("ovsdb")),
      cache_(spec.bridge, owner_),
      conditional_in_use_(options.conditional_monitor) {
  ovsdb::Connection::Handlers handlers{
      .connected = [this] { on_connected(); },
      .disconnected = [this](const Error& reason) { on_disconnected(reason); },
      .notification = [this](std::string_view method,
                             json::value& params) { on_notification(method, params); },
  };
  connection_ = std::make_unique<ovsdb::Connection>(io, spec.id, spec.endpoint, spec.tls,
                                                    options.connection, std::move(handlers));
}

OvsdbSwitch::~OvsdbSwitch() {
  listener_ = nullptr;
  stop();
}

void OvsdbSwitch::start() {
  log_->info("starting switch={} endpoint={} bridge={}", spec_.id, spec_.endpoint, spec_.bridge);
  connection_->start();
}

void OvsdbSwitch::stop() {
  connection_->stop();
  monitoring_ = false;
  cache_.clear();
  fail_all(Error::make(ErrorCode::kUnavailable, "switch {} stopped", spec_.id));
  if (state_ == SwitchState::kDisconnected && last_error_ == "stopped") return;
  state_ = SwitchState::kDisconnected;
  last_error_ = "stopped";
  // The listener may call back into this object: never from inside stop().
  asio::post(io_, [this, alive = std::weak_ptr<int>(lifetime_)] {
    if (!alive.expired()) notify();
  });
}

// --- session ------------------------------------------------------------------------------

void OvsdbSwitch::on_connected() {
  session_++;
  set_state(SwitchState::kConnecting, "waiting for the monitor's initial rows");
  notify();
  send_monitor(options_.conditional_monitor);
}

void OvsdbSwitch::send_monitor(bool conditional) {
  json::array params = ovsdb::monitor_params(kMonitorId, spec_.bridge, owner_, conditional);
  connection_->call(conditional ? "monitor_cond" : "monitor", params,
                    [this, alive = std::weak_ptr<int>(lifetime_), session = session_,
                     conditional](Result<json::value> reply) {
                      if (!alive.expired())
                        on_monitor_reply(session, conditional, std::move(reply));
                    });
}

void OvsdbSwitch::on_monitor_reply(uint64_t session, bool conditional, Result<json::value> reply) {
  if (session != session_ || !connection_->connected()) return;
  if (!reply) {
    // ovsdb-server answers "unknown method" when it predates monitor_cond.
    if (conditional && reply.error().message.find("unknown method") != std::string::npos) {
      log_->info("monitor_cond unsupported, using monitor switch={}", spec_.id);
      return send_monitor(false);
    }
    return connection_->fail(reply.error().wrap("monitor request failed"));
  }
  auto format =
      conditional ? ovsdb::MonitorCache::Format::kUpdate2 : ovsdb::MonitorCache::Format::kUpdate;
  if (auto status = cache_.reset(*reply, format); !status)
    return connection_->fail(status.error().wrap("monitor reply"));
  monitoring_ = true;
  conditional_in_use_ = conditional;
  log_->info("monitoring switch={} bridge={} owned_vms={} rows={}", spec_.id, spec_.bridge,
             cache_.owned().size(), cache_.row_count());
  update_readiness();
  notify();
}

void OvsdbSwitch::on_notification(std::string_view method, json::value& params) {
  if (!monitoring_ || (method != "update2" && method != "update")) return;
  json::array* update = params.if_array();
  if (update == nullptr || update->size() != 2)
    return connection_->fail(Error{ErrorCode::kInternal,
                                   "protocol error: malformed " + std::string(method) + " params"});
  auto format = method == "update2" ? ovsdb::MonitorCache::Format::kUpdate2
                                    : ovsdb::MonitorCache::Format::kUpdate;
  auto changed = cache_.apply((*update)[1], format);
  if (!changed) return connection_->fail(changed.error().wrap("protocol error"));
  bool state_changed = update_readiness();
  if (*changed || state_changed) notify();
}

void OvsdbSwitch::on_disconnected(const Error& reason) {
  monitoring_ = false;
  cache_.clear();
  fail_all(Error::make(ErrorCode::kUnavailable, "switch {} connection lost: {}", spec_.id,
                       reason.message));
  if (set_state(SwitchState::kDisconnected, reason.message)) notify();
}

bool OvsdbSwitch::update_readiness() {
  if (cache_.bridge_found()) return set_state(SwitchState::kReady, "");
  std::string missing = fmt::format("bridge {} not found on switch {}", spec_.bridge, spec_.id);
  if (missing != last_error_)
    log_->warn("bridge missing switch={} bridge={}; waiting for it", spec_.id, spec_.bridge);
  return set_state(SwitchState::kConnecting, std::move(missing));
}

bool OvsdbSwitch::set_state(SwitchState state, std::string error) {
  if (state == state_ && error == last_error_) return false;
  if (state != state_) {
    if (state == SwitchState::kReady)
      log_->info("ready switch={} owned_vms={}", spec_.id, cache_.owned().size());
    else if (state == SwitchState::kDisconnected)
      log_->info("disconnected switch={} reason=\"{}\"", spec_.id, error);
    else
      log_->debug("state switch={} state={} reason=\"{}\"", spec_.id, to_string(state), error);
  }
  state_ = state;
  last_error_ = std::move(error);
  return true;
}

void OvsdbSwitch::notify() {
  if (listener_) listener_();
}

Error OvsdbSwitch::not_ready() const {
  return Error::make(ErrorCode::kUnavailable, "switch {} not connected: {}", spec_.id,
                     last_error_.empty() ? to_string(state_) : last_error_);
}

// --- operations ---------------------------------------------------------------------------

const OwnedRows* OvsdbSwitch::owned() const {
  return state_ == SwitchState::kReady ? &cache_.owned() : nullptr;
}

void OvsdbSwitch::install(const Vm& vm, StatusCallback done) {
  if (state_ != SwitchState::kReady) return complete(std::move(done), not_ready());
  Operation operation;
  operation.sequence = next_sequence_++;
  operation.vm = vm;
  operation.done = std::move(done);
  enqueue(std::move(operation));
}

void OvsdbSwitch::remove(const std::string& vm_id, StatusCallback done) {
  if (state_ != SwitchState::kReady) return complete(std::move(done), not_ready());
  Operation operation;
  operation.sequence = next_sequence_++;
  operation.remove = true;
  operation.vm.id = vm_id;
  operation.done = std::move(done);
  enqueue(std::move(operation));
}

void OvsdbSwitch::enqueue(Operation operation) {
  std::string vm_id = operation.vm.id;
  std::deque<Operation>& queue = queues_[vm_id];
  queue.push_back(std::move(operation));
  if (queue.size() == 1) run_next(vm_id);
}

Result<ovsdb::PlannedTransaction> OvsdbSwitch::plan(const Operation& operation) const {
  if (operation.remove)
    return ovsdb::plan_remove(operation.vm.id, cache_.bridge_uuid(), cache_.owned());
  return ovsdb::plan_install(operation.vm, owner_, cache_.bridge_uuid(), cache_.owned(),
                             &cache_.vm_by_device());
}

void OvsdbSwitch::run_next(const std::string& vm_id) {
  for (;;) {
    auto queue = queues_.find(vm_id);
    if (queue == queues_.end()) return;
    if (queue->second.empty()) {
      queues_.erase(queue);
      return;
    }
    Operation& operation = queue->second.front();
    if (state_ != SwitchState::kReady) {
      finish_front(vm_id, not_ready());
      continue;
    }
    auto planned = plan(operation);
    if (!planned) {
      finish_front(vm_id, planned.error().wrap(fmt::format("switch {}: {} vm {}", spec_.id,
                                                           action(operation.remove), vm_id)));
      continue;
    }
    if (planned->empty()) {
      clean_orphans(vm_id);
      finish_front(vm_id, ok());
      continue;
    }
    operation.plan = std::move(*planned);
    log_->debug("transact switch={} vm={} action={} inserted={} updated={} removed={} attempt={}",
                spec_.id, vm_id, action(operation.remove), operation.plan.inserted,
                operation.plan.updated, operation.plan.removed, operation.attempts + 1);
    connection_->call("transact", operation.plan.params,
                      [this, alive = std::weak_ptr<int>(lifetime_), vm_id,
                       sequence = operation.sequence](Result<json::value> reply) {
                        if (!alive.expired()) on_transact_reply(vm_id, sequence, std::move(reply));
                      });
    return;
  }
}

void OvsdbSwitch::on_transact_reply(const std::string& vm_id, uint64_t sequence,
                                    Result<json::value> reply) {
  auto queue = queues_.find(vm_id);
  if (queue == queues_.end() || queue->second.empty() || queue->second.front().sequence != sequence)
    return;
  Operation& operation = queue->second.front();
  auto context = [&] {
    return fmt::format("switch {}: {} vm {}", spec_.id, action(operation.remove), vm_id);
  };
  if (!reply) {
    Error error = reply.error().code == ErrorCode::kUnavailable ? reply.error()
                                                                : reply.error().wrap(context());
    finish_front(vm_id, error);
    return run_next(vm_id);
  }
  auto outcome = ovsdb::check_transact_reply(operation.plan, *reply);
  if (!outcome) {
    log_->warn("transaction refused switch={} vm={} action={} code={} reason=\"{}\"", spec_.id,
               vm_id, action(operation.remove), steward::to_string(outcome.error().code),
               outcome.error().message);
    finish_front(vm_id, outcome.error().wrap(context()));
    return run_next(vm_id);
  }
  if (*outcome == ovsdb::Outcome::kStale) {
    if (operation.attempts++ == 0) {
      // The updates that made the cache current arrived before this reply: plan again.
      log_->info("rows changed under transaction, planning again switch={} vm={}", spec_.id, vm_id);
      return run_next(vm_id);
    }
    finish_front(
        vm_id, Error::make(ErrorCode::kUnavailable,
                           "{}: the rows kept changing during the transaction; retry", context()));
    return run_next(vm_id);
  }
  clean_orphans(vm_id);
  finish_front(vm_id, ok());
  run_next(vm_id);
}

void OvsdbSwitch::clean_orphans(const std::string& vm_id) {
  ovsdb::PlannedTransaction cleanup = ovsdb::plan_orphan_cleanup(vm_id, cache_.owned());
  if (cleanup.empty()) return;
  log_->info("deleting owned QoS rows left without their port switch={} vm={} rows={}", spec_.id,
             vm_id, cleanup.counted_ops.size());
  auto params = cleanup.params;
  connection_->call("transact", std::move(params),
                    [this, alive = std::weak_ptr<int>(lifetime_), vm_id,
                     cleanup = std::move(cleanup)](Result<json::value> reply) {
                      if (alive.expired()) return;
                      auto outcome = reply ? ovsdb::check_transact_reply(cleanup, *reply)
                                           : Result<ovsdb::Outcome>(reply.error());
                      if (!outcome) {
                        log_->warn(
                            "owned QoS rows of vm {} left in place on switch {} (a port Steward "
                            "does not own may still use them): {}",
                            vm_id, spec_.id, outcome.error().message);
                      }
                    });
}

void OvsdbSwitch::finish_front(const std::string& vm_id, Status status) {
  auto queue = queues_.find(vm_id);
  if (queue == queues_.end() || queue->second.empty()) return;
  StatusCallback done = std::move(queue->second.front().done);
  queue->second.pop_front();
  complete(std::move(done), std::move(status));
}

void OvsdbSwitch::fail_all(const Error& error) {
  auto queues = std::move(queues_);
  queues_.clear();
  for (auto& [vm_id, operations] : queues) {
    for (Operation& operation : operations)
      complete(std::move(operation.done), error);
  }
}

void OvsdbSwitch::complete(StatusCallback done, Status status) {
  asio::post(io_, [done = std::move(done), status = std::move(status)] { done(status); });
}

void OvsdbSwitch::read_owned(OwnedRowsCallback done) {
  if (!connection_->connected()) {
    asio::post(io_, [done = std::move(done), error = not_ready()] { done(error); });
    return;
  }
  json::array params = ovsdb::select_owned_params(spec_.bridge, owner_);
  connection_->call(
      "transact", params,
      [done = std::move(done), bridge = spec_.bridge, owner = owner_,
       id = spec_.id](Result<json::value> reply) {
        if (!reply) return done(reply.error());
        ovsdb::MonitorCache rows(bridge, owner);
        Status status = check_select(*reply);
        if (status) status = rows.load_select(*reply);
        if (!status)
          return done(status.error().wrap(fmt::format("switch {}: read owned rows", id)));
        if (!rows.bridge_found())
          return done(
              Error::make(ErrorCode::kNotFound, "bridge {} not found on switch {}", bridge, id));
        done(rows.owned());
      });
}

}  // namespace steward::controller
