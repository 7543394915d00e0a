#include "vpn/cstp/dtls.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/err.h>
#include <openssl/rand.h>

#include <cstring>

namespace steward::vpn::cstp {
namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kPskLabel = "EXPORTER-openconnect-psk";
constexpr std::string_view kPskIdentity = "psk";

std::string openssl_reason() {
  unsigned long code = ERR_get_error();
  if (code == 0) return "no OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return text;
}

Result<std::vector<uint8_t>> unhex(std::string_view hex) {
  std::vector<uint8_t> bytes;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0 || hex.size() > 2 * SSL_MAX_SSL_SESSION_ID_LENGTH) {
    return Error::make(ErrorCode::kInternal, "X-DTLS-App-ID '{}' is not a session id", hex);
  }
  for (size_t i = 0; i < hex.size(); i += 2) {
    int high = nibble(hex[i]);
    int low = nibble(hex[i + 1]);
    if (high < 0 || low < 0) {
      return Error::make(ErrorCode::kInternal, "X-DTLS-App-ID '{}' is not hex", hex);
    }
    bytes.push_back(static_cast<uint8_t>(high << 4 | low));
  }
  return bytes;
}

unsigned int psk_callback(SSL* ssl, const char* /*hint*/, char* identity,
                          unsigned int max_identity_length, unsigned char* psk,
                          unsigned int max_psk_length) {
  auto* key = static_cast<const std::array<uint8_t, kDtlsPskSize>*>(SSL_get_app_data(ssl));
  if (key == nullptr || max_identity_length <= kPskIdentity.size() ||
      max_psk_length < kDtlsPskSize) {
    return 0;
  }
  std::memcpy(identity, kPskIdentity.data(), kPskIdentity.size());
  identity[kPskIdentity.size()] = '\0';
  std::memcpy(psk, key->data(), kDtlsPskSize);
  return kDtlsPskSize;
}

// OpenSSL puts a session's id in the ClientHello only when it has a session to resume. This one
// never existed: it carries the gateway's App-ID so the gateway routes the handshake to our
// session, and the gateway answers with a full PSK handshake.
Status set_app_id_session(SSL* ssl, const std::vector<uint8_t>& app_id) {
  SSL_SESSION* session = SSL_SESSION_new();
  if (session == nullptr) return Error::make(ErrorCode::kInternal, "SSL_SESSION_new failed");
  std::array<uint8_t, 48> master{};
  RAND_bytes(master.data(), static_cast<int>(master.size()));
  const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(SSL_get_ciphers(ssl), 0);
  bool set =
      SSL_SESSION_set_protocol_version(session, DTLS1_2_VERSION) == 1 &&
      SSL_SESSION_set1_id(session, app_id.data(), static_cast<unsigned>(app_id.size())) == 1 &&
      cipher != nullptr && SSL_SESSION_set_cipher(session, cipher) == 1 &&
      SSL_SESSION_set1_master_key(session, master.data(), master.size()) == 1 &&
      SSL_set_session(ssl, session) == 1;
  SSL_SESSION_free(session);
  if (!set) {
    return Error::make(ErrorCode::kInternal, "cannot prepare the DTLS session: {}",
                       openssl_reason());
  }
  return ok();
}

}  // namespace

Result<std::array<uint8_t, kDtlsPskSize>> export_dtls_psk(SSL* tls) {
  std::array<uint8_t, kDtlsPskSize> key{};
  if (SSL_export_keying_material(tls, key.data(), key.size(), kPskLabel.data(), kPskLabel.size(),
                                 nullptr, 0, 0) != 1) {
    return Error::make(ErrorCode::kInternal, "cannot export the DTLS key: {}", openssl_reason());
  }
  return key;
}

DtlsChannel::DtlsChannel(const asio::any_io_executor& executor) : socket_(executor) {}

DtlsChannel::~DtlsChannel() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (context_ != nullptr) SSL_CTX_free(context_);
}

Result<std::unique_ptr<DtlsChannel>> DtlsChannel::create(
    const asio::any_io_executor& executor, const asio::ip::udp::endpoint& gateway,
    const std::array<uint8_t, kDtlsPskSize>& psk, std::string_view app_id_hex) {
  auto app_id = unhex(app_id_hex);
  if (!app_id) return app_id.error();
  std::unique_ptr<DtlsChannel> channel(new DtlsChannel(executor));
  channel->psk_ = psk;

  // A connected UDP socket: OpenSSL reads and writes it directly, Asio only watches it.
  boost::system::error_code ec;
  channel->socket_.open(gateway.protocol(), ec);
  if (!ec) channel->socket_.connect(gateway, ec);
  if (!ec) channel->socket_.non_blocking(true, ec);
  if (ec) {
    return Error::make(ErrorCode::kUnavailable, "cannot open UDP to {}:{}: {}",
                       gateway.address().to_string(), gateway.port(), ec.message());
  }

  // DTLS 1.2 with PSK cipher suites only.
  channel->context_ = SSL_CTX_new(DTLS_client_method());
  if (channel->context_ == nullptr) {
    return Error::make(ErrorCode::kInternal, "cannot create a DTLS context: {}", openssl_reason());
  }
  SSL_CTX_set_min_proto_version(channel->context_, DTLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(channel->context_, DTLS1_2_VERSION);
  // Without read-ahead OpenSSL reads a record in pieces and loses the tail of datagrams.
  SSL_CTX_set_read_ahead(channel->context_, 1);
  if (SSL_CTX_set_cipher_list(channel->context_, "PSK") != 1) {
    return Error::make(ErrorCode::kInternal, "no DTLS PSK cipher suites: {}", openssl_reason());
  }
  channel->ssl_ = SSL_new(channel->context_);
  if (channel->ssl_ == nullptr) {
    return Error::make(ErrorCode::kInternal, "cannot create DTLS state: {}", openssl_reason());
  }
  SSL_set_app_data(channel->ssl_, &channel->psk_);
  SSL_set_psk_client_callback(channel->ssl_, psk_callback);
  SSL_set_connect_state(channel->ssl_);
  if (auto prepared = set_app_id_session(channel->ssl_, *app_id); !prepared) {
    return prepared.error();
  }
  BIO* bio = BIO_new_dgram(channel->socket_.native_handle(), BIO_NOCLOSE);
  if (bio == nullptr) return Error::make(ErrorCode::kInternal, "cannot create a DTLS BIO");
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0,
           const_cast<sockaddr*>(static_cast<const sockaddr*>(gateway.data())));
  SSL_set_bio(channel->ssl_, bio, bio);
  return channel;
}

asio::awaitable<Status> DtlsChannel::handshake(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::steady_timer timer(socket_.get_executor());
  while (true) {
    if (ssl_ == nullptr) co_return Error::make(ErrorCode::kUnavailable, "DTLS channel closed");
    ERR_clear_error();
    int result = SSL_do_handshake(ssl_);
    if (result == 1) co_return ok();
    int error = SSL_get_error(ssl_, result);
    if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
      co_return Error::make(ErrorCode::kUnavailable, "DTLS handshake failed: {}", openssl_reason());
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      co_return Error::make(ErrorCode::kTimeout, "DTLS handshake got no answer within {} ms",
                            timeout.count());
    }

    // Wait for the answer, or for the retransmission time DTLS asks for.
    timeval wait{};
    auto step = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (DTLSv1_get_timeout(ssl_, &wait) == 1) {
      step = std::min(step, std::chrono::milliseconds(wait.tv_sec * 1000 + wait.tv_usec / 1000));
    }
    timer.expires_after(step);
    auto which = co_await (socket_.async_wait(asio::socket_base::wait_read, kTuple) ||
                           timer.async_wait(kTuple));
    if (which.index() == 0) {
      auto [ec] = std::get<0>(which);
      if (ec) {
        co_return Error::make(ErrorCode::kUnavailable, "DTLS socket closed: {}", ec.message());
      }
    } else if (ssl_ != nullptr) {
      DTLSv1_handle_timeout(ssl_);
    }
  }
}

Status DtlsChannel::send(std::span<const uint8_t> datagram) {
  if (ssl_ == nullptr) return Error::make(ErrorCode::kUnavailable, "DTLS channel is closed");
  ERR_clear_error();
  int written = SSL_write(ssl_, datagram.data(), static_cast<int>(datagram.size()));
  if (written <= 0) {
    return Error::make(ErrorCode::kUnavailable, "DTLS send failed: {}", openssl_reason());
  }
  return ok();
}

asio::awaitable<Result<size_t>> DtlsChannel::receive(std::span<uint8_t> buffer) {
  while (true) {
    if (ssl_ == nullptr) {
      co_return Error::make(ErrorCode::kUnavailable, "DTLS channel is closed");
    }
    ERR_clear_error();
    int got = SSL_read(ssl_, buffer.data(), static_cast<int>(buffer.size()));
    if (got > 0) co_return static_cast<size_t>(got);
    int error = SSL_get_error(ssl_, got);
    if (error == SSL_ERROR_ZERO_RETURN) {
      co_return Error::make(ErrorCode::kUnavailable, "gateway closed the DTLS channel");
    }
    if (error != SSL_ERROR_WANT_READ) {
      co_return Error::make(ErrorCode::kUnavailable, "DTLS receive failed: {}", openssl_reason());
    }
    auto [ec] = co_await socket_.async_wait(asio::socket_base::wait_read, kTuple);
    if (ec) co_return Error::make(ErrorCode::kUnavailable, "DTLS socket: {}", ec.message());
  }
}

void DtlsChannel::close() {
  // OpenSSL must not touch the descriptor once it is closed (its number may be reused), so the
  // DTLS state goes first.
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  boost::system::error_code ignored;
  socket_.close(ignored);
}

std::string DtlsChannel::cipher() const {
  return ssl_ != nullptr ? SSL_get_cipher_name(ssl_) : "none";
}

}  // namespace steward::vpn::cstp
