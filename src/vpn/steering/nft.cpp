#include "vpn/steering/nft.h"

#include <nftables/libnftables.h>

#include <memory>

namespace steward::vpn::nft {
namespace {

struct ContextDeleter {
  void operator()(nft_ctx* context) const { nft_ctx_free(context); }
};

struct Outcome {
  int code = 0;
  std::string output;
  std::string error;
};

Result<Outcome> execute(const std::string& commands, bool json = false) {
  std::unique_ptr<nft_ctx, ContextDeleter> context(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!context) return Error::make(ErrorCode::kIo, "nftables: cannot create a context");
  if (json) nft_ctx_output_set_flags(context.get(), NFT_CTX_OUTPUT_JSON);
  nft_ctx_buffer_output(context.get());
  nft_ctx_buffer_error(context.get());
  Outcome outcome;
  outcome.code = nft_run_cmd_from_buffer(context.get(), commands.c_str());
  outcome.output = nft_ctx_get_output_buffer(context.get());
  outcome.error = nft_ctx_get_error_buffer(context.get());
  return outcome;
}

}  // namespace

Status run(const std::string& commands) {
  auto outcome = execute(commands);
  if (!outcome) return outcome.error();
  if (outcome->code != 0) {
    return Error::make(ErrorCode::kIo, "nftables refused the ruleset: {}", outcome->error);
  }
  return ok();
}

Result<std::string> list_json(const std::string& command) {
  auto outcome = execute(command, true);
  if (!outcome) return outcome.error();
  if (outcome->code != 0) {
    return Error::make(ErrorCode::kIo, "nftables: {}: {}", command, outcome->error);
  }
  return outcome->output;
}

bool table_exists(const std::string& table) {
  auto outcome = execute("list table " + table);
  return outcome && outcome->code == 0;
}

Status delete_table(const std::string& table) {
  if (!table_exists(table)) return ok();
  return run("delete table " + table);
}

}  // namespace steward::vpn::nft
