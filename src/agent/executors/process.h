// Runs one program to completion with a deadline, capturing what it prints. Used by the
// executors; blocking, callable from any thread.
#pragma once

#include "core/result.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace steward::agent {

struct ProcessResult {
  std::optional<int> exit_code;  // absent when killed by a signal (or the timeout)
  bool timed_out = false;
  std::string output;  // stdout and stderr interleaved, at most `output_limit` bytes
};

struct ProcessOptions {
  std::vector<std::string> env;  // "KEY=value", added to the agent's environment
  std::string input;             // written to the program's stdin, then closed
  std::chrono::milliseconds timeout{10000};
  size_t output_limit = 4096;
};

// Starts `argv` (argv[0] searched in PATH) in its own process group; on timeout the whole group
// gets SIGKILL. Errors only when the program could not be started at all.
Result<ProcessResult> run_process(const std::vector<std::string>& argv,
                                  const ProcessOptions& options);

}  // namespace steward::agent
