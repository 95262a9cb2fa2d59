"""Where a network runs and in which precision: shared by the U-Net and the generators.

A module of its own so that the U-Net's training recipe (``segmentation``) is not part of a generator's code
fingerprint: changing how the measuring instrument trains must not invalidate every cached generator fit.
"""

from __future__ import annotations

from contextlib import nullcontext

from foscu_bench.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(device: "torch.device", precision: str = "auto") -> str:  # noqa: F821
    """``fp32`` or ``bf16``: bf16 only where the hardware computes it natively (emulated bf16 is slower than fp32)."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def resolve_device(device: str) -> "torch.device":  # noqa: F821
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(device)


def autocast(device, precision: str):
    """bf16 autocast (weights, optimiser state and the loss stay fp32), or nothing for fp32."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
