"""A content-addressed cache of preprocessed pairs (``.npz``), safe against interruption and concurrency.

The key hashes the case content (file bytes or phantom settings), the label map, the profile grid and the
preprocessing version: change any of them and the old entry is simply not found. Writes are atomic, so two
processes filling the same entry both succeed and a killed process leaves no partial file.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from foscu_bench.hashing import json_hash
from foscu_bench.pair import Pair
from foscu_bench.store import atomic_save_npz


def cache_root() -> Path:
    """``$FOSCU_BENCH_CACHE``, else ``$XDG_CACHE_HOME/foscu-bench``, else ``~/.cache/foscu-bench``."""
    if os.environ.get("FOSCU_BENCH_CACHE"):
        return Path(os.environ["FOSCU_BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "foscu-bench"


def cache_key(parts: dict) -> str:
    return json_hash(parts, 32)


def cached_pair_path(key: str) -> Path:
    return cache_root() / "preprocessed" / f"{key}.npz"


def load_cached_pair(key: str) -> Pair | None:
    path = cached_pair_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return Pair(image=data["image"], label=data["label"], spacing=tuple(meta.pop("spacing")),
                        case_id=meta.pop("case_id"), patient_id=meta.pop("patient_id"), meta=meta)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # a corrupt entry is recomputed, never trusted
        return None


def store_cached_pair(key: str, pair: Pair) -> None:
    meta = dict(pair.meta, spacing=list(pair.spacing), case_id=pair.case_id, patient_id=pair.patient_id)
    atomic_save_npz(cached_pair_path(key), image=pair.image, label=pair.label,
                    meta=np.array(json.dumps(meta, sort_keys=True)))
