#include "vpn/steering/ledger.h"

#include "core/log.h"
#include "vpn/steering/cgroup.h"
#include "vpn/steering/nft.h"
#include "vpn/steering/rtnl.h"
#include "vpn/tun/tun_device.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

namespace steward::vpn {
namespace {

constexpr std::string_view kKindNames[] = {"tun", "route", "rule", "nft", "cgroup", "mount"};

std::string encode(const LedgerEntry& entry) {
  return fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\n", kKindNames[static_cast<int>(entry.kind)],
                     entry.name, entry.text, entry.table, entry.priority, entry.mark, entry.family);
}

std::optional<LedgerEntry> decode(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream stream(line);
  std::string field;
  while (std::getline(stream, field, '\t'))
    fields.push_back(field);
  if (fields.size() != 7) return std::nullopt;
  LedgerEntry entry;
  auto kind = std::find(std::begin(kKindNames), std::end(kKindNames), fields[0]);
  if (kind == std::end(kKindNames)) return std::nullopt;
  entry.kind = static_cast<LedgerEntry::Kind>(kind - std::begin(kKindNames));
  entry.name = fields[1];
  entry.text = fields[2];
  try {
    entry.table = std::stoi(fields[3]);
    entry.priority = std::stoi(fields[4]);
    entry.mark = static_cast<uint32_t>(std::stoul(fields[5]));
    entry.family = std::stoi(fields[6]);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return entry;
}

// A group recorded under a private cgroup2 mount: that mount lived in the mount namespace of the
// process that made it (`ip netns exec` gives each command its own), so after a crash the path
// may be an empty directory here. The group itself is still in the one cgroup2 hierarchy:
// reach it through whatever mount is usable now, mounting one for the moment if needed.
Status remove_recorded_cgroup(const LedgerEntry& entry) {
  if (!is_group_path(entry.text)) {
    // Never created (AdmittedCgroup::create refuses such paths): nothing of ours to remove,
    // and removing it would empty someone else's groups or the whole hierarchy.
    log::get("vpn")->warn("ledger lists cgroup '{}' below {}, not a group path: dropped",
                          entry.text, entry.name);
    return ok();
  }
  struct statfs info {};
  if (::statfs(entry.name.c_str(), &info) == 0 && info.f_type == CGROUP2_SUPER_MAGIC) {
    return remove_cgroup(entry.name, entry.text);
  }
  auto mount = find_or_mount_cgroup2(entry.name);
  if (!mount) return mount.error();
  auto removed = remove_cgroup(mount->path, entry.text);
  if (mount->private_mount) (void)unmount_cgroup2(mount->path);
  return removed;
}

Status remove_entry(const LedgerEntry& entry) {
  switch (entry.kind) {
    case LedgerEntry::Kind::kTun:
      return remove_link(entry.name);
    case LedgerEntry::Kind::kRoute: {
      auto prefix = Prefix::parse(entry.text);
      if (!prefix) return prefix.error();
      rtnl::Route route{*prefix, entry.table,
                        entry.name.empty() ? rtnl::RouteType::kProhibit : rtnl::RouteType::kUnicast,
                        0, static_cast<uint32_t>(entry.priority)};
      if (route.type == rtnl::RouteType::kUnicast) {
        auto index = rtnl::link_index(entry.name);
        if (!index) return ok();  // the link went, and its routes with it
        route.ifindex = *index;
      }
      return rtnl::delete_route(route);
    }
    case LedgerEntry::Kind::kRule:
      return rtnl::delete_rule({entry.family, entry.priority, entry.mark, entry.table});
    case LedgerEntry::Kind::kNftTable:
      return nft::delete_table(entry.name);
    case LedgerEntry::Kind::kCgroup:
      return remove_recorded_cgroup(entry);
    case LedgerEntry::Kind::kCgroupMount:
      return unmount_cgroup2(entry.name);
  }
  return ok();
}

}  // namespace

bool is_instance_name(const std::string& instance) {
  return !instance.empty() && instance.find('/') == std::string::npos && instance.front() != '.';
}

Result<Ledger> Ledger::open(const std::string& directory, const std::string& instance) {
  if (!is_instance_name(instance)) {
    return Error::make(ErrorCode::kInvalidArgument, "instance name '{}' is not a file name",
                       instance);
  }
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) {
    return Error::make(ErrorCode::kIo, "ledger directory {}: {}", directory, ec.message());
  }
  ::chmod(directory.c_str(), 0700);

  std::string lock_path = directory + "/" + instance + ".lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return Error::make(ErrorCode::kIo, "ledger lock {}: {}", lock_path, std::strerror(errno));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int saved = errno;
    ::close(lock_fd);
    if (saved == EWOULDBLOCK) {
      return Error::make(ErrorCode::kConflict,
                         "VPN instance '{}' is running in another process (lock {})", instance,
                         lock_path);
    }
    return Error::make(ErrorCode::kIo, "ledger lock {}: {}", lock_path, std::strerror(saved));
  }
  return Ledger(directory + "/" + instance + ".state", lock_fd);
}

Ledger::Ledger(Ledger&& other) noexcept
    : path_(std::move(other.path_)), lock_fd_(std::exchange(other.lock_fd_, -1)) {}

Ledger& Ledger::operator=(Ledger&& other) noexcept {
  if (this != &other) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    path_ = std::move(other.path_);
    lock_fd_ = std::exchange(other.lock_fd_, -1);
  }
  return *this;
}

Ledger::~Ledger() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status Ledger::record(const LedgerEntry& entry) {
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Error::make(ErrorCode::kIo, "ledger {}: {}", path_, std::strerror(errno));
  }
  std::string line = encode(entry);
  bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!written || !synced) {
    return Error::make(ErrorCode::kIo, "ledger {}: write failed: {}", path_, std::strerror(errno));
  }
  return ok();
}

Status Ledger::forget_last() {
  auto all = entries();
  if (!all) return all.error();
  if (all->empty()) return ok();
  all->pop_back();
  return rewrite(*all);
}

Status Ledger::forget(const LedgerEntry& entry) {
  auto all = entries();
  if (!all) return all.error();
  auto kept = std::remove(all->begin(), all->end(), entry);
  if (kept == all->end()) return ok();
  all->erase(kept, all->end());
  return rewrite(*all);
}

Status Ledger::rewrite(const std::vector<LedgerEntry>& entries) {
  std::string temporary = path_ + ".new";
  std::string text;
  for (const auto& entry : entries)
    text += encode(entry);
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error::make(ErrorCode::kIo, "ledger {}: {}", temporary, std::strerror(errno));
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!written || !synced || ::rename(temporary.c_str(), path_.c_str()) != 0) {
    return Error::make(ErrorCode::kIo, "ledger {}: rewrite failed: {}", path_,
                       std::strerror(errno));
  }
  return ok();
}

Result<std::vector<LedgerEntry>> Ledger::entries() const {
  std::vector<LedgerEntry> entries;
  std::ifstream file(path_);
  if (!file) return entries;
  std::string line;
  while (std::getline(file, line)) {
    if (auto entry = decode(line)) entries.push_back(*entry);
  }
  return entries;
}

Status Ledger::clear() {
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    return Error::make(ErrorCode::kIo, "ledger {}: {}", path_, std::strerror(errno));
  }
  return ok();
}

Status cleanup_from_ledger(Ledger& ledger, const std::vector<LedgerEntry>& keep) {
  auto entries = ledger.entries();
  if (!entries) return entries.error();
  auto logger = log::get("vpn");
  std::vector<LedgerEntry> left;  // kept, or failed to go: listed again, in their order
  size_t failed = 0;
  Status first_failure = ok();
  for (auto entry = entries->rbegin(); entry != entries->rend(); ++entry) {
    if (std::find(keep.begin(), keep.end(), *entry) != keep.end()) {
      left.insert(left.begin(), *entry);
      continue;
    }
    auto status = remove_entry(*entry);
    if (!status) {
      logger->error("ledger={} cleanup failed: {}", ledger.path(), status.error().message);
      if (first_failure) first_failure = status;
      left.insert(left.begin(), *entry);
      ++failed;
    }
  }
  auto rewritten = left.empty() ? ledger.clear() : ledger.rewrite(left);
  if (!rewritten) return rewritten;
  logger->info("ledger={} cleanup removed={} left={} kept={}", ledger.path(),
               entries->size() - left.size(), failed, left.size() - failed);
  return first_failure;
}

}  // namespace steward::vpn
