#include "vpn/cstp/dtls.h"

#include "vpn/cstp/openssl_error.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/err.h>
#include <openssl/rand.h>

#include <netinet/udp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace steward::vpn::cstp {
namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kPskLabel = "EXPORTER-openconnect-psk";
constexpr std::string_view kPskIdentity = "psk";
// Datagrams per recvmmsg()/sendmmsg(), the room for one received datagram (the largest DTLS
// record), and how many encrypted datagrams may wait for the socket.
constexpr size_t kBatch = 64;
constexpr size_t kDatagramRoom = 16 * 1024 + 512;
constexpr size_t kMaxQueued = 1024;
// A segmentation-offload send carries at most this many datagrams (the kernel's UDP_MAX_SEGMENTS
// before 6.13) and this many bytes (an IPv4 datagram's payload): about 44 full-size packets.
constexpr size_t kMaxSegments = 64;
constexpr size_t kMaxSegmentedBytes = 65507;
// Socket buffers: a burst of datagrams should wait in the kernel rather than be dropped.
constexpr int kSocketBuffer = 4 << 20;

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
  if (!ec) {
    // Best effort: the kernel caps them at net.core.[rw]mem_max.
    boost::system::error_code ignored;
    channel->socket_.set_option(asio::socket_base::receive_buffer_size(kSocketBuffer), ignored);
    channel->socket_.set_option(asio::socket_base::send_buffer_size(kSocketBuffer), ignored);
    // A kernel before 4.18 would ignore the UDP_SEGMENT message and send a run as one large
    // datagram: segmentation only where the socket option exists.
    int none = 0;
    channel->segmentation_ = ::setsockopt(channel->socket_.native_handle(), SOL_UDP, UDP_SEGMENT,
                                          &none, sizeof(none)) == 0;
  }
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
    if (result == 1) co_return use_memory_buffers();
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

Status DtlsChannel::use_memory_buffers() {
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (in_ == nullptr || out_ == nullptr) {
    BIO_free(in_);
    BIO_free(out_);
    in_ = out_ = nullptr;
    return Error::make(ErrorCode::kInternal, "cannot create DTLS buffers: {}", openssl_reason());
  }
  BIO_set_mem_eof_return(in_, -1);
  SSL_set_bio(ssl_, in_, out_);  // frees the socket BIO; the socket stays ours
  incoming_.resize(kBatch * kDatagramRoom);
  incoming_sizes_.resize(kBatch);
  return ok();
}

// Whatever OpenSSL wrote since the last call is one datagram (a record, or an alert).
void DtlsChannel::queue_output() {
  size_t pending = BIO_ctrl_pending(out_);
  if (pending == 0) return;
  size_t at = outgoing_.size();
  outgoing_.resize(at + pending);
  int got = BIO_read(out_, outgoing_.data() + at, static_cast<int>(pending));
  outgoing_.resize(at + static_cast<size_t>(std::max(got, 0)));
  if (got > 0) outgoing_ends_.push_back(outgoing_.size());
}

Status DtlsChannel::send(std::span<const uint8_t> datagram) {
  if (ssl_ == nullptr || out_ == nullptr) {
    return Error::make(ErrorCode::kUnavailable, "DTLS channel is closed");
  }
  if (outgoing_ends_.size() - sent_ >= kMaxQueued) {
    return Error::make(ErrorCode::kUnavailable, "DTLS send queue is full");
  }
  ERR_clear_error();
  int written = SSL_write(ssl_, datagram.data(), static_cast<int>(datagram.size()));
  if (written <= 0) {
    return Error::make(ErrorCode::kUnavailable, "DTLS send failed: {}", openssl_reason());
  }
  queue_output();
  return ok();
}

size_t DtlsChannel::outgoing_begin(size_t index) const {
  return index == 0 ? 0 : outgoing_ends_[index - 1];
}

size_t DtlsChannel::segment_run(size_t first) const {
  if (!segmentation_) return 1;
  size_t size = outgoing_ends_[first] - outgoing_begin(first);
  size_t count = 1;
  size_t bytes = size;
  while (first + count < outgoing_ends_.size() && count < kMaxSegments) {
    size_t next = outgoing_ends_[first + count] - outgoing_begin(first + count);
    if (next > size || bytes + next > kMaxSegmentedBytes) break;
    count++;
    bytes += next;
    if (next < size) break;  // a shorter one ends the run
  }
  return count;
}

void DtlsChannel::flush() {
  std::array<mmsghdr, kBatch> messages{};
  std::array<iovec, kBatch> pieces{};
  std::array<size_t, kBatch> datagrams{};
  struct alignas(cmsghdr) Control {
    char bytes[CMSG_SPACE(sizeof(uint16_t))];
  };
  std::array<Control, kBatch> controls{};
  while (ssl_ != nullptr && sent_ < outgoing_ends_.size()) {
    size_t count = 0;
    for (size_t next = sent_; count < kBatch && next < outgoing_ends_.size(); ++count) {
      size_t run = segment_run(next);
      size_t begin = outgoing_begin(next);
      pieces[count] = iovec{outgoing_.data() + begin, outgoing_ends_[next + run - 1] - begin};
      messages[count] = mmsghdr{};
      messages[count].msg_hdr.msg_iov = &pieces[count];
      messages[count].msg_hdr.msg_iovlen = 1;
      if (run > 1) {
        messages[count].msg_hdr.msg_control = controls[count].bytes;
        messages[count].msg_hdr.msg_controllen = sizeof(controls[count].bytes);
        cmsghdr* header = CMSG_FIRSTHDR(&messages[count].msg_hdr);
        header->cmsg_level = SOL_UDP;
        header->cmsg_type = UDP_SEGMENT;
        header->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        auto segment = static_cast<uint16_t>(outgoing_ends_[next] - begin);
        std::memcpy(CMSG_DATA(header), &segment, sizeof(segment));
      }
      datagrams[count] = run;
      next += run;
    }
    int done = ::sendmmsg(socket_.native_handle(), messages.data(), static_cast<unsigned>(count),
                          MSG_DONTWAIT);
    if (done > 0) {
      for (size_t i = 0; i < static_cast<size_t>(done); ++i)
        sent_ += datagrams[i];
      continue;
    }
    if (done < 0 && errno == EINTR) continue;
    if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // The rest goes when the socket has room again.
      if (waiting_writable_) return;
      waiting_writable_ = true;
      socket_.async_wait(asio::socket_base::wait_write,
                         [self = std::weak_ptr<DtlsChannel*>(self_)](boost::system::error_code) {
                           auto channel = self.lock();
                           if (!channel) return;
                           (*channel)->waiting_writable_ = false;
                           (*channel)->flush();
                         });
      return;
    }
    if (done < 0 && datagrams[0] > 1 && (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT)) {
      // No segmentation offload on this kernel or route: datagram by datagram from now on.
      segmentation_ = false;
      continue;
    }
    // Refused by the kernel (no route, port unreachable): these datagrams are lost.
    dropped_ += datagrams[0];
    sent_ += datagrams[0];
  }
  if (sent_ == outgoing_ends_.size()) {
    outgoing_.clear();
    outgoing_ends_.clear();
    sent_ = 0;
  }
}

Result<size_t> DtlsChannel::receive_batch() {
  std::array<mmsghdr, kBatch> messages{};
  std::array<iovec, kBatch> pieces{};
  for (size_t i = 0; i < kBatch; ++i) {
    pieces[i] = iovec{incoming_.data() + i * kDatagramRoom, kDatagramRoom};
    messages[i].msg_hdr.msg_iov = &pieces[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  while (true) {
    int got = ::recvmmsg(socket_.native_handle(), messages.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (got > 0) {
      for (size_t i = 0; i < static_cast<size_t>(got); ++i)
        incoming_sizes_[i] = messages[i].msg_len;
      received_ = static_cast<size_t>(got);
      next_ = 0;
      return received_;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return Error::make(ErrorCode::kUnavailable, "DTLS receive failed: {}", std::strerror(errno));
  }
}

asio::awaitable<Result<size_t>> DtlsChannel::receive(std::span<uint8_t> buffer) {
  while (true) {
    if (ssl_ == nullptr || in_ == nullptr) {
      co_return Error::make(ErrorCode::kUnavailable, "DTLS channel is closed");
    }
    // Decrypt the datagrams already received, one at a time.
    while (next_ < received_) {
      BIO_write(in_, incoming_.data() + next_ * kDatagramRoom,
                static_cast<int>(incoming_sizes_[next_]));
      next_++;
      ERR_clear_error();
      int got = SSL_read(ssl_, buffer.data(), static_cast<int>(buffer.size()));
      if (BIO_ctrl_pending(out_) > 0) {
        queue_output();  // an alert or a handshake answer
        flush();
      }
      if (got > 0) co_return static_cast<size_t>(got);
      int error = SSL_get_error(ssl_, got);
      if (error == SSL_ERROR_ZERO_RETURN) {
        co_return Error::make(ErrorCode::kUnavailable, "gateway closed the DTLS channel");
      }
      if (error != SSL_ERROR_WANT_READ) {
        co_return Error::make(ErrorCode::kUnavailable, "DTLS receive failed: {}", openssl_reason());
      }
      // A datagram DTLS discarded (not ours, replayed, damaged): the next one.
    }

    // Take what the socket holds, up to a batch.
    auto received = receive_batch();
    if (!received) co_return received.error();
    if (*received > 0) continue;
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
  in_ = out_ = nullptr;  // freed with ssl_
  outgoing_.clear();
  outgoing_ends_.clear();
  sent_ = received_ = next_ = 0;
  boost::system::error_code ignored;
  socket_.close(ignored);
}

std::string DtlsChannel::cipher() const {
  return ssl_ != nullptr ? SSL_get_cipher_name(ssl_) : "none";
}

}  // namespace steward::vpn::cstp
