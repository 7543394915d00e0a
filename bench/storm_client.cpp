// steward-bench-storm: the load generator of the migration-storm benchmark
// (bench/run-migration-storm.sh). It sends migration messages to a running Steward controller
// over its HTTP API and reports, per migration, when its message was sent and answered and what
// the controller's record says about it.
//
//   storm mode (default): every message at once, as fast as the controller accepts them, from
//     `--connections` threads, each with its own keep-alive connection; then waits until the
//     controller has no migration in flight and reads each migration's record.
//   sequential mode: one message at a time on an otherwise idle controller, each answered once
//     the migration settled (`?wait=`), with `--gap-ms` between them.
//
// Input: a JSON array of {vm, source_host, target_host}. Output: one JSON object (see write()),
// with the CPU time that this process and each `--watch`ed one used from the first message to
// the moment the last migration settled, and how long the watched ones waited for a CPU.
// Times are wall-clock microseconds (the controller's records use the same clock).
#include "core/http.h"

#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <unistd.h>
#include <atomic>
#include <chrono>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

namespace {

namespace json = boost::json;
using steward::http::Client;

struct Options {
  uint16_t port = 0;
  std::string token_file;
  std::string migrations_file;
  std::string out_file;
  int connections = 8;
  bool sequential = false;
  int gap_ms = 10;
  int wait_ms = 30'000;
  int settle_timeout_s = 240;
  std::vector<std::string> watched;  // name=pid: processes whose CPU time the storm used
};

// One migration message and what became of it.
struct Sent {
  json::object message;
  int64_t sent_us = 0;
  int64_t answered_us = 0;
  int status = 0;
  int64_t id = 0;
  json::value record;  // the controller's record once settled (null if never read)
  std::string error;
};

int64_t wall_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// User + system CPU seconds of process `pid` so far (0 for pid 0: this process).
double cpu_seconds(const std::string& pid) {
  std::string stat = read_text("/proc/" + (pid == "0" ? std::string("self") : pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Seconds process `pid` was runnable but waiting for a CPU so far (/proc/<pid>/schedstat).
double run_queue_seconds(const std::string& pid) {
  std::istringstream fields(read_text("/proc/" + pid + "/schedstat"));
  double on_cpu_ns = 0, waiting_ns = 0;
  fields >> on_cpu_ns >> waiting_ns;
  return waiting_ns / 1e9;
}

struct CpuSnapshot {
  std::map<std::string, double> used;     // CPU seconds, by name
  std::map<std::string, double> waiting;  // run-queue seconds of the watched processes
};

// CPU seconds of every watched process (and of this one, as "load generator").
CpuSnapshot cpu_snapshot(const Options& options) {
  CpuSnapshot snapshot;
  snapshot.used["load generator"] = cpu_seconds("0");
  for (const std::string& spec : options.watched) {
    std::size_t eq = spec.find('=');
    snapshot.used[spec.substr(0, eq)] += cpu_seconds(spec.substr(eq + 1));
    snapshot.waiting[spec.substr(0, eq)] += run_queue_seconds(spec.substr(eq + 1));
  }
  return snapshot;
}

json::object difference(const std::map<std::string, double>& after,
                        const std::map<std::string, double>& before) {
  json::object out;
  for (const auto& [name, value] : after)
    out[name] = value - before.at(name);
  return out;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

int64_t id_of(const json::value& body) {
  const json::object* object = body.if_object();
  const json::value* id = object ? object->if_contains("id") : nullptr;
  return id && id->is_int64() ? id->get_int64() : 0;
}

// Sends one message and records the answer. `query` is appended to the path.
void send(Client& client, Sent& sent, const std::string& query) {
  std::string body = json::serialize(sent.message);
  sent.sent_us = wall_us();
  auto response = client.request("POST", "/v1/migrations" + query, body);
  sent.answered_us = wall_us();
  if (!response) {
    sent.error = response.error().message;
    return;
  }
  sent.status = response->status;
  boost::system::error_code ec;
  json::value parsed = json::parse(response->body, ec);
  if (ec) {
    sent.error = "unparsable answer: " + response->body;
    return;
  }
  sent.id = id_of(parsed);
  if (sent.status >= 300) sent.error = response->body;
  if (!query.empty()) sent.record = std::move(parsed);  // ?wait= answers with the settled record
}

// Every message at once from `connections` threads; each connection is opened (and checked)
// before the first message goes out, so the storm measures requests, not connects.
void storm(const Options& options, const std::string& token, std::vector<Sent>& messages) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < options.connections; ++i) {
    clients.push_back(std::make_unique<Client>("127.0.0.1", options.port, token));
    (void)clients.back()->request("GET", "/healthz");
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (auto& client : clients) {
    threads.emplace_back([&messages, &next, client = client.get()] {
      for (size_t i = next++; i < messages.size(); i = next++)
        send(*client, messages[i], "");
    });
  }
  for (std::thread& thread : threads)
    thread.join();
}

// Polls /healthz until no migration is in flight; returns when that was seen (0 on timeout).
int64_t wait_until_settled(Client& client, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto health = client.request("GET", "/healthz");
    int64_t seen_us = wall_us();
    if (health && health->status == 200) {
      boost::system::error_code ec;
      json::value body = json::parse(health->body, ec);
      const json::value* in_flight =
          ec || !body.is_object() ? nullptr : body.as_object().if_contains("migrations_in_flight");
      if (in_flight && in_flight->to_number<int64_t>() == 0) return seen_us;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return 0;
}

void read_records(Client& client, std::vector<Sent>& messages) {
  for (Sent& sent : messages) {
    if (sent.id == 0) continue;
    auto response = client.request("GET", "/v1/migrations/" + std::to_string(sent.id));
    if (!response || response->status != 200) continue;
    boost::system::error_code ec;
    sent.record = json::parse(response->body, ec);
  }
}

void sequential(const Options& options, const std::string& token, std::vector<Sent>& messages) {
  Client client("127.0.0.1", options.port, token);
  (void)client.request("GET", "/healthz");
  std::string query = "?wait=" + std::to_string(options.wait_ms);
  for (Sent& sent : messages) {
    send(client, sent, query);
    std::this_thread::sleep_for(std::chrono::milliseconds(options.gap_ms));
  }
}

// {"mode", "connections", "first_sent_us", "last_answered_us", "settled_us", "cpu_seconds",
//  "run_queue_seconds" (time the watched processes were runnable but had no CPU),
//  "migrations": [{message fields..., sent_us, answered_us, status, id, error?, record}]}
void write(const Options& options, const std::vector<Sent>& messages, int64_t settled_us,
           const CpuSnapshot& before, const CpuSnapshot& after) {
  json::array rows;
  int64_t first_sent = INT64_MAX;
  int64_t last_answered = 0;
  for (const Sent& sent : messages) {
    json::object row = sent.message;
    row["sent_us"] = sent.sent_us;
    row["answered_us"] = sent.answered_us;
    row["status"] = sent.status;
    row["id"] = sent.id;
    if (!sent.error.empty()) row["error"] = sent.error;
    row["record"] = sent.record;
    rows.push_back(std::move(row));
    first_sent = std::min(first_sent, sent.sent_us);
    last_answered = std::max(last_answered, sent.answered_us);
  }
  json::object out{{"mode", options.sequential ? "sequential" : "storm"},
                   {"connections", options.sequential ? 1 : options.connections},
                   {"first_sent_us", first_sent},
                   {"last_answered_us", last_answered},
                   {"settled_us", settled_us},
                   {"cpu_seconds", difference(after.used, before.used)},
                   {"run_queue_seconds", difference(after.waiting, before.waiting)},
                   {"migrations", std::move(rows)}};
  std::ofstream(options.out_file) << json::serialize(out) << "\n";
}

int run(const Options& options) {
  std::string token = trimmed(read_text(options.token_file));
  boost::system::error_code ec;
  json::value input = json::parse(read_text(options.migrations_file), ec);
  if (ec || !input.is_array()) {
    fmt::print(stderr, "steward-bench-storm: {} is not a JSON array\n", options.migrations_file);
    return 2;
  }
  std::vector<Sent> messages;
  for (const json::value& message : input.as_array()) {
    Sent sent;
    sent.message = message.as_object();
    messages.push_back(std::move(sent));
  }

  int64_t settled_us = 0;
  auto cpu_before = cpu_snapshot(options);
  Client watcher("127.0.0.1", options.port, token);
  if (options.sequential) {
    sequential(options, token, messages);
    settled_us = wall_us();
  } else {
    storm(options, token, messages);
    settled_us = wait_until_settled(watcher, std::chrono::seconds(options.settle_timeout_s));
  }
  auto cpu_after = cpu_snapshot(options);
  if (!options.sequential) read_records(watcher, messages);
  write(options, messages, settled_us, cpu_before, cpu_after);
  if (settled_us == 0) {
    fmt::print(stderr, "steward-bench-storm: migrations still in flight after {} s\n",
               options.settle_timeout_s);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Migration-storm load generator for a Steward controller"};
  app.add_option("--port", options.port, "Controller HTTP port on 127.0.0.1")->required();
  app.add_option("--token-file", options.token_file, "Bearer token file")->required();
  app.add_option("--migrations", options.migrations_file, "JSON array of migrations")->required();
  app.add_option("--out", options.out_file, "Where to write the results (JSON)")->required();
  app.add_option("--connections", options.connections, "Keep-alive connections (storm)")
      ->capture_default_str();
  app.add_flag("--sequential", options.sequential, "One migration at a time, each settled");
  app.add_option("--gap-ms", options.gap_ms, "Pause between sequential migrations")
      ->capture_default_str();
  app.add_option("--watch", options.watched, "name=pid: report the CPU time it used (repeat)");
  app.add_option("--settle-timeout", options.settle_timeout_s, "Seconds to wait for the storm")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run(options);
}
