#include "core/sqlite_checkpointer.h"

#include "core/log.h"

namespace steward::sqlite {

Result<std::unique_ptr<Checkpointer>> Checkpointer::start(const std::string& path,
                                                          std::chrono::milliseconds interval) {
  auto db = Database::open(path);
  if (!db) return db.error().wrap("checkpointer");
  return std::unique_ptr<Checkpointer>(new Checkpointer(std::move(*db), interval));
}

Checkpointer::Checkpointer(std::unique_ptr<Database> db, std::chrono::milliseconds interval)
    : db_(std::move(db)), interval_(interval), thread_([this] { loop(); }) {}

Checkpointer::~Checkpointer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

Status Checkpointer::relax_auto_checkpoints(Database& writer, int pages) {
  return writer.exec(fmt::format("PRAGMA wal_autocheckpoint={}", pages));
}

void Checkpointer::loop() {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, interval_, [this] { return stopping_; })) {
    lock.unlock();
    if (auto status = db_->exec("PRAGMA wal_checkpoint(PASSIVE)"); !status) {
      log::get("store")->warn("checkpoint failed: {}", status.error().message);
    }
    lock.lock();
  }
}

}  // namespace steward::sqlite
