"""Image-label consistency of a synthetic set: does the image show the anatomy its label claims?

A U-Net trained on the level's real training cases only (the fit seed, the profile's budget) segments every
synthetic image; consistency is the liver Dice against the label the pair came with. The same U-Net's Dice on the
held-out reference volumes is the ceiling at this grid. Field practice (MAISI scores its synthetic CTs this way).
The network is cached by content (dataset, training ids, profile, seed, device, code), so every generator of a
level, and every run that shares the level, trains it once; and it is the real-only U-Net of the fit seed, so the
runner keeps that one (``keep_segmenter``) and its fidelity steps, which wait for it, train nothing.
"""

from __future__ import annotations

from pathlib import Path

from foscu_bench.generator import modules_fingerprint
from foscu_bench.hashing import json_hash

CONSISTENCY_VERSION = 1


def _segmenter_directory(ctx, n_real: int | None, draw: int):
    from foscu_bench.data.cache import cache_root

    key = json_hash({"dataset": ctx.fingerprint, "train": ctx.train_ids(n_real, draw), "profile": ctx.profile.to_dict(),
                     "seed": ctx.config.fit_seed, "device": ctx.device.type, "version": CONSISTENCY_VERSION,
                     "code": modules_fingerprint(["foscu_bench.segmentation"])})
    return cache_root() / "segmenters" / key


def keep_segmenter(ctx, n_real: int | None, draw: int, result) -> None:
    """Store a real-only U-Net trained with the fit seed as the level's segmenter: it *is* that network (same
    cases, seed, settings), so the fidelity steps load it instead of training it a second time."""
    _store_segmenter(ctx, n_real, draw, lambda: result)


def _store_segmenter(ctx, n_real: int | None, draw: int, trained) -> Path:
    """The level's segmenter directory, holding ``trained()``'s network unless one is there already (locked, so
    two processes never both train or write it)."""
    from foscu_bench.checkpoint import save_checkpoint
    from foscu_bench.store import exclusive_lock

    directory = _segmenter_directory(ctx, n_real, draw)
    with exclusive_lock(directory.parent / f"{directory.name}.lock", wait=True):
        if not (directory / "config.json").is_file():
            result = trained()
            save_checkpoint(directory, {f"network.{k}": v for k, v in result.model.state_dict().items()},
                            {"n_real": result.n_real, "iterations": result.iterations, "seconds": result.seconds,
                             "precision": result.precision, "seed": ctx.config.fit_seed})
    return directory


def consistency_segmenter(ctx, n_real: int | None = None, draw: int = 0):
    """The level's real-data U-Net: the real-only U-Net of the fit seed where the run kept it (``keep_segmenter``),
    else trained here; cached (safetensors)."""
    from foscu_bench.checkpoint import load_checkpoint, load_module_state
    from foscu_bench.segmentation import build_segmenter, train_segmentation

    memo = ("consistency_segmenter", n_real, draw)
    if memo in ctx.memo:
        return ctx.memo[memo]
    settings = ctx.profile.segmentation
    directory = _store_segmenter(ctx, n_real, draw, lambda: train_segmentation(
        ctx.pairs("train", n_real, draw), [], "real", settings, seed=ctx.config.fit_seed, device=str(ctx.device)))
    key = directory.name
    arrays, config = load_checkpoint(directory)
    model = build_segmenter(settings)
    load_module_state(model, arrays, "network")
    # provenance without the training seconds: a timing would make fidelity.json differ between equal runs
    ctx.memo[memo] = (model.to(ctx.device).eval(),
                      {"checkpoint": key, **{k: v for k, v in config.items() if k != "seconds"}})
    return ctx.memo[memo]


def consistency_report(ctx, synthetic, reference, n_real: int | None = None, draw: int = 0) -> dict:
    """Mean liver Dice of the level's real-data U-Net on the synthetic pairs and on the held-out reference pairs."""
    import numpy as np

    from foscu_bench.sample_checks import image_label_consistency

    model, provenance = consistency_segmenter(ctx, n_real, draw)
    settings = ctx.profile.segmentation
    synthetic_dice = image_label_consistency(synthetic, model, settings)
    ceiling = image_label_consistency(reference, model, settings)

    def summary(values: np.ndarray) -> dict:
        return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "n": int(len(values)),
                "se": float(values.std(ddof=1) / np.sqrt(len(values)))}

    return {"synthetic": summary(synthetic_dice), "real_ceiling": summary(ceiling),
            "gap": float(synthetic_dice.mean() - ceiling.mean()), "segmenter": provenance}
