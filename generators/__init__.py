"""Duo-Diffusion and other learned generators (installed as ``foscu_bench.generators``)."""
