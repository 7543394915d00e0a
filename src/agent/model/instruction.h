// Control information: what a management server asks of one operating system of a terminal,
// and the status reports the agent sends back. JSON forms with strict validation: the parsers
// never throw, and malformed input yields ErrorCode::kInvalidArgument with a message naming the
// offending field. Unknown fields are errors, so that a newer server's instruction is never
// half-understood.
#pragma once

#include "core/result.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace steward::agent {

// Settings are desired state (newest sequence wins, each can be revoked); actions are one-shot
// commands; a cancel removes stored instructions by id and executes nothing itself.
enum class Kind { kSetting, kAction, kCancel };
std::string_view to_string(Kind kind);

struct Instruction {
  std::string id;        // unique per terminal, [A-Za-z0-9._:-]{1,128}
  std::string terminal;  // the terminal it is meant for
  std::string target;    // the system id of the operating system it is meant for
  Kind kind = Kind::kAction;
  std::string type;  // setting or action type ("camera", "lock"); empty for a cancel
  boost::json::object params;
  bool revoke = false;                   // settings only: lift the setting instead of imposing it
  int64_t sequence = 0;                  // per target OS, assigned by the server, 1 .. 2^53
  std::optional<int64_t> expires_at_ms;  // Unix milliseconds; absent: never expires
  std::vector<std::string> supersedes;   // stored instructions this one replaces
  std::vector<std::string> cancel;       // kCancel: the instructions to remove

  // Settings are keyed per OS by type: two revisions of one setting share a key.
  bool is_setting() const { return kind == Kind::kSetting; }
};

// Identifier rules, shared by the parser, the CLI and the configuration.
bool valid_id(std::string_view id);         // instruction ids
bool valid_system_id(std::string_view id);  // OS and terminal ids: [A-Za-z0-9._-]{1,64}
bool valid_type(std::string_view type);     // [a-z0-9_.-]{1,64}

Result<Instruction> instruction_from_json(const boost::json::value& json);
boost::json::object to_json(const Instruction& instruction);
// Parses JSON text (size- and depth-limited) into an instruction.
Result<Instruction> parse_instruction(std::string_view text);

// The fate of an instruction, as reported to the server.
enum class ReportStatus {
  kApplied,    // executed successfully
  kPending,    // stored; runs when its OS comes to the foreground
  kFailed,     // executed and failed (exit status and output in the report)
  kExpired,    // its expiry passed before it could run; never run
  kRejected,   // malformed, badly signed, unknown OS, stale setting: nothing stored
  kCancelled,  // removed by a cancel, a supersede, a newer setting revision or an OS reset
  kUnknown,    // the agent stopped while an action ran: it may or may not have completed
};
std::string_view to_string(ReportStatus status);
std::optional<ReportStatus> report_status_from_string(std::string_view text);

struct Report {
  std::string terminal;
  std::string instruction;  // id; empty when a rejected message had none
  std::string target;       // system id; may be empty for a rejected message
  ReportStatus status = ReportStatus::kPending;
  std::string detail;  // why, in words
  int64_t sequence = 0;
  std::optional<int> exit_code;  // executed instructions
  std::string output;            // captured executor output (truncated)
  int64_t at_ms = 0;             // wall clock when the agent decided

  bool operator==(const Report&) const = default;
};

boost::json::object to_json(const Report& report);
Result<Report> report_from_json(const boost::json::value& json);
Result<Report> parse_report(std::string_view text);

}  // namespace steward::agent
