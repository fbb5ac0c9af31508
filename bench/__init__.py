"""Benchmark harness: stock baseline, TCP ceiling, C load generator, `python -m bench.run`."""
