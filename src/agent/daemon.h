// The agent daemon (`steward agent run`): wires the store, the gate and its executors, the
// foreground source, the MQTT transport, the local command socket and the HTTP endpoint
// (/metrics, /v1/status) together.
//
// Threads: the main thread runs the event loop (HTTP, local socket, timers, signals); the gate
// thread owns the store, the gate and the executors, and runs every decision and execution in
// turn; Paho's thread delivers messages and completions, which are posted to the gate thread.
#pragma once

#include "agent/config.h"

namespace steward::agent {

// Runs until SIGINT or SIGTERM. Returns the process exit code; prints why it could not start.
int run_agent(const AgentConfig& config);

}  // namespace steward::agent
