"""3D U-Net training and sliding-window evaluation: the measuring instrument of the benchmark.

Every arm (real-only, real+synthetic, synthetic-only) trains the same network for the same number of
iterations with the same seed-derived initialisation, data-order and augmentation streams, so the only thing
that differs between arms is the data. Choices follow nnU-Net where it matters at these sizes: residual
U-Net, Dice + cross-entropy with batch Dice, foreground-biased patch sampling, poly learning-rate decay,
Gaussian-weighted sliding windows. Left-right flips are not used: the liver's side is anatomy, not noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from foscu_bench.errors import ConfigError
from foscu_bench.metrics.segmentation import case_metrics
from foscu_bench.pair import Pair
from foscu_bench.precision import autocast, resolve_device, resolve_precision
from foscu_bench.profiles import SegmentationSettings

ARMS = ("real", "real+synthetic", "synthetic")
MEMBER_SEED_OFFSET = 10_000
"""Member m of an (arm, seed) ensemble trains with seed ``seed + MEMBER_SEED_OFFSET * m``: member 0 is the single
U-Net of that seed, and no member shares a seed with another (arm, seed) of a run (seeds < 10,000)."""
N_CLASSES = 3  # background, liver, tumour (the tumour channel simply learns "absent" on tumour-free data)


@dataclass
class TrainResult:
    model: object  # torch.nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0
    n_real: int = 0
    n_synthetic: int = 0
    real_exposures: int = 0
    """Training samples drawn from the real pool; / n_real = how often the arm saw each real case on average."""
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    """CPU threads of the training: oneDNN's reductions depend on it, so it is part of "same numbers"."""
    sample_stream: str = "sequential"
    """``sequential`` (MONAI's chain, one stream) or ``per-sample`` (own streams, affine and intensity transforms batched
    on the device; see ``per_sample_streams``): which samples the U-Net saw."""
    loader_workers: int = 0


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and MONAI; CPU runs are then bit-for-bit repeatable."""
    import torch
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    torch.manual_seed(seed)


def build_unet(settings: SegmentationSettings, out_channels: int = N_CLASSES):
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=out_channels, channels=settings.channels,
                strides=settings.strides, num_res_units=settings.num_res_units, norm="instance")


def build_segmenter(settings: SegmentationSettings, out_channels: int = N_CLASSES):
    """What an arm trains: one U-Net, or ``settings.members`` of them as a mean-softmax ensemble."""
    if settings.members == 1:
        return build_unet(settings, out_channels)
    from foscu_bench.ensemble import MeanSoftmaxEnsemble

    return MeanSoftmaxEnsemble([build_unet(settings, out_channels) for _ in range(settings.members)])


def training_pools(arm: str, real: Sequence[Pair], synthetic: Sequence[Pair]) -> tuple[list[Pair], list[Pair]]:
    """The (real, synthetic) pools an arm draws from; refuses arms whose pools are empty."""
    if arm not in ARMS:
        raise ConfigError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")
    pools = {"real": (list(real), []), "real+synthetic": (list(real), list(synthetic)),
             "synthetic": ([], list(synthetic))}[arm]
    if arm != "real" and not pools[1]:
        raise ConfigError(f"arm {arm!r} needs synthetic pairs, got none")
    if arm != "synthetic" and not pools[0]:
        raise ConfigError(f"arm {arm!r} needs real training pairs, got none")
    return pools


def _augmentation(settings: SegmentationSettings, shape: tuple[int, int, int], seed: int, crop_only: bool = False):
    """MONAI dictionary transforms applied per sample on the fly (patch sampling first, then intensity/space).

    ``crop_only``: the patch sampling alone, for the per-sample streams, whose affine and intensity transforms run
    batched on the training device (``batched_augmentation``, same distributions)."""
    from monai.transforms import (Compose, RandAdjustContrastd, RandAffined, RandCropByPosNegLabeld,
                                  RandGaussianNoised, RandScaleIntensityd, RandShiftIntensityd)

    from foscu_bench import batched_augmentation as ba

    steps = []
    if tuple(settings.patch_size) != tuple(shape):
        pos = settings.foreground_ratio
        steps.append(RandCropByPosNegLabeld(keys=["image", "label"], label_key="label",
                                            spatial_size=settings.patch_size, pos=pos, neg=1 - pos, num_samples=1))
    if not crop_only:
        steps += [
            RandAffined(keys=["image", "label"], prob=ba.AFFINE_PROB, rotate_range=(ba.ROTATE_RANGE,) * 3,
                        scale_range=(ba.SCALE_RANGE,) * 3, mode=("bilinear", "nearest"), padding_mode="zeros"),
            RandScaleIntensityd(keys="image", factors=ba.SCALE_INTENSITY_FACTOR, prob=ba.SCALE_INTENSITY_PROB),
            RandShiftIntensityd(keys="image", offsets=ba.SHIFT_INTENSITY_OFFSET, prob=ba.SHIFT_INTENSITY_PROB),
            RandAdjustContrastd(keys="image", gamma=ba.CONTRAST_GAMMA, prob=ba.CONTRAST_PROB),
            RandGaussianNoised(keys="image", std=ba.NOISE_STD, prob=ba.NOISE_PROB),
        ]
    chain = Compose(steps)
    chain.set_random_state(seed=seed)
    return chain


def train_segmentation(real: Sequence[Pair], synthetic: Sequence[Pair], arm: str, settings: SegmentationSettings,
                       seed: int, device: str = "auto", synthetic_fraction: float | None = None,
                       progress: Callable[[int, float], None] | None = None,
                       loader_workers: int | None = None,
                       on_step: Callable[[object], None] | None = None) -> TrainResult:
    """Train what one (arm, seed) trains: one U-Net, or an ensemble of ``settings.members`` U-Nets trained one
    after another with their own seeds (``MEMBER_SEED_OFFSET``); arguments as ``train_network``. The ensemble's
    losses are the members' mean per iteration, its seconds and real exposures their sums; ``progress`` counts
    every member's iterations."""
    if settings.members < 1:
        raise ConfigError(f"members must be >= 1, got {settings.members}")
    if settings.members == 1:
        return train_network(real, synthetic, arm, settings, seed, device, synthetic_fraction, progress,
                             loader_workers, on_step)
    from foscu_bench.ensemble import MeanSoftmaxEnsemble

    results = []
    for member in range(settings.members):
        done = member * settings.iterations
        member_progress = None if progress is None else (lambda it, loss, done=done: progress(done + it, loss))
        results.append(train_network(real, synthetic, arm, settings, seed + MEMBER_SEED_OFFSET * member, device,
                                     synthetic_fraction, member_progress, loader_workers, on_step))
    first = results[0]
    ensemble = MeanSoftmaxEnsemble([r.model for r in results]).eval()
    return replace(first, model=ensemble, losses=[float(np.mean(ls)) for ls in zip(*(r.losses for r in results))],
                   seconds=sum(r.seconds for r in results), iterations=sum(r.iterations for r in results),
                   real_exposures=sum(r.real_exposures for r in results))


def train_network(real: Sequence[Pair], synthetic: Sequence[Pair], arm: str, settings: SegmentationSettings,
                  seed: int, device: str = "auto", synthetic_fraction: float | None = None,
                  progress: Callable[[int, float], None] | None = None,
                  loader_workers: int | None = None,
                  on_step: Callable[[object], None] | None = None) -> TrainResult:
    """Train one U-Net for one (arm, seed).

    ``synthetic_fraction`` is the probability that a training sample comes from the synthetic pool in the
    real+synthetic arm; None draws uniformly over all cases (i.e. proportional to the pool sizes).
    ``loader_workers``: processes that prepare training samples ahead of the network (see ``per_sample_streams``);
    None: none on CPU, where every core already trains a U-Net, several on a GPU.
    ``on_step(model)``: called after every optimiser step (weight averages kept outside, as bench/seed_noise.py does).
    """
    import torch
    from monai.data import set_track_meta
    from monai.losses import DiceCELoss

    from foscu_bench.batched_augmentation import apply_batch

    real_pool, synth_pool = training_pools(arm, real, synthetic)
    if synthetic_fraction is not None and not 0.0 <= synthetic_fraction <= 1.0:
        raise ConfigError(f"synthetic_fraction must be in [0, 1], got {synthetic_fraction}")
    dev = resolve_device(device)
    precision = resolve_precision(dev, settings.precision)
    memory_format = _memory_format(dev)
    seed_everything(seed)
    shape = (real_pool or synth_pool)[0].label.shape
    model = build_unet(settings).to(dev, memory_format=memory_format)
    # fused AdamW: one kernel per step instead of ~50 small ones (10% of a quick CPU step)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay,
                                  fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda it: (1 - it / settings.iterations) ** 0.9)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    n_real, n_synth = len(real_pool), len(synth_pool)
    p_synth = (n_synth / (n_real + n_synth)) if synthetic_fraction is None else synthetic_fraction
    if arm == "real":
        p_synth = 0.0
    elif arm == "synthetic":
        p_synth = 1.0
    result = TrainResult(model=model, n_real=n_real, n_synthetic=n_synth, device=str(dev), precision=precision,
                         threads=torch.get_num_threads())
    workers = default_loader_workers(dev) if loader_workers is None else loader_workers
    result.loader_workers = workers
    result.sample_stream = "per-sample" if per_sample_streams(dev, loader_workers) else "sequential"
    per_sample = result.sample_stream == "per-sample"
    batches = (_parallel_batches if per_sample else _sequential_batches)(
        real_pool, synth_pool, p_synth, _augmentation(settings, shape, seed, crop_only=per_sample), seed, settings,
        workers)
    start = time.perf_counter()
    set_track_meta(False)
    try:
        model.train()
        for iteration, (images, labels, from_real, parameters) in zip(range(settings.iterations), batches):
            result.real_exposures += from_real
            x, y = images.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
            if parameters is not None:
                x, y = apply_batch(x, y, parameters)
            x, y = x.contiguous(memory_format=memory_format), y.round()
            optimiser.zero_grad(set_to_none=True)
            with autocast(dev, precision):
                loss = loss_fn(model(x).float(), y)
            loss.backward()
            optimiser.step()
            schedule.step()
            if on_step is not None:
                on_step(model)
            result.losses.append(float(loss.detach()))
            if progress is not None:
                progress(iteration + 1, result.losses[-1])
    finally:
        set_track_meta(True)
        batches.close()
    result.seconds = time.perf_counter() - start
    result.iterations = settings.iterations
    model.eval()
    return result


def per_sample_streams(device, loader_workers: int | None = None) -> bool:
    """Whether training sample k is drawn from its own stream, seeded by (seed, k), instead of one sequential stream.

    Own streams let worker processes prepare samples in any order with the same result whatever their number. The
    workers only crop and draw the sample's augmentation parameters; the affine and intensity transforms run batched
    on the training device (``batched_augmentation``): with MONAI's per-sample transforms in 8 workers, the paper
    U-Net stepped at 26.7 ms on an H200 for 11.4 ms of compute (bench/results/gpu_paper_profile_s10_h200.json).
    CPU runs keep the sequential stream of MONAI's full chain (every core already trains its own U-Net, and their
    numbers stay those of the stored runs). Recorded per U-Net."""
    return device.type == "cuda" or loader_workers is not None


def default_loader_workers(device) -> int:
    """Sample-preparing processes: none on CPU; on a GPU up to 8, leaving a core to the training process."""
    from foscu_bench.cores import available_cores

    return 0 if device.type == "cpu" else max(1, min(8, available_cores() - 1))


def _draw(pool_real: Sequence[Pair], pool_synth: Sequence[Pair], p_synth: float, rng: np.random.Generator,
          augment) -> tuple[object, object, bool]:
    """One augmented (image, label) patch from the real pool, or the synthetic one with probability ``p_synth``."""
    import torch

    from_real = not rng.uniform() < p_synth
    pool = pool_real if from_real else pool_synth
    pair = pool[rng.integers(len(pool))]
    sample = augment({"image": torch.from_numpy(pair.image),
                      "label": torch.from_numpy(pair.label[None].astype(np.float32))})
    sample = sample[0] if isinstance(sample, list) else sample
    return sample["image"], sample["label"], from_real


def _sequential_batches(real_pool, synth_pool, p_synth: float, augment, seed: int, settings, _workers: int):
    """Batches from one random stream, in order (the CPU path)."""
    import torch

    rng = np.random.default_rng(seed)
    while True:
        draws = [_draw(real_pool, synth_pool, p_synth, rng, augment) for _ in range(settings.batch_size)]
        yield (torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws]), sum(d[2] for d in draws),
               None)


class _SampleStream:
    """Training sample k from its own stream (see ``per_sample_streams``): a map-style dataset for a DataLoader."""

    def __init__(self, real_pool, synth_pool, p_synth: float, augment, seed: int, length: int) -> None:
        self.real_pool, self.synth_pool, self.p_synth = real_pool, synth_pool, p_synth
        self.augment, self.seed, self.length = augment, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int):
        from foscu_bench.batched_augmentation import draw_parameters

        rng = np.random.default_rng([self.seed, k])
        self.augment.set_random_state(seed=int(rng.integers(2 ** 31)))
        image, label, from_real = _draw(self.real_pool, self.synth_pool, self.p_synth, rng, self.augment)
        return image, label, from_real, draw_parameters(rng)


def _loader_worker_init(_worker_id: int) -> None:
    import torch
    from monai.data import set_track_meta

    torch.set_num_threads(1)
    set_track_meta(False)


def _parallel_batches(real_pool, synth_pool, p_synth: float, augment, seed: int, settings, workers: int):
    """Batches of per-sample streams, prepared ahead by ``workers`` processes (0: in this process)."""
    import torch

    stream = _SampleStream(real_pool, synth_pool, p_synth, augment, seed, settings.iterations * settings.batch_size)
    loader = torch.utils.data.DataLoader(stream, batch_size=settings.batch_size, shuffle=False, num_workers=workers,
                                         worker_init_fn=_loader_worker_init if workers else None,
                                         prefetch_factor=4 if workers else None,
                                         pin_memory=torch.cuda.is_available())
    for images, labels, from_real, parameters in loader:
        yield images, labels, int(from_real.sum()), parameters


def _memory_format(device):
    """channels-last-3d on CPU, where oneDNN's 3D convolutions are 1.3x faster in it (bench/unet_step_speed.py)."""
    import torch

    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def predict(model, image: np.ndarray, settings: SegmentationSettings, device: str = "auto") -> np.ndarray:
    """Label map (uint8, X x Y x Z) by Gaussian-blended sliding windows of the training patch size."""
    import torch
    from monai.inferers import sliding_window_inference

    dev = next(model.parameters()).device if device == "auto" else resolve_device(device)
    x = torch.from_numpy(np.ascontiguousarray(image))[None].to(dev)
    with torch.inference_mode(), autocast(dev, resolve_precision(dev, settings.precision)):
        logits = sliding_window_inference(x, roi_size=settings.patch_size, sw_batch_size=4, predictor=model,
                                          overlap=settings.sw_overlap, mode="gaussian")
    return logits.float().argmax(dim=1)[0].cpu().numpy().astype(np.uint8)


WHOLE_VOLUME_BATCH = 8
"""Volumes per forward pass where the patch is the whole volume: 17 vs 30 ms a volume for the quick ensemble on
one CPU thread (batch 8 vs 1), and no sliding-window bookkeeping (48 ms a volume through ``predict``)."""


def predict_many(model, images: Sequence[np.ndarray], settings: SegmentationSettings,
                 device: str = "auto") -> list[np.ndarray]:
    """Label maps of many volumes. Where a volume is exactly one patch, the sliding window has one window whose
    Gaussian weight divides out, so the volumes go through the network in batches (the same argmax up to float
    rounding of that division); any other volume goes through ``predict``."""
    import torch

    dev = next(model.parameters()).device if device == "auto" else resolve_device(device)
    whole = [i for i, image in enumerate(images) if tuple(image.shape[-3:]) == tuple(settings.patch_size)]
    out: list[np.ndarray | None] = [None] * len(images)
    with torch.inference_mode(), autocast(dev, resolve_precision(dev, settings.precision)):
        for start in range(0, len(whole), WHOLE_VOLUME_BATCH):
            chunk = whole[start:start + WHOLE_VOLUME_BATCH]
            x = torch.from_numpy(np.stack([np.ascontiguousarray(images[i], dtype=np.float32) for i in chunk])).to(dev)
            labels = model(x).float().argmax(dim=1).cpu().numpy().astype(np.uint8)
            for i, label in zip(chunk, labels):
                out[i] = label
    for i, image in enumerate(images):
        if out[i] is None:
            out[i] = predict(model, image, settings, device)
    return out  # type: ignore[return-value]


def evaluate(model, pairs: Sequence[Pair], settings: SegmentationSettings,
             tolerance_mm: float | None = None) -> list[dict]:
    """Per-case metric rows (case_id + Dice/NSD/HD95 for liver and tumour) on held-out pairs."""
    tolerance_mm = settings.nsd_tolerance_mm if tolerance_mm is None else tolerance_mm
    predictions = predict_many(model, [pair.image for pair in pairs], settings)
    return [{"case_id": pair.case_id, **case_metrics(prediction, pair.label, pair.spacing, tolerance_mm)}
            for pair, prediction in zip(pairs, predictions)]
