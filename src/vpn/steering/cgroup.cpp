#include "vpn/steering/cgroup.h"

#include "core/log.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>

namespace steward::vpn {
namespace {

namespace fs = std::filesystem;

// A mountinfo line: "36 25 0:30 / /sys/fs/cgroup/unified rw,... - cgroup2 cgroup2 rw".
struct MountLine {
  std::string root;
  std::string mount_point;
  std::string type;
};

std::optional<MountLine> parse_mount_line(const std::string& line) {
  std::istringstream fields(line);
  std::string id, parent, device, root, mount_point, word;
  if (!(fields >> id >> parent >> device >> root >> mount_point)) return std::nullopt;
  while (fields >> word && word != "-") {
  }
  std::string type;
  if (!(fields >> type)) return std::nullopt;
  return MountLine{root, mount_point, type};
}

bool usable(const std::string& path) {
  return ::access((path + "/cgroup.procs").c_str(), W_OK) == 0;
}

Status write_file(const std::string& path, const std::string& text) {
  std::ofstream file(path);
  file << text;
  file.flush();
  if (!file) {
    return Error::make(ErrorCode::kIo, "cannot write '{}' to {}: {}", text, path,
                       std::strerror(errno));
  }
  return ok();
}

int depth_of(const std::string& relative_path) {
  int depth = 0;
  for (const auto& part : fs::path(relative_path)) {
    if (!part.empty() && part != "/") ++depth;
  }
  return depth;
}

}  // namespace

std::optional<Cgroup2Mount> find_cgroup2() {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    auto mount = parse_mount_line(line);
    if (!mount || mount->type != "cgroup2" || mount->root != "/") continue;
    if (usable(mount->mount_point)) return Cgroup2Mount{mount->mount_point, false};
  }
  return std::nullopt;
}

Result<Cgroup2Mount> find_or_mount_cgroup2(const std::string& fallback_path) {
  if (auto existing = find_cgroup2()) return *existing;

  // None: mount our own. cgroup2 is one hierarchy, so this is the same tree under a new path.
  std::error_code ec;
  fs::create_directories(fallback_path, ec);
  if (ec) {
    return Error::make(ErrorCode::kIo, "cgroup2: cannot create mount point {}: {}", fallback_path,
                       ec.message());
  }
  if (::mount("cgroup2", fallback_path.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) != 0) {
    return Error::make(ErrorCode::kIo, "cgroup2: no usable mount and mounting at {} failed: {}",
                       fallback_path, std::strerror(errno));
  }
  return Cgroup2Mount{fallback_path, true};
}

Status unmount_cgroup2(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return Error::make(ErrorCode::kIo, "cgroup2: cannot unmount {}: {}", path,
                       std::strerror(errno));
  }
  // The directory stays: in another mount namespace (each `ip netns exec` has its own) it may
  // carry another daemon's mount of the same path, and removing a directory detaches the mounts
  // on it in every namespace.
  return ok();
}

Result<uint64_t> cgroup_id_of(const std::string& directory) {
  struct stat info {};
  if (::stat(directory.c_str(), &info) != 0) {
    return Error::make(ErrorCode::kIo, "cgroup {}: {}", directory, std::strerror(errno));
  }
  return static_cast<uint64_t>(info.st_ino);
}

bool is_group_path(const std::string& relative_path) {
  if (relative_path.empty()) return false;
  size_t start = 0;
  while (start <= relative_path.size()) {
    size_t end = relative_path.find('/', start);
    if (end == std::string::npos) end = relative_path.size();
    std::string_view part(relative_path.data() + start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

Result<AdmittedCgroup> AdmittedCgroup::at(const Cgroup2Mount& mount,
                                          const std::string& relative_path) {
  if (!is_group_path(relative_path)) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "cgroup path '{}' must be relative and stay below the mount", relative_path);
  }
  AdmittedCgroup group;
  group.path_ = mount.path + "/" + relative_path;
  group.relative_path_ = relative_path;
  group.level_ = depth_of(relative_path);
  return group;
}

Status AdmittedCgroup::read_id() {
  auto id = cgroup_id_of(path_);
  if (!id) return id.error();
  id_ = *id;
  return ok();
}

Result<AdmittedCgroup> AdmittedCgroup::create(const Cgroup2Mount& mount,
                                              const std::string& relative_path) {
  auto group = at(mount, relative_path);
  if (!group) return group.error();
  if (fs::exists(group->path_)) {
    return Error::make(ErrorCode::kAlreadyExists, "cgroup {} exists and is not ours", group->path_);
  }
  std::error_code ec;
  fs::create_directories(group->path_, ec);
  if (ec) {
    return Error::make(ErrorCode::kIo, "cgroup {}: cannot create: {}", group->path_, ec.message());
  }
  if (auto read = group->read_id(); !read) return read.error();
  return group;
}

Result<AdmittedCgroup> AdmittedCgroup::adopt(const Cgroup2Mount& mount,
                                             const std::string& relative_path) {
  auto group = at(mount, relative_path);
  if (!group) return group.error();
  if (!fs::is_directory(group->path_)) {
    return Error::make(ErrorCode::kNotFound, "cgroup {} is not there", group->path_);
  }
  if (auto read = group->read_id(); !read) return read.error();
  return group;
}

Status AdmittedCgroup::add_process(pid_t pid) const {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) {
    return Error::make(ErrorCode::kNotFound, "no process {}", pid);
  }
  return write_file(path_ + "/cgroup.procs", std::to_string(pid));
}

Result<std::vector<pid_t>> AdmittedCgroup::processes() const {
  std::ifstream file(path_ + "/cgroup.procs");
  if (!file) return Error::make(ErrorCode::kIo, "cgroup {}: cannot read cgroup.procs", path_);
  std::vector<pid_t> pids;
  pid_t pid = 0;
  while (file >> pid)
    pids.push_back(pid);
  return pids;
}

bool AdmittedCgroup::contains(pid_t pid) const {
  std::ifstream file("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  std::string wanted = "0::/" + relative_path_;
  while (std::getline(file, line)) {
    if (line == wanted || line.starts_with(wanted + "/")) return true;
  }
  return false;
}

Status remove_cgroup(const std::string& mount_path, const std::string& relative_path) {
  // The guard against emptying the whole hierarchy: "" or ".." would name the root or beyond.
  if (!is_group_path(relative_path)) {
    return Error::make(ErrorCode::kInvalidArgument,
                       "refusing to remove cgroup '{}' below {}: not a group path", relative_path,
                       mount_path);
  }
  fs::path group = fs::path(mount_path) / relative_path;
  if (!fs::exists(group)) return ok();

  // Members (processes still running under it) go back to the root first.
  for (const auto& entry : fs::recursive_directory_iterator(group)) {
    if (entry.path().filename() != "cgroup.procs") continue;
    std::ifstream procs(entry.path());
    pid_t pid = 0;
    while (procs >> pid) {
      (void)write_file(mount_path + "/cgroup.procs", std::to_string(pid));
    }
  }

  // Directories deepest first, then the parents this path created, up to the mount.
  std::vector<fs::path> directories;
  for (const auto& entry : fs::recursive_directory_iterator(group)) {
    if (entry.is_directory()) directories.push_back(entry.path());
  }
  std::sort(directories.begin(), directories.end(),
            [](const fs::path& a, const fs::path& b) { return a.string() > b.string(); });
  for (const auto& directory : directories)
    ::rmdir(directory.c_str());
  // A process that just exited may keep the group busy for a moment.
  for (int attempt = 0; attempt < 50 && ::rmdir(group.c_str()) != 0 && errno == EBUSY; ++attempt) {
    ::usleep(20'000);
  }
  for (fs::path current = group; current != fs::path(mount_path) && current.has_parent_path();
       current = current.parent_path()) {
    if (::rmdir(current.c_str()) != 0 && errno != ENOENT) {
      if (current == group) {
        return Error::make(ErrorCode::kIo, "cgroup {}: cannot remove: {}", group.string(),
                           std::strerror(errno));
      }
      break;  // a parent still holds someone else's group
    }
  }
  return ok();
}

}  // namespace steward::vpn
