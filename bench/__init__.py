"""Benchmarks of itop against bare baselines and peers, run as ``python -m bench.NAME``."""
