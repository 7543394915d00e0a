#include "agent/transport/mqtt.h"

#include "core/log.h"

#include <mqtt/async_client.h>
#include <openssl/rand.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>

namespace steward::agent {
namespace {

constexpr const char* kTopicRoot = "steward/";

Error paho_error(std::string_view what, const mqtt::exception& error) {
  return Error::make(ErrorCode::kUnavailable, "mqtt {}: {}", what, error.what());
}

std::string random_client_id() {
  unsigned char bytes[6];
  RAND_bytes(bytes, sizeof(bytes));
  std::string out = "steward-";
  for (unsigned char byte : bytes)
    out += fmt::format("{:02x}", byte);
  return out;
}

// Completion of one publish: owns itself until Paho reports success or failure.
class PublishListener : public mqtt::iaction_listener {
 public:
  explicit PublishListener(MqttClient::Done done) : done_(std::move(done)) {}
  void on_success(const mqtt::token&) override { finish(true); }
  void on_failure(const mqtt::token&) override { finish(false); }

 private:
  void finish(bool delivered) {
    if (done_) done_(delivered);
    delete this;
  }
  MqttClient::Done done_;
};

// Paho C 1.3 offers no TCP_NODELAY option, and with Nagle's algorithm a small publish that
// follows a PUBACK waits for the broker's delayed ACK (40 ms on Linux), on every message. The
// connected socket is this process's own: find it by its peer port and set the option.
void disable_nagle(const std::string& uri) {
  size_t colon = uri.rfind(':');
  if (colon == std::string::npos) return;
  int port = std::atoi(uri.c_str() + colon + 1);
  if (port <= 0) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = std::atoi(entry.path().filename().c_str());
    sockaddr_storage peer{};
    socklen_t size = sizeof(peer);
    int type = 0;
    socklen_t type_size = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_size) != 0 || type != SOCK_STREAM ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &size) != 0) {
      continue;
    }
    int peer_port =
        peer.ss_family == AF_INET    ? ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port)
        : peer.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port)
                                     : -1;
    int on = 1;
    if (peer_port == port) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  }
}

}  // namespace

std::string control_topic(const std::string& terminal, const std::string& instruction_id) {
  return kTopicRoot + terminal + "/control/" + instruction_id;
}
std::string control_filter(const std::string& terminal) {
  return kTopicRoot + terminal + "/control/+";
}
std::string status_topic(const std::string& terminal) {
  return kTopicRoot + terminal + "/status";
}
std::string instruction_of_topic(const std::string& topic) {
  size_t at = topic.rfind("/control/");
  if (!topic.starts_with(kTopicRoot) || at == std::string::npos) return "";
  return topic.substr(at + 9);
}

struct MqttClient::Impl {
  BrokerOptions options;
  std::unique_ptr<mqtt::async_client> client;
  std::shared_ptr<spdlog::logger> log = log::get("mqtt");
  std::function<void()> connected_handler;
  std::function<void(const std::string&)> lost_handler;

  mqtt::connect_options connect_options() const {
    mqtt::connect_options out;
    out.set_clean_session(options.clean_session);
    out.set_keep_alive_interval(options.keep_alive);
    out.set_connect_timeout(options.connect_timeout);
    out.set_automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(5));
    out.set_mqtt_version(MQTTVERSION_3_1_1);
    if (!options.username.empty()) out.set_user_name(options.username);
    if (!options.password.empty()) out.set_password(options.password);
    if (options.uri.starts_with("ssl://") || options.uri.starts_with("mqtts://")) {
      mqtt::ssl_options ssl;
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(options.verify_hostname);
      if (!options.ca_file.empty()) ssl.set_trust_store(options.ca_file);
      if (!options.cert_file.empty()) ssl.set_key_store(options.cert_file);
      if (!options.key_file.empty()) ssl.set_private_key(options.key_file);
      // No ssl error handler: Paho C++ 1.2 passes the ssl_options' own address as its
      // callback context, which dangles once connect_options copies it (a crash seen here).
      out.set_ssl(std::move(ssl));
    }
    return out;
  }
};

MqttClient::MqttClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttClient::~MqttClient() {
  if (connected()) (void)disconnect(std::chrono::milliseconds(500));
}

Result<std::unique_ptr<MqttClient>> MqttClient::create(BrokerOptions options) {
  auto impl = std::make_unique<Impl>();
  if (options.client_id.empty()) {
    options.client_id = random_client_id();
    options.clean_session = true;
  }
  impl->options = std::move(options);
  try {
    // No Paho persistence: the agent's own store keeps what must survive.
    impl->client =
        std::make_unique<mqtt::async_client>(impl->options.uri, impl->options.client_id, nullptr);
  } catch (const mqtt::exception& error) {
    return Error::make(ErrorCode::kInvalidArgument, "mqtt client for {}: {}", impl->options.uri,
                       error.what());
  }
  Impl* raw = impl.get();
  impl->client->set_connected_handler([raw](const std::string&) {
    raw->log->info("connected broker={} client={}", raw->options.uri, raw->options.client_id);
    disable_nagle(raw->options.uri);
    if (raw->connected_handler) raw->connected_handler();
  });
  impl->client->set_connection_lost_handler([raw](const std::string& cause) {
    // MQTT 3.1.1 gives no reason when the broker closes: a broker going down and another
    // client taking over this client id (two agents with one terminal id) look alike.
    raw->log->warn("connection lost broker={} client={} cause={}", raw->options.uri,
                   raw->options.client_id,
                   cause.empty() ? "closed by the broker (it stopped, or another client connected "
                                   "with this client id)"
                                 : cause);
    if (raw->lost_handler) raw->lost_handler(cause);
  });
  return std::unique_ptr<MqttClient>(new MqttClient(std::move(impl)));
}

void MqttClient::on_message(MessageHandler handler) {
  impl_->client->set_message_callback([handler](mqtt::const_message_ptr message) {
    handler(message->get_topic(), message->get_payload_str(), message->is_retained());
  });
}

void MqttClient::on_connected(std::function<void()> handler) {
  impl_->connected_handler = std::move(handler);
}

void MqttClient::on_connection_lost(std::function<void(const std::string&)> handler) {
  impl_->lost_handler = std::move(handler);
}

Status MqttClient::connect() {
  try {
    auto token = impl_->client->connect(impl_->connect_options());
    if (!token->wait_for(impl_->options.connect_timeout + std::chrono::seconds(1))) {
      return Error::make(ErrorCode::kTimeout, "mqtt connect to {} timed out", impl_->options.uri);
    }
  } catch (const mqtt::exception& error) {
    return paho_error(fmt::format("connect to {}", impl_->options.uri), error);
  }
  return ok();
}

bool MqttClient::connected() const {
  return impl_->client->is_connected();
}

Status MqttClient::subscribe(const std::string& filter, int qos,
                             std::chrono::milliseconds timeout) {
  try {
    auto token = impl_->client->subscribe(filter, qos);
    if (timeout.count() == 0) return ok();  // asked not to wait (from a Paho callback)
    if (!token->wait_for(timeout)) {
      return Error::make(ErrorCode::kTimeout, "mqtt subscribe to {} timed out", filter);
    }
  } catch (const mqtt::exception& error) {
    return paho_error(fmt::format("subscribe to {}", filter), error);
  }
  return ok();
}

void MqttClient::publish(const std::string& topic, const std::string& payload, int qos,
                         bool retained, Done done) {
  auto* listener = new PublishListener(done);
  try {
    auto message = mqtt::make_message(topic, payload, qos, retained);
    impl_->client->publish(message, nullptr, *listener);
  } catch (const mqtt::exception& error) {
    // Paho did not take the listener: it will never be called.
    impl_->log->debug("publish to {} failed: {}", topic, error.what());
    delete listener;
    if (done) done(false);
  }
}

Status MqttClient::publish_wait(const std::string& topic, const std::string& payload, int qos,
                                bool retained, std::chrono::milliseconds timeout) {
  auto delivered = std::make_shared<std::promise<bool>>();
  auto result = delivered->get_future();
  publish(topic, payload, qos, retained, [delivered](bool ok) { delivered->set_value(ok); });
  if (result.wait_for(timeout) != std::future_status::ready) {
    return Error::make(ErrorCode::kTimeout, "mqtt publish to {} not confirmed in time", topic);
  }
  if (!result.get()) {
    return Error::make(ErrorCode::kUnavailable, "mqtt publish to {} failed", topic);
  }
  return ok();
}

Status MqttClient::disconnect(std::chrono::milliseconds timeout) {
  try {
    auto token = impl_->client->disconnect(static_cast<int>(timeout.count()));
    token->wait_for(timeout + std::chrono::milliseconds(500));
  } catch (const mqtt::exception& error) {
    return paho_error("disconnect", error);
  }
  return ok();
}

}  // namespace steward::agent
