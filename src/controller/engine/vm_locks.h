// Per-VM mutual exclusion between the migration engine and the reconciler, so that a repair
// and a migration step never send interleaved transactions for the same VM. Single-threaded
// (the event loop); "waiting" means a continuation queued until the holder releases.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <string>

namespace steward::controller {

class VmLocks {
 public:
  // Takes the lock if free. Returns false (and takes nothing) when it is held.
  bool try_lock(const std::string& vm) { return held_.try_emplace(vm).second; }

  // Runs `then` with the lock held: now if it is free, else once the holder releases it.
  void lock(const std::string& vm, std::function<void()> then) {
    auto [it, inserted] = held_.try_emplace(vm);
    if (inserted) return then();
    it->second.push_back(std::move(then));
  }

  // Releases the lock, handing it to the first waiter if any.
  void unlock(const std::string& vm) {
    auto it = held_.find(vm);
    if (it == held_.end()) return;
    if (it->second.empty()) {
      held_.erase(it);
      return;
    }
    auto next = std::move(it->second.front());
    it->second.pop_front();
    next();
  }

  bool held(const std::string& vm) const { return held_.count(vm) != 0; }

 private:
  std::map<std::string, std::deque<std::function<void()>>> held_;
};

}  // namespace steward::controller
