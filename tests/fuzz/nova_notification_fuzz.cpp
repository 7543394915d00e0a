// Fuzzes the Nova adapter with what the message bus could deliver: the input is parsed whole,
// then line by line as a stream of notifications fed to one correlator (with a small memory, so
// eviction runs too). Besides crashes and sanitizer reports, it traps when a result breaks the
// adapter's contract: a migration event without an instance, a request that names no host or
// moves a VM onto the host it is on, an ignored event without a reason.
#include "controller/northbound/nova.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using steward::controller::KnownMigration;
using steward::controller::MigrationRequest;
using steward::controller::NovaCorrelator;
using steward::controller::NovaEvent;
using steward::controller::NovaEventKind;

void check_event(const NovaEvent& event) {
  if (event.kind != NovaEventKind::kOther &&
      (event.instance.empty() || event.publisher_host.empty() || event.payload_host.empty())) {
    __builtin_trap();
  }
}

void check_request(const NovaEvent& event, const MigrationRequest& request) {
  bool well_formed = request.vm == event.instance && !request.source_host.empty() &&
                     !request.target_host.empty() && request.source_host != request.target_host &&
                     request.origin == "nova:" + event.event_type;
  if (!well_formed) {
    __builtin_trap();
  }
}

void feed(NovaCorrelator& correlator, std::string_view line) {
  auto event = steward::controller::parse_nova_notification(line);
  if (!event) {
    return;
  }
  check_event(*event);
  std::string reason;
  auto request = correlator.on_event(*event, &reason);
  if (!request) {
    return;
  }
  if (*request) {
    check_request(*event, **request);
  } else if (reason.empty()) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  // The controller's record: one migration for every VM, finished or not by the input's size.
  KnownMigration recorded{"compute-1", "compute-2", size % 2 == 0};
  NovaCorrelator correlator([&recorded](const std::string&) { return recorded; }, 3);

  feed(correlator, input);
  while (!input.empty()) {
    std::size_t end = input.find('\n');
    feed(correlator, input.substr(0, end));
    input = end == std::string_view::npos ? std::string_view() : input.substr(end + 1);
  }
  return 0;
}
