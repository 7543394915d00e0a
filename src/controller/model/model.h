// The controller's inventory: forwarding switches, hosts, virtual machines and the network
// configuration of each VM interface. Plain values; validation and JSON live in json.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace steward::controller {

// TLS material for an `ssl:` OVSDB endpoint (PEM files).
struct TlsFiles {
  std::string ca_cert;
  std::string certificate;
  std::string private_key;
  bool operator==(const TlsFiles&) const = default;
};

// A forwarding switch: an Open vSwitch database reachable at `endpoint`
// (`unix:/path`, `tcp:host:port` or `ssl:host:port`), holding VM ports in `bridge`.
struct Switch {
  std::string id;
  std::string endpoint;
  std::string bridge;
  TlsFiles tls;
  bool operator==(const Switch&) const = default;
};

// A hypervisor host and the switch its VMs attach to. The id is the name the VM manager uses
// for the host (Nova's compute host name).
struct Host {
  std::string id;
  std::string switch_id;
  bool operator==(const Host&) const = default;
};

// One VM interface and its configuration on the switch.
struct Interface {
  std::string id;      // stable within the VM: "eth0", or the Neutron port id
  std::string device;  // port name on the switch (the tap device), at most 15 characters
  std::string mac;     // "52:54:00:12:34:56"
  std::vector<std::string> ips;
  std::optional<int> vlan;                 // access VLAN (Port.tag); empty with trunks or untagged
  std::vector<int> trunks;                 // trunk VLANs (Port.trunks)
  int64_t ingress_policing_rate_kbps = 0;  // Interface.ingress_policing_rate, 0 = off
  int64_t ingress_policing_burst_kb = 0;   // Interface.ingress_policing_burst
  int64_t egress_max_rate_bps = 0;         // QoS row (linux-htb max-rate), 0 = no QoS row
  std::map<std::string, std::string> external_ids;  // extra keys written to the Interface
  bool operator==(const Interface&) const = default;
};

// A virtual machine, where it runs, and its interfaces.
struct Vm {
  std::string id;  // the VM manager's id (Nova instance uuid)
  std::string name;
  std::string host;  // current host id
  std::vector<Interface> interfaces;
  bool operator==(const Vm&) const = default;
};

// Migration phases as VM managers announce them.
enum class Phase {
  kPrepare,   // install on the target, keep the source (before the VM resumes on the target)
  kComplete,  // the VM runs on the target: remove from the source (installs the target first
              // if that has not happened)
  kRollback,  // the migration failed: remove from the target, keep the source
  kFull,      // no phase given: prepare, then complete
};

const char* to_string(Phase phase);
std::optional<Phase> parse_phase(const std::string& text);

// A request to move a VM's configuration, from the API or a notification adapter.
struct MigrationRequest {
  std::string vm;
  std::string source_host;
  std::string target_host;
  Phase phase = Phase::kFull;
  std::string origin;     // "api", "nova:<event_type>", for logs and the record
  int64_t issued_us = 0;  // when the VM manager sent it (wall clock, us); 0 when unknown
};

// Where a migration stands. Active states hold the VM: no other migration of it may start.
enum class MigrationState {
  kPreparing,    // journaled: installing on the target (active)
  kPrepared,     // the target confirmed; the source still holds its rows (active)
  kCompleting,   // journaled: the VM runs on the target; removing from the source (active)
  kCompleted,    // the configuration is on the target only
  kRollingBack,  // journaled: removing from the target (active)
  kRolledBack,   // the configuration is on the source only
  kFailed,       // a switch refused the configuration; the source is untouched
};

const char* to_string(MigrationState state);
std::optional<MigrationState> parse_migration_state(const std::string& text);
bool is_active(MigrationState state);

// The journal record of one migration. Times are wall-clock microseconds, 0 = not yet.
struct Migration {
  int64_t id = 0;
  std::string vm;
  std::string source_host;
  std::string target_host;
  std::string source_switch;
  std::string target_switch;
  Phase wanted = Phase::kPrepare;  // how far the VM manager asked it to go so far
  MigrationState state = MigrationState::kPreparing;
  std::string origin;
  int64_t created_us = 0;
  int64_t last_issued_us = 0;  // newest issued_us of the messages that drove it
  int64_t target_ready_us = 0;
  int64_t complete_requested_us = 0;
  int64_t source_cleaned_us = 0;
  int64_t finished_us = 0;
  int attempts = 0;        // failed attempts of the current step
  std::string last_error;  // why the current step is waiting, empty when it is not

  bool active() const { return is_active(state); }
};

}  // namespace steward::controller
