// Internal to vpn/cstp: the DTLS data channel of PSK-NEGOTIATE. OpenSSL DTLS 1.2 on a connected
// UDP socket that Asio watches for readiness: the pre-shared key comes from the CSTP TLS session
// (exporter label "EXPORTER-openconnect-psk"), the identity is "psk", and the ClientHello carries
// the gateway's X-DTLS-App-ID as its session id so the gateway can find the session.
#pragma once

#include "core/result.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>

#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace steward::vpn::cstp {

inline constexpr size_t kDtlsPskSize = 32;

// The PSK of the DTLS channel, from the established CSTP TLS session.
Result<std::array<uint8_t, kDtlsPskSize>> export_dtls_psk(SSL* tls);

// Not thread-safe; used from the session's io_context only. close() may be called while a
// receive() waits: the wait then ends with an error.
class DtlsChannel {
 public:
  // `app_id_hex`: X-DTLS-App-ID as the gateway sent it.
  static Result<std::unique_ptr<DtlsChannel>> create(const boost::asio::any_io_executor& executor,
                                                     const boost::asio::ip::udp::endpoint& gateway,
                                                     const std::array<uint8_t, kDtlsPskSize>& psk,
                                                     std::string_view app_id_hex);
  ~DtlsChannel();

  // Runs the handshake, retransmitting as DTLS wants, for at most `timeout`.
  boost::asio::awaitable<Status> handshake(std::chrono::milliseconds timeout);
  // Sends one datagram (the 1-byte-type frame). Fails when the socket cannot take it now.
  Status send(std::span<const uint8_t> datagram);
  // Waits for one datagram and decrypts it into `buffer`; returns its size.
  boost::asio::awaitable<Result<size_t>> receive(std::span<uint8_t> buffer);
  void close();
  bool is_open() const { return socket_.is_open(); }
  std::string cipher() const;

 private:
  DtlsChannel(const boost::asio::any_io_executor& executor);

  boost::asio::ip::udp::socket socket_;
  SSL_CTX* context_ = nullptr;
  SSL* ssl_ = nullptr;
  std::array<uint8_t, kDtlsPskSize> psk_{};
};

}  // namespace steward::vpn::cstp
