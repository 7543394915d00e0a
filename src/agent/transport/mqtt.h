// An MQTT client on Eclipse Paho C++ (async_client), for the agent, the `steward agent` commands,
// the tests and the benchmark. It connects with TLS and certificate checks when the broker URI
// is `ssl://` (or `mqtts://`), keeps a persistent session unless told otherwise, reconnects by
// itself, and turns Paho's exceptions into errors.
//
// What Paho does not offer: an application-controlled acknowledgement. Paho C 1.3 sends the
// PUBACK of a QoS 1 message before it hands the message over (and Paho C++ 1.2 has no manual
// acknowledgement), so a broker's copy is gone before the agent could store it. Steward does
// not rely on that PUBACK: the server publishes each instruction *retained* on its own topic
// (steward/<terminal>/control/<instruction id>), and the agent clears that retained copy (an
// empty retained publish) only after the gate has committed the instruction. A crash in between
// leaves the copy on the broker, which re-sends it on the next subscribe; the gate drops it as
// a duplicate if it had been stored after all. See docs/agent.md.
//
// Threading: callbacks (messages, connection changes, publish completions) run on Paho's
// thread; they must not block for long. Every method is thread-safe.
#pragma once

#include "core/result.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace steward::agent {

struct BrokerOptions {
  std::string uri = "tcp://127.0.0.1:1883";  // tcp://, ssl:// or mqtts://
  std::string client_id;                     // empty: a random one (and a clean session)
  bool clean_session = false;
  std::string ca_file;    // TLS: the CA the broker's certificate must chain to
  std::string cert_file;  // TLS: this client's certificate (when the broker asks for one)
  std::string key_file;   // TLS: its private key
  bool verify_hostname = true;
  std::string username;
  std::string password;
  std::chrono::seconds keep_alive{20};
  std::chrono::seconds connect_timeout{10};
};

// Topics of one terminal.
std::string control_topic(const std::string& terminal, const std::string& instruction_id);
std::string control_filter(const std::string& terminal);  // steward/<terminal>/control/+
std::string status_topic(const std::string& terminal);    // steward/<terminal>/status
// The instruction id at the end of a control topic; empty when the topic is not one.
std::string instruction_of_topic(const std::string& topic);

class MqttClient {
 public:
  using MessageHandler =
      std::function<void(const std::string& topic, const std::string& payload, bool retained)>;
  using Done = std::function<void(bool delivered)>;

  static Result<std::unique_ptr<MqttClient>> create(BrokerOptions options);
  ~MqttClient();
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Set before connect().
  void on_message(MessageHandler handler);
  // Called after every successful connect and reconnect (subscribe again there).
  void on_connected(std::function<void()> handler);
  void on_connection_lost(std::function<void(const std::string& cause)> handler);

  // Connects (waiting at most the connect timeout); later losses reconnect by themselves.
  Status connect();
  bool connected() const;
  // Subscribes and waits for the broker's answer; a zero timeout does not wait (the only form
  // allowed inside a Paho callback).
  Status subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout);
  // Publishes; `done` (may be empty) runs once the broker confirmed (QoS 1) or it failed.
  void publish(const std::string& topic, const std::string& payload, int qos, bool retained,
               Done done);
  // Publishes and waits for the broker's confirmation.
  Status publish_wait(const std::string& topic, const std::string& payload, int qos, bool retained,
                      std::chrono::milliseconds timeout);
  Status disconnect(std::chrono::milliseconds timeout = std::chrono::seconds(2));

  struct Impl;

 private:
  explicit MqttClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace steward::agent
