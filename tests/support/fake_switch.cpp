#include "support/fake_switch.h"

#include <boost/asio/post.hpp>

namespace steward::controller::testing {

void FakeSwitch::complete(std::function<void()> apply, StatusCallback done) {
  auto finish = [this, apply = std::move(apply), done = std::move(done)]() mutable {
    if (down_) return done(Error{ErrorCode::kUnavailable, "fake switch down"});
    if (fail_calls_ > 0) {
      fail_calls_--;
      return done(fail_error_);
    }
    apply();
    if (listener_) listener_();
    done(ok());
  };
  if (stalled_) {
    held_.push_back(std::move(finish));
    return;
  }
  boost::asio::post(*io_, std::move(finish));
}

void FakeSwitch::install(const Vm& vm, StatusCallback done) {
  complete(
      [this, vm] {
        installs_++;
        auto& observed = rows_[vm.id];
        observed.clear();
        for (const Interface& interface : vm.interfaces) {
          observed.push_back(ObservedInterface{"port-" + interface.device,
                                               "iface-" + interface.device, "", vm.id, interface});
        }
      },
      std::move(done));
}

void FakeSwitch::remove(const std::string& vm_id, StatusCallback done) {
  complete(
      [this, vm_id] {
        removes_++;
        rows_.erase(vm_id);
      },
      std::move(done));
}

void FakeSwitch::read_owned(OwnedRowsCallback done) {
  boost::asio::post(*io_, [this, done = std::move(done)] {
    if (down_) return done(Error{ErrorCode::kUnavailable, "fake switch down"});
    done(rows_);
  });
}

void FakeSwitch::set_down(bool down) {
  down_ = down;
  if (listener_) boost::asio::post(*io_, listener_);
}

void FakeSwitch::stall(bool stalled) {
  stalled_ = stalled;
  if (stalled) return;
  while (!held_.empty()) {
    boost::asio::post(*io_, std::move(held_.front()));
    held_.pop_front();
  }
}

void FakeSwitch::fail_next(int calls, Error error) {
  fail_calls_ = calls;
  fail_error_ = std::move(error);
}

}  // namespace steward::controller::testing
