#include "core/result.h"

#include <stdexcept>

namespace steward {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

Error Error::wrap(std::string_view context) const {
  return Error{code, fmt::format("{}: {}", context, message)};
}

void throw_exception_from_error(const Error& error, boost::source_location const&) {
  throw std::logic_error(fmt::format("value() called on an error result: {}", error.message));
}

}  // namespace steward
