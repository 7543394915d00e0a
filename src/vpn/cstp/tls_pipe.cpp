#include "vpn/cstp/tls_pipe.h"

#include "vpn/cstp/openssl_error.h"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/err.h>

#include <cerrno>
#include <cstring>

namespace steward::vpn::cstp {
namespace {

namespace asio = boost::asio;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// Read from the socket per recv(), and at most per wakeup (then the other loops get a turn).
constexpr size_t kReceiveChunk = 256 * 1024;
constexpr size_t kReceivePerWakeup = 1024 * 1024;
// Plaintext room per SSL_read (one record at most), and per read().
constexpr size_t kRecordRoom = 16 * 1024;
constexpr size_t kDecryptedPerRead = kReceivePerWakeup + kRecordRoom;

Error lost(std::string_view what, std::string_view why) {
  return Error::make(ErrorCode::kUnavailable, "{}: {}", what, why);
}

}  // namespace

TlsPipe::TlsPipe(TlsConnection& connection, BIO* in, BIO* out)
    : socket_(connection.stream->next_layer()),
      ssl_(connection.stream->native_handle()),
      in_(in),
      out_(out),
      decrypted_(kDecryptedPerRead) {}

Result<std::unique_ptr<TlsPipe>> TlsPipe::adopt(TlsConnection& connection) {
  SSL* ssl = connection.stream->native_handle();
  // Whatever the stream's BIO still holds would be lost with it.
  if (SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0 ||
      !connection.buffer.empty()) {
    return Error::make(ErrorCode::kInternal, "TLS connection has unread input to hand over");
  }
  boost::system::error_code ec;
  connection.stream->next_layer().non_blocking(true, ec);
  if (ec) return lost("cannot make the gateway socket non-blocking", ec.message());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (in == nullptr || out == nullptr) {
    BIO_free(in);
    BIO_free(out);
    return Error::make(ErrorCode::kInternal, "cannot create TLS buffers: {}", openssl_reason());
  }
  // An empty memory BIO says "retry later" rather than end of file.
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(ssl, in, out);
  return std::unique_ptr<TlsPipe>(new TlsPipe(connection, in, out));
}

Status TlsPipe::write_record(std::span<const uint8_t> plaintext) {
  if (plaintext.empty()) {
    return Error::make(ErrorCode::kInvalidArgument, "a TLS record needs at least one byte");
  }
  int written = SSL_write(ssl_, plaintext.data(), static_cast<int>(plaintext.size()));
  if (written != static_cast<int>(plaintext.size())) {
    return lost("cannot encrypt for the gateway", openssl_reason());
  }
  return ok();
}

bool TlsPipe::has_output() const {
  return sent_ < sending_.size() || BIO_ctrl_pending(out_) > 0;
}

asio::awaitable<Status> TlsPipe::flush() {
  while (true) {
    // Take what OpenSSL produced since the last round.
    if (size_t more = BIO_ctrl_pending(out_); more > 0) {
      size_t at = sending_.size();
      sending_.resize(at + more);
      int got = BIO_read(out_, sending_.data() + at, static_cast<int>(more));
      sending_.resize(at + static_cast<size_t>(std::max(got, 0)));
    }
    if (sent_ == sending_.size()) break;
    ssize_t sent = ::send(socket_.native_handle(), sending_.data() + sent_, sending_.size() - sent_,
                          MSG_NOSIGNAL);
    if (sent > 0) {
      sent_ += static_cast<size_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      co_return lost("cannot send to gateway", std::strerror(errno));
    }
    auto [ec] = co_await socket_.async_wait(asio::socket_base::wait_write, kTuple);
    if (ec) co_return lost("cannot send to gateway", ec.message());
  }
  sending_.clear();
  sent_ = 0;
  co_return ok();
}

Status TlsPipe::decrypt_available() {
  // The error queue is only filled by a failure, which ends the loop: clear it once.
  ERR_clear_error();
  while (decrypted_size_ + kRecordRoom <= decrypted_.size()) {
    int got = SSL_read(ssl_, decrypted_.data() + decrypted_size_, static_cast<int>(kRecordRoom));
    if (got > 0) {
      decrypted_size_ += static_cast<size_t>(got);
      continue;
    }
    switch (SSL_get_error(ssl_, got)) {
      case SSL_ERROR_WANT_READ:
        return ok();  // the rest of a record has not arrived yet
      case SSL_ERROR_ZERO_RETURN:
        return lost("gateway connection lost", "the gateway closed the TLS session");
      default:
        return lost("gateway connection lost", openssl_reason());
    }
  }
  return ok();  // full: the rest stays in OpenSSL for the next read()
}

Result<size_t> TlsPipe::receive_available() {
  size_t total = 0;
  received_.resize(kReceiveChunk);
  while (total < kReceivePerWakeup) {
    ssize_t got = ::recv(socket_.native_handle(), received_.data(), received_.size(), 0);
    if (got > 0) {
      BIO_write(in_, received_.data(), static_cast<int>(got));
      total += static_cast<size_t>(got);
      if (static_cast<size_t>(got) < received_.size()) break;  // the socket is empty now
      continue;
    }
    if (got == 0) return lost("gateway connection lost", "end of stream");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return lost("gateway connection lost", std::strerror(errno));
  }
  return total;
}

asio::awaitable<Result<std::span<const uint8_t>>> TlsPipe::read() {
  decrypted_size_ = 0;
  while (true) {
    if (auto decrypted = decrypt_available(); !decrypted) co_return decrypted.error();
    if (decrypted_size_ > 0) co_return std::span<const uint8_t>(decrypted_.data(), decrypted_size_);
    auto received = receive_available();
    if (!received) co_return received.error();
    if (*received > 0) continue;
    auto [ec] = co_await socket_.async_wait(asio::socket_base::wait_read, kTuple);
    if (ec) co_return lost("gateway connection lost", ec.message());
  }
}

}  // namespace steward::vpn::cstp
