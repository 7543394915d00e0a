// One VPN tunnel session with an OpenConnect gateway, on an Asio io_context: login, the CSTP
// tunnel over TLS (CONNECT /CSCOSSLC/tunnel), the optional DTLS data channel, dead-peer
// detection, keepalives, reconnects with the same cookie (and re-authentication when the gateway
// refuses it), and disconnect. IP packets go in through send() and come out through a callback;
// the TUN device and the steering of traffic are the daemon's job (src/vpn/tun, steering).
//
// Threading: every method must be called on the io_context's thread, and every callback runs
// there. The Session must outlive its io_context's run, or stop() must have been called and its
// handlers drained before it is destroyed.
#pragma once

#include "core/result.h"
#include "vpn/cstp/auth.h"
#include "vpn/cstp/tls.h"
#include "vpn/cstp/tunnel_config.h"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace steward::vpn::cstp {

enum class SessionState {
  kIdle,          // not started
  kConnecting,    // first login and CONNECT in progress
  kConnected,     // the tunnel carries packets
  kReconnecting,  // the tunnel was lost; packets are refused until kConnected again
  kDown,          // ended for good (see the error passed with it); start() is not allowed again
};
std::string_view to_string(SessionState state);

enum class DataChannel { kCstp, kDtls };
std::string_view to_string(DataChannel channel);

struct ChannelCounters {
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;  // IP bytes, without frame headers
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
};

struct SessionCounters {
  ChannelCounters cstp;
  ChannelCounters dtls;
  uint64_t dpd_requests_sent = 0;
  uint64_t dpd_responses_received = 0;
  uint64_t keepalives_sent = 0;
  uint64_t reconnects = 0;          // tunnels reopened after a loss
  uint64_t reauthentications = 0;   // logins after the gateway refused the cookie
  uint64_t dtls_failures = 0;       // DTLS handshakes that failed or channels declared dead
  uint64_t dropped_while_down = 0;  // send() calls refused while not connected
  uint64_t dropped_congested = 0;   // packets dropped because the TLS stream was backed up
};

// The base MTU announced when the path's is unknown (a 1500-byte path less PPPoE and similar).
inline constexpr int kFallbackBaseMtu = 1406;

// The path MTU the kernel knows for a connected TCP socket (TCP_INFO), when it is plausible.
std::optional<int> path_mtu(int tcp_socket);

struct SessionOptions {
  GatewayUrl url;
  TlsOptions tls;
  Credentials credentials;
  std::string user_agent = "Open AnyConnect VPN Agent v9.01";
  std::string hostname = "steward";  // X-CSTP-Hostname
  // X-CSTP-Base-MTU, what the client's path to the gateway can carry; the gateway sizes the
  // tunnel MTU from it. 0: the path MTU the kernel knows for the TLS connection (TCP_INFO), or
  // kFallbackBaseMtu when it knows none.
  int base_mtu = 0;
  bool ipv6 = true;  // ask for IPv6 too (X-CSTP-Address-Type)
  bool dtls = true;  // try the DTLS data channel when the gateway offers it
  std::chrono::seconds dtls_handshake_timeout{3};
  // Used when the gateway sends no X-CSTP-DPD; the gateway's value wins otherwise.
  std::chrono::seconds default_dpd{30};
  // A dead tunnel is retried with backoff from reconnect_min to reconnect_max, for at most
  // reconnect_timeout in total; then the session goes kDown.
  std::chrono::milliseconds reconnect_min{200};
  std::chrono::milliseconds reconnect_max{5000};
  std::chrono::seconds reconnect_timeout{300};
  std::chrono::seconds connect_timeout{20};  // one TLS connect + login or CONNECT
};

// How the session goes on when a reconnect hands out an address different from the one the
// tunnel had (the daemon's TUN and routes are bound to it).
enum class AddressChangeDecision {
  kAccept,  // the owner has reconfigured for the new address: continue
  kStop,    // end the session (kDown with an error naming both addresses)
};

struct SessionCallbacks {
  // Every state change, with the error that caused it for kReconnecting and kDown (null when
  // the user asked for the change).
  std::function<void(SessionState, const Error*)> on_state;
  // The configuration of every tunnel opened (first connect and each reconnect).
  std::function<void(const TunnelConfig&)> on_config;
  // One IP packet from the gateway. The span is valid only during the call.
  std::function<void(std::span<const uint8_t>)> on_packet;
  // A reconnect got another address. Unset: treated as kStop, never ignored.
  std::function<AddressChangeDecision(const TunnelConfig& before, const TunnelConfig& after)>
      on_address_change;
  // The data channel moved (DTLS came up, or fell back to CSTP).
  std::function<void(DataChannel)> on_data_channel;
};

class Session {
 public:
  Session(boost::asio::io_context& io, SessionOptions options, SessionCallbacks callbacks);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Logs in and opens the tunnel in the background; progress arrives through on_state. The
  // first connect is not retried: a refused login or an unverifiable gateway goes kDown.
  void start();

  // Sends one IPv4 or IPv6 packet through the tunnel (DTLS when up, else CSTP). Fails with
  // kUnavailable while not kConnected (the daemon holds or rejects the packet; nothing is sent
  // outside the tunnel) and kInvalidArgument when the packet is empty or larger than the MTU.
  Status send(std::span<const uint8_t> packet);

  // User disconnect: tells the gateway the session ends (the cookie becomes invalid), closes
  // everything and goes kDown with no error.
  void disconnect();

  // Closes the connections without telling the gateway (the cookie stays valid on the gateway
  // until it times out): for a daemon that is being killed. Goes kDown with no error.
  void stop();

  SessionState state() const;
  DataChannel data_channel() const;
  // The configuration of the current (or last) tunnel; empty before the first CONNECT.
  const TunnelConfig& config() const;
  const SessionCounters& counters() const;
  // The session cookie, for tests that check it is invalid after a disconnect.
  const SessionCookie& cookie() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace steward::vpn::cstp
