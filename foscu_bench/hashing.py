"""One content hash for JSON-able objects: cache keys, run ids, config hashes all go through ``json_hash``."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_hash(obj: Any, length: int | None = 16) -> str:
    """SHA-256 hex digest of ``obj`` as canonical JSON (sorted keys; non-JSON values as ``str``), truncated."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    return digest if length is None else digest[:length]
