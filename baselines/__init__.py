"""Baseline generators (installed as ``foscu_bench.baselines``)."""
