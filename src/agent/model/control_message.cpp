#include "agent/model/control_message.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <boost/json.hpp>

#include <fstream>
#include <sstream>

namespace steward::agent {
namespace json = boost::json;
namespace {

constexpr size_t kSignatureBytes = 64;
constexpr size_t kMaxMessageBytes = 96 * 1024;

std::shared_ptr<void> own(EVP_PKEY* key) {
  return std::shared_ptr<void>(key, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
struct MdDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::make(ErrorCode::kNotFound, "cannot read key file {}", path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Error unauthenticated(std::string message) {
  return Error{ErrorCode::kUnauthenticated, std::move(message)};
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

}  // namespace

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!key) return Error{ErrorCode::kInvalidArgument, "not a PEM public key"};
  PublicKey out;
  out.key_ = own(key);
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    return Error{ErrorCode::kInvalidArgument, "public key is not an Ed25519 key"};
  }
  return out;
}

Result<PublicKey> PublicKey::from_pem_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return text.error();
  auto key = from_pem(*text);
  if (!key) return key.error().wrap(path);
  return key;
}

bool PublicKey::verify(std::string_view message, std::string_view signature) const {
  if (!key_ || signature.size() != kSignatureBytes) return false;
  std::unique_ptr<EVP_MD_CTX, MdDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr,
                                   static_cast<EVP_PKEY*>(key_.get())) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!key) return Error{ErrorCode::kInvalidArgument, "not a PEM private key"};
  PrivateKey out;
  out.key_ = own(key);
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    return Error{ErrorCode::kInvalidArgument, "private key is not an Ed25519 key"};
  }
  return out;
}

Result<PrivateKey> PrivateKey::from_pem_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return text.error();
  auto key = from_pem(*text);
  if (!key) return key.error().wrap(path);
  return key;
}

Result<PrivateKey> PrivateKey::generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (!key) return Error{ErrorCode::kInternal, "cannot generate an Ed25519 key"};
  PrivateKey out;
  out.key_ = own(key);
  return out;
}

Result<std::string> PrivateKey::sign(std::string_view message) const {
  std::unique_ptr<EVP_MD_CTX, MdDeleter> ctx(EVP_MD_CTX_new());
  std::string signature(kSignatureBytes, '\0');
  size_t size = signature.size();
  if (!ctx ||
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr,
                         static_cast<EVP_PKEY*>(key_.get())) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return Error{ErrorCode::kInternal, "Ed25519 signing failed"};
  }
  signature.resize(size);
  return signature;
}

std::string PrivateKey::private_pem() const {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), static_cast<EVP_PKEY*>(key_.get()), nullptr, nullptr, 0,
                           nullptr, nullptr);
  return bio_text(bio.get());
}

std::string PrivateKey::public_pem() const {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), static_cast<EVP_PKEY*>(key_.get()));
  return bio_text(bio.get());
}

Result<PublicKey> PrivateKey::public_key() const {
  return PublicKey::from_pem(public_pem());
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int size = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                             reinterpret_cast<const unsigned char*>(bytes.data()),
                             static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(size));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * text.size() / 4 + 1, '\0');
  int size = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                             reinterpret_cast<const unsigned char*>(text.data()),
                             static_cast<int>(text.size()));
  if (size < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes: drop one per '='.
  size_t padding = 0;
  for (size_t i = text.size(); i > 0 && text[i - 1] == '=' && padding < 2; --i)
    ++padding;
  if (static_cast<size_t>(size) < padding) return std::nullopt;
  out.resize(static_cast<size_t>(size) - padding);
  return out;
}

Result<Instruction> open_control_message(std::string_view bytes, const PublicKey* key) {
  if (bytes.size() > kMaxMessageBytes) {
    return Error::make(ErrorCode::kInvalidArgument, "control message of {} bytes is too large",
                       bytes.size());
  }
  json::parse_options options;
  options.max_depth = 16;
  boost::system::error_code ec;
  json::value outer = json::parse(bytes, ec, {}, options);
  if (ec) {
    return Error::make(ErrorCode::kInvalidArgument, "control message is not JSON: {}",
                       ec.message());
  }
  const json::object* envelope = outer.if_object();
  bool is_signed = envelope && envelope->contains("signed");
  if (!is_signed) {
    if (key) return unauthenticated("control message is not signed; this agent requires it");
    return instruction_from_json(outer);
  }

  // A signed envelope: exactly the two fields, then the signature, then the instruction.
  const json::value* text = envelope->if_contains("signed");
  const json::value* signature = envelope->if_contains("signature");
  if (envelope->size() != 2 || !text->is_string() || !signature || !signature->is_string()) {
    return Error{ErrorCode::kInvalidArgument,
                 "signed control message must be {\"signed\": string, \"signature\": string}"};
  }
  if (key) {
    auto raw = base64_decode(signature->get_string());
    if (!raw) return unauthenticated("control message signature is not base64");
    if (!key->verify(text->get_string(), *raw)) {
      return unauthenticated("control message signature does not verify with the server key");
    }
  }
  return parse_instruction(text->get_string());
}

Claimed claimed_identity(std::string_view bytes) {
  Claimed out;
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 16;
  if (bytes.size() > kMaxMessageBytes) return out;
  json::value value = json::parse(bytes, ec, {}, options);
  if (ec || !value.is_object()) return out;
  const json::object* object = &value.get_object();
  json::value inner;
  if (const json::value* text = object->if_contains("signed"); text && text->is_string()) {
    inner = json::parse(text->get_string(), ec, {}, options);
    if (ec || !inner.is_object()) return out;
    object = &inner.get_object();
  }
  auto field = [object](const char* key) {
    const json::value* found = object->if_contains(key);
    return found && found->is_string() ? std::string(found->get_string()) : std::string();
  };
  out.id = valid_id(field("id")) ? field("id") : "";
  out.target = valid_system_id(field("target")) ? field("target") : "";
  return out;
}

Result<std::string> seal_control_message(const Instruction& instruction, const PrivateKey* key) {
  std::string text = json::serialize(to_json(instruction));
  if (!key) return text;
  auto signature = key->sign(text);
  if (!signature) return signature.error();
  return json::serialize(json::object{{"signed", text}, {"signature", base64_encode(*signature)}});
}

}  // namespace steward::agent
