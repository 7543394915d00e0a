#include "vpn/cstp/framing.h"

#include <gtest/gtest.h>

namespace steward::vpn::cstp {
namespace {

struct Received {
  FrameType type;
  std::vector<uint8_t> payload;
};

std::vector<Received> feed_all(FrameParser& parser, std::span<const uint8_t> bytes, Status* status) {
  std::vector<Received> frames;
  *status = parser.feed(bytes, [&](const FrameView& frame) {
    frames.push_back({frame.type, {frame.payload.begin(), frame.payload.end()}});
  });
  return frames;
}

TEST(CstpFraming, EncodesHeaderAsOnTheWire) {
  std::vector<uint8_t> payload = {0x45, 0x00, 0x01};
  auto frame = encode_cstp_frame(FrameType::kData, payload);
  std::vector<uint8_t> expected = {'S', 'T', 'F', 0x01, 0x00, 0x03, 0x00, 0x00, 0x45, 0x00, 0x01};
  EXPECT_EQ(frame, expected);
  auto dpd = encode_cstp_frame(FrameType::kDpdRequest);
  EXPECT_EQ(dpd, (std::vector<uint8_t>{'S', 'T', 'F', 0x01, 0, 0, 3, 0}));
}

TEST(CstpFraming, EveryTypeRoundTrips) {
  for (auto type : {FrameType::kData, FrameType::kDpdRequest, FrameType::kDpdResponse,
                    FrameType::kDisconnect, FrameType::kKeepalive, FrameType::kCompressed,
                    FrameType::kTerminate}) {
    std::vector<uint8_t> payload(static_cast<size_t>(type) * 100, 0x5a);
    FrameParser parser;
    Status status;
    auto frames = feed_all(parser, encode_cstp_frame(type, payload), &status);
    ASSERT_TRUE(status) << status.error().message;
    ASSERT_EQ(frames.size(), 1u) << to_string(type);
    EXPECT_EQ(frames[0].type, type);
    EXPECT_EQ(frames[0].payload, payload);
    EXPECT_EQ(parser.buffered(), 0u);
  }
}

TEST(CstpFraming, FramesSplitAcrossReadsAreReassembled) {
  std::vector<uint8_t> stream;
  std::vector<uint8_t> big(1400, 0x11);
  append_cstp_frame(stream, FrameType::kData, big);
  append_cstp_frame(stream, FrameType::kKeepalive);
  append_cstp_frame(stream, FrameType::kData, std::vector<uint8_t>{1, 2, 3});
  // One byte at a time.
  FrameParser parser;
  std::vector<Received> frames;
  for (uint8_t byte : stream) {
    Status status;
    auto got = feed_all(parser, std::span(&byte, 1), &status);
    ASSERT_TRUE(status);
    frames.insert(frames.end(), got.begin(), got.end());
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].payload, big);
  EXPECT_EQ(frames[1].type, FrameType::kKeepalive);
  EXPECT_EQ(frames[2].payload, (std::vector<uint8_t>{1, 2, 3}));
}

TEST(CstpFraming, IncompleteFrameWaitsForTheRest) {
  auto frame = encode_cstp_frame(FrameType::kData, std::vector<uint8_t>(100, 1));
  FrameParser parser;
  Status status;
  auto frames = feed_all(parser, std::span(frame).first(50), &status);
  EXPECT_TRUE(status);
  EXPECT_TRUE(frames.empty());
  EXPECT_EQ(parser.buffered(), 50u);
  frames = feed_all(parser, std::span(frame).subspan(50), &status);
  EXPECT_EQ(frames.size(), 1u);
}

TEST(CstpFraming, BadMagicIsAnErrorAndParserStaysFailed) {
  std::vector<uint8_t> bad = {'S', 'T', 'X', 0x01, 0, 0, 0, 0};
  FrameParser parser;
  Status status;
  feed_all(parser, bad, &status);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("magic"), std::string::npos);
  auto good = encode_cstp_frame(FrameType::kKeepalive);
  feed_all(parser, good, &status);
  EXPECT_FALSE(status);
}

TEST(CstpFraming, UnknownTypeIsAnError) {
  std::vector<uint8_t> bad = {'S', 'T', 'F', 0x01, 0, 0, 6, 0};
  FrameParser parser;
  Status status;
  feed_all(parser, bad, &status);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("unknown type 6"), std::string::npos);
}

TEST(CstpFraming, OversizePayloadIsRefusedBeforeBuffering) {
  FrameParser parser(1500);
  std::vector<uint8_t> header = {'S', 'T', 'F', 0x01, 0x10, 0x00, 0, 0};  // 4096 bytes
  Status status;
  feed_all(parser, header, &status);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("exceeds limit 1500"), std::string::npos);
}

TEST(CstpFraming, FramesBeforeAnErrorAreDelivered) {
  auto stream = encode_cstp_frame(FrameType::kDpdRequest, std::vector<uint8_t>{9});
  stream.insert(stream.end(), {'X', 'X', 'X', 'X', 0, 0, 0, 0});
  FrameParser parser;
  Status status;
  auto frames = feed_all(parser, stream, &status);
  EXPECT_FALSE(status);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, FrameType::kDpdRequest);
}

TEST(CstpFraming, UserDisconnectCarriesReason0xb0) {
  auto frame = encode_user_disconnect("bye");
  FrameParser parser;
  Status status;
  auto frames = feed_all(parser, frame, &status);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, FrameType::kDisconnect);
  EXPECT_EQ(frames[0].payload, (std::vector<uint8_t>{0xb0, 'b', 'y', 'e'}));
}

TEST(DtlsFraming, OneTypeByteThenPayload) {
  auto datagram = encode_dtls_frame(FrameType::kData, std::vector<uint8_t>{0x45, 0});
  EXPECT_EQ(datagram, (std::vector<uint8_t>{0, 0x45, 0}));
  auto parsed = parse_dtls_frame(datagram);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->type, FrameType::kData);
  EXPECT_EQ(parsed->payload.size(), 2u);
  auto dpd = parse_dtls_frame(encode_dtls_frame(FrameType::kDpdResponse));
  ASSERT_TRUE(dpd);
  EXPECT_TRUE(dpd->payload.empty());
}

TEST(DtlsFraming, EmptyOrUnknownDatagramIsAnError) {
  EXPECT_FALSE(parse_dtls_frame({}));
  std::vector<uint8_t> unknown = {42, 1, 2};
  auto parsed = parse_dtls_frame(unknown);
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message.find("unknown type 42"), std::string::npos);
}

}  // namespace
}  // namespace steward::vpn::cstp
