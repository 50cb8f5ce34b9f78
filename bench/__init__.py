"""Benchmarks: `python -m bench [--quick] [--out results.json]`. Figures, not pass/fail tests."""
