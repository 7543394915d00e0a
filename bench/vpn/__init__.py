"""VPN benchmark driver (see bench/run-vpn.sh)."""
