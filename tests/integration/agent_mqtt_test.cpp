// The agent's MQTT client against a real Mosquitto broker started by the test: persistent
// sessions, retained control messages and their clearing, and TLS with certificate checks.
#include "agent/transport/mqtt.h"
#include "support/mosquitto_broker.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

namespace steward::agent {
namespace {

using testing::MosquittoBroker;
using namespace std::chrono_literals;

// Collects messages from Paho's thread; waits for a count with a deadline.
class Inbox {
 public:
  void add(const std::string& topic, const std::string& payload) {
    std::lock_guard lock(mutex_);
    messages_.emplace_back(topic, payload);
    changed_.notify_all();
  }
  bool wait_for(size_t count, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return messages_.size() >= count; });
  }
  std::vector<std::pair<std::string, std::string>> messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<std::string, std::string>> messages_;
};

std::unique_ptr<MqttClient> client(BrokerOptions options, Inbox* inbox = nullptr) {
  auto made = MqttClient::create(std::move(options));
  EXPECT_TRUE(made) << made.error().message;
  if (!made) return nullptr;
  if (inbox) {
    (*made)->on_message([inbox](const std::string& topic, const std::string& payload, bool) {
      inbox->add(topic, payload);
    });
  }
  return std::move(*made);
}

TEST(AgentMqtt, TopicsNameTheTerminalAndTheInstruction) {
  EXPECT_EQ(control_topic("t1", "a-1"), "steward/t1/control/a-1");
  EXPECT_EQ(instruction_of_topic("steward/t1/control/a-1"), "a-1");
  EXPECT_EQ(instruction_of_topic("steward/t1/status"), "");
  EXPECT_EQ(control_filter("t1"), "steward/t1/control/+");
}

TEST(AgentMqtt, APersistentSessionReceivesWhatWasPublishedWhileItWasAway) {
  auto broker = MosquittoBroker::create();
  ASSERT_TRUE(broker) << broker.error().message;
  BrokerOptions agent_options;
  agent_options.uri = (*broker)->uri();
  agent_options.client_id = "agent-t1";
  {
    auto agent = client(agent_options);
    ASSERT_TRUE(agent && agent->connect());
    ASSERT_TRUE(agent->subscribe("steward/t1/status", 1, 5s));
    ASSERT_TRUE(agent->disconnect());
  }
  BrokerOptions sender_options;
  sender_options.uri = (*broker)->uri();
  auto sender = client(sender_options);
  ASSERT_TRUE(sender && sender->connect());
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(sender->publish_wait("steward/t1/status", std::to_string(i), 1, false, 5s));

  Inbox inbox;
  auto agent = client(agent_options, &inbox);
  ASSERT_TRUE(agent && agent->connect());
  ASSERT_TRUE(inbox.wait_for(5));
  EXPECT_EQ(inbox.messages().front().second, "0");
  EXPECT_EQ(inbox.messages().back().second, "4");
}

TEST(AgentMqtt, ARetainedControlMessageIsOfferedAgainUntilCleared) {
  auto broker = MosquittoBroker::create();
  ASSERT_TRUE(broker) << broker.error().message;
  BrokerOptions options;
  options.uri = (*broker)->uri();
  auto sender = client(options);
  ASSERT_TRUE(sender && sender->connect());
  ASSERT_TRUE(sender->publish_wait(control_topic("t1", "a-1"), "{}", 1, true, 5s));

  for (int round = 0; round < 2; ++round) {  // each subscribe gets it again
    Inbox inbox;
    auto reader = client(options, &inbox);
    ASSERT_TRUE(reader && reader->connect());
    ASSERT_TRUE(reader->subscribe(control_filter("t1"), 1, 5s));
    ASSERT_TRUE(inbox.wait_for(1));
  }
  ASSERT_TRUE(sender->publish_wait(control_topic("t1", "a-1"), "", 1, true, 5s));
  Inbox inbox;
  auto reader = client(options, &inbox);
  ASSERT_TRUE(reader && reader->connect());
  ASSERT_TRUE(reader->subscribe(control_filter("t1"), 1, 5s));
  EXPECT_FALSE(inbox.wait_for(1, 500ms));
}

class AgentMqttTls : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = MosquittoBroker::create({.tls = true});
    ASSERT_TRUE(broker) << broker.error().message;
    broker_ = std::move(*broker);
  }
  BrokerOptions options() const {
    BrokerOptions out;
    out.uri = broker_->tls_uri();
    out.ca_file = broker_->pki().ca_cert;
    out.cert_file = broker_->pki().client_cert;
    out.key_file = broker_->pki().client_key;
    out.connect_timeout = 3s;
    return out;
  }
  std::unique_ptr<MosquittoBroker> broker_;
};

TEST_F(AgentMqttTls, ConnectsWhenTheBrokerCertificateChainsToTheConfiguredCa) {
  Inbox inbox;
  auto tls = client(options(), &inbox);
  ASSERT_TRUE(tls);
  auto connected = tls->connect();
  ASSERT_TRUE(connected) << connected.error().message << "\n" << broker_->log_tail();
  ASSERT_TRUE(tls->subscribe("steward/t1/status", 1, 5s));
  ASSERT_TRUE(tls->publish_wait("steward/t1/status", "hello", 1, false, 5s));
  ASSERT_TRUE(inbox.wait_for(1));
}

TEST_F(AgentMqttTls, RefusesABrokerSignedByAnotherCa) {
  auto other = testing::make_broker_pki(broker_->dir(), "other-");
  ASSERT_TRUE(other) << other.error().message;
  BrokerOptions wrong_ca = options();
  wrong_ca.ca_file = other->ca_cert;
  auto tls = client(wrong_ca);
  ASSERT_TRUE(tls);
  EXPECT_FALSE(tls->connect());
}

TEST_F(AgentMqttTls, TheBrokerRefusesAClientWithoutACertificate) {
  BrokerOptions anonymous = options();
  anonymous.cert_file.clear();
  anonymous.key_file.clear();
  auto tls = client(anonymous);
  ASSERT_TRUE(tls);
  EXPECT_FALSE(tls->connect());
}

}  // namespace
}  // namespace steward::agent
