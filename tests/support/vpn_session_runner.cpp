#include "support/vpn_session_runner.h"

#include <algorithm>

#include "support/vpn_lab.h"

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/post.hpp>

namespace steward::testing {

namespace cstp = vpn::cstp;

SessionRunner::SessionRunner(std::string ns, cstp::SessionOptions options,
                             std::optional<cstp::AddressChangeDecision> on_address_change) {
  cstp::SessionCallbacks callbacks;
  callbacks.on_state = [this](cstp::SessionState state, const Error* error) {
    std::lock_guard lock(mutex_);
    history_.push_back({state, error ? std::optional<Error>(*error) : std::nullopt});
    changed_.notify_all();
  };
  callbacks.on_packet = [this](std::span<const uint8_t> packet) {
    std::lock_guard lock(mutex_);
    packets_.emplace_back(packet.begin(), packet.end());
    if (packets_.size() > 1000) packets_.pop_front();
    changed_.notify_all();
  };
  if (on_address_change) {
    auto decision = *on_address_change;
    callbacks.on_address_change = [this, decision](const vpn::TunnelConfig&,
                                                   const vpn::TunnelConfig&) {
      std::lock_guard lock(mutex_);
      address_changes_++;
      return decision;
    };
  }
  session_ = std::make_unique<cstp::Session>(io_, std::move(options), std::move(callbacks));
  work_.emplace(io_.get_executor());
  // Sockets the session opens belong to the namespace of the thread that opens them.
  thread_ = std::thread([this, ns] { (void)VpnLab::run_in(ns, [this] { io_.run(); }); });
}

SessionRunner::~SessionRunner() {
  call([this] {
    session_->stop();
    return 0;
  });
  // Drop the session on its own thread, then let the io_context run dry and end.
  call([this] {
    session_.reset();
    return 0;
  });
  work_.reset();
  io_.stop();
  thread_.join();
}

void SessionRunner::start() {
  call([this] {
    session_->start();
    return 0;
  });
}

void SessionRunner::disconnect() {
  call([this] {
    session_->disconnect();
    return 0;
  });
}

void SessionRunner::stop() {
  call([this] {
    session_->stop();
    return 0;
  });
}

std::optional<SessionRunner::StateChange> SessionRunner::wait_for(
    cstp::SessionState state, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::optional<StateChange> found;
  changed_.wait_for(lock, timeout, [&] {
    for (const auto& change : history_) {
      if (change.state == state) {
        found = change;
        return true;
      }
    }
    return false;
  });
  return found;
}

std::vector<SessionRunner::StateChange> SessionRunner::history() {
  std::lock_guard lock(mutex_);
  return history_;
}

std::optional<std::vector<uint8_t>> SessionRunner::wait_for_packet(
    const std::function<bool(const std::vector<uint8_t>&)>& match,
    std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::optional<std::vector<uint8_t>> found;
  changed_.wait_for(lock, timeout, [&] {
    for (auto it = packets_.begin(); it != packets_.end(); ++it) {
      if (match(*it)) {
        found = *it;
        packets_.erase(it);
        return true;
      }
    }
    return false;
  });
  return found;
}

std::vector<std::vector<uint8_t>> SessionRunner::wait_for_packets(
    size_t count, const std::function<bool(const std::vector<uint8_t>&)>& match,
    std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  auto matching = [&] {
    return static_cast<size_t>(std::count_if(packets_.begin(), packets_.end(), match));
  };
  changed_.wait_for(lock, timeout, [&] { return matching() >= count; });
  std::vector<std::vector<uint8_t>> found;
  for (auto it = packets_.begin(); it != packets_.end();) {
    if (match(*it)) {
      found.push_back(std::move(*it));
      it = packets_.erase(it);
    } else {
      ++it;
    }
  }
  return found;
}

int SessionRunner::address_changes() {
  std::lock_guard lock(mutex_);
  return address_changes_;
}

Status SessionRunner::send(std::vector<uint8_t> packet) {
  return call([this, &packet] { return session_->send(packet); });
}
Status SessionRunner::send_burst(const std::vector<std::vector<uint8_t>>& packets) {
  return call([this, &packets]() -> Status {
    for (const auto& packet : packets) {
      if (auto sent = session_->send(packet); !sent) return sent;
    }
    return ok();
  });
}
cstp::SessionCounters SessionRunner::counters() {
  return call([this] { return session_->counters(); });
}
vpn::TunnelConfig SessionRunner::config() {
  return call([this] { return session_->config(); });
}
cstp::DataChannel SessionRunner::data_channel() {
  return call([this] { return session_->data_channel(); });
}
std::string SessionRunner::cookie() {
  return call([this] { return session_->cookie().value(); });
}

namespace {

uint16_t checksum(const uint8_t* data, size_t size) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < size; i += 2)
    sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (size % 2) sum += static_cast<uint32_t>(data[size - 1] << 8);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

void put16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value >> 8);
  at[1] = static_cast<uint8_t>(value & 0xff);
}

}  // namespace

std::vector<uint8_t> icmp_echo_request(const std::string& source, const std::string& destination,
                                       uint16_t identifier, uint16_t sequence, size_t payload) {
  std::vector<uint8_t> packet(20 + 8 + payload, 0);
  packet[0] = 0x45;
  put16(&packet[2], static_cast<uint16_t>(packet.size()));
  packet[8] = 64;  // TTL
  packet[9] = 1;   // ICMP
  auto from = boost::asio::ip::make_address_v4(source).to_bytes();
  auto to = boost::asio::ip::make_address_v4(destination).to_bytes();
  std::copy(from.begin(), from.end(), packet.begin() + 12);
  std::copy(to.begin(), to.end(), packet.begin() + 16);
  put16(&packet[10], checksum(packet.data(), 20));
  uint8_t* icmp = packet.data() + 20;
  icmp[0] = 8;  // echo request
  put16(icmp + 4, identifier);
  put16(icmp + 6, sequence);
  for (size_t i = 0; i < payload; ++i)
    icmp[8 + i] = static_cast<uint8_t>(i);
  put16(icmp + 2, checksum(icmp, 8 + payload));
  return packet;
}

bool is_icmp_echo_reply(const std::vector<uint8_t>& packet, uint16_t identifier,
                        uint16_t sequence) {
  if (packet.size() < 28 || (packet[0] >> 4) != 4 || packet[9] != 1) return false;
  size_t header = (packet[0] & 0x0f) * 4u;
  if (packet.size() < header + 8) return false;
  const uint8_t* icmp = packet.data() + header;
  return icmp[0] == 0 && (icmp[4] << 8 | icmp[5]) == identifier &&
         (icmp[6] << 8 | icmp[7]) == sequence;
}

}  // namespace steward::testing
