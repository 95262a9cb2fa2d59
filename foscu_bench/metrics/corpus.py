"""The shipped fidelity extractor: a 3D autoencoder trained once on a separate phantom corpus.

Why: an extractor trained on a run's training cases embeds exactly the cases the memorisation check compares
against, and its features were learned from the data it judges. The corpus here is made of phantom patients from
their own random stream (``CORPUS_STREAM``), disjoint from every dataset case, oracle patient and reference
patient, half T1- and half T2-weighted, at the quick grid, preprocessed by the suite's MONAI chain. The network
(``features.build_autoencoder``, no normalisation layers) is fully convolutional and its features are moments
per channel, so it embeds any grid; it is trained at 32^3.

The weights ship inside the package (``weights/foscu-ae3d-corpus``, a checkpoint directory of a few hundred KB)
with the recipe that made them; ``python bench/train_fidelity_extractor.py`` remakes them bit for bit on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CORPUS_STREAM = 0xC0_4905
"""First entropy word of the corpus patients: ``SeedSequence([CORPUS_STREAM, index])``."""
CORPUS_EXTRACTOR = "foscu-ae3d-corpus"
SHIPPED = Path(__file__).parent / "weights" / CORPUS_EXTRACTOR
RECIPE = {"n_cases": 512, "profile": "quick", "weightings": ("T1", "T2"), "iterations": 4000, "batch_size": 8,
          "seed": 0, "components": 32}
"""``components``: the moment features (112) are standardised and projected on their leading principal components
over the corpus, so the feature dimension stays well below the 100 volumes per set that fidelity uses (FID's
covariance is singular where n <= d)."""


def corpus_seed(index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([CORPUS_STREAM, int(index)])


def corpus_case(index: int, profile: str, weighting: str) -> np.ndarray:
    """One preprocessed corpus image (1 x X x Y x Z in [0, 1])."""
    from foscu_bench.data.label_map import IDENTITY
    from foscu_bench.data.phantom import PhantomConfig, generate_case
    from foscu_bench.data.preprocess import preprocess_case
    from foscu_bench.data.volume_io import RawCase
    from foscu_bench.profiles import get_profile

    grid = get_profile(profile)
    case = generate_case(corpus_seed(index), PhantomConfig(spacing=grid.phantom_spacing, weighting=weighting))
    where = Path(f"corpus:{index}")
    raw = RawCase(case_id=f"corpus_{index:05d}", patient_id=f"corpus_{index:05d}", image=case.image, label=case.label,
                  affine=case.affine, image_path=where, label_path=where, meta={})
    return preprocess_case(raw, IDENTITY, grid).image


def _corpus_job(job: tuple[int, str, str]) -> np.ndarray:
    import torch

    torch.set_num_threads(1)
    return corpus_case(*job)


def make_corpus(n_cases: int, profile: str, weightings: tuple[str, ...], workers: int = 1) -> np.ndarray:
    """``n_cases`` images, weightings alternating (case i has ``weightings[i % len]``)."""
    jobs = [(i, profile, weightings[i % len(weightings)]) for i in range(n_cases)]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            return np.stack(list(pool.map(_corpus_job, jobs, chunksize=8)))
    return np.stack([corpus_case(*job) for job in jobs])


def principal_projection(features: np.ndarray, components: int) -> tuple[dict[str, np.ndarray], list[float]]:
    """Standardisation and the leading principal axes of ``features`` (SVD), with the explained variance ratios."""
    mean, scale = features.mean(0), features.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    _, singular, axes = np.linalg.svd((features - mean) / scale, full_matrices=False)
    explained = singular ** 2 / (singular ** 2).sum()
    return ({"mean": mean, "scale": scale, "components": axes[:components]},
            [float(x) for x in explained[:components]])


def project(moments: np.ndarray, projection: dict[str, np.ndarray]) -> np.ndarray:
    return ((moments - projection["mean"]) / projection["scale"]) @ projection["components"].T


def train_corpus_extractor(out: str | Path = SHIPPED, workers: int = 1, corpus_file: str | Path | None = None,
                           **overrides) -> dict:
    """Make the corpus (or read it from ``corpus_file`` when that exists; written there otherwise), train the
    autoencoder on it, fit the feature projection, write the checkpoint directory; returns its config."""
    import time

    import torch

    from foscu_bench.checkpoint import save_checkpoint
    from foscu_bench.metrics.features import AE_CHANNELS, moment_features, train_autoencoder

    recipe = {**RECIPE, **overrides}
    started = time.perf_counter()
    if corpus_file is not None and Path(corpus_file).is_file():
        images = np.load(corpus_file)["images"]
    else:
        images = make_corpus(recipe["n_cases"], recipe["profile"], tuple(recipe["weightings"]), workers)
        if corpus_file is not None:
            np.savez(corpus_file, images=images)
    made = time.perf_counter()
    network, loss = train_autoencoder(images, recipe["seed"], recipe["iterations"], "cpu",
                                      batch_size=recipe["batch_size"])
    encoder = list(network.encode)
    with torch.no_grad():
        moments = np.concatenate([moment_features(encoder, torch.from_numpy(images[i:i + 32])).numpy()
                                  for i in range(0, len(images), 32)]).astype(np.float64)
    projection, explained = principal_projection(moments, recipe["components"])
    config = {"extractor": CORPUS_EXTRACTOR, "recipe": {**recipe, "weightings": list(recipe["weightings"])},
              "corpus_stream": CORPUS_STREAM, "final_loss": loss, "channels": list(AE_CHANNELS),
              "moment_features": int(moments.shape[1]), "explained_variance": explained,
              "explained_variance_total": float(sum(explained)),
              "corpus_seconds": made - started, "train_seconds": time.perf_counter() - made,
              "torch": torch.__version__}
    save_checkpoint(out, {**{f"network.{k}": v for k, v in network.state_dict().items()},
                          **{f"projection.{k}": v for k, v in projection.items()}}, config)
    return config
