#include "agent/model/instruction.h"

#include <boost/json.hpp>

#include <algorithm>
#include <set>

namespace steward::agent {
namespace json = boost::json;
namespace {

constexpr size_t kMaxMessageBytes = 64 * 1024;
constexpr size_t kMaxIdList = 64;
constexpr int64_t kMaxSequence = int64_t{1} << 53;  // exact in every JSON implementation
constexpr size_t kMaxOutput = 4096;

Error invalid(std::string message) {
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}

bool all_of(std::string_view text, size_t max, bool (*allowed)(char)) {
  return !text.empty() && text.size() <= max && std::all_of(text.begin(), text.end(), allowed);
}

bool id_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
         c == '-';
}
bool system_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}
bool type_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

Result<json::value> parse_json_text(std::string_view text, std::string_view what) {
  if (text.size() > kMaxMessageBytes) {
    return invalid(fmt::format("{} is {} bytes, more than the limit of {}", what, text.size(),
                               kMaxMessageBytes));
  }
  json::parse_options options;
  options.max_depth = 16;
  boost::system::error_code ec;
  json::value value = json::parse(text, ec, {}, options);
  if (ec) return invalid(fmt::format("{} is not JSON: {}", what, ec.message()));
  return value;
}

// Reads typed fields of one JSON object and remembers which keys were read, so that
// unknown keys can be refused at the end.
class Fields {
 public:
  Fields(const json::object& object, std::string_view what) : object_(object), what_(what) {}

  const json::value* find(std::string_view key) {
    read_.insert(std::string(key));
    const json::value* found = object_.if_contains(key);
    return found && !found->is_null() ? found : nullptr;
  }

  Status text(std::string_view key, std::string& out, bool required) {
    const json::value* found = find(key);
    if (!found) {
      return required ? invalid(fmt::format("{}: field '{}' is required", what_, key)) : ok();
    }
    if (!found->is_string()) return invalid(fmt::format("{}: '{}' must be a string", what_, key));
    out = std::string(found->get_string());
    return ok();
  }

  Status integer(std::string_view key, std::optional<int64_t>& out, int64_t min, int64_t max) {
    const json::value* found = find(key);
    if (!found) return ok();
    int64_t value = 0;
    if (found->is_int64()) {
      value = found->get_int64();
    } else if (found->is_uint64() && found->get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
      value = static_cast<int64_t>(found->get_uint64());
    } else {
      return invalid(fmt::format("{}: '{}' must be an integer", what_, key));
    }
    if (value < min || value > max) {
      return invalid(fmt::format("{}: '{}' must be in [{}, {}]", what_, key, min, max));
    }
    out = value;
    return ok();
  }

  Status id_list(std::string_view key, std::vector<std::string>& out) {
    const json::value* found = find(key);
    if (!found) return ok();
    if (!found->is_array() || found->get_array().size() > kMaxIdList) {
      return invalid(fmt::format("{}: '{}' must be an array of at most {} instruction ids", what_,
                                 key, kMaxIdList));
    }
    for (const json::value& item : found->get_array()) {
      if (!item.is_string() || !valid_id(item.get_string())) {
        return invalid(fmt::format("{}: '{}' holds an invalid instruction id", what_, key));
      }
      out.emplace_back(item.get_string());
    }
    return ok();
  }

  Status no_unknown_keys() const {
    for (const auto& entry : object_) {
      if (!read_.count(std::string(entry.key()))) {
        return invalid(fmt::format("{}: unknown field '{}'", what_, std::string(entry.key())));
      }
    }
    return ok();
  }

 private:
  const json::object& object_;
  std::string_view what_;
  std::set<std::string> read_;
};

Status check_identity(const Instruction& out) {
  if (!valid_id(out.id)) {
    return invalid("instruction: 'id' must be 1-128 characters of [A-Za-z0-9._:-]");
  }
  if (!valid_system_id(out.terminal)) {
    return invalid("instruction: 'terminal' must be 1-64 characters of [A-Za-z0-9._-]");
  }
  if (!valid_system_id(out.target)) {
    return invalid("instruction: 'target' must be 1-64 characters of [A-Za-z0-9._-]");
  }
  return ok();
}

// Rules between fields that depend on the kind.
Status check_kind_rules(const Instruction& out, bool revoke_given) {
  if (out.kind == Kind::kCancel) {
    if (!out.type.empty()) return invalid("instruction: a cancel has no 'type'");
    if (out.cancel.empty()) return invalid("instruction: a cancel needs a non-empty 'cancel' list");
    if (!out.params.empty()) return invalid("instruction: a cancel has no 'params'");
  } else {
    if (!valid_type(out.type)) {
      return invalid("instruction: 'type' must be 1-64 characters of [a-z0-9_.-]");
    }
    if (!out.cancel.empty()) return invalid("instruction: only a cancel may carry 'cancel'");
  }
  if (revoke_given && out.kind != Kind::kSetting) {
    return invalid("instruction: only a setting may carry 'revoke'");
  }
  for (const auto& list : {out.supersedes, out.cancel}) {
    if (std::find(list.begin(), list.end(), out.id) != list.end()) {
      return invalid("instruction: an instruction cannot cancel or supersede itself");
    }
  }
  return ok();
}

}  // namespace

std::string_view to_string(Kind kind) {
  switch (kind) {
    case Kind::kSetting:
      return "setting";
    case Kind::kAction:
      return "action";
    case Kind::kCancel:
      return "cancel";
  }
  return "action";
}

bool valid_id(std::string_view id) {
  return all_of(id, 128, id_char);
}
bool valid_system_id(std::string_view id) {
  return all_of(id, 64, system_char);
}
bool valid_type(std::string_view type) {
  return all_of(type, 64, type_char);
}

Result<Instruction> instruction_from_json(const json::value& value) {
  if (!value.is_object()) return invalid("instruction: must be a JSON object");
  Fields fields(value.get_object(), "instruction");
  Instruction out;
  std::string kind;
  for (auto [key, target] : {std::pair{"id", &out.id},
                             {"terminal", &out.terminal},
                             {"target", &out.target},
                             {"kind", &kind}}) {
    if (auto status = fields.text(key, *target, true); !status) return status.error();
  }
  if (auto status = check_identity(out); !status) return status.error();
  if (kind == "setting") {
    out.kind = Kind::kSetting;
  } else if (kind == "action") {
    out.kind = Kind::kAction;
  } else if (kind == "cancel") {
    out.kind = Kind::kCancel;
  } else {
    return invalid("instruction: 'kind' must be \"setting\", \"action\" or \"cancel\"");
  }
  if (auto status = fields.text("type", out.type, false); !status) return status.error();

  // Parameters, revoke, ordering and expiry.
  if (const json::value* params = fields.find("params")) {
    if (!params->is_object()) return invalid("instruction: 'params' must be an object");
    out.params = params->get_object();
  }
  const json::value* revoke = fields.find("revoke");
  if (revoke && !revoke->is_bool()) return invalid("instruction: 'revoke' must be true or false");
  out.revoke = revoke && revoke->get_bool();
  std::optional<int64_t> sequence;
  if (auto status = fields.integer("sequence", sequence, 1, kMaxSequence); !status) {
    return status.error();
  }
  if (!sequence) return invalid("instruction: field 'sequence' is required");
  out.sequence = *sequence;
  if (auto status = fields.integer("expires_at_ms", out.expires_at_ms, 1, INT64_MAX); !status) {
    return status.error();
  }

  // Supersede and cancel lists, then the rules that span fields.
  if (auto status = fields.id_list("supersedes", out.supersedes); !status) return status.error();
  if (auto status = fields.id_list("cancel", out.cancel); !status) return status.error();
  if (auto status = fields.no_unknown_keys(); !status) return status.error();
  if (auto status = check_kind_rules(out, revoke != nullptr); !status) return status.error();
  return out;
}

json::object to_json(const Instruction& instruction) {
  json::object out{{"id", instruction.id},
                   {"terminal", instruction.terminal},
                   {"target", instruction.target},
                   {"kind", to_string(instruction.kind)},
                   {"sequence", instruction.sequence}};
  if (!instruction.type.empty()) out["type"] = instruction.type;
  if (!instruction.params.empty()) out["params"] = instruction.params;
  if (instruction.kind == Kind::kSetting) out["revoke"] = instruction.revoke;
  if (instruction.expires_at_ms) out["expires_at_ms"] = *instruction.expires_at_ms;
  auto list = [](const std::vector<std::string>& ids) {
    json::array array;
    for (const auto& id : ids)
      array.emplace_back(id);
    return array;
  };
  if (!instruction.supersedes.empty()) out["supersedes"] = list(instruction.supersedes);
  if (!instruction.cancel.empty()) out["cancel"] = list(instruction.cancel);
  return out;
}

Result<Instruction> parse_instruction(std::string_view text) {
  auto value = parse_json_text(text, "instruction");
  if (!value) return value.error();
  return instruction_from_json(*value);
}

std::string_view to_string(ReportStatus status) {
  switch (status) {
    case ReportStatus::kApplied:
      return "applied";
    case ReportStatus::kPending:
      return "pending";
    case ReportStatus::kFailed:
      return "failed";
    case ReportStatus::kExpired:
      return "expired";
    case ReportStatus::kRejected:
      return "rejected";
    case ReportStatus::kCancelled:
      return "cancelled";
    case ReportStatus::kUnknown:
      return "unknown";
  }
  return "unknown";
}

std::optional<ReportStatus> report_status_from_string(std::string_view text) {
  for (auto status : {ReportStatus::kApplied, ReportStatus::kPending, ReportStatus::kFailed,
                      ReportStatus::kExpired, ReportStatus::kRejected, ReportStatus::kCancelled,
                      ReportStatus::kUnknown}) {
    if (to_string(status) == text) return status;
  }
  return std::nullopt;
}

json::object to_json(const Report& report) {
  json::object out{{"terminal", report.terminal}, {"instruction", report.instruction},
                   {"target", report.target},     {"status", to_string(report.status)},
                   {"detail", report.detail},     {"sequence", report.sequence},
                   {"at_ms", report.at_ms}};
  if (report.exit_code) out["exit_code"] = *report.exit_code;
  if (!report.output.empty()) out["output"] = report.output.substr(0, kMaxOutput);
  return out;
}

Result<Report> report_from_json(const json::value& value) {
  if (!value.is_object()) return invalid("report: must be a JSON object");
  Fields fields(value.get_object(), "report");
  Report out;
  std::string status;
  for (auto [key, target] : {std::pair{"terminal", &out.terminal},
                             {"instruction", &out.instruction},
                             {"target", &out.target},
                             {"status", &status},
                             {"detail", &out.detail},
                             {"output", &out.output}}) {
    bool required = key == std::string_view("terminal") || key == std::string_view("status");
    if (auto checked = fields.text(key, *target, required); !checked) return checked.error();
  }
  auto parsed = report_status_from_string(status);
  if (!parsed) return invalid(fmt::format("report: unknown status '{}'", status));
  out.status = *parsed;
  std::optional<int64_t> sequence, at_ms, exit_code;
  if (auto checked = fields.integer("sequence", sequence, 0, kMaxSequence); !checked)
    return checked.error();
  if (auto checked = fields.integer("at_ms", at_ms, 0, INT64_MAX); !checked) return checked.error();
  if (auto checked = fields.integer("exit_code", exit_code, -1024, 1024); !checked)
    return checked.error();
  out.sequence = sequence.value_or(0);
  out.at_ms = at_ms.value_or(0);
  if (exit_code) out.exit_code = static_cast<int>(*exit_code);
  if (auto checked = fields.no_unknown_keys(); !checked) return checked.error();
  return out;
}

Result<Report> parse_report(std::string_view text) {
  auto value = parse_json_text(text, "report");
  if (!value) return value.error();
  return report_from_json(*value);
}

}  // namespace steward::agent
