"""Generator fits cached across runs, keyed by everything that can change a fit.

The key holds the generator's fully resolved config at the profile, a fingerprint of its code, the profile's
content (not its name), the dataset fingerprint and training case ids, the fit seed, the device kind and its kernel
class (an AVX2 and an AVX-512 CPU fit different weights from the same seed). Edit a
size, a budget, the generator's source or the profile and the old entry is simply not found.

A generator may take another's fit (``RunContext.fit_source``, from ``GeneratorMeta.extra["fit_from"]``): an
ablation that samples differently from the same fitted networks, such as ``duo-diffusion-real-labels``, which
renders deformed real labels with duo-diffusion's image stage. Its entry is derived from the other generator's
(fitted first where needed) and its key holds that entry's key, so the two never diverge; the derivation is loaded
through the taking class's own checkpoint checks (same profile, same resolved config).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from foscu_bench import __version__
from foscu_bench.generator import code_fingerprint, create, load
from foscu_bench.hashing import json_hash
from foscu_bench.store import FitEntry, atomic_write_json, exclusive_lock, remove_stale_temporaries

FIT_CACHE_VERSION = 2


def generator_provenance(ctx, name: str) -> dict:
    """Resolved config and code fingerprint of ``name`` at the run's profile (memoised per process)."""
    key = ("provenance", name)
    if key not in ctx.memo:
        cls = ctx.meta(name).load_class()
        instance = create(name)
        ctx.memo[key] = {"config": instance.config(ctx.profile), "settings": instance.settings(),
                         "code_fingerprint": code_fingerprint(cls)}
    return ctx.memo[key]


def fit_cache_key(ctx, name: str, n_real: int | None = None, draw: int = 0) -> dict:
    """Everything a fit depends on; the training cases are those of the real-data level."""
    from foscu_bench.provenance import kernel_class

    provenance = generator_provenance(ctx, name)
    key = {"generator": name, "target": ctx.meta(name).target, "config": provenance["config"],
           "code": provenance["code_fingerprint"], "profile": ctx.profile.to_dict(), "dataset": ctx.fingerprint,
           "train": ctx.train_ids(n_real, draw), "seed": ctx.config.fit_seed, "device": ctx.device.type,
           "kernels": kernel_class(ctx.device), "foscu_bench": __version__, "cache_version": FIT_CACHE_VERSION}
    source = ctx.fit_source(name)
    if source != name:
        key["fit_from"] = fit_entry(ctx, source, n_real, draw).directory.name
    return key


def fit_entry(ctx, name: str, n_real: int | None = None, draw: int = 0) -> FitEntry:
    from foscu_bench.data.cache import cache_root

    key = ("fit_entry", name, n_real, draw)
    if key not in ctx.memo:
        ctx.memo[key] = FitEntry(cache_root() / "generators" / name / json_hash(fit_cache_key(ctx, name, n_real, draw)))
    return ctx.memo[key]


def fitted_generator(ctx, name: str, n_real: int | None = None, draw: int = 0):
    """Fit ``name`` on the level's training cases (or take the cached fit) and load it from its checkpoint.

    The entry is locked while it is fitted, so two runs needing the same fit wait for one another.
    """
    return load(name, finished_fit(ctx, name, n_real, draw).checkpoint, ctx.device)


def finished_fit(ctx, name: str, n_real: int | None = None, draw: int = 0) -> FitEntry:
    """The cache entry of ``name``'s fit on the level, fitted (or derived from the fit it takes) if not yet there."""
    entry = fit_entry(ctx, name, n_real, draw)
    source = ctx.fit_source(name)
    if source != name and not entry.done:
        _require_same_fit(ctx, name, source)  # before the source's fit, which may take an hour
        finished_fit(ctx, source, n_real, draw)  # before taking our lock
    with exclusive_lock(entry.lock, wait=True):
        if not entry.done:
            remove_stale_temporaries(entry.directory)  # a killed fit's half-swapped checkpoints; the lock is ours
            if source != name:
                _derive_into(ctx, name, source, entry, n_real, draw)
            else:
                _fit_into(ctx, name, entry, n_real, draw)
    return entry


def fit_part_into(ctx, name: str, part: str, entry: FitEntry, n_real: int | None, draw: int) -> float:
    """Train ``part`` of the fit into ``entry``'s work directory (locked per part; a killed part resumes from its
    stage checkpoints) and note its seconds there, which the fit adds to its own. Returns those seconds."""
    done = entry.work / f"part-{part}.json"
    entry.work.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(entry.work / f"part-{part}.lock", wait=True):
        if done.is_file():
            return float(json.loads(done.read_text())["seconds"])
        with ctx.reporter.task(f"fit {name} ({part})", None) as update:
            started = time.perf_counter()
            create(name).fit_part(part, ctx.training_set(n_real, draw), ctx.profile, ctx.config.fit_seed, ctx.device,
                                  work_dir=entry.work,
                                  progress=lambda stage, it, total, loss: update(it, total, f"{stage} loss {loss:.4f}"))
            seconds = time.perf_counter() - started
        atomic_write_json(done, {"part": part, "seconds": seconds})
    return seconds


def _part_seconds(entry: FitEntry) -> dict[str, float]:
    """Seconds of the fit parts trained beforehand in ``entry``'s work directory (``fit_part_into``)."""
    records = [json.loads(path.read_text()) for path in sorted(entry.work.glob("part-*.json"))]
    return {record["part"]: float(record["seconds"]) for record in records}


def fit_own_seconds(fit: dict) -> float:
    """The fit step's own share of a fit record's ``fit_seconds``: the parts it counts ran as steps of their own."""
    return max(0.0, fit["fit_seconds"] - sum(fit.get("fit_part_seconds", {}).values()))


def _fit_into(ctx, name: str, entry: FitEntry, n_real: int | None, draw: int) -> None:
    generator = create(name)
    with ctx.reporter.task(f"fit {name}", None) as update:
        started = time.perf_counter()
        generator.fit(ctx.training_set(n_real, draw), ctx.profile, ctx.config.fit_seed, ctx.device,
                      progress=lambda stage, it, total, loss: update(it, total, f"{stage} loss {loss:.4f}"),
                      work_dir=entry.work)  # stage checkpoints: a killed fit resumes mid-stage
        part_seconds = _part_seconds(entry)
        # compute, not wall (the parts ran beside each other); a resumed fit's earlier attempts included
        seconds = generator.training_seconds() or time.perf_counter() - started + sum(part_seconds.values())
    shutil.rmtree(entry.checkpoint, ignore_errors=True)
    generator.save(entry.checkpoint)
    provenance = generator_provenance(ctx, name)
    atomic_write_json(entry.record, {
        "generator": name, "fit_seconds": seconds, "fit_seed": ctx.config.fit_seed, "device": str(ctx.device),
        "n_parameters": type(generator).parameter_count(ctx.profile), "config": provenance["config"],
        "settings": provenance["settings"], "code_fingerprint": provenance["code_fingerprint"],
        "train_case_ids": ctx.train_ids(n_real, draw), "fit_part_seconds": part_seconds,
        "loss_curves": {k: downsample(v) for k, v in generator.loss_curves().items()}})
    shutil.rmtree(entry.work, ignore_errors=True)


def _require_same_fit(ctx, name: str, source: str) -> None:
    """Taking another generator's fit is for variants of that generator that would fit the same way: ``name``'s
    class must derive from ``source``'s (its networks and checkpoint layout) and resolve the same config."""
    from foscu_bench.errors import ConfigError

    cls, source_cls = ctx.meta(name).load_class(), ctx.meta(source).load_class()
    if not issubclass(cls, source_cls):
        raise ConfigError(f"generator {name!r} takes the fit of {source!r} (fit_from), but its class "
                          f"{cls.__name__} does not derive from {source_cls.__name__}")
    ours, theirs = generator_provenance(ctx, name)["config"], generator_provenance(ctx, source)["config"]
    if ours != theirs:
        changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise ConfigError(f"generator {name!r} takes the fit of {source!r} (fit_from), but their configs differ in "
                          f"{', '.join(changed)}")


def load_fit_as(name: str, checkpoint: Path, staging: Path, device="cpu"):
    """Another generator's fitted checkpoint loaded as generator ``name`` (a subclass that samples differently), by
    ``name``'s own ``load``: it refuses a checkpoint of another profile or resolved config and restores only its own
    networks. ``staging`` holds the relabelled copy meanwhile and is removed."""
    from foscu_bench.checkpoint import load_checkpoint, save_checkpoint

    arrays, config = load_checkpoint(checkpoint)
    save_checkpoint(staging, arrays, {**config, "generator": name})
    try:
        return load(name, staging, device)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _derive_into(ctx, name: str, source: str, entry: FitEntry, n_real: int | None, draw: int) -> None:
    """``name``'s fit made from ``source``'s finished one: its checkpoint relabelled, loaded by ``name``'s class
    (which refuses another profile or resolved config) and saved as that class saves (its own networks only); the
    record is the source's, with ``fit_from`` naming it."""
    cls = ctx.meta(name).load_class()
    source_entry = fit_entry(ctx, source, n_real, draw)
    generator = load_fit_as(name, source_entry.checkpoint, entry.directory / "relabelled", ctx.device)
    shutil.rmtree(entry.checkpoint, ignore_errors=True)
    generator.save(entry.checkpoint)
    provenance = generator_provenance(ctx, name)
    record = json.loads(source_entry.record.read_text())
    atomic_write_json(entry.record, {
        **record, "generator": name, "n_parameters": cls.parameter_count(ctx.profile), "config": provenance["config"],
        "settings": provenance["settings"], "code_fingerprint": provenance["code_fingerprint"],
        "fit_from": {"generator": source, "fit_key": source_entry.directory.name}})


def downsample(values: list[float], points: int = 1000) -> list[float]:
    """At most ``points`` values: means over equal consecutive windows (keeps a loss curve's shape)."""
    values = [float(v) for v in values]
    if len(values) <= points:
        return values
    return [float(chunk.mean()) for chunk in np.array_split(np.asarray(values), points)]
