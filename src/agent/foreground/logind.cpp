#include "agent/foreground/logind.h"

#include "core/log.h"

#include <systemd/sd-bus.h>

#include <cstring>

namespace steward::agent {
namespace {

constexpr const char* kService = "org.freedesktop.login1";
constexpr uint64_t kWaitUs = 200'000;  // how often the serving thread looks at `stopping_`

std::string seat_path(const std::string& seat) {
  return "/org/freedesktop/login1/seat/" + seat;
}

Error bus_error(std::string_view what, int rc, const sd_bus_error* error = nullptr) {
  std::string why = error && error->message ? error->message : std::strerror(-rc);
  return Error::make(ErrorCode::kUnavailable, "logind: {}: {}", what, why);
}

}  // namespace

// The connection and the signal match, released together.
struct LogindSource::Bus {
  sd_bus* bus = nullptr;
  sd_bus_slot* match = nullptr;
  ~Bus() {
    sd_bus_slot_unref(match);
    sd_bus_flush_close_unref(bus);
  }
};

LogindSource::LogindSource(LogindOptions options, OnChange on_change)
    : options_(std::move(options)), on_change_(std::move(on_change)) {}

LogindSource::~LogindSource() {
  stop();
}

Status LogindSource::connect() {
  auto bus = std::make_unique<Bus>();
  int rc = 0;
  if (options_.bus_address.empty()) {
    rc = sd_bus_open_system(&bus->bus);
  } else {
    rc = sd_bus_new(&bus->bus);
    if (rc >= 0) rc = sd_bus_set_address(bus->bus, options_.bus_address.c_str());
    if (rc >= 0) rc = sd_bus_set_bus_client(bus->bus, 1);
    if (rc >= 0) rc = sd_bus_start(bus->bus);
  }
  if (rc < 0) return bus_error("cannot connect to the bus", rc);

  // Any property change of the seat marks the foreground for a re-read.
  auto changed = [](sd_bus_message*, void* self, sd_bus_error*) -> int {
    static_cast<LogindSource*>(self)->dirty_ = true;
    return 0;
  };
  rc = sd_bus_match_signal(bus->bus, &bus->match, kService, seat_path(options_.seat).c_str(),
                           "org.freedesktop.DBus.Properties", "PropertiesChanged", changed, this);
  if (rc < 0) return bus_error("cannot watch the seat", rc);
  bus_ = std::move(bus);
  return ok();
}

Result<std::optional<std::string>> LogindSource::read_foreground() {
  sd_bus_error error{};  // what SD_BUS_ERROR_NULL spells, without a C99 compound literal
  sd_bus_message* reply = nullptr;
  int rc =
      sd_bus_get_property(bus_->bus, kService, seat_path(options_.seat).c_str(),
                          "org.freedesktop.login1.Seat", "ActiveSession", &error, &reply, "(so)");
  if (rc < 0) {
    Error failed = bus_error("cannot read ActiveSession", rc, &error);
    sd_bus_error_free(&error);
    return failed;
  }
  const char* session = nullptr;
  const char* path = nullptr;
  rc = sd_bus_message_read(reply, "(so)", &session, &path);
  std::string session_id = rc >= 0 && session ? session : "";
  std::string session_path = rc >= 0 && path ? path : "";
  sd_bus_message_unref(reply);
  if (rc < 0) return bus_error("ActiveSession has an unexpected type", rc);
  if (session_id.empty()) return std::optional<std::string>();

  if (auto by_id = options_.sessions.find(session_id); by_id != options_.sessions.end()) {
    return std::optional<std::string>(by_id->second);
  }
  char* name = nullptr;
  rc = sd_bus_get_property_string(bus_->bus, kService, session_path.c_str(),
                                  "org.freedesktop.login1.Session", "Name", &error, &name);
  sd_bus_error_free(&error);
  std::string user = rc >= 0 && name ? name : "";
  free(name);
  if (auto by_user = options_.sessions.find(user);
      !user.empty() && by_user != options_.sessions.end()) {
    return std::optional<std::string>(by_user->second);
  }
  return std::optional<std::string>();
}

void LogindSource::publish(std::optional<std::string> system) {
  if (last_ && *last_ == system) return;
  last_ = system;
  log::get("agent")->info("logind: foreground system={}", system.value_or("-"));
  if (on_change_) on_change_(std::move(system));
}

Status LogindSource::start() {
  if (auto status = connect(); !status) return status;
  auto current = read_foreground();
  if (!current) return current.error();
  publish(*current);
  stopping_ = false;
  thread_ = std::thread([this] { serve(); });
  return ok();
}

void LogindSource::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

// Serves the bus until stop(): processes messages, re-reads after a change, and reconnects
// (reading the current value again) when the bus goes away.
void LogindSource::serve() {
  auto log = log::get("agent");
  while (!stopping_) {
    if (!bus_) {
      if (connect()) {
        dirty_ = true;
      } else {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
    }
    int rc = sd_bus_process(bus_->bus, nullptr);
    if (rc < 0) {
      log->warn("logind: bus connection lost ({}); reconnecting", std::strerror(-rc));
      bus_.reset();
      continue;
    }
    if (rc > 0) continue;  // more to process
    if (dirty_.exchange(false)) {
      if (auto current = read_foreground()) publish(*current);
    }
    sd_bus_wait(bus_->bus, kWaitUs);
  }
}

}  // namespace steward::agent
