// The reason OpenSSL gives for its last failure on this thread, for error messages.
#pragma once

#include <openssl/err.h>

#include <string>

namespace steward::vpn::cstp {

// Takes the oldest queued error and clears the rest of the thread's queue.
inline std::string openssl_reason() {
  unsigned long code = ERR_get_error();
  if (code == 0) return "no OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return text;
}

}  // namespace steward::vpn::cstp
