// steward-bench-floor: the floor of the migration-storm benchmark. A minimal OVSDB client with
// no controller logic (no store, no journal, no engine, no monitor): it sends exactly the
// transactions Steward sends for a host evacuation, built beforehand with Steward's own pure
// transaction builder (controller/southbound/ovsdb/transaction.h), pipelined on one unix-socket
// connection per switch (all installs at once, or `--window` of them in flight), and waits for
// their replies. The remove of a VM goes to its source as soon as the target confirmed its
// install, as Steward orders them. The benchmark runs it at several windows and keeps the
// fastest: the best any controller could do on these switches.
//
// Input: the VMs (a JSON array in the API's format), the migrations (a JSON array of {vm,
// source_host, target_host}) and `--switch host=unix:/path` for every host. Output: one JSON
// object with per-migration times in microseconds from the start (see write()).
#include "controller/model/json.h"
#include "controller/southbound/ovsdb/cache.h"
#include "controller/southbound/ovsdb/message.h"
#include "controller/southbound/ovsdb/transaction.h"

#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace {

namespace json = boost::json;
using namespace steward;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxMessage = std::size_t{256} << 20;

struct Options {
  std::vector<std::string> switches;  // host=unix:/path
  std::string vms_file;
  std::string migrations_file;
  std::string out_file;
  std::string bridge = "br-int";
  std::string owner = "steward";
  std::size_t window = 0;  // installs in flight at most (0: all at once)
};

// One connection to one switch: a socket, bytes waiting to go out, and a reader of replies.
struct Peer {
  std::string host;
  int fd = -1;
  std::string outgoing;
  std::size_t written = 0;
  ovsdb::MessageReader reader{kMaxMessage};
  std::string bridge_uuid;
  controller::OwnedRows owned;
};

// One migration: its two pre-built transactions and when each was sent and confirmed.
struct Migration {
  Peer* source = nullptr;
  Peer* target = nullptr;
  ovsdb::PlannedTransaction install;
  ovsdb::PlannedTransaction remove;
  std::string install_request;
  std::string remove_request;
  int64_t install_sent_us = -1, install_done_us = -1;
  int64_t remove_sent_us = -1, remove_done_us = -1;
  std::string error;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Result<int> connect_unix(const std::string& endpoint) {
  if (!endpoint.starts_with("unix:"))
    return Error::make(ErrorCode::kInvalidArgument, "{}: only unix: endpoints", endpoint);
  std::string path = endpoint.substr(5);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    if (fd >= 0) ::close(fd);
    return Error::make(ErrorCode::kUnavailable, "cannot connect to {}: {}", path,
                       std::strerror(errno));
  }
  return fd;
}

// Blocking call used before the timed part: sends one request, returns its result.
Result<json::value> call(Peer& peer, uint64_t id, std::string_view method,
                         const json::array& params) {
  std::string request = ovsdb::serialize_request(id, method, params);
  if (::write(peer.fd, request.data(), request.size()) != static_cast<ssize_t>(request.size()))
    return Error::make(ErrorCode::kIo, "{}: write failed", peer.host);
  std::optional<json::value> result;
  char buffer[65536];
  while (!result) {
    ssize_t got = ::read(peer.fd, buffer, sizeof(buffer));
    if (got <= 0) return Error::make(ErrorCode::kIo, "{}: connection closed", peer.host);
    auto fed = peer.reader.feed({buffer, static_cast<std::size_t>(got)}, [&](json::value&& v) {
      auto message = ovsdb::classify(v);
      if (message && message->kind == ovsdb::Message::Kind::kReply && message->numeric_id == id &&
          message->result)
        result = std::move(*message->result);
      return !result;
    });
    if (!fed) return fed.error();
  }
  return std::move(*result);
}

// The bridge uuid and the Steward-owned rows now on the switch (Steward's own select).
Status load_rows(Peer& peer, const Options& options) {
  auto reply = call(peer, 1, "transact", ovsdb::select_owned_params(options.bridge, options.owner));
  if (!reply) return reply.error();
  ovsdb::MonitorCache rows(options.bridge, options.owner);
  if (auto status = rows.load_select(*reply); !status) return status;
  if (!rows.bridge_found())
    return Error::make(ErrorCode::kNotFound, "{}: no bridge {}", peer.host, options.bridge);
  peer.bridge_uuid = rows.bridge_uuid();
  peer.owned = rows.owned();
  return ok();
}

Result<std::map<std::string, controller::Vm>> load_vms(const std::string& path) {
  auto parsed = controller::parse_json(read_text(path));
  if (!parsed || !parsed->is_array())
    return Error::make(ErrorCode::kInvalidArgument, "{}: not a JSON array", path);
  std::map<std::string, controller::Vm> vms;
  for (const json::value& item : parsed->as_array()) {
    auto vm = controller::vm_from_json(item);
    if (!vm) return vm.error();
    vms[vm->id] = std::move(*vm);
  }
  return vms;
}

// Builds both transactions of every migration from the rows read at the start. Request ids:
// 2*i+100 for the install of migration i, 2*i+101 for its remove.
Result<std::vector<Migration>> plan(const Options& options, std::map<std::string, Peer>& peers) {
  auto vms = load_vms(options.vms_file);
  if (!vms) return vms.error();
  auto input = controller::parse_json(read_text(options.migrations_file));
  if (!input || !input->is_array())
    return Error::make(ErrorCode::kInvalidArgument, "{}: not a JSON array",
                       options.migrations_file);
  std::vector<Migration> migrations;
  for (const json::value& item : input->as_array()) {
    const json::object& message = item.as_object();
    auto text = [&](const char* key) { return std::string(message.at(key).as_string()); };
    auto vm = vms->find(text("vm"));
    auto source = peers.find(text("source_host"));
    auto target = peers.find(text("target_host"));
    if (vm == vms->end() || source == peers.end() || target == peers.end())
      return Error::make(ErrorCode::kNotFound, "unknown vm or host in {}", json::serialize(item));
    Migration migration;
    migration.source = &source->second;
    migration.target = &target->second;
    auto install = ovsdb::plan_install(vm->second, options.owner, target->second.bridge_uuid,
                                       target->second.owned);
    if (!install) return install.error();
    migration.install = std::move(*install);
    migration.remove =
        ovsdb::plan_remove(vm->first, source->second.bridge_uuid, source->second.owned);
    uint64_t id = 2 * migrations.size() + 100;
    migration.install_request = ovsdb::serialize_request(id, "transact", migration.install.params);
    migration.remove_request =
        ovsdb::serialize_request(id + 1, "transact", migration.remove.params);
    migrations.push_back(std::move(migration));
  }
  return migrations;
}

int64_t since_us(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

// Writes as much of the peer's outgoing bytes as the socket takes now.
Status flush(Peer& peer) {
  while (peer.written < peer.outgoing.size()) {
    ssize_t n =
        ::write(peer.fd, peer.outgoing.data() + peer.written, peer.outgoing.size() - peer.written);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ok();
    if (n <= 0) return Error::make(ErrorCode::kIo, "{}: write failed", peer.host);
    peer.written += static_cast<std::size_t>(n);
  }
  peer.outgoing.clear();
  peer.written = 0;
  return ok();
}

class Pipeline {
 public:
  Pipeline(std::map<std::string, Peer>& peers, std::vector<Migration>& migrations,
           std::size_t window)
      : peers_(peers), migrations_(migrations), window_(window ? window : migrations.size()) {}

  // Sends the installs (all at once, or `window` of them in flight at a time), each remove as
  // its install is confirmed; returns when every transaction has its reply.
  Status run();

 private:
  Status on_message(Peer& peer, json::value& value);
  void settle(Migration& migration, bool install, const json::value& result);
  Status read(Peer& peer);
  void queue_install();

  std::map<std::string, Peer>& peers_;
  std::vector<Migration>& migrations_;
  std::size_t window_;
  std::size_t next_install_ = 0;
  Clock::time_point start_;
  std::size_t outstanding_ = 0;
};

void Pipeline::queue_install() {
  Migration& migration = migrations_[next_install_++];
  migration.target->outgoing += migration.install_request;
  migration.install_sent_us = since_us(start_);
}

Status Pipeline::run() {
  for (auto& [host, peer] : peers_)
    ::fcntl(peer.fd, F_SETFL, O_NONBLOCK);
  start_ = Clock::now();
  outstanding_ = 2 * migrations_.size();
  while (next_install_ < std::min(window_, migrations_.size()))
    queue_install();
  std::vector<pollfd> fds;
  std::vector<Peer*> order;
  for (auto& [host, peer] : peers_)
    order.push_back(&peer);
  while (outstanding_ > 0) {
    fds.clear();
    for (Peer* peer : order) {
      if (auto status = flush(*peer); !status) return status;
      short events = POLLIN | (peer->outgoing.empty() ? 0 : POLLOUT);
      fds.push_back(pollfd{peer->fd, events, 0});
    }
    if (::poll(fds.data(), fds.size(), 10'000) <= 0)
      return Error{ErrorCode::kTimeout, "no progress for 10 s"};
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (auto status = read(*order[i]); !status) return status;
      }
    }
  }
  return ok();
}

Status Pipeline::read(Peer& peer) {
  char buffer[1 << 16];
  for (;;) {
    ssize_t got = ::read(peer.fd, buffer, sizeof(buffer));
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ok();
    if (got <= 0) return Error::make(ErrorCode::kIo, "{}: connection closed", peer.host);
    Status handled = ok();
    auto fed = peer.reader.feed({buffer, static_cast<std::size_t>(got)}, [&](json::value&& v) {
      handled = on_message(peer, v);
      return bool(handled);
    });
    if (!fed) return fed.error();
    if (!handled) return handled;
  }
}

Status Pipeline::on_message(Peer& peer, json::value& value) {
  auto message = ovsdb::classify(value);
  if (!message) return message.error();
  if (message->kind == ovsdb::Message::Kind::kRequest && message->method == "echo") {
    peer.outgoing += ovsdb::serialize_reply(*message->id, *message->params);
    return ok();
  }
  if (message->kind != ovsdb::Message::Kind::kReply || !message->numeric_id) return ok();
  uint64_t id = *message->numeric_id;
  if (id < 100 || (id - 100) / 2 >= migrations_.size()) return ok();
  Migration& migration = migrations_[(id - 100) / 2];
  static const json::value kNull;
  settle(migration, id % 2 == 0, message->result ? *message->result : kNull);
  if (message->error) migration.error = json::serialize(*message->error);
  return ok();
}

// Records a reply; after the install's, queues the remove on the source.
void Pipeline::settle(Migration& migration, bool install, const json::value& result) {
  outstanding_--;
  const ovsdb::PlannedTransaction& plan = install ? migration.install : migration.remove;
  auto outcome = ovsdb::check_transact_reply(plan, result);
  if (!outcome || *outcome != ovsdb::Outcome::kCommitted) {
    migration.error = outcome ? "stale: an update matched no row" : outcome.error().message;
  }
  if (!install) {
    migration.remove_done_us = since_us(start_);
    return;
  }
  migration.install_done_us = since_us(start_);
  migration.source->outgoing += migration.remove_request;
  migration.remove_sent_us = since_us(start_);
  if (next_install_ < migrations_.size()) queue_install();
}

// {"migrations": [{vm, install_sent_us, install_done_us, remove_sent_us, remove_done_us,
//  error?}], "errors": n, "cpu_seconds": the CPU time of the timed part}; times in
// microseconds since the first transaction was queued.
void write(const Options& options, const std::vector<Migration>& migrations,
           const std::vector<std::string>& vm_ids, double cpu) {
  json::array rows;
  int errors = 0;
  for (std::size_t i = 0; i < migrations.size(); ++i) {
    const Migration& m = migrations[i];
    json::object row{{"vm", vm_ids[i]},
                     {"install_sent_us", m.install_sent_us},
                     {"install_done_us", m.install_done_us},
                     {"remove_sent_us", m.remove_sent_us},
                     {"remove_done_us", m.remove_done_us}};
    if (!m.error.empty()) {
      row["error"] = m.error;
      errors++;
    }
    rows.push_back(std::move(row));
  }
  json::object out{{"migrations", std::move(rows)}, {"errors", errors}, {"cpu_seconds", cpu}};
  std::ofstream(options.out_file) << json::serialize(out) << "\n";
}

// User + system CPU seconds this process has used so far.
double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int fail(const Error& error) {
  fmt::print(stderr, "steward-bench-floor: {}\n", error.message);
  return 1;
}

int run(const Options& options) {
  // Connect and read the rows the transactions are built from (not timed).
  std::map<std::string, Peer> peers;
  for (const std::string& spec : options.switches) {
    std::size_t eq = spec.find('=');
    if (eq == std::string::npos)
      return fail(
          Error::make(ErrorCode::kInvalidArgument, "--switch {}: want host=endpoint", spec));
    Peer& peer = peers[spec.substr(0, eq)];
    peer.host = spec.substr(0, eq);
    auto fd = connect_unix(spec.substr(eq + 1));
    if (!fd) return fail(fd.error());
    peer.fd = *fd;
    if (auto status = load_rows(peer, options); !status) return fail(status.error());
  }
  auto migrations = plan(options, peers);
  if (!migrations) return fail(migrations.error());

  // The timed part: every transaction with its reply.
  Pipeline pipeline(peers, *migrations, options.window);
  double cpu_before = cpu_seconds();
  if (auto status = pipeline.run(); !status) return fail(status.error());
  double cpu = cpu_seconds() - cpu_before;

  std::vector<std::string> vm_ids;
  auto input = controller::parse_json(read_text(options.migrations_file));
  for (const json::value& item : input->as_array())
    vm_ids.emplace_back(item.at("vm").as_string());
  write(options, *migrations, vm_ids, cpu);
  for (auto& [host, peer] : peers)
    ::close(peer.fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Floor of the migration storm: Steward's transactions, pipelined, no controller"};
  app.add_option("--switch", options.switches, "host=unix:/path/db.sock (one per host)")
      ->required();
  app.add_option("--vms", options.vms_file, "JSON array of VMs (API format)")->required();
  app.add_option("--migrations", options.migrations_file, "JSON array of migrations")->required();
  app.add_option("--out", options.out_file, "Where to write the results (JSON)")->required();
  app.add_option("--bridge", options.bridge)->capture_default_str();
  app.add_option("--window", options.window, "Installs in flight at most (0: all at once)")
      ->capture_default_str();
  app.add_option("--owner", options.owner)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run(options);
}
