// Executors: the configured-command executor (exit status, output, environment, timeout) and
// the built-in Linux executor on a scratch modprobe.d directory.
#include "agent/executors/command_executor.h"
#include "agent/executors/linux_executor.h"
#include "agent/executors/process.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace steward::agent {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

Instruction instruction(const std::string& type, Kind kind = Kind::kAction) {
  Instruction out;
  out.id = "i-1";
  out.terminal = "t1";
  out.target = "work";
  out.kind = kind;
  out.type = type;
  out.sequence = 4;
  out.params["level"] = "high";
  return out;
}

CommandSpec shell(const std::string& script, const std::string& check = "") {
  CommandSpec spec{{"/bin/sh", "-c", script}, {}};
  if (!check.empty()) spec.check = {"/bin/sh", "-c", check};
  return spec;
}

TEST(Process, CapturesOutputAndExitStatus) {
  auto ran = run_process({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, {});
  ASSERT_TRUE(ran);
  EXPECT_EQ(ran->exit_code, 7);
  EXPECT_NE(ran->output.find("out"), std::string::npos);
  EXPECT_NE(ran->output.find("err"), std::string::npos);
}

TEST(Process, KillsTheWholeGroupOnTimeout) {
  ProcessOptions options;
  options.timeout = 200ms;
  auto start = std::chrono::steady_clock::now();
  auto ran = run_process({"/bin/sh", "-c", "sleep 30 & sleep 30"}, options);
  ASSERT_TRUE(ran);
  EXPECT_TRUE(ran->timed_out);
  EXPECT_FALSE(ran->exit_code);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(Process, ReportsAProgramThatDoesNotExist) {
  auto ran = run_process({"/nonexistent/steward-test"}, {});
  ASSERT_TRUE(ran);
  EXPECT_EQ(ran->exit_code, 127);
}

TEST(Process, TruncatesLongOutput) {
  ProcessOptions options;
  options.output_limit = 100;
  auto ran = run_process({"/bin/sh", "-c", "yes | head -c 100000"}, options);
  ASSERT_TRUE(ran);
  EXPECT_EQ(ran->output.size(), 100u);
}

TEST(CommandExecutor, RunsTheCommandOfTheTypeWithTheInstructionInItsEnvironment) {
  CommandExecutorOptions options;
  options.system = "work";
  options.by_type["lock"] = shell(
      "echo $STEWARD_INSTRUCTION_ID $STEWARD_TARGET $STEWARD_KIND $STEWARD_TYPE "
      "$STEWARD_SEQUENCE $STEWARD_REVOKE $STEWARD_PARAMS; cat");
  CommandExecutor executor(options);
  Outcome outcome = executor.execute(instruction("lock"));
  EXPECT_TRUE(outcome.success) << outcome.detail;
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_NE(outcome.output.find(R"(i-1 work action lock 4 0 {"level":"high"})"), std::string::npos)
      << outcome.output;
  EXPECT_NE(outcome.output.find(R"("id":"i-1")"), std::string::npos);  // JSON on stdin
}

TEST(CommandExecutor, AFailingCommandIsAFailureWithItsExitStatusAndOutput) {
  CommandExecutorOptions options;
  options.fallback = shell("echo no camera here; exit 3");
  CommandExecutor executor(options);
  Outcome outcome = executor.execute(instruction("camera", Kind::kSetting));
  EXPECT_FALSE(outcome.success);
  EXPECT_EQ(outcome.exit_code, 3);
  EXPECT_EQ(outcome.detail, "exit 3");
  EXPECT_EQ(outcome.output, "no camera here\n");
}

TEST(CommandExecutor, ATimeoutIsAFailure) {
  CommandExecutorOptions options;
  options.fallback = shell("sleep 10");
  options.timeout = 100ms;
  CommandExecutor executor(options);
  Outcome outcome = executor.execute(instruction("wipe"));
  EXPECT_FALSE(outcome.success);
  EXPECT_EQ(outcome.detail, "timed out after 100 ms");
}

TEST(CommandExecutor, ATypeWithoutACommandIsRefused) {
  CommandExecutor executor(CommandExecutorOptions{});
  Outcome outcome = executor.execute(instruction("wipe"));
  EXPECT_FALSE(outcome.success);
  EXPECT_NE(outcome.detail.find("no command configured for type wipe"), std::string::npos);
}

TEST(CommandExecutor, TheCheckCommandAnswersWhetherASettingIsInForce) {
  CommandExecutorOptions options;
  options.by_type["camera"] = shell("true", "exit 0");
  options.by_type["usb_storage"] = shell("true", "exit 1");
  options.by_type["wifi"] = shell("true", "exit 5");
  options.by_type["vpn"] = shell("true");
  CommandExecutor executor(options);
  EXPECT_EQ(executor.in_force(instruction("camera", Kind::kSetting)), true);
  EXPECT_EQ(executor.in_force(instruction("usb_storage", Kind::kSetting)), false);
  EXPECT_EQ(executor.in_force(instruction("wifi", Kind::kSetting)), std::nullopt);
  EXPECT_EQ(executor.in_force(instruction("vpn", Kind::kSetting)), std::nullopt);
}

class LinuxExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("steward-linux-executor-{}", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    options_.dry_run = false;
    options_.modprobe_dir = (dir_ / "modprobe.d").string();
    std::string marker = (dir_ / "ran").string();
    options_.unload_usb_storage = {"/bin/sh", "-c", "echo unload-usb >> " + marker};
    options_.unload_camera = {"/bin/sh", "-c", "echo unload-camera >> " + marker};
    options_.lock_sessions = {"/bin/sh", "-c", "echo lock >> " + marker};
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string ran() {
    std::ifstream in(dir_ / "ran");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
  LinuxExecutorOptions options_;
};

TEST_F(LinuxExecutorTest, UsbStorageIsBlockedAndTheBlockCanBeLifted) {
  LinuxExecutor executor(options_);
  Instruction block = instruction("usb_storage", Kind::kSetting);
  EXPECT_EQ(executor.in_force(block), false);
  Outcome outcome = executor.execute(block);
  ASSERT_TRUE(outcome.success) << outcome.detail;
  fs::path rule = dir_ / "modprobe.d" / "steward-usb-storage.conf";
  ASSERT_TRUE(fs::exists(rule));
  std::ifstream in(rule);
  std::string text(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(text.find("install usb-storage /bin/false"), std::string::npos);
  EXPECT_EQ(ran(), "unload-usb\n");
  EXPECT_EQ(executor.in_force(block), true);

  Instruction lift = block;
  lift.revoke = true;
  EXPECT_EQ(executor.in_force(lift), false);
  ASSERT_TRUE(executor.execute(lift).success);
  EXPECT_FALSE(fs::exists(rule));
  EXPECT_EQ(executor.in_force(lift), true);
}

TEST_F(LinuxExecutorTest, LockRunsTheLockCommand) {
  LinuxExecutor executor(options_);
  EXPECT_TRUE(executor.execute(instruction("lock")).success);
  EXPECT_EQ(ran(), "lock\n");
}

TEST_F(LinuxExecutorTest, DryRunChangesNothingAndSaysWhatItWouldDo) {
  options_.dry_run = true;
  LinuxExecutor executor(options_);
  Outcome outcome = executor.execute(instruction("camera", Kind::kSetting));
  EXPECT_TRUE(outcome.success);
  EXPECT_NE(outcome.output.find("would write"), std::string::npos);
  EXPECT_TRUE(executor.execute(instruction("lock")).success);
  EXPECT_FALSE(fs::exists(dir_ / "modprobe.d"));
  EXPECT_EQ(ran(), "");
  EXPECT_EQ(executor.in_force(instruction("camera", Kind::kSetting)), std::nullopt);
}

TEST_F(LinuxExecutorTest, UnknownTypesFailSayingSo) {
  LinuxExecutor executor(options_);
  Outcome outcome = executor.execute(instruction("wipe"));
  EXPECT_FALSE(outcome.success);
  EXPECT_NE(outcome.detail.find("does not know action wipe"), std::string::npos);
}

}  // namespace
}  // namespace steward::agent
