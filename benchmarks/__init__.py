"""Quality and speed harness over ../shared/datasets; `make bench` regenerates BENCHMARKS.md."""
