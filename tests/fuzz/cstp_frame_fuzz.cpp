// Fuzz target for the CSTP stream parser and the DTLS datagram parser: any bytes, split at any
// point, give the same frames as in one piece, and every frame re-encodes to the bytes it came
// from (but for the reserved header byte).
#include "vpn/cstp/framing.h"

#include <cstdint>
#include <cstdlib>
#include <vector>

using namespace steward::vpn::cstp;

namespace {

struct Parsed {
  std::vector<std::vector<uint8_t>> frames;  // re-encoded
  bool ok = true;
};

Parsed parse(std::span<const uint8_t> bytes, size_t split) {
  FrameParser parser(1500);
  Parsed parsed;
  auto collect = [&](const FrameView& frame) {
    if (frame.payload.size() > 1500) std::abort();
    parsed.frames.push_back(encode_cstp_frame(frame.type, frame.payload));
  };
  parsed.ok = static_cast<bool>(parser.feed(bytes.first(split), collect));
  if (parsed.ok) parsed.ok = static_cast<bool>(parser.feed(bytes.subspan(split), collect));
  return parsed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  auto whole = parse(bytes, size);
  auto halves = parse(bytes, size / 2);
  if (whole.ok != halves.ok || whole.frames != halves.frames) std::abort();
  // Frames are consecutive prefixes of the input.
  size_t offset = 0;
  for (const auto& frame : whole.frames) {
    if (offset + frame.size() > size) std::abort();
    // Byte 7 of the header is reserved: the parser ignores it, the encoder writes 0.
    for (size_t i = 0; i < frame.size(); ++i) {
      if (i != 7 && frame[i] != data[offset + i]) std::abort();
    }
    offset += frame.size();
  }
  if (auto datagram = parse_dtls_frame(bytes)) {
    auto again = encode_dtls_frame(datagram->type, datagram->payload);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) std::abort();
  }
  return 0;
}
