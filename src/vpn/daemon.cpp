#include "vpn/daemon.h"

#include "core/clock.h"
#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"
#include "vpn/control.h"
#include "vpn/cstp/session.h"
#include "vpn/fragments.h"
#include "vpn/policy/admission.h"
#include "vpn/policy/flow_check.h"
#include "vpn/steering/ledger.h"
#include "vpn/steering/steering.h"
#include "vpn/tun/offload.h"
#include "vpn/tun/tun_device.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>

#include <array>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <thread>

namespace steward::vpn {
namespace asio = boost::asio;
namespace json = boost::json;
using cstp::SessionState;

namespace {

// Packets read from the TUN per wakeup before the loop gives other work a turn.
constexpr int kTunBatch = 64;
// And at most this many packets per turn: with segmentation offload one read holds up to ~45,
// and a turn's packets wait for the DTLS or TLS send together (their queues hold 1024
// datagrams and 4 MiB).
constexpr size_t kTunPacketsPerTurn = 256;
// How long GRO may hold a packet written to the TUN for the next segments of its TCP stream
// (tun_device.h). A segment with PSH, as interactive traffic sends, goes on at once. Packets
// arrive from the gateway in batches of up to 64 datagrams, about 0.7 ms apart at 1 Gbit/s: a
// hold of 0.5 ms lets a stream's segments merge across batches (DTLS download 1.0 -> 1.3
// Gbit/s in bench/run-vpn.sh; 50 us merged within a batch only).
constexpr uint64_t kTunGroFlushTimeoutNs = 500'000;

json::array prefixes_json(const std::vector<Prefix>& prefixes) {
  json::array out;
  for (const auto& prefix : prefixes)
    out.emplace_back(prefix.to_string());
  return out;
}

json::object channel_json(const cstp::ChannelCounters& counters) {
  return {{"tx_packets", counters.tx_packets},
          {"tx_bytes", counters.tx_bytes},
          {"rx_packets", counters.rx_packets},
          {"rx_bytes", counters.rx_bytes}};
}

std::string address_text(const TunnelConfig& config) {
  std::string text = config.address ? config.address->to_string() : "-";
  if (config.address6) text += "," + config.address6->to_string();
  return text;
}

bool same_plan(const SteeringPlan& a, const SteeringPlan& b) {
  return a.intranet == b.intranet && a.exclude == b.exclude && a.dns == b.dns &&
         a.tunnel_has_ipv6 == b.tunnel_has_ipv6;
}

// The gateway's addresses, which steering must leave on their normal route.
Result<std::vector<asio::ip::address>> resolve_gateway(const cstp::GatewayUrl& url) {
  boost::system::error_code ec;
  auto literal = asio::ip::make_address(url.host, ec);
  if (!ec) return std::vector<asio::ip::address>{literal};
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  auto results = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) {
    return Error::make(ErrorCode::kUnavailable, "cannot resolve gateway {}: {}", url.host,
                       ec.message());
  }
  std::vector<asio::ip::address> addresses;
  for (const auto& entry : results)
    addresses.push_back(entry.endpoint().address());
  return addresses;
}

// The proc connector delivers exec events only in the initial network namespace. A daemon run
// inside another one opens the watcher's socket in `netns_path` from a helper thread (setns is
// per-thread, and the socket keeps the namespace it was created in).
Result<ExecRuleWatcher> start_exec_watcher(const AdmittedCgroup& cgroup,
                                           const std::vector<std::string>& rules,
                                           const std::string& netns_path,
                                           ExecRuleWatcher::OnAdmit on_admit) {
  auto here = ExecRuleWatcher::start(cgroup, rules, on_admit);
  if (here || netns_path.empty()) return here;
  std::optional<Result<ExecRuleWatcher>> there;
  std::thread opener([&] {
    int netns = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns < 0 || ::setns(netns, CLONE_NEWNET) != 0) {
      there.emplace(Error::make(
          ErrorCode::kIo,
          "{}; and {} cannot be entered: {} (exec events come only in the initial network "
          "namespace: run the daemon there, point vpn.exec_rules_netns at a file of that "
          "namespace, or leave vpn.exec_rules empty)",
          here.error().message, netns_path, std::strerror(errno)));
    } else {
      there.emplace(ExecRuleWatcher::start(cgroup, rules, std::move(on_admit)));
    }
    if (netns >= 0) ::close(netns);
  });
  opener.join();
  return std::move(*there);
}

class Daemon {
 public:
  Daemon(asio::io_context& io, const VpnConfig& config, const LoginSecrets& secrets,
         DaemonHooks hooks)
      : io_(io), config_(config), secrets_(secrets), hooks_(std::move(hooks)), signals_(io) {}

  Status start();
  int exit_code() const { return exit_code_; }

 private:
  cstp::SessionOptions session_options(const cstp::GatewayUrl& url) const;
  void wait_for_signal();
  void on_state(SessionState state, const Error* error);
  void on_connected();
  Status steer(const TunnelConfig& tunnel);
  Status open_tun(const TunnelConfig& tunnel);
  void close_tun();
  void read_tun();
  bool drain_tun();  // false when the TUN failed (the daemon is then stopping)
  // One read from the TUN: cut into wire packets first when the device offloads.
  void forward_read(size_t size);
  void forward_from_tun(std::span<const uint8_t> packet);
  bool pass_flow_check(std::span<const uint8_t> packet);
  void watch_exec_rules();
  void fail_kernel(const Error& error);
  void disconnect(const std::string& why);
  void teardown();

  void serve_control(const Peer& peer, const json::object& request, ControlServer::Reply reply);
  Result<json::object> admit(const Peer& peer, const json::object& request, bool run);
  json::object status() const;
  std::string render_metrics();
  void serve_http();

  asio::io_context& io_;
  VpnConfig config_;
  LoginSecrets secrets_;
  DaemonHooks hooks_;
  std::shared_ptr<spdlog::logger> log_ = log::get("vpn");
  SystemClock clock_;
  asio::signal_set signals_;
  std::vector<asio::ip::address> gateway_addresses_;

  std::unique_ptr<cstp::Session> session_;
  std::unique_ptr<Steering> steering_;
  std::optional<TunDevice> tun_;
  std::optional<asio::posix::stream_descriptor> tun_stream_;
  std::array<uint8_t, offload::kMaxRead> tun_buffer_{};
  std::vector<uint8_t> tun_segments_;  // the packets cut from one TUN read
  size_t turn_packets_ = 0;            // packets forwarded in this turn of the TUN reader
  std::optional<asio::ip::address_v4> tun_address_;
  std::optional<FlowCheck> flow_check_;
  FragmentDecisions fragments_;
  uint64_t fragment_drops_ = 0;
  std::optional<ExecRuleWatcher> exec_watcher_;
  std::optional<asio::posix::stream_descriptor> exec_stream_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<http::Server> http_;
  metrics::Registry metrics_;
  struct WaitingRun {
    Peer peer;
    pid_t pid;
    ControlServer::Reply reply;
  };
  std::vector<WaitingRun> waiting_runs_;

  int exit_code_ = kDaemonExitOk;
  bool ready_ = false;
  bool disconnecting_ = false;
  bool torn_down_ = false;
  uint64_t address_changes_ = 0;
  std::string last_address_change_;
  uint64_t flow_drops_before_ = 0;  // drops of flow checks replaced by a new steering
  uint64_t send_failures_ = 0;
  uint64_t tun_write_failures_ = 0;
  uint64_t tun_read_refusals_ = 0;  // TUN reads that offload::split() could not cut
  uint64_t admissions_ = 0;
  std::string last_error_;
};

cstp::SessionOptions Daemon::session_options(const cstp::GatewayUrl& url) const {
  cstp::SessionOptions options;
  options.url = url;
  options.tls.ca_file = config_.ca_file;
  options.tls.pin_sha256 = config_.pin;
  options.tls.server_name = config_.server_name;
  options.tls.client_cert_file = secrets_.client_cert_file;
  options.tls.client_key_file = secrets_.client_key_file;
  options.credentials = secrets_.credentials;
  if (options.credentials.group.empty()) options.credentials.group = config_.group;
  options.ipv6 = config_.ipv6;
  options.dtls = config_.dtls;
  options.reconnect_min = config_.reconnect_min;
  options.reconnect_max = config_.reconnect_max;
  options.reconnect_timeout = config_.reconnect_timeout;
  options.connect_timeout = config_.connect_timeout;
  options.base_mtu = config_.base_mtu;
  return options;
}

Status Daemon::start() {
  auto url = cstp::GatewayUrl::parse(config_.gateway);
  if (!url) return url.error();
  auto gateways = resolve_gateway(*url);
  if (!gateways) return gateways.error();
  gateway_addresses_ = *gateways;

  // A live daemon of this instance refuses this one now, before any login. What a crashed one
  // left stays: it keeps refusing intranet traffic while this one logs in, and Steering::start
  // replaces it when the tunnel is up (removing it here opened a window, as long as the login,
  // in which an admitted process's packets left by the normal route).
  auto options = config_.steering_options();
  if (auto held = Ledger::open(options.ledger_directory, options.instance); !held) {
    if (held.error().code == ErrorCode::kConflict) {
      return Error::make(ErrorCode::kConflict,
                         "{} (`steward vpn status` shows it, `steward vpn disconnect` stops it)",
                         held.error().message);
    }
    return held.error();
  }

  control_ = std::make_unique<ControlServer>(
      io_, config_.control_socket_path(),
      [this](const Peer& peer, const json::object& request, ControlServer::Reply reply) {
        serve_control(peer, request, std::move(reply));
      });
  if (auto listening = control_->start(); !listening) return listening.error();
  serve_http();
  auto port = http_->start();
  if (!port) return port.error().wrap("status endpoint");
  if (!config_.port_file.empty()) {
    std::ofstream(config_.port_file) << *port << "\n";
  }
  log_->info("status endpoint address={} port={}", config_.status_address, *port);

  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  signals_.add(SIGHUP);  // the terminal of a foreground connect closed: disconnect cleanly
  wait_for_signal();

  cstp::SessionCallbacks callbacks;
  callbacks.on_state = [this](SessionState state, const Error* error) { on_state(state, error); };
  callbacks.on_packet = [this](std::span<const uint8_t> packet) {
    if (!tun_) return;
    if (!tun_->write_packet(packet)) tun_write_failures_++;
  };
  callbacks.on_address_change = [this](const TunnelConfig& before, const TunnelConfig& after) {
    address_changes_++;
    last_address_change_ = fmt::format("{} -> {}", address_text(before), address_text(after));
    log_->warn("tunnel address changed from={} to={}: recreating the tun device and its routes",
               address_text(before), address_text(after));
    return cstp::AddressChangeDecision::kAccept;  // on_connected() reconfigures right after
  };
  callbacks.on_data_channel = [this](cstp::DataChannel channel) {
    log_->info("data channel={}", cstp::to_string(channel));
  };
  session_ = std::make_unique<cstp::Session>(io_, session_options(*url), std::move(callbacks));
  log_->info(
      "connecting gateway={} user={} instance={}", url->to_string(),
      secrets_.credentials.username.empty() ? "<certificate>" : secrets_.credentials.username,
      config_.instance);
  if (config_.admit_all) {
    // Loud on purpose: this mode gives up what Steward is for.
    log_->warn(
        "per-process admission is OFF (admit_all): every local process's traffic toward the "
        "intranet goes through the tunnel; it is still refused locally while the tunnel is down");
    fmt::print(stderr,
               "steward: vpn: per-process admission is off (admit_all): every process on this "
               "machine reaches the intranet\n");
  }
  session_->start();
  return ok();
}

// The first signal says goodbye to the gateway; a second one stops without waiting for it.
void Daemon::wait_for_signal() {
  signals_.async_wait([this](boost::system::error_code ec, int signal) {
    if (ec || torn_down_) return;
    disconnect(fmt::format("signal {}", signal));
    wait_for_signal();
  });
}

void Daemon::on_state(SessionState state, const Error* error) {
  switch (state) {
    case SessionState::kIdle:
    case SessionState::kConnecting:
      break;
    case SessionState::kConnected:
      on_connected();
      break;
    case SessionState::kReconnecting:
      log_->warn("tunnel lost, reconnecting: {}; admitted intranet traffic is refused meanwhile",
                 error ? error->message : "no reason given");
      if (steering_) {
        if (auto down = steering_->set_tunnel_down(); !down) fail_kernel(down.error());
      }
      break;
    case SessionState::kDown:
      if (error) {
        last_error_ = error->message;
        if (exit_code_ == kDaemonExitOk) exit_code_ = kDaemonExitGateway;
        log_->error("session ended: {}", error->message);
        fmt::print(stderr, "steward: vpn: {}\n", error->message);
      }
      teardown();
      break;
  }
}

void Daemon::on_connected() {
  if (disconnecting_) return;
  const TunnelConfig& tunnel = session_->config();
  if (auto steered = steer(tunnel); !steered) return fail_kernel(steered.error());
  if (!ready_) {
    ready_ = true;
    log_->info("ready address={} routes={} tun={}", address_text(tunnel),
               steering_->plan().intranet.size(), config_.tun_name);
    if (hooks_.on_ready) hooks_.on_ready();
  }
}

// Brings the kernel in line with the tunnel just opened: the steering for its plan, a TUN
// with its address, the routes up.
Status Daemon::steer(const TunnelConfig& tunnel) {
  auto plan = SteeringPlan::from(tunnel, gateway_addresses_);
  if (!plan) return plan.error().wrap("the gateway's tunnel configuration");

  if (steering_ && !same_plan(steering_->plan(), *plan)) {
    log_->warn("gateway changed the intranet routes or DNS: rebuilding the steering");
    // Dropped without stop(): its objects stay and keep refusing until Steering::start below
    // hands over to the new ones, as after a crash (stop() first left nothing refusing).
    close_tun();
    steering_.reset();
    exec_stream_.reset();
    exec_watcher_.reset();
    flow_drops_before_ += flow_check_ ? flow_check_->dropped() : 0;
    flow_check_.reset();
  }
  if (!steering_) {
    auto options = config_.steering_options();
    options.gateway_addresses = gateway_addresses_;
    auto started = Steering::start(options, *plan);
    if (!started) return started.error();
    steering_ = std::move(*started);
    // Processes admitted before a crash (or before a rebuild) are still admitted.
    log_adopted(steering_->adopted_processes());
    if (config_.admit_all) {
      flow_check_.emplace(FlowCheck::admitting_everything(clock_));
    } else {
      flow_check_.emplace(steering_->cgroup().id(), clock_, config_.flow_ttl);
    }
    if (!config_.exec_rules.empty()) {
      auto watcher =
          start_exec_watcher(steering_->cgroup(), config_.exec_rules, config_.exec_rules_netns,
                             [this](pid_t, const std::string&) { admissions_++; });
      if (!watcher) return watcher.error();
      exec_watcher_.emplace(std::move(*watcher));
      exec_stream_.emplace(io_, ::dup(exec_watcher_->fd()));
      watch_exec_rules();
    }
    for (auto& waiting : waiting_runs_) {
      auto admitted = admit(waiting.peer, json::object{{"pid", waiting.pid}}, true);
      waiting.reply(admitted ? *admitted
                             : json::object{{"ok", false}, {"error", admitted.error().message}});
    }
    waiting_runs_.clear();
  }
  if (!tun_ || tun_address_ != tunnel.address) {
    close_tun();
    if (auto opened = open_tun(tunnel); !opened) return opened;
  } else if (auto configured = tun_->set_mtu(tunnel.mtu); !configured) {
    return configured.error().wrap("tun " + config_.tun_name);
  }
  return steering_->set_tunnel_up(tun_->ifindex());
}

Status Daemon::open_tun(const TunnelConfig& tunnel) {
  LedgerEntry entry;
  entry.kind = LedgerEntry::Kind::kTun;
  entry.name = config_.tun_name;
  if (auto recorded = steering_->ledger().record(entry); !recorded) return recorded;
  auto tun = TunDevice::create(config_.tun_name, /*offload=*/true);
  if (!tun) {
    // A link of that name that is not ours must survive our cleanup.
    if (tun.error().code == ErrorCode::kAlreadyExists) (void)steering_->ledger().forget_last();
    return tun.error().wrap("tun device " + config_.tun_name);
  }
  tun_.emplace(std::move(*tun));
  if (auto configured = tun_->configure(tunnel); !configured) {
    return configured.error().wrap("tun device " + config_.tun_name);
  }
  tun_address_ = tunnel.address;
  if (auto coalescing = tun_->set_gro_flush_timeout(kTunGroFlushTimeoutNs); !coalescing) {
    log_->info("tun={} packets reach the stack one by one: {}", config_.tun_name,
               coalescing.error().message);
  }
  tun_stream_.emplace(io_, ::dup(tun_->fd()));
  boost::system::error_code ec;
  tun_stream_->non_blocking(true, ec);
  if (ec) return Error::make(ErrorCode::kIo, "tun device {}: {}", config_.tun_name, ec.message());
  read_tun();
  return ok();
}

void Daemon::close_tun() {
  if (steering_ && steering_->tunnel_up()) (void)steering_->set_tunnel_down();
  if (tun_stream_) {
    boost::system::error_code ignored;
    tun_stream_->close(ignored);
    tun_stream_.reset();
  }
  if (tun_) tun_->close();
  tun_.reset();
  tun_address_.reset();
}

// The packet pump toward the gateway. Every packet read from the TUN was routed there by the
// steering; the flow check confirms it against the socket table before it leaves.
void Daemon::read_tun() {
  tun_stream_->async_read_some(asio::buffer(tun_buffer_), [this, stream = &*tun_stream_](
                                                              boost::system::error_code ec,
                                                              size_t size) {
    if (ec == asio::error::operation_aborted || !tun_stream_ || &*tun_stream_ != stream) {
      return;
    }
    if (ec) {
      log_->error("tun read failed: {}", ec.message());
      return fail_kernel(Error::make(ErrorCode::kIo, "tun {}: {}", config_.tun_name, ec.message()));
    }
    turn_packets_ = 0;
    forward_read(size);
    // Whatever else the kernel queued goes in the same turn (the descriptor is non-blocking):
    // the session then sends the whole batch at once.
    if (!drain_tun()) return;
    read_tun();
  });
}

bool Daemon::drain_tun() {
  for (int count = 1; count < kTunBatch && turn_packets_ < kTunPacketsPerTurn; ++count) {
    ssize_t size = ::read(tun_stream_->native_handle(), tun_buffer_.data(), tun_buffer_.size());
    if (size > 0) {
      forward_read(static_cast<size_t>(size));
      continue;
    }
    if (size < 0 && errno == EINTR) continue;
    if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    std::string why = size == 0 ? "end of file" : std::strerror(errno);
    log_->error("tun read failed: {}", why);
    fail_kernel(Error::make(ErrorCode::kIo, "tun {}: {}", config_.tun_name, why));
    return false;
  }
  return true;
}

void Daemon::forward_read(size_t size) {
  // The kernel reports a packet's full length even when it did not fit (it cannot today).
  size = std::min(size, tun_buffer_.size());
  if (!tun_->vnet_header()) {
    return forward_from_tun(std::span<const uint8_t>(tun_buffer_.data(), size));
  }
  auto cut = offload::split(std::span<uint8_t>(tun_buffer_.data(), size), tun_segments_,
                            [this](std::span<const uint8_t> packet) { forward_from_tun(packet); });
  if (!cut && tun_read_refusals_++ == 0)
    log_->warn("tun={} {}", config_.tun_name, cut.error().message);
}

void Daemon::forward_from_tun(std::span<const uint8_t> packet) {
  turn_packets_++;
  if (pass_flow_check(packet) && !session_->send(packet)) send_failures_++;
}

bool Daemon::pass_flow_check(std::span<const uint8_t> packet) {
  if (!flow_check_) return false;
  if (flow_check_->admits_everything()) return true;
  if (auto decided = fragments_.later_fragment(packet)) {
    if (!*decided) fragment_drops_++;
    return *decided;
  }
  bool pass = flow_check_->check(packet) == FlowCheck::Decision::kPass;
  fragments_.first_fragment(packet, pass);
  return pass;
}

void Daemon::watch_exec_rules() {
  exec_stream_->async_wait(asio::posix::descriptor_base::wait_read,
                           [this, stream = &*exec_stream_](boost::system::error_code ec) {
                             if (ec || !exec_stream_ || &*exec_stream_ != stream) return;
                             if (auto polled = exec_watcher_->poll_once(); !polled) {
                               log_->error("exec rules: {}", polled.error().message);
                             }
                             watch_exec_rules();
                           });
}

void Daemon::fail_kernel(const Error& error) {
  last_error_ = error.message;
  exit_code_ = kDaemonExitKernel;
  log_->error("kernel setup failed: {}", error.message);
  fmt::print(stderr, "steward: vpn: cannot set up the kernel side: {}\n", error.message);
  disconnect("kernel setup failed");
}

void Daemon::disconnect(const std::string& why) {
  if (disconnecting_) {
    // A second request while the goodbye is in flight: stop without waiting for the gateway.
    session_->stop();
    return;
  }
  disconnecting_ = true;
  log_->info("disconnecting reason=\"{}\"", why);
  // Fail closed at once: nothing admitted goes anywhere while the session says goodbye.
  if (steering_ && steering_->tunnel_up()) (void)steering_->set_tunnel_down();
  auto state = session_ ? session_->state() : SessionState::kDown;
  if (state == SessionState::kDown) return teardown();
  session_->disconnect();
}

void Daemon::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  exec_stream_.reset();
  exec_watcher_.reset();
  close_tun();
  if (steering_) {
    if (auto stopped = steering_->stop(); !stopped) {
      log_->error("cleanup incomplete: {}", stopped.error().message);
      fmt::print(stderr,
                 "steward: vpn: cleanup incomplete: {} (run `steward vpn disconnect` to "
                 "retry)\n",
                 stopped.error().message);
      if (exit_code_ == kDaemonExitOk) exit_code_ = kDaemonExitKernel;
    }
    steering_.reset();
  }
  for (auto& waiting : waiting_runs_)
    waiting.reply(json::object{{"ok", false}, {"error", "the vpn daemon is stopping"}});
  waiting_runs_.clear();
  if (control_) control_->stop();
  if (http_) http_->stop();
  boost::system::error_code ignored;
  signals_.cancel(ignored);
  log_->info("stopped exit_code={}", exit_code_);
  asio::post(io_, [this] { io_.stop(); });
}

// ---- control socket

void Daemon::serve_control(const Peer& peer, const json::object& request,
                           ControlServer::Reply reply) {
  const json::value* op = request.if_contains("op");
  std::string name = op && op->is_string() ? std::string(op->get_string()) : "";
  auto refuse = [&](const std::string& message) {
    reply(json::object{{"ok", false}, {"error", message}});
  };
  if (name == "ping") return reply(json::object{{"ok", true}});
  if (name == "status") return reply(status());
  if (name == "disconnect") {
    log_->info("disconnect requested by pid={} uid={}", peer.pid, peer.uid);
    reply(json::object{{"ok", true}});
    return asio::post(io_, [this] { disconnect("requested over the control socket"); });
  }
  if (name == "run" || name == "admit") {
    if (disconnecting_) return refuse("the vpn daemon is stopping");
    if (!steering_) {
      if (name == "admit") return refuse("the tunnel is not up yet: try again when connected");
      auto pid = request.if_contains("pid");
      if (!pid || !pid->is_int64()) return refuse("run needs a pid");
      // The command waits for the first tunnel rather than starting unadmitted.
      waiting_runs_.push_back({peer, static_cast<pid_t>(pid->get_int64()), std::move(reply)});
      return;
    }
    auto admitted = admit(peer, request, name == "run");
    return admitted ? reply(*admitted) : refuse(admitted.error().message);
  }
  refuse("unknown op: use run, admit, status, disconnect");
}

Result<json::object> Daemon::admit(const Peer& peer, const json::object& request, bool run) {
  const json::value* pid_field = request.if_contains("pid");
  if (!pid_field || !pid_field->is_int64() || pid_field->get_int64() <= 1) {
    return Error{ErrorCode::kInvalidArgument, "pid must be a process id greater than 1"};
  }
  pid_t pid = static_cast<pid_t>(pid_field->get_int64());
  // Only root may admit another user's process.
  struct stat owner {};
  if (::stat(("/proc/" + std::to_string(pid)).c_str(), &owner) != 0) {
    return Error::make(ErrorCode::kNotFound, "no process {}", pid);
  }
  if (peer.uid != 0 && owner.st_uid != peer.uid) {
    return Error::make(ErrorCode::kUnauthenticated,
                       "permission denied: process {} belongs to uid {}", pid, owner.st_uid);
  }
  // A process in another network namespace has its own routes and nft: the steering set up
  // here never sees its packets, so admitting it would promise a tunnel it does not get.
  struct stat theirs {
  }, ours{};
  if (::stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &theirs) == 0 &&
      ::stat("/proc/self/ns/net", &ours) == 0 && theirs.st_ino != ours.st_ino) {
    log_->warn("admission pid={} exe={} decision=refuse reason=other-network-namespace", pid,
               executable_of(pid));
    return Error::make(ErrorCode::kConflict,
                       "process {} is in another network namespace than this VPN (net:[{}], the "
                       "daemon's is net:[{}]): its traffic would not pass the tunnel; run it in "
                       "the daemon's namespace (e.g. ip netns exec NAME steward vpn run -- ...)",
                       pid, theirs.st_ino, ours.st_ino);
  }
  json::object answer{{"ok", true}, {"pid", pid}, {"cgroup", steering_->cgroup().path()}};
  if (run) {
    if (auto added = steering_->cgroup().add_process(pid); !added) return added.error();
    admissions_++;
    // The process is still `steward vpn run` (it execs the command once admitted): log the
    // command it names as well.
    const json::value* command = request.if_contains("command");
    std::string name = command && command->is_string() ? std::string(command->get_string()) : "";
    name.erase(std::remove_if(name.begin(), name.end(),
                              [](unsigned char c) { return c < 0x20 || c == '"' || c == 0x7f; }),
               name.end());
    log_->info("admission pid={} exe={} command=\"{}\" decision=admit reason=run", pid,
               executable_of(pid), name.substr(0, 256));
    return answer;
  }
  auto earlier = admit_process(steering_->cgroup(), pid);
  if (!earlier) return earlier.error();
  admissions_++;
  json::array sockets;
  for (const auto& socket : *earlier)
    sockets.emplace_back(socket.to_string());
  answer["sockets_opened_before"] = std::move(sockets);
  const json::value* close = request.if_contains("close_existing");
  if (close && close->is_bool() && close->get_bool() && !earlier->empty()) {
    // Only connections toward the intranet: those are the ones the old cgroup keeps refused;
    // the process's other connections (the internet, the gateway itself) are left alone.
    const SteeringPlan& plan = steering_->plan();
    auto in = [](const std::vector<Prefix>& prefixes, const boost::asio::ip::address& address) {
      return std::any_of(prefixes.begin(), prefixes.end(),
                         [&](const Prefix& prefix) { return prefix.contains(address); });
    };
    std::vector<ProcessSocket> toward_intranet;
    for (const auto& socket : *earlier) {
      if (!socket.remote.is_unspecified() && in(plan.intranet, socket.remote) &&
          !in(plan.exclude, socket.remote)) {
        toward_intranet.push_back(socket);
      }
    }
    auto closed = close_sockets(toward_intranet);
    if (!closed) return closed.error();
    answer["closed"] = *closed;
  }
  return answer;
}

json::object Daemon::status() const {
  const TunnelConfig& tunnel = session_->config();
  const auto& counters = session_->counters();
  json::object out{{"ok", true},
                   {"state", std::string(cstp::to_string(session_->state()))},
                   {"gateway", config_.gateway},
                   {"instance", config_.instance},
                   {"tun", config_.tun_name},
                   {"tunnel_up", steering_ && steering_->tunnel_up()},
                   {"admit_all", config_.admit_all},
                   {"data_channel", std::string(cstp::to_string(session_->data_channel()))},
                   {"mtu", tunnel.mtu},
                   {"default_domain", tunnel.default_domain},
                   {"reconnects", counters.reconnects},
                   {"reauthentications", counters.reauthentications},
                   {"dtls_failures", counters.dtls_failures},
                   {"dropped_while_down", counters.dropped_while_down},
                   {"address_changes", address_changes_},
                   {"last_address_change", last_address_change_},
                   {"send_failures", send_failures_},
                   {"tun_write_failures", tun_write_failures_},
                   {"tun_read_refusals", tun_read_refusals_},
                   {"last_error", last_error_}};
  out["address"] = tunnel.address ? tunnel.address->to_string() : "";
  out["address6"] = tunnel.address6 ? tunnel.address6->to_string() : "";
  json::array dns;
  for (const auto& server : tunnel.dns)
    dns.emplace_back(server.to_string());
  out["dns"] = std::move(dns);
  out["routes"] = steering_ ? prefixes_json(steering_->plan().intranet) : json::array{};
  out["channels"] =
      json::object{{"cstp", channel_json(counters.cstp)}, {"dtls", channel_json(counters.dtls)}};
  json::object flow{
      {"drops", flow_drops_before_ + fragment_drops_ + (flow_check_ ? flow_check_->dropped() : 0)},
      {"lookups", flow_check_ ? flow_check_->lookups() : 0},
      {"cached_flows", flow_check_ ? flow_check_->cached_flows() : 0}};
  out["flow_check"] = std::move(flow);
  json::array admitted;
  if (steering_) {
    out["cgroup"] = steering_->cgroup().path();
    if (auto pids = steering_->cgroup().processes()) {
      for (pid_t pid : *pids)
        admitted.emplace_back(json::object{{"pid", pid}, {"exe", executable_of(pid)}});
    }
    if (auto nft = steering_->counters()) {
      out["steering"] = json::object{{"tunnelled", nft->tunnelled},
                                     {"refused_admitted", nft->refused_admitted},
                                     {"refused_others", nft->refused_others},
                                     {"dropped_late", nft->dropped_late}};
    }
  }
  out["admitted"] = std::move(admitted);
  return out;
}

// ---- HTTP status endpoint

std::string Daemon::render_metrics() {
  json::object now = status();
  const auto& counters = session_->counters();
  metrics_.gauge("steward_vpn_tunnel_up", "1 while the tunnel carries admitted traffic")
      .set({}, now["tunnel_up"].as_bool() ? 1 : 0);
  auto& packets = metrics_.counter("steward_vpn_packets_total", "IP packets per data channel");
  auto& bytes = metrics_.counter("steward_vpn_bytes_total", "IP bytes per data channel");
  for (auto [name, channel] : {std::pair{"cstp", &counters.cstp}, {"dtls", &counters.dtls}}) {
    packets.set({{"channel", name}, {"direction", "tx"}}, static_cast<double>(channel->tx_packets));
    packets.set({{"channel", name}, {"direction", "rx"}}, static_cast<double>(channel->rx_packets));
    bytes.set({{"channel", name}, {"direction", "tx"}}, static_cast<double>(channel->tx_bytes));
    bytes.set({{"channel", name}, {"direction", "rx"}}, static_cast<double>(channel->rx_bytes));
  }
  metrics_.gauge("steward_vpn_data_channel_dtls", "1 while data goes over DTLS")
      .set({}, session_->data_channel() == cstp::DataChannel::kDtls ? 1 : 0);
  metrics_.counter("steward_vpn_reconnects_total", "Tunnels reopened after a loss")
      .set({}, static_cast<double>(counters.reconnects));
  metrics_.counter("steward_vpn_reauthentications_total", "Logins after a refused cookie")
      .set({}, static_cast<double>(counters.reauthentications));
  metrics_.counter("steward_vpn_address_changes_total", "Reconnects that changed the address")
      .set({}, static_cast<double>(address_changes_));
  metrics_.counter("steward_vpn_flow_check_drops_total", "TUN packets of unadmitted sockets")
      .set({}, static_cast<double>(now["flow_check"].as_object()["drops"].to_number<double>()));
  metrics_.counter("steward_vpn_dropped_while_down_total", "Packets refused while reconnecting")
      .set({}, static_cast<double>(counters.dropped_while_down));
  metrics_.counter("steward_vpn_dtls_failures_total", "DTLS channels given up (data over CSTP)")
      .set({}, static_cast<double>(counters.dtls_failures));
  auto& failures = metrics_.counter("steward_vpn_data_failures_total",
                                    "Packets lost inside Steward, by where (should stay 0)");
  failures.set({{"where", "send"}}, static_cast<double>(send_failures_));
  failures.set({{"where", "tun_write"}}, static_cast<double>(tun_write_failures_));
  failures.set({{"where", "tun_read_refused"}}, static_cast<double>(tun_read_refusals_));
  metrics_.counter("steward_vpn_admissions_total", "Processes admitted (run, admit, exec rules)")
      .set({}, static_cast<double>(admissions_));
  metrics_.gauge("steward_vpn_admitted_processes", "Processes in the admitted cgroup")
      .set({}, static_cast<double>(now["admitted"].as_array().size()));
  if (const json::value* nft = now.if_contains("steering")) {
    auto& steered = metrics_.counter("steward_vpn_steering_packets_total",
                                     "Packets toward the intranet by nft verdict");
    for (const char* verdict : {"tunnelled", "refused_admitted", "refused_others", "dropped_late"})
      steered.set({{"verdict", verdict}}, nft->as_object().at(verdict).to_number<double>());
  }
  return metrics_.render();
}

void Daemon::serve_http() {
  http_ = std::make_unique<http::Server>(io_, config_.status_address, config_.status_port);
  http_->route("GET", "/healthz", [this](http::Request&, http::Reply reply) {
    bool up = steering_ && steering_->tunnel_up();
    reply(http::Response{
        up ? 200 : 503,
        json::serialize(json::object{{"state", std::string(cstp::to_string(session_->state()))}})});
  });
  http_->route("GET", "/v1/status", [this](http::Request&, http::Reply reply) {
    reply(http::Response{200, json::serialize(status())});
  });
  http_->route("GET", "/metrics", [this](http::Request&, http::Reply reply) {
    reply(http::Response{200, render_metrics(), "text/plain; version=0.0.4"});
  });
}

}  // namespace

int run_vpn_daemon(const VpnConfig& config, const LoginSecrets& secrets, DaemonHooks hooks) {
  ::signal(SIGPIPE, SIG_IGN);  // the gateway or a status client may close mid-write
  asio::io_context io;
  Daemon daemon(io, config, secrets, std::move(hooks));
  if (auto started = daemon.start(); !started) {
    fmt::print(stderr, "steward: vpn: {}\n", started.error().message);
    auto code = started.error().code;
    return code == ErrorCode::kInvalidArgument || code == ErrorCode::kConflict ? kDaemonExitUsage
                                                                               : kDaemonExitGateway;
  }
  io.run();
  return daemon.exit_code();
}

}  // namespace steward::vpn
