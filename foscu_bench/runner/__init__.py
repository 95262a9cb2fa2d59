"""The benchmark: split -> fit -> sample -> one U-Net per (arm, seed) -> evaluate -> fidelity -> statistics.

A run is a list of steps (``plan``). Each step writes one result file under the run directory, atomically, and a
step whose valid file exists is done: re-running the same command resumes after a crash, Ctrl-C or kill -9 at
any point. Every step is seeded, so a resumed run gives the same numbers as an uninterrupted one.
``metrics.csv``, ``stats.json`` and ``fidelity.json`` are assembled from the step files at the end
(``assemble``); per-case rows are the only truth (DESIGN.md).

Seeds: seed ``s`` drives the U-Net initialisation, data order and augmentation of every arm (so arms are paired
by seed) and the generator's sampling seed, so sampling variance is part of the seed-to-seed spread
(Bouthillier et al., MLSys 2021). Each generator is fitted once per run (``fit_seed``) and the fit is cached
across runs (``fit_cache``).

Modules, one job each: ``config`` (what the user asked, run identity), ``context`` (a prepared run and its data),
``plan`` (steps, resume checks, estimates), ``fit_cache``, ``executors`` (one per step kind), ``assemble``,
``manifest``, and ``serial`` (the default executor loop).
"""

from foscu_bench.runner.config import RUN_SCHEMA_VERSION, RunConfig
from foscu_bench.runner.context import RunContext, prepare
from foscu_bench.runner.plan import STEP_VERSIONS, PlannedStep
from foscu_bench.store import Step, load_synthetic, save_synthetic

__all__ = ["RUN_SCHEMA_VERSION", "STEP_VERSIONS", "PlannedStep", "RunConfig", "RunContext", "Step", "load_synthetic",
           "prepare", "save_synthetic"]
