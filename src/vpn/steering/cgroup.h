// The cgroup v2 group whose members are admitted to the intranet. Sockets remember the cgroup
// of the process that created them; nftables (`socket cgroupv2`) and sock_diag
// (INET_DIAG_CGROUP_ID) recognise admitted traffic by it. Children of a member are members.
#pragma once

#include "core/result.h"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace steward::vpn {

// Where a usable cgroup2 hierarchy is mounted, and whether Steward mounted it itself.
struct Cgroup2Mount {
  std::string path;  // e.g. "/sys/fs/cgroup/unified" or "/run/steward-vpn/cgroup2"
  bool private_mount = false;
};

// A cgroup2 mount of the hierarchy's root in /proc/self/mountinfo that this process can
// write to; nullopt when there is none (e.g. inside `ip netns exec`).
std::optional<Cgroup2Mount> find_cgroup2();

// Finds a cgroup2 mount in /proc/self/mountinfo whose root is the hierarchy's root and that
// is reachable (`ip netns exec` remounts /sys and hides /sys/fs/cgroup/*). When none is,
// mounts cgroup2 at `fallback_path` (created if missing) and returns it with private_mount.
Result<Cgroup2Mount> find_or_mount_cgroup2(const std::string& fallback_path);

// Unmounts a mount made by find_or_mount_cgroup2 in this mount namespace. Its directory stays
// (it may hold a mount of another namespace).
Status unmount_cgroup2(const std::string& path);

// True when `relative_path` names a group strictly below a cgroup2 mount: one or more
// components of letters, digits, '.', '_' and '-' joined by single '/', none of them "." or
// "..". Anything else (the empty path would be the hierarchy root) is never created or removed.
bool is_group_path(const std::string& relative_path);

// The admitted group: <mount>/<relative_path>, e.g. "steward-vpn/admitted".
class AdmittedCgroup {
 public:
  // Creates the directories along relative_path (existing parents are reused) and reads the
  // group's id. kAlreadyExists when the group itself exists (someone else's); kIo and the
  // path when the kernel refuses.
  static Result<AdmittedCgroup> create(const Cgroup2Mount& mount, const std::string& relative_path);
  // Takes over the group <mount>/<relative_path> that a previous run of the same instance made
  // (its ledger says so; the caller checks): the directory keeps its id and its members stay
  // members. kNotFound when the group is not there; kIo when its id cannot be read.
  static Result<AdmittedCgroup> adopt(const Cgroup2Mount& mount, const std::string& relative_path);

  // Moves `pid` (a whole process) into the group by writing cgroup.procs. kNotFound when the
  // process does not exist.
  Status add_process(pid_t pid) const;
  // PIDs currently in the group (cgroup.procs).
  Result<std::vector<pid_t>> processes() const;
  // True when `pid` is in the group (reads /proc/<pid>/cgroup).
  bool contains(pid_t pid) const;

  // The cgroup id: the inode number of the group's directory, as sock_diag reports it.
  uint64_t id() const { return id_; }
  // Depth below the hierarchy root ("steward-vpn/admitted" is 2), for `socket cgroupv2 level`.
  int level() const { return level_; }
  const std::string& path() const { return path_; }  // absolute directory
  const std::string& relative_path() const { return relative_path_; }

 private:
  // The group's place (path checked to stay below the mount), without touching the kernel.
  static Result<AdmittedCgroup> at(const Cgroup2Mount& mount, const std::string& relative_path);
  // Reads the id of the directory at path_.
  Status read_id();

  std::string path_;
  std::string relative_path_;
  uint64_t id_ = 0;
  int level_ = 0;
};

// Removes the group at <mount_path>/<relative_path> and its empty parents up to (not
// including) the mount. Members still inside are first moved to the hierarchy root so the
// directories can go. ok when it does not exist; kInvalidArgument, touching nothing, when
// relative_path is not is_group_path().
Status remove_cgroup(const std::string& mount_path, const std::string& relative_path);

// The cgroup id of <directory> (its inode), kIo when it cannot be read.
Result<uint64_t> cgroup_id_of(const std::string& directory);

}  // namespace steward::vpn
