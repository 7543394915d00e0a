// The VPN daemon (`steward vpn connect`): one io_context owns the gateway Session, the TUN
// device, the Steering of the kernel, the FlowCheck on the TUN and the ExecRuleWatcher, plus a
// control socket (control.h) and an HTTP status endpoint (/healthz, /v1/status, /metrics).
//
//   TUN read -> FlowCheck (first packet of a new flow) -> Session::send -> gateway
//   gateway  -> Session on_packet -> TUN write
//   Session connected      -> steering up (started on the first tunnel, from its config)
//   Session reconnecting   -> steering down: admitted intranet traffic is refused locally
//   address change         -> new TUN with the new address, logged, counted, in the status
//   SIGTERM/SIGINT, `disconnect` -> user disconnect, steering stopped (everything removed)
//
// At start it removes whatever a crashed instance left (its ledger). When a kernel piece
// cannot be set up it says which and exits without leaving anything behind.
#pragma once

#include "vpn/config.h"

#include <functional>

namespace steward::vpn {

// Exit codes of `steward vpn connect` (docs/vpn.md).
inline constexpr int kDaemonExitOk = 0;       // user disconnect or signal; everything removed
inline constexpr int kDaemonExitGateway = 1;  // login refused, gateway unverifiable or lost
inline constexpr int kDaemonExitUsage = 2;    // bad configuration or credentials
inline constexpr int kDaemonExitKernel = 4;   // a kernel piece (TUN, nft, rules, cgroup) refused

struct DaemonHooks {
  // Called once on the loop thread when the first tunnel is up and steered (--background waits
  // for it before the parent exits).
  std::function<void()> on_ready;
};

// Runs until the session ends (signal, `disconnect`, or a failure). Returns the exit code;
// prints why it could not start or why it ended to stderr.
int run_vpn_daemon(const VpnConfig& config, const LoginSecrets& secrets, DaemonHooks hooks = {});

}  // namespace steward::vpn
