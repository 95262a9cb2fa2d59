"""Feature extractors for image-fidelity metrics, behind one registry.

An extractor maps volumes (N x 1 x X x Y x Z, float32 in [0, 1]) to one or more *views* of features, each
N x D: 3D networks give one view (``volume``); the 2.5D extractor gives ``axial``, ``coronal`` and ``sagittal``
(MAISI-style: every slice of a plane is embedded by a 2D network and the slice features are averaged per
volume; metrics are computed per plane and averaged). Every number in fidelity.json names the extractor (and
its weights' SHA-256) that produced it.

Extractors:

- ``foscu-ae3d`` (offline default): the encoder of a 3D convolutional autoencoder that the suite trains on the
  *real training split* with a fixed seed, cached per dataset fingerprint. Features are the per-channel mean and
  standard deviation of every encoder level (first and second moments, as in texture statistics). Why this
  and not a segmentation or contrastive encoder: a reconstruction objective must keep intensity, contrast,
  texture, noise and anatomy, so none of them is invariant by construction; the encoder has no normalisation
  layers, so it also sees global intensity shifts that instance norm would remove. Its numbers are comparable
  only within one dataset fingerprint (the encoder is trained per dataset), which is exactly a run's scope.
- ``medicalnet-resnet10`` / ``medicalnet-resnet50``: MONAI's 3D ResNet with MedicalNet (Med3D, Chen et al.
  2019) weights; global-average-pooled last block (512 / 2048 features), inputs z-scored over the body.
- ``radimagenet-resnet50-2.5d``: a 2D ResNet-50 (torchvision layout, e.g. RadImageNet weights) on the slices
  of the three planes; slices with no body (99th percentile < 0.05) are skipped.

Weights: ``weights=`` a local file (``.safetensors``, or a PyTorch state dict read with
``torch.load(weights_only=True)``, which cannot execute code), an environment variable, or ``hf://REPO/FILE``
from the Hugging Face Hub. Offline or missing, the error says how to provide them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from foscu_bench.hashing import json_hash
from foscu_bench.errors import ConfigError, FoscuError
from foscu_bench.store import file_sha256


class FeatureWeightsError(FoscuError):
    """Weights for a feature extractor are missing, unreachable or do not fit the network."""


@dataclass
class Extractor:
    name: str
    embed: Callable[[np.ndarray], dict[str, np.ndarray]]
    """volumes (N x 1 x X x Y x Z) -> {view: N x D features (float64)}."""
    provenance: dict = field(default_factory=dict)

    def __call__(self, volumes: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
        volumes = np.asarray(volumes, dtype=np.float32)
        if volumes.ndim != 5 or volumes.shape[1] != 1:
            raise ValueError(f"expected volumes N x 1 x X x Y x Z, got {volumes.shape}")
        parts = [self.embed(volumes[i:i + batch_size]) for i in range(0, len(volumes), batch_size)]
        return {view: np.concatenate([p[view] for p in parts]).astype(np.float64) for view in parts[0]}


@dataclass(frozen=True)
class ExtractorSpec:
    name: str
    description: str
    factory: Callable[..., Extractor]
    needs_training_data: bool = False


EXTRACTORS: dict[str, ExtractorSpec] = {}
DEFAULT_EXTRACTOR = "foscu-ae3d-corpus"
TRAIN_SPLIT_EXTRACTOR = "foscu-ae3d"


def register_extractor(spec: ExtractorSpec) -> ExtractorSpec:
    EXTRACTORS[spec.name] = spec
    return spec


def get_extractor(name: str, *, weights: str | None = None, train_images: np.ndarray | None = None,
                  cache_key: str | None = None, seed: int = 0, device: str = "cpu") -> Extractor:
    """Build the named extractor; ``train_images`` and ``cache_key`` feed the extractors trained by the suite."""
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    spec = EXTRACTORS[name]
    if spec.needs_training_data:
        if train_images is None or cache_key is None:
            raise ConfigError(f"extractor {name!r} is trained on the real training split: pass train_images and "
                              f"cache_key")
        return spec.factory(train_images=train_images, cache_key=cache_key, seed=seed, device=device)
    return spec.factory(weights=weights, device=device)


# -- weights -------------------------------------------------------------------------------------------------
def resolve_weights(spec: str | None, env_var: str, default_hub: str | None, what: str) -> Path:
    """A local weights file from ``spec`` / ``$env_var`` / the default hub location, or a clear error."""
    spec = spec or os.environ.get(env_var) or default_hub
    how = (f"pass weights=PATH (or set {env_var}=PATH) to a local copy"
           + (f", or allow network access to download {default_hub}" if default_hub else ""))
    if spec is None:
        raise FeatureWeightsError(f"{what}: no weights given; {how}")
    if spec.startswith("hf://"):
        repo_file = spec[len("hf://"):]
        repo_id, _, filename = repo_file.rpartition("/")
        if not repo_id or not filename:
            raise FeatureWeightsError(f"{what}: {spec!r} is not hf://OWNER/REPO/FILE")
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id=repo_id, filename=filename))
        except Exception as exc:  # offline, unauthenticated, missing file: one clear message
            raise FeatureWeightsError(f"{what}: cannot fetch {spec} from the Hugging Face Hub "
                                      f"({type(exc).__name__}); {how}") from None
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FeatureWeightsError(f"{what}: weights file {path} not found; {how}")
    return path


def load_state_dict(path: Path, what: str) -> dict:
    """State dict from safetensors or a PyTorch file (``weights_only``: no code runs); strips DataParallel's
    ``module.`` prefix and unwraps ``{"state_dict": ...}`` as MedicalNet ships it."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FeatureWeightsError(f"{what}: cannot read weights {path} ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FeatureWeightsError(f"{what}: {path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_into(network, path: Path, what: str, ignore_prefixes: tuple[str, ...] = ()) -> str:
    state = {k: v for k, v in load_state_dict(path, what).items() if not k.startswith(ignore_prefixes)}
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FeatureWeightsError(f"{what}: {path} does not fit the network (missing {list(missing)[:4]}, "
                                  f"unexpected {list(unexpected)[:4]})")
    return file_sha256(path)


def _zscore_body(volumes: np.ndarray) -> np.ndarray:
    """Per-volume z-score over body voxels (> 0.02), as MedicalNet normalises; background stays 0."""
    out = np.zeros_like(volumes)
    for i, vol in enumerate(volumes):
        body = vol > 0.02
        if body.any():
            mean, sd = vol[body].mean(), vol[body].std() + 1e-6
            out[i] = np.where(body, (vol - mean) / sd, 0.0)
    return out


# -- MedicalNet 3D ResNets ---------------------------------------------------------------------------------------
MEDICALNET_HUB = {10: "hf://TencentMedicalNet/MedicalNet-Resnet10/resnet_10_23dataset.pth",
                  50: "hf://TencentMedicalNet/MedicalNet-Resnet50/resnet_50_23dataset.pth"}


def build_medicalnet(depth: int):
    from monai.networks.nets import resnet10, resnet50

    builder = {10: resnet10, 50: resnet50}[depth]
    return builder(spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type="B", bias_downsample=False)


def medicalnet_extractor(depth: int, weights: str | None = None, device: str = "cpu") -> Extractor:
    import torch

    what = f"medicalnet-resnet{depth}"
    path = resolve_weights(weights, f"FOSCU_BENCH_MEDICALNET_RESNET{depth}", MEDICALNET_HUB[depth], what)
    network = build_medicalnet(depth)
    digest = _load_into(network, path, what, ignore_prefixes=("conv_seg", "fc"))
    network = network.to(device).eval()

    @torch.no_grad()
    def embed(volumes: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(_zscore_body(volumes)).to(device)
        return {"volume": network(x).flatten(1).cpu().numpy()}

    return Extractor(what, embed, {"weights": str(path), "weights_sha256": digest, "input": "z-score over body"})


# -- 2.5D: a 2D ResNet-50 on the slices of three planes ------------------------------------------------------------
PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_resnet50_2d():
    from monai.networks.nets import resnet50

    return resnet50(spatial_dims=2, n_input_channels=3, feed_forward=False, conv1_t_size=7, conv1_t_stride=2,
                    shortcut_type="B", bias_downsample=False)


def slices_features(network, volume: np.ndarray, axis: int, device: str) -> np.ndarray:
    """Mean feature of the non-empty slices of one plane (MRI rule: 99th percentile >= 0.05)."""
    import torch

    slices = np.moveaxis(volume, axis, 0)
    keep = [s for s in slices if np.percentile(s, 99) >= 0.05] or list(slices)
    x = torch.from_numpy(np.stack(keep)[:, None].repeat(3, axis=1).astype(np.float32))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return network(((x - mean) / std).to(device)).flatten(1).mean(0).cpu().numpy()


def resnet50_25d_extractor(weights: str | None = None, device: str = "cpu") -> Extractor:
    what = "radimagenet-resnet50-2.5d"
    path = resolve_weights(weights, "FOSCU_BENCH_RESNET50_2D", None, what)
    network = build_resnet50_2d()
    digest = _load_into(network, path, what, ignore_prefixes=("fc",))
    network = network.to(device).eval()

    def embed(volumes: np.ndarray) -> dict[str, np.ndarray]:
        return {plane: np.stack([slices_features(network, v[0], axis, device) for v in volumes])
                for plane, axis in PLANES.items()}

    return Extractor(what, embed, {"weights": str(path), "weights_sha256": digest,
                                   "input": "slices replicated to RGB, ImageNet normalisation",
                                   "protocol": "per-plane mean of slice features; metrics averaged over planes"})


# -- offline default: a 3D autoencoder trained by the suite on the real training split -----------------------------
AE_VERSION = 1
AE_CHANNELS = (8, 16, 32)


def build_autoencoder():
    """Plain conv autoencoder without normalisation layers (so no intensity invariance is built in)."""
    from monai.networks.nets import AutoEncoder

    return AutoEncoder(spatial_dims=3, in_channels=1, out_channels=1, channels=AE_CHANNELS, strides=(2, 2, 2),
                       num_res_units=0, norm=None, act="LEAKYRELU")


def train_autoencoder(images: np.ndarray, seed: int, iterations: int, device: str = "cpu", batch_size: int = 4):
    """Reconstruction (L1 + MSE) of whole training volumes in random mini-batches (no crops, no flips); deterministic
    on CPU."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = build_autoencoder().to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=2e-3)
    data = torch.from_numpy(np.asarray(images, dtype=np.float32))
    batch = min(batch_size, len(data))
    for _ in range(iterations):
        x = data[torch.from_numpy(rng.integers(len(data), size=batch))].to(device)
        optimiser.zero_grad(set_to_none=True)
        recon = network(x)
        loss = (recon - x).abs().mean() + ((recon - x) ** 2).mean()
        loss.backward()
        optimiser.step()
    return network.eval(), float(loss.detach())


def moment_features(encoder_layers, x):
    """Per-channel mean and standard deviation of every encoder level, concatenated."""
    import torch

    feats = []
    for layer in encoder_layers:
        x = layer(x)
        flat = x.flatten(2)
        feats += [flat.mean(-1), flat.std(-1)]
    return torch.cat(feats, dim=1)


def load_moment_encoder(directory: Path, device: str = "cpu"):
    """(volumes -> moment features, checkpoint arrays, config) of an autoencoder checkpoint directory: the one
    loading path of both suite-made extractors."""
    import torch

    from foscu_bench.checkpoint import load_checkpoint, load_module_state

    arrays, config = load_checkpoint(directory)
    network = build_autoencoder()
    load_module_state(network, arrays, "network")
    encoder = list(network.to(device).eval().encode)

    @torch.no_grad()
    def moments(volumes: np.ndarray) -> np.ndarray:
        return moment_features(encoder, torch.from_numpy(volumes).to(device)).cpu().numpy()

    return moments, arrays, config


def autoencoder_extractor(train_images: np.ndarray, cache_key: str, seed: int = 0, device: str = "cpu",
                          iterations: int | None = None) -> Extractor:
    import torch

    from foscu_bench.checkpoint import load_checkpoint, load_module_state, save_checkpoint
    from foscu_bench.data.cache import cache_root
    from foscu_bench.store import exclusive_lock

    iterations = iterations or (300 if min(train_images.shape[2:]) <= 16 else 600)
    key = json_hash({"data": cache_key, "seed": seed, "iterations": iterations, "version": AE_VERSION})
    directory = cache_root() / "extractors" / TRAIN_SPLIT_EXTRACTOR / key
    with exclusive_lock(directory.parent / f"{key}.lock", wait=True):
        if not (directory / "config.json").is_file():
            network, loss = train_autoencoder(train_images, seed, iterations, "cpu")
            save_checkpoint(directory, {f"network.{k}": v for k, v in network.state_dict().items()},
                            {"extractor": TRAIN_SPLIT_EXTRACTOR, "final_loss": loss, "iterations": iterations,
                             "seed": seed, "n_train": int(len(train_images))})
    moments, _, config = load_moment_encoder(directory, device)
    embed = lambda volumes: {"volume": moments(volumes)}  # noqa: E731

    return Extractor(TRAIN_SPLIT_EXTRACTOR, embed, {
        "trained_on": "real training split", "train_cache_key": cache_key, "seed": seed, "iterations": iterations,
        "final_reconstruction_loss": config["final_loss"], "checkpoint": key,
        "features": f"mean+sd per channel of encoder levels {AE_CHANNELS}"})


def corpus_extractor(weights: str | None = None, device: str = "cpu") -> Extractor:
    """The shipped autoencoder trained on a separate phantom corpus (``metrics/corpus.py``); ``weights`` may name
    another checkpoint directory made by the same recipe."""
    from foscu_bench.metrics.corpus import CORPUS_EXTRACTOR, SHIPPED, project

    directory = Path(weights).expanduser() if weights else SHIPPED
    moments, arrays, config = load_moment_encoder(directory, device)
    projection = {k.removeprefix("projection."): v.astype(np.float64) for k, v in arrays.items()
                  if k.startswith("projection.")}

    def embed(volumes: np.ndarray) -> dict[str, np.ndarray]:
        return {"volume": project(moments(volumes).astype(np.float64), projection)}

    return Extractor(CORPUS_EXTRACTOR, embed, {
        "trained_on": f"separate phantom corpus ({config['recipe']['n_cases']} patients, "
                      f"{'/'.join(config['recipe']['weightings'])}, own random stream)",
        "weights": str(directory), "weights_sha256": file_sha256(directory / "tensors.safetensors"),
        "recipe": config["recipe"], "final_reconstruction_loss": config["final_loss"],
        "features": f"mean+sd per channel of encoder levels {AE_CHANNELS}, standardised, projected on the corpus' "
                    f"{len(projection['components'])} leading principal axes "
                    f"({100 * config['explained_variance_total']:.1f}% of the variance)"})


register_extractor(ExtractorSpec("foscu-ae3d-corpus", "3D autoencoder trained on a separate phantom corpus, shipped "
                                 "(offline default)", corpus_extractor))
register_extractor(ExtractorSpec(TRAIN_SPLIT_EXTRACTOR, "3D autoencoder trained on the level's real training cases "
                                 "(offline; learns from the cases memorisation is judged against)",
                                 autoencoder_extractor, needs_training_data=True))
register_extractor(ExtractorSpec("medicalnet-resnet10", "MedicalNet 3D ResNet-10 (Med3D weights)",
                                 lambda weights=None, device="cpu": medicalnet_extractor(10, weights, device)))
register_extractor(ExtractorSpec("medicalnet-resnet50", "MedicalNet 3D ResNet-50 (Med3D weights)",
                                 lambda weights=None, device="cpu": medicalnet_extractor(50, weights, device)))
register_extractor(ExtractorSpec("radimagenet-resnet50-2.5d", "2D ResNet-50 on axial/coronal/sagittal slices",
                                 resnet50_25d_extractor))
