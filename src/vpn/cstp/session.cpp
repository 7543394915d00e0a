#include "vpn/cstp/session.h"

#include "core/log.h"
#include "vpn/cstp/connect_reply.h"
#include "vpn/cstp/dtls.h"
#include "vpn/cstp/framing.h"
#include "vpn/cstp/https.h"
#include "vpn/cstp/tls_pipe.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/rand.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <variant>

namespace steward::vpn::cstp {
namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// Frames queued for the TLS stream beyond this are dropped: TCP is backed up and queueing more
// only adds latency.
constexpr size_t kMaxPendingBytes = 4 << 20;

std::atomic<uint64_t> session_counter{0};

}  // namespace

std::optional<int> path_mtu(int tcp_socket) {
  tcp_info info{};
  socklen_t size = sizeof(info);
  if (::getsockopt(tcp_socket, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return std::nullopt;
  if (size < offsetof(tcp_info, tcpi_pmtu) + sizeof(info.tcpi_pmtu)) return std::nullopt;
  sockaddr_storage local{};
  socklen_t local_size = sizeof(local);
  if (::getsockname(tcp_socket, reinterpret_cast<sockaddr*>(&local), &local_size) != 0) {
    return std::nullopt;
  }
  // The route's MTU says what the first hop carries; the MSS the gateway's SYN-ACK allowed (after
  // any MSS clamping on the way, as PPPoE and DS-Lite routers do) says more about the path: the
  // smaller of the two. The sent segment size excludes the TCP options in use (timestamps).
  int headers = (local.ss_family == AF_INET6 ? 40 : 20) + 20 +
                ((info.tcpi_options & TCPI_OPT_TIMESTAMPS) != 0 ? 12 : 0);
  int mtu = static_cast<int>(info.tcpi_pmtu);
  if (info.tcpi_snd_mss > 0) mtu = std::min(mtu, static_cast<int>(info.tcpi_snd_mss) + headers);
  if (mtu < 576 || mtu > 65535) return std::nullopt;
  return mtu;
}

namespace {

std::string random_hex(size_t bytes) {
  std::vector<uint8_t> random(bytes);
  RAND_bytes(random.data(), static_cast<int>(random.size()));
  std::string hex;
  for (uint8_t byte : random)
    hex += fmt::format("{:02X}", byte);
  return hex;
}

std::string address_text(const TunnelConfig& config) {
  std::string text = config.address ? config.address->to_string() : "-";
  if (config.address6) text += " " + config.address6->to_string();
  return text;
}

bool same_addresses(const TunnelConfig& a, const TunnelConfig& b) {
  return a.address == b.address && a.address6 == b.address6;
}

// Why a tunnel (one TLS connection) ended.
struct TunnelEnd {
  enum class Kind { kLost, kUser, kStopped, kServerEnded };
  Kind kind = Kind::kLost;
  std::optional<Error> error;
};

}  // namespace

std::string_view to_string(SessionState state) {
  switch (state) {
    case SessionState::kIdle:
      return "idle";
    case SessionState::kConnecting:
      return "connecting";
    case SessionState::kConnected:
      return "connected";
    case SessionState::kReconnecting:
      return "reconnecting";
    case SessionState::kDown:
      return "down";
  }
  return "unknown";
}

std::string_view to_string(DataChannel channel) {
  return channel == DataChannel::kDtls ? "dtls" : "cstp";
}

struct Session::Impl : std::enable_shared_from_this<Impl> {
  enum class StopKind { kNone, kUser, kStop };

  Impl(asio::io_context& io_context, SessionOptions session_options, SessionCallbacks hooks)
      : io(io_context),
        options(std::move(session_options)),
        callbacks(std::move(hooks)),
        logger(log::get("vpn")),
        id(++session_counter),
        writer_wake(io_context),
        stop_signal(io_context),
        backoff_timer(io_context) {}

  asio::io_context& io;
  SessionOptions options;
  SessionCallbacks callbacks;
  std::shared_ptr<spdlog::logger> logger;
  uint64_t id;

  SessionState state = SessionState::kIdle;
  DataChannel channel = DataChannel::kCstp;
  TunnelConfig config;
  SessionCounters counters;
  SessionCookie cookie;
  StopKind stop_kind = StopKind::kNone;

  // The current tunnel: the TLS connection, driven through `pipe` once its handshake is done.
  std::optional<TlsConnection> tls;
  std::unique_ptr<TlsPipe> pipe;
  std::unique_ptr<DtlsChannel> dtls;
  bool dtls_up = false;
  bool dtls_flush_posted = false;
  std::vector<uint8_t> dtls_datagram;  // the frame being queued, reused
  std::vector<uint8_t> pending;        // CSTP frames waiting for the writer
  asio::steady_timer writer_wake;
  asio::steady_timer stop_signal;
  asio::steady_timer backoff_timer;
  Clock::time_point tunnel_opened, last_rx, last_tx, last_dpd_tx, last_dtls_rx, last_dtls_dpd_tx;

  // ---- state

  void set_state(SessionState next, const Error* error) {
    if (state == next) return;
    state = next;
    if (error) {
      logger->warn("session={} state={} reason=\"{}\"", id, to_string(next), error->message);
    } else {
      logger->info("session={} state={}", id, to_string(next));
    }
    if (callbacks.on_state) callbacks.on_state(next, error);
  }

  void set_channel(DataChannel next) {
    if (channel == next) return;
    channel = next;
    logger->info("session={} data_channel={}", id, to_string(next));
    if (callbacks.on_data_channel) callbacks.on_data_channel(next);
  }

  void go_down(const Error* error) {
    close_tunnel();
    set_state(SessionState::kDown, error);
  }
  void go_down(const Error& error) { go_down(&error); }

  void close_tunnel() {
    dtls_up = false;
    if (dtls) dtls->close();
    if (tls) {
      boost::system::error_code ignored;
      tls->stream->lowest_layer().close(ignored);
    }
    set_channel(DataChannel::kCstp);
  }

  LoginOptions login_options() const {
    return LoginOptions{options.url, options.tls, options.credentials, options.user_agent,
                        options.connect_timeout};
  }

  std::chrono::seconds dpd_interval() const {
    return config.dpd.count() > 0 ? config.dpd : options.default_dpd;
  }

  // ---- sending

  void queue_frame(FrameType type, std::span<const uint8_t> payload) {
    append_cstp_frame(pending, type, payload);
    writer_wake.cancel();
  }

  Status send(std::span<const uint8_t> packet) {
    if (state != SessionState::kConnected || !tls) {
      counters.dropped_while_down++;
      return Error::make(ErrorCode::kUnavailable, "tunnel is {}", to_string(state));
    }
    if (packet.empty() || packet.size() > static_cast<size_t>(config.mtu)) {
      return Error::make(ErrorCode::kInvalidArgument, "packet of {} bytes does not fit MTU {}",
                         packet.size(), config.mtu);
    }
    if (dtls_up) {
      if (send_dtls(FrameType::kData, packet)) {
        counters.dtls.tx_packets++;
        counters.dtls.tx_bytes += packet.size();
        return ok();
      }
      // The socket has not taken the earlier ones: this packet takes the TLS stream instead.
    }
    if (pending.size() > kMaxPendingBytes) {
      counters.dropped_congested++;
      return Error::make(ErrorCode::kUnavailable, "tunnel is congested");
    }
    queue_frame(FrameType::kData, packet);
    counters.cstp.tx_packets++;
    counters.cstp.tx_bytes += packet.size();
    return ok();
  }

  // Queues one DTLS datagram. Everything queued in this turn of the loop (a batch read from
  // the TUN) leaves together, in one sendmmsg(), once the turn is over.
  Status send_dtls(FrameType type, std::span<const uint8_t> payload) {
    dtls_datagram.resize(1 + payload.size());
    dtls_datagram[0] = static_cast<uint8_t>(type);
    if (!payload.empty()) std::memcpy(&dtls_datagram[1], payload.data(), payload.size());
    auto queued = dtls->send(dtls_datagram);
    if (queued && !dtls_flush_posted) {
      dtls_flush_posted = true;
      asio::post(io, [weak = weak_from_this()] {
        auto self = weak.lock();
        if (!self) return;
        self->dtls_flush_posted = false;
        if (self->dtls) self->dtls->flush();
      });
    }
    return queued;
  }

  // ---- the session's life: login, tunnels, reconnects

  // Where the reconnect loop stands.
  struct Retry {
    bool first = true;  // no tunnel opened yet: failures end the session
    std::chrono::milliseconds backoff{0};
    Clock::time_point lost_at;
  };
  enum class Next { kRetry, kEnd };

  asio::awaitable<void> run() {
    set_state(SessionState::kConnecting, nullptr);
    auto logged_in = co_await login(login_options());
    if (stopping()) co_return;
    if (!logged_in) {
      go_down(logged_in.error());
      co_return;
    }
    cookie = std::move(*logged_in);

    Retry retry{true, options.reconnect_min, Clock::now()};
    while (!stopping()) {
      auto opened = co_await open_tunnel_or_log_in(retry.first);
      if (stopping()) break;
      if (!opened) {
        if (co_await wait_to_retry(opened.error(), retry) == Next::kEnd) co_return;
        continue;
      }
      if (co_await take_config(std::move(*opened), retry) == Next::kEnd) co_return;
      if (stopping()) break;  // a callback asked for it

      auto end = co_await run_tunnel();
      close_tunnel();
      pipe.reset();
      tls.reset();
      dtls.reset();
      pending.clear();
      if (after_tunnel(end, retry) == Next::kEnd) co_return;
    }
    // Stopped between tunnels: a user disconnect still tells the gateway when it can.
    if (stop_kind == StopKind::kUser) co_await say_goodbye();
    close_tunnel();
  }

  // CONNECT; when the gateway refuses the cookie, one login and one more CONNECT.
  asio::awaitable<Result<TunnelConfig>> open_tunnel_or_log_in(bool first) {
    auto opened = co_await open_tunnel(first);
    if (opened || opened.error().code != ErrorCode::kUnauthenticated || stopping()) {
      co_return opened;
    }
    logger->info("session={} cookie refused, logging in again", id);
    counters.reauthentications++;
    auto again = co_await login(login_options());
    if (!again) co_return again.error();
    cookie = std::move(*again);
    if (stopping()) co_return opened;
    co_return co_await open_tunnel(first);
  }

  // After a failed attempt: end the session, or wait the backoff and let the loop retry.
  asio::awaitable<Next> wait_to_retry(const Error& error, Retry& retry) {
    // A refused login is final; so is any failure before the first tunnel.
    if (retry.first || error.code == ErrorCode::kUnauthenticated) {
      go_down(error);
      co_return Next::kEnd;
    }
    if (Clock::now() - retry.lost_at > options.reconnect_timeout) {
      go_down(error.wrap(
          fmt::format("gave up reconnecting after {}s", options.reconnect_timeout.count())));
      co_return Next::kEnd;
    }
    logger->warn("session={} reconnect failed, retry_in_ms={} reason=\"{}\"", id,
                 retry.backoff.count(), error.message);
    backoff_timer.expires_after(retry.backoff);
    co_await backoff_timer.async_wait(kTuple);
    retry.backoff = std::min(retry.backoff * 2, options.reconnect_max);
    co_return Next::kRetry;
  }

  // A new tunnel's configuration. A reconnect must give the same address, or the owner must
  // take the new one; otherwise the session ends.
  asio::awaitable<Next> take_config(TunnelConfig opened, Retry& retry) {
    if (!retry.first && !same_addresses(config, opened)) {
      auto decision = callbacks.on_address_change ? callbacks.on_address_change(config, opened)
                                                  : AddressChangeDecision::kStop;
      if (decision == AddressChangeDecision::kStop) {
        auto changed = Error::make(ErrorCode::kConflict,
                                   "gateway changed the tunnel address from {} to {} on "
                                   "reconnect; session ended",
                                   address_text(config), address_text(opened));
        config = std::move(opened);
        co_await say_goodbye();
        go_down(changed);
        co_return Next::kEnd;
      }
      logger->warn("session={} address changed from={} to={} accepted_by_owner", id,
                   address_text(config), address_text(opened));
    }
    if (!retry.first) counters.reconnects++;
    config = std::move(opened);
    retry = Retry{false, options.reconnect_min, Clock::now()};
    logger->info("session={} tunnel open address={} mtu={} dpd={}s routes={} dtls_offered={}", id,
                 address_text(config), config.mtu, config.dpd.count(), config.split_include.size(),
                 config.dtls_port.has_value());
    set_state(SessionState::kConnected, nullptr);
    if (callbacks.on_config) callbacks.on_config(config);
    co_return Next::kRetry;
  }

  Next after_tunnel(const TunnelEnd& end, Retry& retry) {
    const Error* why = end.error ? &*end.error : nullptr;
    switch (end.kind) {
      case TunnelEnd::Kind::kUser:
      case TunnelEnd::Kind::kStopped:
        return Next::kEnd;  // disconnect()/stop() already reported kDown
      case TunnelEnd::Kind::kServerEnded:
        go_down(why);
        return Next::kEnd;
      case TunnelEnd::Kind::kLost:
        retry.lost_at = Clock::now();
        set_state(SessionState::kReconnecting, why);
        return Next::kRetry;
    }
    return Next::kEnd;
  }

  // Sends a user disconnect on the open tunnel (the gateway invalidates the cookie), then closes.
  asio::awaitable<void> say_goodbye() {
    if (!tls || !pipe) co_return;
    auto frame = encode_user_disconnect("steward: disconnect");
    Watchdog watchdog(*tls->stream, std::chrono::seconds(2));
    if (pipe->write_record(frame)) (void)co_await pipe->flush();
    close_tunnel();
  }

  // ---- one tunnel: TLS connect and CONNECT

  std::string connect_request(bool first, int base_mtu) const {
    std::string request = fmt::format(
        "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: {}\r\n"
        "Cookie: webvpn={}\r\nX-CSTP-Version: 1\r\nX-CSTP-Hostname: {}\r\n"
        "X-CSTP-Base-MTU: {}\r\nX-CSTP-Address-Type: {}\r\nX-CSTP-Accept-Encoding: identity\r\n",
        options.url.host, options.url.port, options.user_agent, cookie.value(), options.hostname,
        base_mtu, options.ipv6 ? "IPv6,IPv4" : "IPv4");
    if (options.ipv6) request += "X-CSTP-Full-IPv6-Capability: true\r\n";
    if (!first && config.address) {
      request += fmt::format("X-CSTP-Address: {}\r\n", config.address->to_string());
    }
    if (!first && config.address6) {
      request += fmt::format("X-CSTP-Address-IP6: {}/{}\r\n", config.address6->to_string(),
                             config.address6_length.value_or(128));
    }
    if (options.dtls) {
      request += fmt::format(
          "X-DTLS-Master-Secret: {}\r\nX-DTLS-CipherSuite: PSK-NEGOTIATE\r\n"
          "X-DTLS-Accept-Encoding: identity\r\n",
          random_hex(48));
    }
    return request + "\r\n";
  }

  asio::awaitable<Result<TunnelConfig>> open_tunnel(bool first) {
    auto connection = co_await connect_gateway(options.url, options.tls, options.connect_timeout);
    if (!connection) co_return connection.error();
    Watchdog watchdog(*connection->stream, options.connect_timeout);
    // From here on the pipe carries the connection: the CONNECT, its answer and the tunnel.
    auto adopted = TlsPipe::adopt(*connection);
    if (!adopted) co_return adopted.error().wrap("CONNECT");
    std::unique_ptr<TlsPipe> connect_pipe = std::move(*adopted);

    int base_mtu = options.base_mtu > 0
                       ? options.base_mtu
                       : path_mtu(connection->stream->lowest_layer().native_handle())
                             .value_or(kFallbackBaseMtu);
    if (auto sent = co_await send_request(*connect_pipe, connect_request(first, base_mtu)); !sent) {
      co_return sent.error().wrap("CONNECT");
    }
    auto head = co_await read_reply_head(*connect_pipe, connection->buffer);
    if (!head) {
      if (watchdog.fired()) {
        co_return Error::make(ErrorCode::kTimeout, "gateway did not answer CONNECT in time");
      }
      co_return head.error().wrap("CONNECT");
    }
    if (head->status == 401) {
      co_return Error::make(ErrorCode::kUnauthenticated, "gateway refused the session cookie");
    }
    if (head->status != 200) {
      auto reason = head->find("X-Reason");
      co_return Error::make(ErrorCode::kUnavailable, "gateway refused the tunnel: HTTP {} {}",
                            head->status, reason ? *reason : head->reason);
    }
    auto parsed = parse_connect_reply(*head);
    if (!parsed) co_return parsed.error();
    tls = std::move(*connection);  // the stream stays where it is: the pipe still refers to it
    pipe = std::move(connect_pipe);
    co_return parsed;
  }

  // An HTTP request through the pipe, in records of at most 16 KiB.
  static asio::awaitable<Status> send_request(TlsPipe& through, const std::string& request) {
    constexpr size_t kRecord = 16 * 1024;
    std::span bytes(reinterpret_cast<const uint8_t*>(request.data()), request.size());
    for (size_t at = 0; at < bytes.size(); at += kRecord) {
      auto written = through.write_record(bytes.subspan(at, std::min(kRecord, bytes.size() - at)));
      if (!written) co_return written;
    }
    co_return co_await through.flush();
  }

  // Reads one reply head; what follows it (the first frames) stays in `buffer`.
  static asio::awaitable<Result<HttpHead>> read_reply_head(TlsPipe& through, std::string& buffer) {
    while (true) {
      auto end = buffer.find("\r\n\r\n");
      if (end != std::string::npos) {
        auto head = parse_http_head(std::string_view(buffer).substr(0, end + 2));
        buffer.erase(0, end + 4);
        co_return head;
      }
      if (buffer.size() > kMaxHttpHeadSize) {
        co_return Error::make(ErrorCode::kInternal, "gateway's reply head exceeds {} bytes",
                              kMaxHttpHeadSize);
      }
      auto got = co_await through.read();
      if (!got) co_return got.error();
      buffer.append(reinterpret_cast<const char*>(got->data()), got->size());
    }
  }

  // ---- one tunnel: its loops, until one of them ends it

  asio::awaitable<TunnelEnd> run_tunnel() {
    stop_signal.expires_at(Clock::time_point::max());
    auto now = Clock::now();
    last_rx = last_tx = last_dpd_tx = tunnel_opened = now;
    auto ended =
        co_await (read_loop() || write_loop() || tick_loop() || wait_stop() || dtls_loop());
    co_return std::visit([](TunnelEnd& end) { return std::move(end); }, ended);
  }

  // Closes the connection so that every other loop's pending operation ends too.
  TunnelEnd finish(TunnelEnd end) {
    close_tunnel();
    return end;
  }

  TunnelEnd lost(Error error) { return finish({TunnelEnd::Kind::kLost, std::move(error)}); }

  bool stopping() const { return stop_kind != StopKind::kNone; }

  asio::awaitable<TunnelEnd> read_loop() {
    FrameParser parser;
    std::optional<TunnelEnd> end;
    auto on_frame = [&](const FrameView& frame) { handle_frame(frame, false, end); };
    std::string leftover = std::move(tls->buffer);
    if (auto fed = parser.feed(
            std::span(reinterpret_cast<const uint8_t*>(leftover.data()), leftover.size()),
            on_frame);
        !fed) {
      co_return lost(fed.error());
    }
    // Every record that has arrived is decrypted per wakeup, and its frames handled in turn.
    while (!end) {
      auto got = co_await pipe->read();
      if (stopping()) co_return finish({TunnelEnd::Kind::kStopped, std::nullopt});
      if (!got) co_return lost(got.error());
      last_rx = Clock::now();
      // OpenSSL may have answered the gateway while reading (a TLS 1.3 key update).
      if (pipe->has_output()) writer_wake.cancel();
      if (auto fed = parser.feed(*got, on_frame); !fed) co_return lost(fed.error());
    }
    co_return finish(std::move(*end));
  }

  // One frame from CSTP (dtls = false) or DTLS.
  void handle_frame(const FrameView& frame, bool from_dtls, std::optional<TunnelEnd>& end) {
    auto& channel_counters = from_dtls ? counters.dtls : counters.cstp;
    switch (frame.type) {
      case FrameType::kData:
        channel_counters.rx_packets++;
        channel_counters.rx_bytes += frame.payload.size();
        if (callbacks.on_packet) callbacks.on_packet(frame.payload);
        break;
      case FrameType::kDpdRequest:
        if (from_dtls && dtls_up) {
          (void)send_dtls(FrameType::kDpdResponse, frame.payload);
        } else {
          queue_frame(FrameType::kDpdResponse, frame.payload);
        }
        break;
      case FrameType::kDpdResponse:
        counters.dpd_responses_received++;
        break;
      case FrameType::kKeepalive:
        break;
      case FrameType::kCompressed:
        // Never asked for (X-CSTP-Accept-Encoding: identity); dropping is safe.
        logger->debug("session={} dropped compressed frame", id);
        break;
      case FrameType::kDisconnect:
      case FrameType::kTerminate:
        end = server_ended(frame);
        break;
    }
  }

  // A disconnect without a reason (ocserv sends one when it shuts down) is temporary: the
  // tunnel is lost and comes back with the same cookie. A terminate, or a disconnect that gives a
  // reason, ends the session.
  TunnelEnd server_ended(const FrameView& frame) {
    std::string reason;
    if (frame.payload.size() > 1) {
      reason.assign(reinterpret_cast<const char*>(frame.payload.data() + 1),
                    frame.payload.size() - 1);
    }
    bool temporary = frame.type == FrameType::kDisconnect && frame.payload.empty();
    auto error = Error::make(ErrorCode::kUnavailable, "gateway {} the session ({}{}{})",
                             temporary ? "dropped" : "ended", to_string(frame.type),
                             reason.empty() ? "" : ": ", reason);
    return {temporary ? TunnelEnd::Kind::kLost : TunnelEnd::Kind::kServerEnded, std::move(error)};
  }

  asio::awaitable<TunnelEnd> write_loop() {
    std::vector<uint8_t> writing;
    while (true) {
      if (pending.empty() && !pipe->has_output()) {
        if (stop_kind == StopKind::kUser) co_return finish({TunnelEnd::Kind::kUser, std::nullopt});
        writer_wake.expires_at(Clock::time_point::max());
        co_await writer_wake.async_wait(kTuple);
        auto cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
        if (cancelled != asio::cancellation_type::none) {
          co_return finish({TunnelEnd::Kind::kStopped, std::nullopt});
        }
        continue;
      }
      writing.clear();
      std::swap(writing, pending);
      // One TLS record per CSTP frame: gateways such as ocserv read each record as exactly one
      // frame, and drop the session when a record holds several. The records of everything
      // queued then leave together, in as few send() calls as the socket allows.
      for (size_t at = 0; at < writing.size();) {
        size_t length = cstp_frame_length(std::span(writing).subspan(at));
        if (auto written = pipe->write_record(std::span(writing).subspan(at, length)); !written) {
          co_return lost(written.error());
        }
        at += length;
      }
      if (auto flushed = co_await pipe->flush(); !flushed) {
        if (stopping()) co_return finish({TunnelEnd::Kind::kStopped, std::nullopt});
        co_return lost(flushed.error());
      }
      last_tx = Clock::now();
    }
  }

  // Dead-peer detection and keepalives, on both channels.
  asio::awaitable<TunnelEnd> tick_loop() {
    auto dpd = dpd_interval();
    auto tick = std::clamp<Clock::duration>(dpd / 4, std::chrono::milliseconds(100),
                                            std::chrono::seconds(1));
    asio::steady_timer timer(io);
    while (true) {
      timer.expires_after(tick);
      auto [ec] = co_await timer.async_wait(kTuple);
      if (ec) co_return finish({TunnelEnd::Kind::kStopped, std::nullopt});
      auto now = Clock::now();
      if (rekey_due(now)) {
        logger->info("session={} rekey by new tunnel after {}s", id, config.rekey_time.count());
        co_return lost(Error::make(ErrorCode::kUnavailable, "rekey: opening a new tunnel"));
      }
      if (now - last_rx > 2 * dpd + tick) {
        co_return lost(Error::make(ErrorCode::kTimeout,
                                   "gateway did not answer for {}s (dead peer detection)",
                                   2 * dpd.count()));
      }
      if (now - last_rx >= dpd && now - last_dpd_tx >= dpd) {
        queue_frame(FrameType::kDpdRequest, {});
        counters.dpd_requests_sent++;
        last_dpd_tx = now;
      }
      if (config.keepalive.count() > 0 && now - last_tx >= config.keepalive) {
        queue_frame(FrameType::kKeepalive, {});
        counters.keepalives_sent++;
        last_tx = now;
      }
      check_dtls(now);
    }
  }

  // "new-tunnel" rekeying is a reconnect with the same cookie once rekey_time has passed.
  bool rekey_due(Clock::time_point now) const {
    return config.rekey_method == "new-tunnel" && config.rekey_time.count() > 0 &&
           now - tunnel_opened >= config.rekey_time;
  }

  void check_dtls(Clock::time_point now) {
    if (!dtls_up) return;
    auto dpd = config.dtls_dpd.count() > 0 ? config.dtls_dpd : dpd_interval();
    if (now - last_dtls_rx > 2 * dpd) {
      fall_back("DTLS peer did not answer (dead peer detection)");
      return;
    }
    if (now - last_dtls_rx >= dpd && now - last_dtls_dpd_tx >= dpd) {
      (void)send_dtls(FrameType::kDpdRequest, {});
      counters.dpd_requests_sent++;
      last_dtls_dpd_tx = now;
    }
  }

  void fall_back(std::string_view reason) {
    if (!dtls) return;
    if (dtls_up) counters.dtls_failures++;
    logger->warn("session={} dtls down, data over cstp reason=\"{}\"", id, reason);
    dtls_up = false;
    dtls->close();
    set_channel(DataChannel::kCstp);
  }

  asio::awaitable<TunnelEnd> wait_stop() {
    if (!stopping()) co_await stop_signal.async_wait(kTuple);
    if (stop_kind == StopKind::kUser) {
      // Give the writer a moment to deliver the disconnect frame; it ends the tunnel itself.
      asio::steady_timer grace(io, std::chrono::seconds(2));
      co_await grace.async_wait(kTuple);
      co_return finish({TunnelEnd::Kind::kUser, std::nullopt});
    }
    co_return finish({TunnelEnd::Kind::kStopped, std::nullopt});
  }

  // Waits until cancelled by the end of the tunnel.
  asio::awaitable<TunnelEnd> idle() {
    asio::steady_timer forever(io, Clock::time_point::max());
    co_await forever.async_wait(kTuple);
    co_return TunnelEnd{TunnelEnd::Kind::kStopped, std::nullopt};
  }

  asio::awaitable<TunnelEnd> dtls_loop() {
    if (!options.dtls || !config.dtls_port || config.dtls_app_id.empty() ||
        config.dtls_cipher_suite != "PSK-NEGOTIATE") {
      co_return co_await idle();
    }
    if (auto up = co_await start_dtls(); !up) {
      counters.dtls_failures++;
      logger->warn("session={} dtls unavailable, data over cstp reason=\"{}\"", id,
                   up.error().message);
      co_return co_await idle();
    }

    std::vector<uint8_t> buffer(kMaxFramePayload + 1);
    std::optional<TunnelEnd> end;
    while (!end) {
      auto got = co_await dtls->receive(buffer);
      if (stopping()) co_return finish({TunnelEnd::Kind::kStopped, std::nullopt});
      if (!got) {
        if (dtls_up) fall_back(got.error().message);
        co_return co_await idle();
      }
      auto frame = parse_dtls_frame(std::span(buffer.data(), *got));
      if (!frame) continue;  // garbage on UDP is not worth a tunnel
      last_dtls_rx = Clock::now();
      handle_frame(*frame, true, end);
    }
    co_return finish(std::move(*end));
  }

  asio::awaitable<Status> start_dtls() {
    auto psk = export_dtls_psk(tls->stream->native_handle());
    if (!psk) co_return psk.error();
    boost::system::error_code ec;
    auto remote = tls->stream->lowest_layer().remote_endpoint(ec);
    if (ec) co_return Error::make(ErrorCode::kUnavailable, "no gateway address for DTLS");
    asio::ip::udp::endpoint gateway(remote.address(), static_cast<uint16_t>(*config.dtls_port));
    auto channel_made = DtlsChannel::create(io.get_executor(), gateway, *psk, config.dtls_app_id);
    if (!channel_made) co_return channel_made.error();
    dtls = std::move(*channel_made);
    auto shaken = co_await dtls->handshake(options.dtls_handshake_timeout);
    if (!shaken) {
      dtls->close();
      co_return shaken.error();
    }
    dtls_up = true;
    last_dtls_rx = last_dtls_dpd_tx = Clock::now();
    logger->info("session={} dtls up cipher={} port={}", id, dtls->cipher(), *config.dtls_port);
    set_channel(DataChannel::kDtls);
    co_return ok();
  }

  // ---- owner's requests

  void request_stop(StopKind kind) {
    if (state == SessionState::kDown || state == SessionState::kIdle) {
      stop_kind = kind;
      if (state == SessionState::kIdle) set_state(SessionState::kDown, nullptr);
      return;
    }
    stop_kind = kind;
    if (kind == StopKind::kUser && tls && state == SessionState::kConnected) {
      auto frame = encode_user_disconnect("steward: user disconnect");
      pending.insert(pending.end(), frame.begin(), frame.end());
      writer_wake.cancel();
    }
    stop_signal.cancel();
    backoff_timer.cancel();
    set_state(SessionState::kDown, nullptr);
  }
};

Session::Session(asio::io_context& io, SessionOptions options, SessionCallbacks callbacks)
    : impl_(std::make_shared<Impl>(io, std::move(options), std::move(callbacks))) {}

Session::~Session() {
  impl_->callbacks = {};
  if (impl_->state != SessionState::kDown && impl_->state != SessionState::kIdle) stop();
}

void Session::start() {
  if (impl_->state != SessionState::kIdle) return;
  asio::co_spawn(
      impl_->io, [impl = impl_]() -> asio::awaitable<void> { co_await impl->run(); },
      [impl = impl_](std::exception_ptr error) {
        if (!error) return;
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          auto failed = Error::make(ErrorCode::kInternal, "session failed: {}", e.what());
          impl->go_down(&failed);
        }
      });
}

Status Session::send(std::span<const uint8_t> packet) {
  return impl_->send(packet);
}
void Session::disconnect() {
  impl_->request_stop(Impl::StopKind::kUser);
}
void Session::stop() {
  impl_->request_stop(Impl::StopKind::kStop);
}
SessionState Session::state() const {
  return impl_->state;
}
DataChannel Session::data_channel() const {
  return impl_->channel;
}
const TunnelConfig& Session::config() const {
  return impl_->config;
}
const SessionCounters& Session::counters() const {
  return impl_->counters;
}
const SessionCookie& Session::cookie() const {
  return impl_->cookie;
}

}  // namespace steward::vpn::cstp
