// Internal to vpn/cstp: the DTLS data channel of PSK-NEGOTIATE. OpenSSL DTLS 1.2 on a connected
// UDP socket that Asio watches for readiness: the pre-shared key comes from the CSTP TLS session
// (exporter label "EXPORTER-openconnect-psk"), the identity is "psk", and the ClientHello carries
// the gateway's X-DTLS-App-ID as its session id so the gateway can find the session.
//
// Once the handshake is done, OpenSSL reads and writes memory buffers instead of the socket:
// send() encrypts one datagram into a queue and flush() hands the queue to the kernel with
// sendmmsg(); receive() takes up to 64 datagrams per recvmmsg() and decrypts them one by one.
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
  // Encrypts one datagram (the 1-byte-type frame) into the send queue; flush() sends it. Fails
  // when the queue is full (the socket has not taken the earlier ones) or the channel is closed.
  Status send(std::span<const uint8_t> datagram);
  // Sends the queue, as much as the socket takes now; the rest goes when it is writable again.
  // Datagrams the kernel refuses (an error other than a full buffer) are dropped and counted:
  // the channel is a datagram service, and DTLS DPD notices a dead path.
  void flush();
  uint64_t dropped() const { return dropped_; }
  // Waits for one datagram and decrypts it into `buffer`; returns its size.
  boost::asio::awaitable<Result<size_t>> receive(std::span<uint8_t> buffer);
  void close();
  bool is_open() const { return socket_.is_open(); }
  std::string cipher() const;

 private:
  DtlsChannel(const boost::asio::any_io_executor& executor);
  Status use_memory_buffers();
  void queue_output();
  // The start of datagram `index` of the send queue, and how many datagrams from it can leave
  // as one UDP segmentation-offload send (equal sizes; the last of the run may be shorter).
  size_t outgoing_begin(size_t index) const;
  size_t segment_run(size_t first) const;
  // Moves up to a batch of datagrams from the socket into incoming_; how many (0: none now).
  Result<size_t> receive_batch();

  boost::asio::ip::udp::socket socket_;
  SSL_CTX* context_ = nullptr;
  SSL* ssl_ = nullptr;
  std::array<uint8_t, kDtlsPskSize> psk_{};
  // After the handshake: OpenSSL's memory buffers (owned by ssl_), or null before.
  BIO* in_ = nullptr;
  BIO* out_ = nullptr;

  // Encrypted datagrams waiting for the socket: their bytes one after the other, and where each
  // ends. `sent_` of them have gone.
  std::vector<uint8_t> outgoing_;
  std::vector<size_t> outgoing_ends_;
  size_t sent_ = 0;
  bool waiting_writable_ = false;
  // Runs of equal datagrams leave as one send with UDP_SEGMENT (the kernel cuts them): off
  // after the kernel refuses it once.
  bool segmentation_ = true;
  uint64_t dropped_ = 0;
  // Datagrams received by the last recvmmsg(), `next_` of them decrypted.
  std::vector<uint8_t> incoming_;
  std::vector<size_t> incoming_sizes_;
  size_t received_ = 0;
  size_t next_ = 0;
  // Ends the writable wait of a channel that is gone.
  std::shared_ptr<DtlsChannel*> self_ = std::make_shared<DtlsChannel*>(this);
};

}  // namespace steward::vpn::cstp
