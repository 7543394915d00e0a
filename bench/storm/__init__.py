"""Migration-storm benchmark driver (see bench/run-migration-storm.sh)."""
