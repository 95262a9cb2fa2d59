"""Conformance kit: check any generator, built-in or third-party, against the contract in ``foscu_bench.generator``.

```python
from foscu_bench.testing import check_generator

report = check_generator(MyGenerator, settings={"iterations": 20})   # raises ConformanceError on the first failure
```

It fits the generator on a tiny phantom training set and checks what the benchmark runner relies on:

1. the class names itself and has every member of the ``Generator`` protocol; ``fit`` takes keyword-only
   ``progress`` and ``work_dir``;
2. ``config(profile)`` is plain JSON, the same for two fresh instances, contains every ``settings()`` key, and
   ``cls(**settings())`` reproduces it (so checkpoints and cache keys can rebuild the generator);
3. ``fit`` refuses anything but a ``TrainingSet`` (no held-out data can reach a generator);
4. ``fit`` reports progress through the callback when the generator is learned, and leaves ``work_dir`` usable;
5. ``sample`` gives ``n`` valid pairs (shape, dtype, finite, label values, unique ids), deterministic for a seed,
   different for another seed;
6. ``save`` writes only a verified safetensors checkpoint (no pickle), and ``load`` then ``sample`` reproduces
   the in-memory samples exactly;
7. ``loss_curves()`` maps stage names to finite numbers; ``parameter_count(profile)`` is a non-negative int,
   positive for learned generators.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path

import numpy as np

from foscu_bench.errors import FoscuError
from foscu_bench.generator import Generator, get_meta, sample_validated

CHECKS = ("protocol", "config", "refuses_non_training_data", "fit", "sample", "checkpoint", "losses_and_parameters")


class ConformanceError(FoscuError, AssertionError):
    """A generator breaks the contract; the message names the check and what was found."""


def _require(condition: bool, check: str, message: str) -> None:
    if not condition:
        raise ConformanceError(f"[{check}] {message}")


def _tiny_training_set(profile):
    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.data.splits import TrainingSet, split_dataset

    dataset = open_dataset("phantom", profile=profile)
    return TrainingSet.from_dataset(dataset, split_dataset(dataset, seed=0))


def _same_pairs(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x.image, y.image) and np.array_equal(x.label, y.label)
                                    for x, y in zip(a, b))


def check_generator(generator: str | type, settings: dict | None = None, profile: str = "tiny", n: int = 2,
                    device: str = "cpu", learned: bool | None = None) -> dict:
    """Run every check on ``generator`` (a registered name or a class); returns what was measured.

    ``settings`` are constructor keyword arguments (use small budgets: the checks test the contract, not image
    quality). ``learned`` defaults to the registry's ``kind`` for a registered name, else to
    ``parameter_count > 0``.
    """
    from foscu_bench.checkpoint import PICKLE_SUFFIXES, load_checkpoint
    from foscu_bench.profiles import get_profile

    cls = get_meta(generator).load_class() if isinstance(generator, str) else generator
    if learned is None and isinstance(generator, str):
        learned = get_meta(generator).kind == "learned"
    settings = dict(settings or {})
    prof = get_profile(profile)
    report: dict = {"generator": getattr(cls, "name", None), "profile": profile, "checks": []}

    # 1. protocol
    name = getattr(cls, "name", "")
    _require(isinstance(name, str) and bool(name), "protocol", f"{cls.__name__} has no generator name")
    instance = cls(**settings)
    _require(isinstance(instance, Generator), "protocol",
             f"{name}: missing members of the Generator protocol "
             f"({', '.join(m for m in ('config', 'fit', 'sample', 'save', 'load', 'loss_curves', 'parameter_count') if not hasattr(instance, m))})")
    fit_params = inspect.signature(instance.fit).parameters
    for keyword in ("progress", "work_dir"):
        _require(keyword in fit_params and fit_params[keyword].kind == inspect.Parameter.KEYWORD_ONLY, "protocol",
                 f"{name}: fit() must take keyword-only {keyword!r}")
    report["checks"].append("protocol")

    # 2. config
    config = instance.config(prof)
    try:
        text = json.dumps(config, sort_keys=True)
    except TypeError as exc:
        raise ConformanceError(f"[config] {name}: config() is not plain JSON ({exc})") from None
    _require(json.loads(text) == json.loads(json.dumps(cls(**settings).config(prof), sort_keys=True)), "config",
             f"{name}: config() differs between two identical instances")
    own_settings = instance.settings()
    missing = [k for k in own_settings if k not in config]
    _require(not missing, "config", f"{name}: config() lacks the settings {missing}")
    _require(set(inspect.signature(cls.__init__).parameters) - {"self"} <= set(own_settings), "config",
             f"{name}: settings() must return every constructor argument")
    rebuilt = cls(**json.loads(json.dumps(own_settings)))
    _require(json.dumps(rebuilt.config(prof), sort_keys=True) == text, "config",
             f"{name}: cls(**settings()) does not reproduce config()")
    report["config"] = config
    report["checks"].append("config")

    # 3. refuses non-training data
    train = _tiny_training_set(prof)
    try:
        cls(**settings).fit(list(train), prof, 0, device)
    except FoscuError:
        pass
    except Exception as exc:  # refused only by accident, after touching the data
        raise ConformanceError(f"[refuses_non_training_data] {name}: fit() on a plain list of pairs failed with "
                               f"{type(exc).__name__} instead of refusing it; call "
                               "foscu_bench.data.splits.require_training_set first") from None
    else:
        raise ConformanceError(f"[refuses_non_training_data] {name}: fit() accepted a plain list of pairs; "
                               "call foscu_bench.data.splits.require_training_set first")
    report["checks"].append("refuses_non_training_data")

    with tempfile.TemporaryDirectory(prefix="foscu-conformance-") as tmp:
        tmp = Path(tmp)
        # 4. fit
        calls: list[tuple] = []
        instance.fit(train, prof, 0, device, progress=lambda *args: calls.append(args), work_dir=tmp / "work")
        if learned:
            _require(bool(calls), "fit", f"{name}: a learned generator must report progress(stage, it, total, loss)")
            _require(all(len(c) == 4 and isinstance(c[0], str) for c in calls), "fit",
                     f"{name}: progress must be called as progress(stage, iteration, total, loss)")
        report["progress_calls"] = len(calls)
        report["checks"].append("fit")

        # 5. sample
        first = sample_validated(instance, n, seed=1, shape=prof.shape)
        again = sample_validated(instance, n, seed=1, shape=prof.shape)
        _require(_same_pairs(first, again), "sample", f"{name}: sample(n, seed) is not deterministic")
        other = sample_validated(instance, n, seed=2, shape=prof.shape)
        _require(not _same_pairs(first, other), "sample", f"{name}: seeds 1 and 2 gave identical samples")
        report["checks"].append("sample")

        # 6. checkpoint
        instance.save(tmp / "checkpoint")
        pickles = [p.name for p in (tmp / "checkpoint").rglob("*") if p.suffix in PICKLE_SUFFIXES]
        _require(not pickles, "checkpoint", f"{name}: save() wrote pickles {pickles}")
        load_checkpoint(tmp / "checkpoint")  # verified: hash matches, safetensors + config.json
        loaded = cls.load(tmp / "checkpoint", device)
        _require(json.dumps(loaded.config(prof), sort_keys=True) == text, "checkpoint",
                 f"{name}: the loaded generator's config() differs from the saved one")
        _require(_same_pairs(first, sample_validated(loaded, n, seed=1, shape=prof.shape)), "checkpoint",
                 f"{name}: save -> load -> sample differs from sampling before saving")
        report["checks"].append("checkpoint")

    # 7. losses and parameters
    curves = instance.loss_curves()
    _require(isinstance(curves, dict) and all(isinstance(k, str) for k in curves), "losses_and_parameters",
             f"{name}: loss_curves() must map stage names to lists of numbers")
    _require(all(np.isfinite(np.asarray(v, dtype=float)).all() for v in curves.values()), "losses_and_parameters",
             f"{name}: loss_curves() holds non-finite values")
    if learned:
        _require(any(len(v) for v in curves.values()), "losses_and_parameters",
                 f"{name}: a learned generator reports no training losses")
    count = cls.parameter_count(prof)
    _require(isinstance(count, int) and count >= 0, "losses_and_parameters",
             f"{name}: parameter_count() must be a non-negative int, got {count!r}")
    if learned:
        _require(count > 0, "losses_and_parameters", f"{name}: a learned generator has parameter_count() == 0")
    report["parameter_count"] = count
    report["checks"].append("losses_and_parameters")
    return report
