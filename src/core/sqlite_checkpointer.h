// Checkpointer: copies a store's write-ahead log into the database file from its own thread
// and its own connection, so that the fsync a checkpoint needs is not paid by the event loop's
// commits (with SQLite's automatic checkpoints, one commit in a few hundred stalls for it: the
// agent's publish -> applied p99, its replays and the controller's migration storm showed
// it). The writer's connection keeps automatic
// checkpoints only as a backstop, at a larger threshold (`relax_auto_checkpoints`): under a
// sustained stream of commits a concurrent checkpoint never catches up with the writer, and
// only a checkpoint made by the writer itself between two transactions lets the log start
// over (without it the log grew to 250 MB in a 10,000-instruction burst and every read slowed
// down). Commits stay as durable as before: a WAL commit survives a process crash whether or
// not it was checkpointed yet.
#pragma once

#include "core/result.h"
#include "core/sqlite.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace steward::sqlite {

class Checkpointer {
 public:
  // Opens its own connection to `path` and checkpoints (PASSIVE: never blocks the writer)
  // every `interval`.
  static Result<std::unique_ptr<Checkpointer>> start(const std::string& path,
                                                     std::chrono::milliseconds interval);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // For the writer's connection: automatic checkpoints only every `pages` log pages.
  static Status relax_auto_checkpoints(Database& writer, int pages = 4000);

 private:
  Checkpointer(std::unique_ptr<Database> db, std::chrono::milliseconds interval);
  void loop();

  std::unique_ptr<Database> db_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace steward::sqlite
