// CSTP framing: how IP packets and control messages travel inside the TLS stream of an
// OpenConnect tunnel, and the 1-byte header they carry on the DTLS channel. Pure functions and
// one incremental parser; no I/O, so the session, the tests and the fuzz target share them.
#pragma once

#include "core/result.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

namespace steward::vpn::cstp {

// The type byte of a frame (CSTP header byte 6; first byte of a DTLS datagram).
enum class FrameType : uint8_t {
  kData = 0,         // one IP packet
  kDpdRequest = 3,   // dead-peer probe; the peer answers kDpdResponse with the same payload
  kDpdResponse = 4,  // answer to kDpdRequest
  kDisconnect = 5,   // first payload byte is a reason code (see kUserDisconnectReason), then text
  kKeepalive = 7,    // keeps middleboxes' state alive; no answer
  kCompressed = 8,   // compressed IP packet; Steward never asks for compression
  kTerminate = 9,    // the server ends the session
};

// True for the type values above; any other byte on the wire is a protocol error.
bool is_known_frame_type(uint8_t type);
std::string_view to_string(FrameType type);

inline constexpr size_t kCstpHeaderSize = 8;
// The length field is 16 bits, so no frame payload can be larger.
inline constexpr size_t kMaxFramePayload = 0xffff;
// Reason byte of a disconnect the user asked for: the gateway then invalidates the cookie.
// A disconnect without payload is temporary and the cookie stays valid for a reconnect.
inline constexpr uint8_t kUserDisconnectReason = 0xb0;

// Appends one CSTP frame ("STF\x01", length, type, 0, payload) to `out`. The payload must be at
// most kMaxFramePayload bytes (an assertion: callers check packet sizes against the MTU first).
void append_cstp_frame(std::vector<uint8_t>& out, FrameType type,
                       std::span<const uint8_t> payload = {});
std::vector<uint8_t> encode_cstp_frame(FrameType type, std::span<const uint8_t> payload = {});

// A user disconnect frame: reason kUserDisconnectReason followed by `text`.
std::vector<uint8_t> encode_user_disconnect(std::string_view text);

// One frame as the parser hands it out; `payload` points into the parser's buffer and is valid
// only during the callback.
struct FrameView {
  FrameType type = FrameType::kData;
  std::span<const uint8_t> payload;
};

// Splits the bytes of a CSTP stream into frames, whatever the read boundaries were.
//
// Not thread-safe; one parser per TLS connection. After an error the stream is out of sync and
// the parser refuses further input: the connection must be closed.
class FrameParser {
 public:
  using OnFrame = std::function<void(const FrameView&)>;

  // Frames whose payload is larger than `max_payload` are rejected (the session passes a bound
  // derived from the MTU, so a peer cannot make it buffer 64 KiB per frame without reason).
  explicit FrameParser(size_t max_payload = kMaxFramePayload);

  // Consumes `bytes`, calling `on_frame` for every complete frame in order. Returns an error
  // (kInternal, naming the offset and what was wrong: bad magic, unknown type, oversize
  // payload) and stops at the first malformed header; frames before it have been delivered.
  Status feed(std::span<const uint8_t> bytes, const OnFrame& on_frame);

  // Bytes of an incomplete frame waiting for the rest.
  size_t buffered() const { return buffer_.size(); }

 private:
  size_t max_payload_;
  std::vector<uint8_t> buffer_;
  bool failed_ = false;
};

// DTLS datagrams carry one frame each: a type byte, then the payload.
std::vector<uint8_t> encode_dtls_frame(FrameType type, std::span<const uint8_t> payload = {});
// Splits a DTLS datagram; an empty datagram or an unknown type byte is an error.
Result<FrameView> parse_dtls_frame(std::span<const uint8_t> datagram);

}  // namespace steward::vpn::cstp
