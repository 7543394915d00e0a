// The private cgroup2 mount of one daemon must survive another daemon's cleanup of the same
// path in another mount namespace (`ip netns exec` gives every command its own).
#include "vpn/steering/cgroup.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace steward::vpn {
namespace {

namespace fs = std::filesystem;

bool mounted_in(pid_t pid, const std::string& path) {
  std::ifstream mountinfo("/proc/" + std::to_string(pid) + "/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    if (line.find(" " + path + " ") != std::string::npos &&
        line.find(" - cgroup2 ") != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(CgroupMount, CleanupHereLeavesAnotherNamespacesMountOfTheSamePath) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting needs root";
  const std::string path =
      (fs::temp_directory_path() / ("steward-cgroup2-" + std::to_string(::getpid()))).string();
  fs::create_directories(path);
  // Another "daemon": a process in its own mount namespace (not propagating back here) that
  // mounts cgroup2 on the path and keeps the namespace alive.
  pid_t holder = ::fork();
  ASSERT_GE(holder, 0);
  if (holder == 0) {
    ::execlp("unshare", "unshare", "--mount", "--propagation", "private", "sh", "-c",
             ("mount -t cgroup2 none " + path + " && exec sleep 30").c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  bool seen = false;
  for (int i = 0; i < 100 && !(seen = mounted_in(holder, path)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(seen) << "the other namespace did not mount " << path;

  // Here the path is a plain directory: the cleanup a failed start runs must leave it alone.
  EXPECT_TRUE(unmount_cgroup2(path));
  EXPECT_TRUE(mounted_in(holder, path)) << "the other namespace lost its mount";

  ::kill(holder, SIGTERM);
  ::waitpid(holder, nullptr, 0);
  std::error_code ignored;
  fs::remove(path, ignored);
}

}  // namespace
}  // namespace steward::vpn
