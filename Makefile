# Thin entry points; the work is done by the scripts and CMake presets they call.
#   make deps    install the Debian packages (scripts/deps.sh, needs root)
#   make build   configure and build everything (preset "default", directory build/)
#   make demo    the main job end to end on three real Open vSwitch instances (needs root)
#   make test    the whole test suite (scripts/test.sh)
#   make bench   the benchmarks (bench/run-migration-storm.sh; figures in docs/benchmarks.md)
#   make bench-vpn  the VPN benchmark against openconnect (bench/run-vpn.sh, needs root)
# Extra arguments for a script go in ARGS, e.g. `make demo ARGS=--keep`.

.PHONY: deps build demo test bench bench-vpn

deps:
	bash scripts/deps.sh $(ARGS)

build:
	cmake --preset default
	cmake --build build -j"$$(nproc)"

demo:
	bash scripts/demo.sh $(ARGS)

test:
	bash scripts/test.sh $(ARGS)

bench:
	bash bench/run-migration-storm.sh $(ARGS)

bench-vpn:
	bash bench/run-vpn.sh $(ARGS)
