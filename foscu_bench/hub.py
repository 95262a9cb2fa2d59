"""Synthetic datasets out of a run: a Hugging Face dataset folder (parquet + card), Hub publishing, nnU-Net NIfTI.

Storage choice for the Hub: volumes are fixed-shape ``Array3D`` columns (image float32, label uint8), not NIfTI
bytes. Every volume of a run lies on the profile's RAS grid with one spacing, so an array plus a ``spacing``
column loses nothing; arrays round-trip bit for bit, load without nibabel, and avoid ``datasets.Nifti``, which is
experimental and decodes through ``get_fdata()`` to float64 (labels would need casting back). Users who want
NIfTI files get them from ``--format nifti``.

One dataset config per generator (``load_dataset(DIR, "duo-diffusion")``); the default config is Duo-Diffusion
when the run has it. Every example carries its provenance: generator, generator config hash, sampling seed,
liver volume, tumour flag, profile, dataset fingerprint and run id.
"""

from __future__ import annotations

import json
import math
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from foscu_bench.hashing import json_hash
from foscu_bench.errors import ConfigError, DataError, FoscuError
from foscu_bench.faults import kill_point
from foscu_bench.results import load_run, training_pairs
from foscu_bench.store import exclusive_lock, remove_stale_temporaries, staged_directory

HUB_HOST = ("huggingface.co", 443)
SHARD_BYTES = 256 * 1024 * 1024
PREFERRED_DEFAULT = "duo-diffusion"


class PublishError(FoscuError):
    """Publishing to the Hub failed before anything was uploaded."""


def features_for(shape: tuple[int, int, int]):
    from datasets import Array3D, Features, Sequence, Value

    return Features({
        "image": Array3D(shape=shape, dtype="float32"), "label": Array3D(shape=shape, dtype="uint8"),
        "spacing": Sequence(Value("float32"), length=3), "case_id": Value("string"), "generator": Value("string"),
        "generator_config_hash": Value("string"), "seed": Value("int32"), "liver_volume_ml": Value("float32"),
        "has_tumour": Value("bool"), "profile": Value("string"), "dataset_fingerprint": Value("string"),
        "run_id": Value("string")})


def to_numpy(example: dict) -> dict:
    """An example of the exported dataset as arrays: image float32 (1 x X x Y x Z), label uint8 (X x Y x Z)."""
    return {"image": np.asarray(example["image"], dtype=np.float32)[None],
            "label": np.asarray(example["label"], dtype=np.uint8),
            "spacing": tuple(float(s) for s in example["spacing"])}


def _config_hash(config) -> str:
    return json_hash(config, 12)


def _run_synthetic(run, generator: str):
    """(seed, pairs) of every synthetic set of ``generator`` in the run, seeds in order."""
    from foscu_bench.store import load_synthetic

    seeds = range(run.manifest["config"]["seeds"])
    paths = [(s, run.synthetic_path(generator, s)) for s in seeds]
    missing = [str(p) for _, p in paths if not p.is_file()]
    if missing:
        raise DataError(run.directory, f"synthetic sets missing for {generator!r}: {missing[:2]} (re-run the run)")
    return [(s, load_synthetic(p)) for s, p in paths]


def _generators(run, generators: list[str] | None) -> list[str]:
    available = list(run.manifest["config"]["generators"])
    kinds = {name: entry.get("kind") for name, entry in run.manifest.get("generators", {}).items()}
    chosen = generators or [g for g in available if kinds.get(g) != "control"]
    unknown = [g for g in chosen if g not in available]
    if unknown:
        raise ConfigError(f"run {run.run_id} has no generator {unknown}; it has {', '.join(available)}")
    return chosen


NEAR_COPY_ALPHA = 0.01
"""Export refuses a generator whose near-copies exceed chance at this one-sided binomial level."""


def memorisation_checks(run, generators: list[str], allow_near_copies: bool = False) -> dict[str, dict]:
    """The memorisation check of every exported generator, from the run's fidelity.json (largest level).

    Refuses (``ConfigError``) a generator with more near-copies of training volumes than chance explains
    (``p_value`` < ``NEAR_COPY_ALPHA``), or one never checked, unless ``allow_near_copies``; the result goes
    into the dataset card either way.
    """
    checks, problems = {}, []
    for generator in generators:
        check = run.fidelity.get("generators", {}).get(generator, {}).get("memorisation")
        checks[generator] = check or {}
        if check is None:
            problems.append(f"{generator}: no memorisation check in {run.layout.fidelity} (a run made before "
                            f"fidelity schema 4; re-run its command to compute it)")
        elif check["p_value"] < NEAR_COPY_ALPHA:
            problems.append(f"{generator}: {check['near_copies']} of {check['n_synthetic']} checked volumes are "
                            f"closer to a training volume than any held-out real volume is (expected by chance "
                            f"{check['expected_fraction_by_chance'] * check['n_synthetic']:.1f}, p = "
                            f"{check['p_value']:.2g}); closest: {check['closest'][0]['nearest_train_case']}")
    if problems and not allow_near_copies:
        raise ConfigError("export refused, the synthetic set may publish training data:\n  " + "\n  ".join(problems)
                          + "\n(pass --allow-near-copies to export anyway; the dataset card records the check)")
    return checks


def _examples(run, generator: str):
    meta = run.manifest
    config_hash = _config_hash(meta["generators"][generator].get("config"))
    for seed, pairs in _run_synthetic(run, generator):
        for pair in pairs:
            yield {"image": pair.image[0], "label": pair.label, "spacing": list(pair.spacing),
                   "case_id": pair.case_id, "generator": generator, "generator_config_hash": config_hash,
                   "seed": seed, "liver_volume_ml": pair.liver_volume_ml, "has_tumour": pair.has_tumour,
                   "profile": meta["profile"]["name"], "dataset_fingerprint": meta["dataset"]["fingerprint"],
                   "run_id": run.run_id}


@contextmanager
def _export_folder(target: Path) -> Iterator[Path]:
    """A staging folder that replaces ``target`` on success; one exporter per target at a time (a lock beside
    it), which also makes it safe to delete what a killed export left (its ``.tmp-*`` staging folders)."""
    with exclusive_lock(target.parent / f".{target.name}.lock", what=f"export folder {target}"):
        remove_stale_temporaries(target.parent, target.name)
        with staged_directory(target) as staging:
            yield staging


def export_hf(run_dir: str | Path, out: str | Path, generators: list[str] | None = None,
              allow_near_copies: bool = False) -> Path:
    """Write the Hub-ready folder ``out`` (data/<generator>/train-*.parquet + README.md card), atomically, after the
    memorisation check (``memorisation_checks``)."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    run = load_run(run_dir)
    chosen = _generators(run, generators)
    checks = memorisation_checks(run, chosen, allow_near_copies)
    shape = tuple(run.manifest["profile"]["shape"])
    out = Path(out)
    with _export_folder(out) as staging:
        sizes = {}
        for generator in chosen:
            rows = list(_examples(run, generator))
            dataset = Dataset.from_list(rows, features=features_for(shape))
            n_bytes = sum(r["image"].nbytes + r["label"].nbytes for r in rows)
            n_shards = max(1, math.ceil(n_bytes / SHARD_BYTES))
            for index in range(n_shards):
                path = staging / "data" / generator / f"train-{index:05d}-of-{n_shards:05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                dataset.shard(n_shards, index, contiguous=True).to_parquet(str(path))
                kill_point("export.shard")  # crash-safety tests: killed with the export half-written (staged)
            sizes[generator] = {"num_examples": len(rows), "num_bytes": n_bytes,
                                "n_with_tumour": sum(r["has_tumour"] for r in rows),
                                "liver_ml": [r["liver_volume_ml"] for r in rows]}
        (staging / "README.md").write_text(dataset_card(run, chosen, sizes, checks))
    return out


def _memorisation_line(generator: str, check: dict) -> str:
    if not check:
        return f"| {generator} | not checked | - | - | - |"
    return (f"| {generator} | {check['near_copies']} / {check['n_synthetic']} | "
            f"{check['expected_fraction_by_chance'] * check['n_synthetic']:.1f} | {check['p_value']:.2g} | "
            f"{check['distance_ratio']:.2f} |")


def dataset_card(run, generators: list[str], sizes: dict, checks: dict | None = None) -> str:
    """The Hub dataset card (``huggingface_hub.DatasetCard``): YAML metadata with one config per generator, and a
    human section (method, delta Dice, fidelity, intended use and limits). Features come from the parquet schema."""
    from huggingface_hub import DatasetCard, DatasetCardData

    manifest = run.manifest
    default = PREFERRED_DEFAULT if PREFERRED_DEFAULT in generators else generators[0]
    real_data = manifest["dataset"]["source"] if isinstance(manifest["dataset"].get("source"), str) else \
        manifest["dataset"].get("name")
    phantom = str(manifest["config"]["dataset"]).startswith("phantom")
    card_data = DatasetCardData(
        license="apache-2.0" if phantom else "other",
        task_categories=["image-segmentation"],
        tags=["medical", "mri", "liver", "3d", "synthetic", "segmentation", "foscu-bench"],
        pretty_name="foscu-bench synthetic abdominal MRI with liver labels",
        size_categories=["n<1K"] if sum(s["num_examples"] for s in sizes.values()) < 1000 else ["1K<n<10K"],
        configs=[{"config_name": g, "data_files": [{"split": "train", "path": f"data/{g}/train-*.parquet"}],
                  **({"default": True} if g == default else {})} for g in generators],
        dataset_info=[{"config_name": g, "splits": [{"name": "train", "num_bytes": sizes[g]["num_bytes"],
                                                     "num_examples": sizes[g]["num_examples"]}]} for g in generators],
    )
    stats = json.loads(run.layout.stats.read_text()) if run.layout.stats.is_file() else {}
    fidelity = run.fidelity
    lines = []
    for g in generators:
        entry = stats.get("generators", {}).get(g, {})
        fid = fidelity.get("generators", {}).get(g, {})
        delta = entry.get("delta_dice_mean")
        lines.append(
            f"| {g} | {sizes[g]['num_examples']} ({sizes[g]['n_with_tumour']} with tumour) | "
            + (f"{100 * delta:+.2f} [{100 * entry['ci_low']:+.2f}, {100 * entry['ci_high']:+.2f}] | "
               f"{entry['p_holm']:.3g} | " if delta is not None else "- | - | ")
            + (f"{fid['fid']:.2f} (floor {fidelity['real_vs_real']['fid']:.2f}) | "
               f"{fid.get('kid', fid.get('kid_mean')):.4f} |" if fid.get("fid") is not None else "- | - |"))
    checks = checks or {}
    memorised = [_memorisation_line(g, checks.get(g, {})) for g in generators]
    profile = manifest["profile"]
    body = f"""
# foscu-bench synthetic liver MRI ({manifest['profile']['name']} profile)

Synthetic 3D abdominal MRI volumes with liver (1) and tumour (2) labels, made by the generators of
[foscu-bench](https://arxiv.org/abs/2312.12407) run `{run.run_id}`. Each generator was fitted on the
**training split only** of `{manifest['dataset']['name']}` (fingerprint `{manifest['dataset']['fingerprint']}`,
{len(manifest['split']['train'])} training cases) and sampled with seeds 0..{manifest['config']['seeds'] - 1}.

## Contents

| config | volumes | Δ liver Dice vs real-only (pts, 95% CI) | p (Holm) | FID ({fidelity.get('extractor', {}).get('name', '-')}) | KID |
|---|---|---|---|---|---|
{chr(10).join(lines)}

Δ Dice: U-Nets trained on real + synthetic against real only, {manifest['config']['seeds']} seeds, evaluated on
{len(manifest['split']['test'])} held-out real cases (crossed random-effects test over cases and trainings,
Holm-corrected), at the run's largest real-data level. FID/KID at n = {fidelity.get('n_per_set', '-')} per set
against held-out real volumes (never a training case), beside the real-vs-real floor (held-out vs held-out);
compare configs with each other and with the floor, not with published FIDs (extractor, n and reference differ).

## Memorisation check

Each checked synthetic volume's distance to its nearest training volume (features of the fidelity extractor),
against the smallest distance of a held-out real volume to the training set: below it, a volume is a *near-copy*.
New patients fall below by chance about once in (held-out volumes + 1); p: one-sided binomial test of the count.
Distance ratio: median synthetic / median held-out distance to the training set (1: like new patients).

| config | near-copies / checked | expected by chance | p | distance ratio |
|---|---|---|---|---|
{chr(10).join(memorised)}

- Grid: {' x '.join(map(str, profile['shape']))} voxels, spacing {' x '.join(f'{s:g}' for s in profile['spacing'])} mm,
  RAS orientation, arrays indexed (x, y, z). Image float32 in [0, 1]; label uint8 (0 background, 1 liver, 2 tumour).
- Columns: `image`, `label`, `spacing`, `case_id`, `generator`, `generator_config_hash`, `seed`,
  `liver_volume_ml`, `has_tumour`, `profile`, `dataset_fingerprint`, `run_id`.
- Source data: {"the procedural abdominal-MRI phantom embedded in foscu-bench (no patient data)" if phantom
                 else f"{real_data}; the synthetic data inherit the licence and terms of use of that dataset"}.

## Use

```python
import datasets
from foscu_bench.hub import to_numpy

ds = datasets.load_dataset("OWNER/NAME", "{default}", split="train")  # or a local folder
arrays = to_numpy(ds[0])  # image 1 x X x Y x Z float32, label X x Y x Z uint8, spacing (mm)
```

## Intended use and limits

For research on data augmentation and generative models in 3D liver segmentation.
**Synthetic data, not for clinical use**: volumes can contain anatomically implausible structures, and labels are generated (Duo-Diffusion)
or deformed from training labels (other configs), not drawn by experts. Downstream gains measured on the
{profile['name']} profile do not transfer to other grids, datasets or segmentation models without re-measuring.

## Citation

Han et al., FOSCU: Feasibility of Synthetic MRI Generation via Duo-Diffusion Models for Enhancement of 3D U-Nets
in Hepatic Segmentation. Generated with foscu-bench (git {manifest.get('git', {}).get('commit', 'unknown')}).
"""
    return str(DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}"))


# -- publishing ------------------------------------------------------------------------------------------------
def _check_folder(folder: Path) -> None:
    card = folder / "README.md"
    if not card.is_file() or not card.read_text().startswith("---\n"):
        raise DataError(folder, "not an exported dataset folder (no README.md dataset card); run "
                                "`foscu-bench export RUN_DIR --out DIR --format hf` first")
    if not list(folder.glob("data/*/*.parquet")):
        raise DataError(folder, "no parquet shards under data/")


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PublishError("not authenticated with the Hugging Face Hub: set HF_TOKEN or run "
                           "`huggingface-cli login`, then publish again")
    return token


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def publish(folder: str | Path, repo_id: str, public: bool = False, timeout: float = 5.0) -> str:
    """Upload ``folder`` to the dataset repo ``repo_id`` in one commit (private unless ``public``).

    Checks run before anything is created remotely: the folder, the repo id, offline mode, authentication and
    that the Hub answers. The token is never printed: errors have it replaced by ``***``.
    """
    folder = Path(folder)
    _check_folder(folder)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"--repo-id must be OWNER/NAME, got {repo_id!r}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise PublishError("HF_HUB_OFFLINE is set: cannot publish offline; unset it on a machine with network "
                           "access. Nothing was uploaded")
    token = _token()
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
    except OSError as exc:
        raise PublishError(f"cannot reach {HUB_HOST[0]} ({type(exc).__name__}): no network? Nothing was "
                           f"uploaded") from None
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=not public, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                                   commit_message="Upload foscu-bench synthetic dataset")
    except Exception as exc:  # one clear line; upload_folder is one commit, so nothing partial is visible
        raise PublishError(f"publishing to {repo_id} failed: {_scrub(str(exc), token)[:300]}") from None
    return str(getattr(commit, "commit_url", commit))


# -- nnU-Net raw layout -----------------------------------------------------------------------------------------
def export_nifti(run_dir: str | Path, out: str | Path, generators: list[str] | None = None,
                 with_real: bool = True, dataset_name: str = "Dataset900_FoscuSynthLiver") -> Path:
    """nnU-Net v2 raw dataset: imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz, dataset.json.

    ``with_real`` adds the run's real *training* cases (never validation or test), so nnU-Net can be trained on
    real + synthetic directly and evaluated on the run's held-out cases.
    """
    import nibabel as nib

    run = load_run(run_dir)
    chosen = _generators(run, generators)
    root = Path(out) / dataset_name
    with _export_folder(root) as staging:
        cases = []
        if with_real:
            cases += [("real", p) for p in training_pairs(run)]
        cases += [(g, p) for g in chosen for _, pairs in _run_synthetic(run, g) for p in pairs]
        for index, (origin, pair) in enumerate(cases):
            affine = np.diag([*pair.spacing, 1.0])  # RAS+ voxel axes, origin at the first voxel
            name = f"foscu_{index:05d}"
            for sub, array in (("imagesTr", pair.image[0].astype(np.float32)), ("labelsTr", pair.label)):
                path = staging / sub / (f"{name}_0000.nii.gz" if sub == "imagesTr" else f"{name}.nii.gz")
                path.parent.mkdir(parents=True, exist_ok=True)
                image = nib.Nifti1Image(array, affine)
                image.header.set_xyzt_units("mm")
                nib.save(image, str(path))
        (staging / "dataset.json").write_text(json.dumps({
            "channel_names": {"0": "MRI"}, "labels": {"background": 0, "liver": 1, "tumour": 2},
            "numTraining": len(cases), "file_ending": ".nii.gz",
            "description": f"foscu-bench run {run.run_id}: {'real training cases + ' if with_real else ''}"
                           f"synthetic cases of {', '.join(chosen)}",
            "foscu_bench": {"run_id": run.run_id, "cases": {f"foscu_{i:05d}": origin for i, (origin, _) in
                                                            enumerate(cases)}}}, indent=2) + "\n")
    return root
