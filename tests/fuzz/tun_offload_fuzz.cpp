// Fuzz target for the TUN offload reader (vpn/tun/offload.h): any read — header fields pointing
// anywhere, lengths that do not add up — is either cut into packets that stay within the read's
// bytes and the IP size limit, or refused with nothing emitted. Segments of an IPv4 super-packet
// carry a valid header checksum and the input's payload, in order.
#include "vpn/tun/offload.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace steward::vpn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> frame(data, data + size);
  std::vector<uint8_t> scratch;
  std::vector<std::vector<uint8_t>> packets;
  auto cut = offload::split(frame, scratch, [&](std::span<const uint8_t> packet) {
    packets.emplace_back(packet.begin(), packet.end());
  });
  if (!cut) {
    if (!packets.empty()) std::abort();
    return 0;
  }
  if (packets.empty() || size <= offload::kHeaderSize) std::abort();
  offload::VnetHeader header;
  std::memcpy(&header, data, offload::kHeaderSize);
  size_t input = size - offload::kHeaderSize;
  if (header.gso_type == offload::kGsoNone) {
    if (packets.size() != 1 || packets[0].size() != input) std::abort();
    return 0;
  }
  // A super-packet: every segment repeats the same headers before its share of the payload.
  size_t headers = packets[0].size() - std::min(packets[0].size(), size_t{header.gso_size});
  size_t payload = 0;
  for (const auto& packet : packets) {
    if (packet.size() > 65535 || packet.size() < headers) std::abort();
    if (packet.size() - headers > header.gso_size) std::abort();
    if (header.gso_type == offload::kGsoTcp4) {
      size_t ip = static_cast<size_t>(packet[0] & 0x0f) * 4;
      if (offload::fold(offload::add_to_sum(0, std::span(packet.data(), ip))) != 0) std::abort();
    }
    payload += packet.size() - headers;
  }
  if (packets.size() > 1 && headers + payload != input) std::abort();
  return 0;
}
