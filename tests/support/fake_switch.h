// A switch in memory for unit tests of the engine and the reconciler, with fault injection:
// it can be down (every call fails kUnavailable), stall (hold completions until released) and
// fail the next calls with a chosen error. Runs its completions on the given io_context.
#pragma once

#include "controller/southbound/switch.h"

#include <boost/asio/io_context.hpp>

#include <deque>
#include <functional>
#include <optional>

namespace steward::controller::testing {

class FakeSwitch final : public SwitchClient {
 public:
  FakeSwitch(boost::asio::io_context& io, Switch spec) : io_(&io), spec_(std::move(spec)) {}

  const Switch& spec() const override { return spec_; }
  SwitchState state() const override {
    return down_ ? SwitchState::kDisconnected : SwitchState::kReady;
  }
  std::string last_error() const override { return down_ ? "fake switch down" : ""; }
  void start() override { started_ = true; }
  void stop() override { started_ = false; }
  void install(const Vm& vm, StatusCallback done) override;
  void remove(const std::string& vm_id, StatusCallback done) override;
  const OwnedRows* owned() const override { return down_ ? nullptr : &rows_; }
  void read_owned(OwnedRowsCallback done) override;
  void set_listener(std::function<void()> on_change) override { listener_ = std::move(on_change); }

  // Fault injection.
  void set_down(bool down);
  void stall(bool stalled);  // when turning off, releases every held completion
  void fail_next(int calls, Error error);
  size_t held() const { return held_.size(); }
  // Forgets held completions and moves to another io_context: what a controller crash does to
  // the operations it had in flight (the switch keeps its rows).
  void crash_controller(boost::asio::io_context& io) {
    held_.clear();
    listener_ = nullptr;
    io_ = &io;
  }

  // Inspection.
  bool has(const std::string& vm_id) const { return rows_.count(vm_id) != 0; }
  int installs() const { return installs_; }
  int removes() const { return removes_; }
  OwnedRows& rows() { return rows_; }

 private:
  void complete(std::function<void()> apply, StatusCallback done);

  boost::asio::io_context* io_;
  Switch spec_;
  OwnedRows rows_;
  bool down_ = false;
  bool stalled_ = false;
  bool started_ = false;
  int fail_calls_ = 0;
  Error fail_error_;
  int installs_ = 0;
  int removes_ = 0;
  std::deque<std::function<void()>> held_;
  std::function<void()> listener_;
};

}  // namespace steward::controller::testing
