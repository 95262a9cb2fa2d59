"""What produced a result: package versions, git revision, hardware, peak memory.

Recorded in every run manifest, so a number can always be traced to the code and machine behind it.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("foscu-bench", "torch", "monai", "numpy", "scipy", "pandas", "datasets", "safetensors", "nibabel")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(path: Path | None = None) -> dict[str, object]:
    """Commit and dirty flag of the checkout holding the package (None outside a git checkout)."""
    root = Path(path or Path(__file__).resolve().parents[1])

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def kernel_class(device) -> str:
    """Which kernels compute the numbers: the CPU's vector ISA as torch dispatches it (oneDNN and libm give AVX2
    and AVX-512 CPUs different fp32 numbers, measured in session 12), or the GPU model."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{torch.backends.cpu.get_cpu_capability()}"


KERNEL_ENVIRONMENT = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS",
                      "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")
"""Environment variables that choose kernels or thread counts (a forced ISA changes fp32 numbers like another CPU)."""


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (``platform.processor()`` is empty on most Linux systems): two
    machines of one vector ISA can still differ 2x in speed, so wall times need the model beside them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict[str, object]:
    import torch

    info: dict[str, object] = {"platform": platform.platform(), "machine": platform.machine(),
                               "processor": platform.processor() or None, "cpu_model": cpu_model(),
                               "cpu_count": os.cpu_count(),
                               "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                               "kernel_environment": {k: os.environ[k] for k in KERNEL_ENVIRONMENT if k in os.environ}}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def peak_memory_mb(who: str = "self") -> float:
    """Peak resident set size in MiB of this process (``self``) or of the largest of its ended child processes
    (``children``: the runner's workers once their pool has shut down). ru_maxrss is KiB on Linux, bytes on
    macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF if who == "self" else resource.RUSAGE_CHILDREN).ru_maxrss
    return float(peak) / (1024 * 1024 if sys.platform == "darwin" else 1024)
