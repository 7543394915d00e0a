// Runs a vpn::cstp::Session on its own io_context thread inside a network namespace (the lab's
// client namespace), and lets a test drive it from the test thread: start, send packets, wait
// for states and packets, read counters. Everything the session reports is recorded.
#pragma once

#include "vpn/cstp/session.h"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace steward::testing {

class SessionRunner {
 public:
  struct StateChange {
    vpn::cstp::SessionState state;
    std::optional<Error> error;
  };

  // `on_address_change` unset: the session's default (kStop).
  SessionRunner(std::string ns, vpn::cstp::SessionOptions options,
                std::optional<vpn::cstp::AddressChangeDecision> on_address_change = std::nullopt);
  ~SessionRunner();

  void start();
  void disconnect();
  void stop();

  // Waits until the session has been in `state` (now or since the last clear of the history).
  // Returns that change, or nullopt after `timeout`.
  std::optional<StateChange> wait_for(vpn::cstp::SessionState state,
                                      std::chrono::milliseconds timeout);
  std::vector<StateChange> history();
  // Waits for a packet for which `match` is true (earlier packets are kept for later waits).
  std::optional<std::vector<uint8_t>> wait_for_packet(
      const std::function<bool(const std::vector<uint8_t>&)>& match,
      std::chrono::milliseconds timeout);
  // Waits until `count` packets for which `match` is true have arrived (at most 1000 are kept);
  // takes every matching packet, in the order they arrived (fewer after `timeout`).
  std::vector<std::vector<uint8_t>> wait_for_packets(
      size_t count, const std::function<bool(const std::vector<uint8_t>&)>& match,
      std::chrono::milliseconds timeout);
  int address_changes();

  Status send(std::vector<uint8_t> packet);
  // Sends every packet in one turn of the session's loop, so that they queue up together.
  Status send_burst(const std::vector<std::vector<uint8_t>>& packets);
  vpn::cstp::SessionCounters counters();
  vpn::TunnelConfig config();
  vpn::cstp::DataChannel data_channel();
  std::string cookie();

  // Runs `fn` on the session's thread and waits for its result.
  template <typename F>
  auto call(F fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::unique_ptr<vpn::cstp::Session> session_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<StateChange> history_;
  std::deque<std::vector<uint8_t>> packets_;
  int address_changes_ = 0;
};

// A minimal ICMP echo request from `source` to `destination` (IPv4, checksums set).
std::vector<uint8_t> icmp_echo_request(const std::string& source, const std::string& destination,
                                       uint16_t identifier, uint16_t sequence, size_t payload = 32);
// True when `packet` is an ICMP echo reply with that identifier and sequence.
bool is_icmp_echo_reply(const std::vector<uint8_t>& packet, uint16_t identifier, uint16_t sequence);

}  // namespace steward::testing
