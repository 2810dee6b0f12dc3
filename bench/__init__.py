"""make bench: orchestration throughput benchmark (python -m bench --help)."""
