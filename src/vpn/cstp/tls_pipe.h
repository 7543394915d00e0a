// Internal to vpn/cstp: the tunnel's TLS connection once its handshake is done, driven without
// asio::ssl::stream so that a batch of records leaves in one send() and every record that has
// arrived is decrypted in one wakeup. asio::ssl::stream costs one send() and one completion per
// record; a tunnel carries one record per packet.
//
// OpenSSL works on two memory BIOs that replace the stream's own; the TCP socket (non-blocking)
// is read and written here with recv()/send(), and Asio only says when it is ready. The TLS
// session (keys, sequence numbers) stays in the stream's SSL object, which owns the new BIOs.
//
// Ownership: the TlsConnection keeps the SSL object and the socket; it must outlive the pipe.
// Closing the socket ends a pending read() or flush() with an error.
// Threading: the session's io_context only. One read() and one flush() may wait at the same time.
#pragma once

#include "core/result.h"
#include "vpn/cstp/https.h"

#include <boost/asio/awaitable.hpp>

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace steward::vpn::cstp {

class TlsPipe {
 public:
  // Takes over the TLS session of `connection`, whose handshake is done and from which nothing
  // has been read since. Fails (kInternal) when OpenSSL already holds input it cannot hand over.
  static Result<std::unique_ptr<TlsPipe>> adopt(TlsConnection& connection);
  TlsPipe(const TlsPipe&) = delete;
  TlsPipe& operator=(const TlsPipe&) = delete;

  // Encrypts `plaintext` as exactly one TLS record (up to 16 KiB; more takes several, as with
  // any TLS writer) into the output queue; no I/O. Gateways such as ocserv read each record as
  // exactly one CSTP frame.
  Status write_record(std::span<const uint8_t> plaintext);
  // True when encrypted bytes wait for flush() (records, or OpenSSL's own answers produced
  // while reading, such as a TLS 1.3 key update).
  bool has_output() const;
  // Sends everything queued: as much as the socket takes per send(), waiting for it when full.
  // kUnavailable when the connection fails or is closed.
  boost::asio::awaitable<Status> flush();

  // Every byte that can be decrypted now (up to about 1 MiB), after reading whatever the socket
  // holds; waits for the socket when there is nothing yet. The span stays valid until the next
  // read(). kUnavailable when the gateway closed the connection, TLS failed, or the socket was
  // closed.
  boost::asio::awaitable<Result<std::span<const uint8_t>>> read();

 private:
  TlsPipe(TlsConnection& connection, BIO* in, BIO* out);
  Status decrypt_available();
  // Moves what the socket holds into the input BIO; the byte count (0: nothing there now).
  Result<size_t> receive_available();

  boost::asio::ip::tcp::socket& socket_;
  SSL* ssl_;
  BIO* in_;   // ciphertext from the gateway, owned by ssl_
  BIO* out_;  // ciphertext for the gateway, owned by ssl_
  std::vector<uint8_t> sending_;
  size_t sent_ = 0;
  std::vector<uint8_t> received_;
  std::vector<uint8_t> decrypted_;  // allocated once: no per-record allocation or zeroing
  size_t decrypted_size_ = 0;
};

}  // namespace steward::vpn::cstp
