"""Benchmarks: run with `make bench` or `python -m bench.<name>`; never asserted in tests."""
