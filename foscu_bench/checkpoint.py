"""Generator checkpoints: safetensors for arrays + JSON for configuration, verified by a SHA-256 manifest.

Never pickle: ``torch.load`` of an untrusted file executes code. A checkpoint directory holds exactly
``tensors.safetensors`` and ``config.json``; the config records the tensors' SHA-256, so a modified or
truncated file is refused instead of silently loading wrong weights, and a directory that contains a pickle
(``.pt``, ``.pth``, ``.bin``, ``.pkl``, ``.ckpt``) is refused with an explanation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from foscu_bench.errors import FoscuError
from foscu_bench.store import atomic_write_json, file_sha256, staged_directory

TENSORS_FILE = "tensors.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
FORMAT_VERSION = 1


class CheckpointError(FoscuError):
    """A checkpoint is missing, in a refused format, or does not match its recorded hash."""


def save_checkpoint(directory: str | Path, tensors: dict[str, Any], config: dict[str, Any]) -> Path:
    """Write ``tensors`` (torch tensors or numpy arrays) and ``config`` (JSON-able) as one directory, atomically.

    Both files go into a staging folder that then replaces ``directory`` whole: overwriting them one by one (as a
    stage checkpoint does every few hundred iterations) could be killed between the two, leaving new tensors
    beside the old config's hash, a checkpoint that is refused on resume.
    """
    from safetensors.numpy import save_file

    arrays = {}
    for key, value in tensors.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().contiguous().numpy()
        arrays[key] = np.ascontiguousarray(value)
    with staged_directory(directory) as staging:
        save_file(arrays, str(staging / TENSORS_FILE))
        atomic_write_json(staging / CONFIG_FILE, {"format_version": FORMAT_VERSION,
                                                  "tensors_sha256": file_sha256(staging / TENSORS_FILE),
                                                  "config": config})
    return Path(directory)


def load_checkpoint(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a checkpoint directory; returns (numpy arrays, config)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(directory)
    if directory.is_file():
        if directory.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{directory}: pickle checkpoints are refused (loading one can execute code); "
                                  f"foscu-bench checkpoints are a directory with {TENSORS_FILE} + {CONFIG_FILE}")
        raise CheckpointError(f"{directory}: expected a checkpoint directory, got a file")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{directory}: contains pickle file(s) {pickles}; pickle checkpoints are refused "
                              f"(loading one can execute code). Re-save with save_checkpoint (safetensors)")
    tensors_path, config_path = directory / TENSORS_FILE, directory / CONFIG_FILE
    for path in (tensors_path, config_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
    try:
        record = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from None
    if record.get("format_version") != FORMAT_VERSION or "tensors_sha256" not in record:
        raise CheckpointError(f"{config_path}: unknown checkpoint format {record.get('format_version')!r}")
    if file_sha256(tensors_path) != record["tensors_sha256"]:
        raise CheckpointError(f"{tensors_path}: SHA-256 does not match config.json: the file was modified, "
                              f"truncated or belongs to another checkpoint")
    try:
        arrays = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{tensors_path}: cannot read safetensors ({exc})") from None
    return arrays, record["config"]


def load_module_state(module, arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Load the ``prefix.*`` arrays into ``module`` (strict: every key must match)."""
    import torch

    state = {k[len(prefix) + 1:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith(prefix + ".")}
    module.load_state_dict(state, strict=True)
