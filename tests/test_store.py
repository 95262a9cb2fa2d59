"""Atomic writes: complete or absent, never half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foscu_bench.store import atomic_path, atomic_save_npz, atomic_write_json


def test_atomic_json_is_stable_and_complete(tmp_path):
    target = tmp_path / "sub" / "x.json"
    atomic_write_json(target, {"b": np.float32(1.5), "a": np.arange(3)})
    first = target.read_bytes()
    atomic_write_json(target, {"a": [0, 1, 2], "b": 1.5})
    assert target.read_bytes() == first and json.loads(first) == {"a": [0, 1, 2], "b": 1.5}


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.npz"
    atomic_save_npz(target, a=np.ones(3))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed mid-write")
    assert np.array_equal(np.load(target)["a"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
