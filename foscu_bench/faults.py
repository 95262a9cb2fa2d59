"""Named kill points, so crash-safety tests can SIGKILL a process at an exact place (off unless asked for).

``FOSCU_KILL_AT=<point>[@<n>]`` kills this process with SIGKILL the ``n``-th time (default: the first) execution
reaches ``kill_point(<point>)``. Points are names such as ``write:manifest.json`` (inside an atomic write: the
temporary file is complete, the rename has not happened), ``unet.iteration`` or ``fidelity.features``.
With ``FOSCU_KILL_ONCE=<path>`` the kill fires once across processes: the first process to reach it creates
``<path>`` and dies, every later one (a restarted Dask worker retrying the step) passes. The check is one
environment lookup, so the hooks cost nothing in normal runs.
"""

from __future__ import annotations

import os
import signal

_HITS: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process here if ``FOSCU_KILL_AT`` names ``name`` and its count is reached."""
    spec = os.environ.get("FOSCU_KILL_AT")
    if not spec:
        return
    point, _, count = spec.partition("@")
    if point != name:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] != int(count or 1):
        return
    marker = os.environ.get("FOSCU_KILL_ONCE")
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # fired already, in this or another process
    os.kill(os.getpid(), signal.SIGKILL)
