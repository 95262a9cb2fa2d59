"""Measured step times, for ``run --plan`` estimates: what this machine took last time, never a hard-coded guess.

Every finished step records its seconds under a key (step kind, what it depends on, the machine) in
``<cache>/timings.json``. An estimate is the median of the last measurements under the same key; a step never
measured on this machine has no estimate (shown as "?").
"""

from __future__ import annotations

import json
import os
import platform
import statistics

from foscu_bench.hashing import json_hash
from foscu_bench.store import atomic_write_json, exclusive_lock, remove_stale_temporaries

KEEP = 5
"""Measurements kept per key (the newest)."""


def _path():
    from foscu_bench.data.cache import cache_root

    return cache_root() / "timings.json"


def machine_id(device_type: str) -> str:
    """This machine, coarsely: times measured elsewhere differ by up to 2x and are not used."""
    return json_hash({"node": platform.node(), "cpu": os.cpu_count(), "device": device_type}, 12)


def timing_key(**parts) -> str:
    return json_hash(parts)


def _read() -> dict:
    try:
        return json.loads(_path().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def record_time(key: str, seconds: float) -> None:
    path = _path()
    with exclusive_lock(path.parent / "timings.lock", wait=True):
        table = _read()
        table[key] = (table.get(key, []) + [round(float(seconds), 3)])[-KEEP:]
        atomic_write_json(path, table)


def remove_stale_writes() -> None:
    """Delete what a writer killed inside ``record_time`` left (a ``.tmp-timings.json-*`` file)."""
    path = _path()
    with exclusive_lock(path.parent / "timings.lock", wait=True):
        remove_stale_temporaries(path.parent, path.name)


def estimate(key: str) -> float | None:
    values = _read().get(key)
    return float(statistics.median(values)) if values else None
