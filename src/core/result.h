// Error values. Expected failures (a peer, a file, the kernel, bad input) travel as
// `Result<T>`; exceptions never cross an event loop. Programming errors assert instead.
#pragma once

#include <boost/system/result.hpp>

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <utility>

namespace steward {

// What kind of failure it is. Northbound code maps these to HTTP statuses and CLI exit codes.
enum class ErrorCode {
  kInvalidArgument,  // the input is malformed or breaks a rule; retrying unchanged fails again
  kNotFound,         // a named object does not exist
  kAlreadyExists,    // creating something that is already there with different content
  kConflict,         // valid input that clashes with current state (a migration in flight)
  kUnavailable,      // a peer cannot be reached now; retrying later may succeed
  kTimeout,          // a peer did not answer in time
  kUnauthenticated,  // missing or wrong credentials
  kIo,               // the disk or the kernel refused
  kInternal,         // a peer answered something Steward does not understand
};

std::string_view to_string(ErrorCode code);

// An error: what kind, and a message for humans that says what failed and what to do.
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  template <typename... Args>
  static Error make(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
    return Error{code, fmt::format(format, std::forward<Args>(args)...)};
  }
  // Returns a copy whose message is prefixed with `context: `.
  Error wrap(std::string_view context) const;
};

// Lets `Result::value()` report an error it was called on (a programming error).
[[noreturn]] void throw_exception_from_error(const Error& error, boost::source_location const&);

template <typename T>
using Result = boost::system::result<T, Error>;
using Status = boost::system::result<void, Error>;

inline Status ok() {
  return {};
}

}  // namespace steward
