#include "vpn/cstp/framing.h"

#include <cassert>

namespace steward::vpn::cstp {
namespace {

constexpr uint8_t kMagic[4] = {'S', 'T', 'F', 0x01};

}  // namespace

bool is_known_frame_type(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kData:
    case FrameType::kDpdRequest:
    case FrameType::kDpdResponse:
    case FrameType::kDisconnect:
    case FrameType::kKeepalive:
    case FrameType::kCompressed:
    case FrameType::kTerminate:
      return true;
  }
  return false;
}

std::string_view to_string(FrameType type) {
  switch (type) {
    case FrameType::kData:
      return "data";
    case FrameType::kDpdRequest:
      return "dpd-request";
    case FrameType::kDpdResponse:
      return "dpd-response";
    case FrameType::kDisconnect:
      return "disconnect";
    case FrameType::kKeepalive:
      return "keepalive";
    case FrameType::kCompressed:
      return "compressed";
    case FrameType::kTerminate:
      return "terminate";
  }
  return "unknown";
}

void append_cstp_frame(std::vector<uint8_t>& out, FrameType type,
                       std::span<const uint8_t> payload) {
  assert(payload.size() <= kMaxFramePayload);
  out.insert(out.end(), std::begin(kMagic), std::end(kMagic));
  out.push_back(static_cast<uint8_t>(payload.size() >> 8));
  out.push_back(static_cast<uint8_t>(payload.size() & 0xff));
  out.push_back(static_cast<uint8_t>(type));
  out.push_back(0);
  out.insert(out.end(), payload.begin(), payload.end());
}

std::vector<uint8_t> encode_cstp_frame(FrameType type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(kCstpHeaderSize + payload.size());
  append_cstp_frame(out, type, payload);
  return out;
}

std::vector<uint8_t> encode_user_disconnect(std::string_view text) {
  std::vector<uint8_t> payload{kUserDisconnectReason};
  payload.insert(payload.end(), text.begin(), text.end());
  return encode_cstp_frame(FrameType::kDisconnect, payload);
}

FrameParser::FrameParser(size_t max_payload) : max_payload_(max_payload) {}

Status FrameParser::feed(std::span<const uint8_t> bytes, const OnFrame& on_frame) {
  if (failed_) {
    return Error::make(ErrorCode::kInternal, "cstp stream is out of sync after an earlier error");
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());

  // Deliver every complete frame, then keep the incomplete tail for the next read.
  size_t offset = 0;
  while (buffer_.size() - offset >= kCstpHeaderSize) {
    const uint8_t* header = buffer_.data() + offset;
    if (!std::equal(std::begin(kMagic), std::end(kMagic), header)) {
      failed_ = true;
      return Error::make(ErrorCode::kInternal, "cstp frame at stream byte {} has no STF magic",
                         offset);
    }
    size_t length = (size_t{header[4]} << 8) | header[5];
    if (!is_known_frame_type(header[6])) {
      failed_ = true;
      return Error::make(ErrorCode::kInternal, "cstp frame has unknown type {}", header[6]);
    }
    if (length > max_payload_) {
      failed_ = true;
      return Error::make(ErrorCode::kInternal, "cstp frame payload of {} bytes exceeds limit {}",
                         length, max_payload_);
    }
    if (buffer_.size() - offset < kCstpHeaderSize + length) break;
    FrameView frame{static_cast<FrameType>(header[6]),
                    std::span<const uint8_t>(header + kCstpHeaderSize, length)};
    on_frame(frame);
    offset += kCstpHeaderSize + length;
  }
  buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(offset));
  return ok();
}

std::vector<uint8_t> encode_dtls_frame(FrameType type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(1 + payload.size());
  out.push_back(static_cast<uint8_t>(type));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Result<FrameView> parse_dtls_frame(std::span<const uint8_t> datagram) {
  if (datagram.empty()) return Error::make(ErrorCode::kInternal, "empty dtls datagram");
  if (!is_known_frame_type(datagram[0])) {
    return Error::make(ErrorCode::kInternal, "dtls datagram has unknown type {}", datagram[0]);
  }
  return FrameView{static_cast<FrameType>(datagram[0]), datagram.subspan(1)};
}

}  // namespace steward::vpn::cstp
