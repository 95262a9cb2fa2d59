"""Run from outside the checkout with a venv where only the built wheel is installed: every subpackage shipped,
and every registered generator's target imports from site-packages (not from a source tree)."""

import importlib
import sys
from pathlib import Path

import foscu_bench
from foscu_bench.generator import registry

site = Path(foscu_bench.__file__).resolve().parents[1]
if "site-packages" not in str(site):
    sys.exit(f"foscu_bench imported from {site}, not from an installed wheel")
for name, meta in sorted(registry().items()):
    cls = meta.load_class()
    path = Path(importlib.import_module(cls.__module__).__file__).resolve()
    if not path.is_relative_to(site):
        sys.exit(f"{name}: {meta.target} imported from {path}, outside the wheel's site-packages")
    print(f"ok {name}: {meta.target}")
for module in ("foscu_bench.runner", "foscu_bench.testing", "foscu_bench.cli"):
    importlib.import_module(module)
from foscu_bench.metrics.features import DEFAULT_EXTRACTOR, get_extractor  # noqa: E402

extractor = get_extractor(DEFAULT_EXTRACTOR)  # the shipped weights are package data
if not Path(extractor.provenance["weights"]).resolve().is_relative_to(site):
    sys.exit(f"{DEFAULT_EXTRACTOR}: weights read from {extractor.provenance['weights']}, outside the wheel")
print(f"ok {DEFAULT_EXTRACTOR}: shipped weights {extractor.provenance['weights_sha256'][:16]}")
print(f"wheel check passed: {len(registry())} generators import from {site}")
