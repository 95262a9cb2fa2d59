"""How many CPU cores this process may use: one tiny module, so that code fingerprints stay small.

``segmentation`` and the schedulers both need it; importing it from ``runner.parallel`` pulled the whole runner
into the U-Net cache's code fingerprint, so any scheduler edit retrained every cached U-Net.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)
