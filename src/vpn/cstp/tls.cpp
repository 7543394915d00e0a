#include "vpn/cstp/tls.h"

#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/url/parse.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <charconv>
#include <cstdio>
#include <memory>

namespace steward::vpn::cstp {
namespace {

namespace ssl = boost::asio::ssl;

constexpr std::string_view kPinPrefix = "pin-sha256:";

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  return !ec;
}

// "pin-sha256:" + base64(SHA-256(DER SubjectPublicKeyInfo)).
Result<std::string> pin_of(X509* certificate) {
  unsigned char* der = nullptr;
  int length = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(certificate), &der);
  if (length <= 0) return Error::make(ErrorCode::kInternal, "cannot encode the public key");
  unsigned char digest[32];
  unsigned int digest_length = 0;
  int hashed =
      EVP_Digest(der, static_cast<size_t>(length), digest, &digest_length, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (hashed != 1) return Error::make(ErrorCode::kInternal, "cannot hash the public key");
  unsigned char encoded[64];
  int encoded_length = EVP_EncodeBlock(encoded, digest, static_cast<int>(digest_length));
  return std::string(kPinPrefix) +
         std::string(reinterpret_cast<char*>(encoded), static_cast<size_t>(encoded_length));
}

std::string certificate_subject(X509* certificate) {
  char name[256] = {};
  X509_NAME_oneline(X509_get_subject_name(certificate), name, sizeof(name));
  return name;
}

}  // namespace

Result<GatewayUrl> GatewayUrl::parse(std::string_view text) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    return Error::make(ErrorCode::kInvalidArgument, "gateway URL '{}' is not a URL", text);
  }
  if (parsed->scheme() != "https") {
    return Error::make(ErrorCode::kInvalidArgument, "gateway URL '{}' must start with https://",
                       text);
  }
  GatewayUrl url;
  url.host = std::string(parsed->host_address());
  if (url.host.size() > 2 && url.host.front() == '[')
    url.host = url.host.substr(1, url.host.size() - 2);
  if (url.host.empty()) {
    return Error::make(ErrorCode::kInvalidArgument, "gateway URL '{}' has no host", text);
  }
  if (parsed->has_port()) {
    auto port = parsed->port_number();
    if (port == 0) {
      return Error::make(ErrorCode::kInvalidArgument, "gateway URL '{}' has a bad port", text);
    }
    url.port = port;
  }
  url.path = parsed->encoded_path().empty() ? "/" : std::string(parsed->encoded_path());
  return url;
}

std::string GatewayUrl::to_string() const {
  bool v6 = host.find(':') != std::string::npos;
  return fmt::format("https://{}{}{}:{}{}", v6 ? "[" : "", host, v6 ? "]" : "", port, path);
}

Result<ssl::context> make_tls_context(const TlsOptions& options) {
  if (options.ca_file.empty() && options.pin_sha256.empty()) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "no way to verify the gateway: give a CA file or a pin-sha256 public key");
  }
  if (!options.pin_sha256.empty() && !options.pin_sha256.starts_with(kPinPrefix)) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "server pin '{}' must look like pin-sha256:<base64>", options.pin_sha256);
  }
  if (options.client_cert_file.empty() != options.client_key_file.empty()) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "a client certificate needs both its certificate and its key file");
  }

  ssl::context context(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION);
  context.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  boost::system::error_code ec;
  if (!options.ca_file.empty()) {
    context.load_verify_file(options.ca_file, ec);
    if (ec) {
      return Error::make(ErrorCode::kInvalidArgument, "cannot load CA file {}: {}", options.ca_file,
                         ec.message());
    }
  }
  if (!options.client_cert_file.empty()) {
    context.use_certificate_chain_file(options.client_cert_file, ec);
    if (ec) {
      return Error::make(ErrorCode::kInvalidArgument, "cannot load client certificate {}: {}",
                         options.client_cert_file, ec.message());
    }
    context.use_private_key_file(options.client_key_file, ssl::context::pem, ec);
    if (ec) {
      return Error::make(ErrorCode::kInvalidArgument, "cannot load client key {}: {}",
                         options.client_key_file, ec.message());
    }
  }
  context.set_verify_mode(ssl::verify_peer);
  return context;
}

Status prepare_tls_stream(TlsStream& stream, const TlsOptions& options, const std::string& url_host,
                          std::shared_ptr<std::string> failure) {
  std::string name = options.server_name.empty() ? url_host : options.server_name;
  if (!is_ip_literal(name) && SSL_set_tlsext_host_name(stream.native_handle(), name.c_str()) != 1) {
    return Error::make(ErrorCode::kInvalidArgument, "cannot use '{}' as TLS server name", name);
  }

  if (!options.pin_sha256.empty()) {
    // Pinning replaces the CA: only the leaf's key counts.
    std::string pin = options.pin_sha256;
    stream.set_verify_callback([pin, failure](bool, ssl::verify_context& context) {
      X509_STORE_CTX* store = context.native_handle();
      if (X509_STORE_CTX_get_error_depth(store) != 0) return true;
      X509* leaf = X509_STORE_CTX_get_current_cert(store);
      auto actual = leaf ? pin_of(leaf) : Result<std::string>(Error{});
      if (actual && *actual == pin) return true;
      *failure = fmt::format("the gateway's public key does not match the pin {} (it has {})", pin,
                             actual ? *actual : std::string("none"));
      return false;
    });
    return ok();
  }

  ssl::host_name_verification check_name(name);
  stream.set_verify_callback(
      [check_name, name, failure](bool preverified, ssl::verify_context& context) {
        X509_STORE_CTX* store = context.native_handle();
        X509* certificate = X509_STORE_CTX_get_current_cert(store);
        if (!preverified) {
          int error = X509_STORE_CTX_get_error(store);
          *failure = fmt::format("the gateway's certificate ({}) is not trusted by the CA file: {}",
                                 certificate ? certificate_subject(certificate) : "?",
                                 X509_verify_cert_error_string(error));
          return false;
        }
        if (X509_STORE_CTX_get_error_depth(store) != 0) return true;
        if (check_name(true, context)) return true;
        *failure = fmt::format("the gateway's certificate ({}) is not valid for the name '{}'",
                               certificate ? certificate_subject(certificate) : "?", name);
        return false;
      });
  return ok();
}

Result<std::string> public_key_pin_of_certificate(const std::string& pem_file) {
  std::unique_ptr<FILE, decltype(&fclose)> file(fopen(pem_file.c_str(), "r"), &fclose);
  if (!file) return Error::make(ErrorCode::kIo, "cannot open certificate {}", pem_file);
  std::unique_ptr<X509, decltype(&X509_free)> certificate(
      PEM_read_X509(file.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!certificate) {
    return Error::make(ErrorCode::kInvalidArgument, "{} holds no PEM certificate", pem_file);
  }
  return pin_of(certificate.get());
}

}  // namespace steward::vpn::cstp
