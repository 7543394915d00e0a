// The bytes of one control message on the wire, and their Ed25519 signature.
//
// An unsigned message is the instruction's JSON object itself. A signed message wraps the
// instruction's JSON text, byte for byte as it was signed, so that no canonical form is needed:
//   {"signed": "<instruction JSON text>", "signature": "<base64 Ed25519 signature of it>"}
// An agent configured with the server's public key accepts only signed messages whose signature
// verifies; one without a key accepts both forms (and cannot tell who sent them).
//
// Key objects own their OpenSSL EVP_PKEY; they are immutable after loading and safe to use from
// several threads.
#pragma once

#include "agent/model/instruction.h"
#include "core/result.h"

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace steward::agent {

class PublicKey {
 public:
  // A PEM "PUBLIC KEY" (SubjectPublicKeyInfo) holding an Ed25519 key.
  static Result<PublicKey> from_pem(std::string_view pem);
  static Result<PublicKey> from_pem_file(const std::string& path);
  // True when `signature` (raw 64 bytes) is a valid Ed25519 signature of `message`.
  bool verify(std::string_view message, std::string_view signature) const;

 private:
  std::shared_ptr<void> key_;  // EVP_PKEY
};

class PrivateKey {
 public:
  // A PEM "PRIVATE KEY" (PKCS#8) holding an Ed25519 key.
  static Result<PrivateKey> from_pem(std::string_view pem);
  static Result<PrivateKey> from_pem_file(const std::string& path);
  // A fresh random key.
  static Result<PrivateKey> generate();
  Result<std::string> sign(std::string_view message) const;  // raw 64 bytes
  std::string private_pem() const;
  std::string public_pem() const;
  Result<PublicKey> public_key() const;

 private:
  std::shared_ptr<void> key_;  // EVP_PKEY
};

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

// Opens one control message: checks the envelope, the signature when `key` is set (a missing or
// bad signature is ErrorCode::kUnauthenticated), then parses and validates the instruction.
Result<Instruction> open_control_message(std::string_view bytes, const PublicKey* key);

// Best effort, for the report on a message that could not be opened: the "id" and "target"
// found in it, without any check. Never trust these for anything but the report.
struct Claimed {
  std::string id;
  std::string target;
};
Claimed claimed_identity(std::string_view bytes);

// The wire form of `instruction`: signed when `key` is set.
Result<std::string> seal_control_message(const Instruction& instruction, const PrivateKey* key);

}  // namespace steward::agent
