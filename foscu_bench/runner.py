"""The benchmark: split -> fit -> sample -> one U-Net per (arm, seed) -> evaluate -> fidelity -> statistics.

A run is a list of steps. Each step writes one result file under the run directory, atomically, and a step
whose file exists (with the current step version) is done: re-running the same command resumes after a crash,
Ctrl-C or kill -9 at any point. Every step is seeded, so a resumed run gives the same numbers as an
uninterrupted one. ``metrics.csv``, ``stats.json`` and ``fidelity.json`` are assembled from the step files at
the end; per-case rows are the only truth (DESIGN.md).

Seeds: seed ``s`` drives the U-Net initialisation, data order and augmentation of every arm (so arms are paired
by seed) and the generator's sampling seed, so sampling variance is part of the seed-to-seed spread
(Bouthillier et al., MLSys 2021). Each generator is fitted once per run (``fit_seed``) and the fit is cached
across runs by (dataset fingerprint, training cases, profile, generator config, seed, device kind).

Concurrency: the run directory is locked (``flock``) while a process writes it; a fit cache entry is locked
while it is being fitted, so two runs needing the same fit wait for one another instead of fitting twice.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
import numpy as np

from foscu_bench import __version__
from foscu_bench.errors import ConfigError
from foscu_bench.generator import GeneratorMeta, create, get_meta, load, parameter_count, sample_validated
from foscu_bench.pair import Pair
from foscu_bench.profiles import Profile, get_profile
from foscu_bench.reporting import NullReporter, Reporter
from foscu_bench.results import compute_stats, json_safe, metrics_csv, metrics_frame, read_metrics
from foscu_bench.store import atomic_save_npz, atomic_write_json, atomic_write_text, exclusive_lock, file_sha256

RUN_SCHEMA_VERSION = 1
STEP_VERSIONS = {"fit": 1, "sample": 1, "unet": 1, "fidelity": 2}
"""Bump one when its step's computation changes: older step files are then redone on resume."""
FIT_CACHE_VERSION = 1
SEGMENTATION_SECONDS_2CPU = {"tiny": 6.0, "quick": 21.0}
"""Measured wall time of one U-Net training + test evaluation on 2 CPU cores (for --plan estimates)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that changes a run's numbers (and so its identity), as the user gave it."""

    generators: tuple[str, ...]
    seeds: int = 5
    dataset: str = "phantom"
    label_map: str | None = None
    profile: str = "quick"
    device: str = "auto"
    synthetic: int | None = None
    """Synthetic pairs per seed; None: as many as there are real training cases."""
    synthetic_only: bool = False
    """Also train a synthetic-only arm per generator."""
    split_seed: int = 0
    fit_seed: int = 0
    extractor: str = "foscu-ae3d"
    """Feature extractor of the fidelity metrics (not part of the run's identity: changing it redoes fidelity only)."""
    extractor_weights: str | None = None

    def __post_init__(self) -> None:
        if not self.generators:
            raise ConfigError("give at least one --generator")
        if len(set(self.generators)) != len(self.generators):
            raise ConfigError(f"a generator is named twice: {', '.join(self.generators)}")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if self.synthetic is not None and self.synthetic < 1:
            raise ConfigError(f"--synthetic must be >= 1, got {self.synthetic}")


@dataclass(frozen=True)
class Step:
    kind: str
    generator: str | None = None
    seed: int | None = None
    arm: str | None = None

    @property
    def name(self) -> str:
        parts = [self.kind, self.generator or "real-only"]
        if self.arm == "synthetic":
            parts.append("synthetic-only")
        if self.seed is not None:
            parts.append(f"seed-{self.seed}")
        return "/".join(parts)

    @property
    def filename(self) -> str:
        return self.name.replace("/", "--") + ".json"


@dataclass
class PlannedStep:
    step: Step
    done: bool
    estimate_seconds: float | None


@dataclass
class Run:
    """A prepared run: dataset opened, split made, identity and directory fixed; nothing trained yet."""

    config: RunConfig
    profile: Profile
    dataset: object
    split: object
    directory: Path
    device: object
    n_synthetic: int
    metas: dict[str, GeneratorMeta]
    fingerprint: str
    reporter: Reporter = field(default_factory=NullReporter)
    _pairs: dict[str, list[Pair]] = field(default_factory=dict)
    _fit_entries: dict[str, Path] = field(default_factory=dict)
    _cache: dict[str, object] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.directory.name

    def path(self, *parts: str) -> Path:
        return self.directory.joinpath(*parts)

    # -- steps -----------------------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        steps = [Step("unet", None, s, "real") for s in range(self.config.seeds)]
        for name in self.config.generators:
            steps.append(Step("fit", name))
            steps += [Step("sample", name, s) for s in range(self.config.seeds)]
            steps += [Step("unet", name, s, "real+synthetic") for s in range(self.config.seeds)]
            if self.config.synthetic_only:
                steps += [Step("unet", name, s, "synthetic") for s in range(self.config.seeds)]
            steps.append(Step("fidelity", name))
        return steps

    def step_record(self, step: Step) -> dict | None:
        path = self.path("steps", step.filename)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if record.get("step_version") != STEP_VERSIONS[step.kind]:
            return None
        if step.kind == "fidelity" and record.get("extractor", {}).get("name") != self.config.extractor:
            return None
        if step.kind == "sample" and not self._synthetic_intact(step, record):
            return None  # the synthetic set was deleted or changed: sample again
        if step.kind == "unet" and step.generator and "synthetic_sha256" in record:
            sample = self.step_record(Step("sample", step.generator, step.seed))
            if sample is None or sample["sha256"] != record["synthetic_sha256"]:
                return None  # trained on a synthetic set that no longer exists
        return record

    def _synthetic_intact(self, step: Step, record: dict) -> bool:
        path = self.path("synthetic", step.generator, f"seed-{step.seed}.npz")
        key = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
        if key not in self._cache:
            self._cache[key] = path.is_file() and file_sha256(path) == record.get("sha256")
        return bool(self._cache[key])

    def plan(self) -> list[PlannedStep]:
        return [PlannedStep(s, self.step_record(s) is not None, self._estimate(s)) for s in self.steps()]

    def _estimate(self, step: Step) -> float | None:
        profile = self.profile.name
        if step.kind == "unet":
            return SEGMENTATION_SECONDS_2CPU.get(profile)
        if step.kind == "fidelity":
            return 5.0
        timing = self.metas[step.generator].extra.get("seconds_2cpu", {}).get(profile, {})
        if step.kind == "fit":
            return 0.0 if self._fit_entry(step.generator).joinpath("fit.json").is_file() else timing.get("fit")
        per_volume = timing.get("sample_per_volume")
        return None if per_volume is None else per_volume * self.n_synthetic

    # -- data ------------------------------------------------------------------------------------------
    def pairs(self, which: str) -> list[Pair]:
        if which not in self._pairs:
            ids = {"train": self.split.train, "test": self.split.test, "all": self.dataset.case_ids}[which]
            with self.reporter.task(f"loading {which} cases", len(ids)) as update:
                done = []
                self._pairs[which] = self.dataset.pairs(ids, progress=lambda c: (done.append(c), update(len(done))))
        return self._pairs[which]

    def training_set(self):
        from foscu_bench.data.splits import TrainingSet

        return TrainingSet(self.pairs("train"), self.split)

    def synthetic_pairs(self, generator: str, seed: int) -> list[Pair]:
        return load_synthetic(self.path("synthetic", generator, f"seed-{seed}.npz"), self.profile)

    # -- fit cache ---------------------------------------------------------------------------------------
    def _generator_config(self, name: str) -> dict:
        instance = create(name)
        config = getattr(instance, "_config", None)
        return config() if callable(config) else {}

    def _fit_entry(self, name: str) -> Path:
        from foscu_bench.data.cache import cache_root

        if name in self._fit_entries:
            return self._fit_entries[name]
        key = _hash({"generator": name, "target": self.metas[name].target, "config": self._generator_config(name),
                     "profile": self.profile.name, "dataset": self.fingerprint, "train": list(self.split.train),
                     "seed": self.config.fit_seed, "device": self.device.type, "foscu_bench": __version__,
                     "cache_version": FIT_CACHE_VERSION})
        self._fit_entries[name] = cache_root() / "generators" / name / key
        return self._fit_entries[name]

    def fitted_generator(self, name: str):
        """Fit ``name`` on the training split (or take the cached fit) and load it from its checkpoint."""
        entry = self._fit_entry(name)
        with exclusive_lock(entry.parent / f"{entry.name}.lock", wait=True):
            if not (entry / "fit.json").is_file():
                self._fit_into(name, entry)
        return load(name, entry / "checkpoint", self.device)

    def _fit_into(self, name: str, entry: Path) -> None:
        kwargs = {}
        cls = self.metas[name].load_class()
        if "checkpoint_dir" in inspect.signature(cls.__init__).parameters:
            kwargs["checkpoint_dir"] = str(entry / "work")  # stage checkpoints: a killed fit resumes mid-stage
        generator = cls(**kwargs)
        train = self.training_set()
        fit_kwargs = {}
        with self.reporter.task(f"fit {name}", None) as update:
            if "progress" in inspect.signature(generator.fit).parameters:
                fit_kwargs["progress"] = lambda stage, it, total, loss: update(it, total, f"{stage} loss {loss:.4f}")
            started = time.perf_counter()
            generator.fit(train, self.profile, self.config.fit_seed, self.device, **fit_kwargs)
            seconds = time.perf_counter() - started
        shutil.rmtree(entry / "checkpoint", ignore_errors=True)
        generator.save(entry / "checkpoint")
        curves = getattr(generator, "loss_curves", lambda: {})()
        n_parameters = parameter_count(name, self.profile)
        atomic_write_json(entry / "fit.json", {
            "generator": name, "fit_seconds": seconds, "fit_seed": self.config.fit_seed, "device": str(self.device),
            "n_parameters": n_parameters, "config": self._generator_config(name),
            "train_case_ids": list(self.split.train), "loss_curves": {k: _downsample(v) for k, v in curves.items()}})
        shutil.rmtree(entry / "work", ignore_errors=True)

    # -- execution ---------------------------------------------------------------------------------------
    def execute(self, argv: list[str] | None = None) -> dict:
        """Run every pending step, then assemble metrics.csv, stats.json, fidelity.json and the manifest."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path(".lock"), what=f"run directory {self.directory}"):
            started_at, started = _now(), time.perf_counter()
            manifest = self._manifest(status="running")
            invocations = manifest.setdefault("invocations", [])
            invocations.append({"started": started_at, "argv": argv or sys.argv})
            self._write_manifest(manifest)
            pending = [p.step for p in self.plan() if not p.done]
            self.reporter.begin(len(pending))
            generators: dict[str, object] = {}
            for step in pending:
                record = self._run_step(step, generators)
                record["step_version"] = STEP_VERSIONS[step.kind]
                atomic_write_json(self.path("steps", step.filename), record)
                manifest["steps"][step.name] = {"status": "done", "seconds": record.get("seconds")}
                self._write_manifest(manifest)
                self.reporter.step_done()
            self._assemble()
            manifest = self._manifest(status="complete", previous=manifest)
            from foscu_bench.provenance import peak_memory_mb

            manifest["invocations"][-1].update(finished=_now(), wall_seconds=time.perf_counter() - started,
                                               steps_run=len(pending), peak_memory_mb=peak_memory_mb())
            self._write_manifest(manifest)
        return manifest

    def _run_step(self, step: Step, generators: dict) -> dict:
        if step.kind in ("fit", "sample") and step.generator not in generators:
            generators[step.generator] = self.fitted_generator(step.generator)
        if step.kind == "fit":
            fit = json.loads((self._fit_entry(step.generator) / "fit.json").read_text())
            return {"fit": {k: v for k, v in fit.items() if k != "train_case_ids"},
                    "cache_entry": str(self._fit_entry(step.generator)), "seconds": fit["fit_seconds"]}
        if step.kind == "sample":
            return self._sample(step, generators[step.generator])
        if step.kind == "unet":
            return self._unet(step)
        return self._fidelity(step)

    def _sample(self, step: Step, generator) -> dict:
        with self.reporter.task(f"sample {step.generator} seed {step.seed}", self.n_synthetic) as update:
            started = time.perf_counter()
            pairs = sample_validated(generator, self.n_synthetic, step.seed, self.profile.shape, progress=update)
            seconds = time.perf_counter() - started
        path = self.path("synthetic", step.generator, f"seed-{step.seed}.npz")
        save_synthetic(path, pairs)
        return {"seconds": seconds, "seconds_per_volume": seconds / len(pairs), "n": len(pairs), "seed": step.seed,
                "sha256": file_sha256(path), "liver_ml": [p.liver_volume_ml for p in pairs],
                "n_with_tumour": sum(p.has_tumour for p in pairs)}

    def _unet(self, step: Step) -> dict:
        from foscu_bench.segmentation import evaluate, train_segmentation

        settings = self.profile.segmentation
        synthetic = self.synthetic_pairs(step.generator, step.seed) if step.generator else []
        label = f"U-Net {step.generator or 'real-only'}{' (synthetic only)' if step.arm == 'synthetic' else ''} " \
                f"seed {step.seed}"
        with self.reporter.task(label, settings.iterations) as update:
            result = train_segmentation(self.pairs("train") if step.arm != "synthetic" else [], synthetic, step.arm,
                                        settings, seed=step.seed, device=str(self.device),
                                        progress=lambda it, loss: update(it, info=f"loss {loss:.3f}"))
            started = time.perf_counter()
            rows = evaluate(result.model, self.pairs("test"), settings)
            eval_seconds = time.perf_counter() - started
        generator = step.generator or "real-only"
        rows = [{"generator": generator, "arm": step.arm, "seed": step.seed, **row} for row in rows]
        sample = self.step_record(Step("sample", step.generator, step.seed)) if step.generator else None
        return {"rows": rows, "synthetic_sha256": sample["sha256"] if sample else None, "losses": _downsample(result.losses), "train_seconds": result.seconds,
                "eval_seconds": eval_seconds, "seconds": result.seconds + eval_seconds,
                "iterations": result.iterations, "n_real": result.n_real, "n_synthetic": result.n_synthetic,
                "device": result.device}

    def _fidelity(self, step: Step) -> dict:
        """FID/KID/MMD/MS-SSIM of the generator's synthetic volumes against all real volumes, with the floor."""
        from foscu_bench.metrics.fidelity import fidelity_report

        started = time.perf_counter()
        real = np.stack([p.image for p in self.pairs("all")])
        needed = len(real) // 2
        synthetic: list[np.ndarray] = []
        for seed in range(self.config.seeds):  # seeds in order until the matched n is reached
            synthetic += [p.image for p in self.synthetic_pairs(step.generator, seed)]
            if len(synthetic) >= needed:
                break
        extractor = self.extractor()
        with self.reporter.task(f"fidelity {step.generator} ({extractor.name})", None):
            report = fidelity_report(np.stack(synthetic), real, extractor, seed=self.config.split_seed)
        return {"generator": step.generator, "extractor": {"name": extractor.name, **extractor.provenance},
                "report": report, "seconds": time.perf_counter() - started}

    def extractor(self):
        from foscu_bench.metrics.features import get_extractor

        if "extractor" not in self._cache:
            train = np.stack([p.image for p in self.pairs("train")])
            self._cache["extractor"] = get_extractor(
                self.config.extractor, weights=self.config.extractor_weights, train_images=train,
                cache_key=_hash({"dataset": self.fingerprint, "train": list(self.split.train)}),
                seed=self.config.fit_seed, device=str(self.device))
        return self._cache["extractor"]

    def _assemble(self) -> None:
        rows = [row for s in self.steps() if s.kind == "unet" for row in self.step_record(s)["rows"]]
        atomic_write_text(self.path("metrics.csv"), metrics_csv(metrics_frame(rows)))
        # statistics from the stored rows, exactly as the leaderboard recomputes them
        atomic_write_json(self.path("stats.json"), compute_stats(read_metrics(self.path("metrics.csv"))))
        atomic_write_json(self.path("fidelity.json"), self._fidelity_document())

    def _fidelity_document(self) -> dict:
        """fidelity.json: per generator (DESIGN schema keys first) and the real-vs-real floor, one extractor."""
        records = {s.generator: self.step_record(s) for s in self.steps() if s.kind == "fidelity"}
        first = next(iter(records.values()))
        generators = {}
        for name, record in records.items():
            report = record["report"]
            scores = report["generator"]
            generators[name] = {key: scores[key] for key in ("fid", "fid_ci_low", "fid_ci_high", "kid_mean", "kid_std",
                                                             "mmd", "ms_ssim", "ms_ssim_synthetic_real",
                                                             "n_real", "n_synthetic")}
            generators[name].update(extractor=record["extractor"]["name"], warning=report["warning"],
                                    per_view=scores["per_view"])
        floor = first["report"]["real_vs_real"]
        return json_safe({"schema_version": 2, "extractor": first["extractor"],
                          "real_vs_real": {k: floor[k] for k in ("fid", "fid_ci_low", "fid_ci_high", "kid_mean",
                                                                 "kid_std", "mmd", "ms_ssim", "n_real", "n_synthetic")},
                          "n_per_set": first["report"]["n_per_set"], "feature_dim": first["report"]["feature_dim"],
                          "ms_ssim_settings": first["report"]["ms_ssim_settings"],
                          "protocol": "real volumes split into seeded halves A/B; B is the reference; floor = A vs B; "
                                      "each generator's first |A| volumes (seeds in order) vs B",
                          "generators": generators})

    # -- manifest ----------------------------------------------------------------------------------------
    def _manifest(self, status: str, previous: dict | None = None) -> dict:
        from foscu_bench.provenance import git_revision, hardware, versions

        path = self.path("manifest.json")
        previous = previous or (json.loads(path.read_text()) if path.is_file() else {})
        steps = {}
        timings: dict[str, float] = {}
        for s in self.steps():
            record = self.step_record(s)
            steps[s.name] = {"status": "done" if record else "pending",
                             "seconds": record.get("seconds") if record else None}
            if record and record.get("seconds") is not None:
                timings[s.kind] = timings.get(s.kind, 0.0) + float(record["seconds"])
        generators = {}
        for name, meta in self.metas.items():
            fit = self.step_record(Step("fit", name))
            samples = [self.step_record(Step("sample", name, s)) for s in range(self.config.seeds)]
            samples = [r for r in samples if r]
            generators[name] = {
                "kind": meta.kind, "target": meta.target, "citation": meta.citation, "reference": meta.reference,
                "conditioning": meta.conditioning,
                "config": fit["fit"]["config"] if fit else None,
                "n_parameters": fit["fit"]["n_parameters"] if fit else None,
                "fit_seconds": fit["fit"]["fit_seconds"] if fit else None,
                "fit_cache_key": Path(fit["cache_entry"]).name if fit else None,
                "sample_seconds_per_volume": (float(np.mean([r["seconds_per_volume"] for r in samples]))
                                              if samples else None)}
        settings = self.profile.segmentation
        manifest = {
            "schema_version": RUN_SCHEMA_VERSION, "run_id": self.run_id, "status": status,
            "created": previous.get("created", _now()),
            "config": asdict(self.config) | {"generators": list(self.config.generators),
                                             "n_synthetic": self.n_synthetic, "device_resolved": str(self.device)},
            "profile": self.profile.to_dict(),
            "dataset": self.dataset.describe() | {"fingerprint": self.fingerprint},
            "split": self.split.to_dict(),
            "segmentation": {"metric_implementation": "monai", "nsd_tolerance_mm": settings.nsd_tolerance_mm,
                             "empty_mask_policy": "both empty: dice 1, nsd 1, hd95 0; one empty: dice 0, nsd 0, "
                                                  "hd95 = field-of-view diagonal; tumour metrics NaN without a "
                                                  "reference tumour",
                             "seed_controls": "U-Net init, data order, augmentation, generator sampling seed"},
            "generators": generators,
            "versions": previous.get("versions", versions()),
            "git": previous.get("git", git_revision()),
            "hardware": previous.get("hardware", hardware()),
            "timings_seconds": timings,
            "steps": steps,
            "invocations": previous.get("invocations", []),
        }
        return manifest

    def _write_manifest(self, manifest: dict) -> None:
        manifest["updated"] = _now()
        atomic_write_json(self.path("manifest.json"), manifest)


# -- preparing a run ---------------------------------------------------------------------------------------
def prepare(config: RunConfig, out: str | Path = "runs", reporter: Reporter | None = None) -> Run:
    """Open the dataset, make the split and fix the run's identity; cheap, nothing is trained."""
    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.data.splits import split_dataset
    from foscu_bench.segmentation import resolve_device

    profile = get_profile(config.profile)
    metas = {name: get_meta(name) for name in config.generators}
    device = resolve_device(config.device)
    dataset = open_dataset(config.dataset, label_map=config.label_map, profile=profile)
    split = split_dataset(dataset, config.split_seed)
    n_synthetic = config.synthetic or len(split.train)
    fingerprint = dataset.fingerprint()
    identity = {"config": {k: v for k, v in asdict(config).items() if k not in ("extractor", "extractor_weights")}
                | {"device": device.type, "generators": sorted(config.generators)},
                "dataset": fingerprint, "schema": RUN_SCHEMA_VERSION}
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset.name).strip("-").lower() or "dataset"
    names = "+".join(sorted(config.generators))
    run_id = f"{slug}-{profile.name}-{names if len(names) <= 48 else f'{len(config.generators)}-generators'}-" \
             f"{config.seeds}seeds-{_hash(identity)[:8]}"
    return Run(config=config, profile=profile, dataset=dataset, split=split, directory=Path(out) / run_id,
               device=device, n_synthetic=n_synthetic, metas=metas, fingerprint=fingerprint,
               reporter=reporter or NullReporter())


# -- synthetic sets on disk ------------------------------------------------------------------------------------
def save_synthetic(path: Path, pairs: list[Pair]) -> Path:
    return atomic_save_npz(path, images=np.stack([p.image for p in pairs]), labels=np.stack([p.label for p in pairs]),
                           case_ids=np.array([p.case_id for p in pairs]), spacing=np.array(pairs[0].spacing),
                           meta=np.array(json.dumps([p.meta for p in pairs], sort_keys=True, default=str)))


def load_synthetic(path: Path, profile: Profile | None = None) -> list[Pair]:
    from foscu_bench.errors import DataError
    from foscu_bench.pair import validate_pair

    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
            case_ids, spacing = [str(c) for c in data["case_ids"]], tuple(float(s) for s in data["spacing"])
            metas = json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(path, f"not a readable synthetic set ({exc}); delete it and re-run to resample") from None
    pairs = [Pair(image=img, label=lab, spacing=spacing, case_id=c, patient_id=c, meta=m)
             for img, lab, c, m in zip(images, labels, case_ids, metas)]
    for pair in pairs:
        validate_pair(pair, profile.shape if profile else None)
    return pairs


# -- helpers -------------------------------------------------------------------------------------------------
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _downsample(values: list[float], points: int = 1000) -> list[float]:
    """At most ``points`` values: means over equal consecutive windows (keeps a loss curve's shape)."""
    values = [float(v) for v in values]
    if len(values) <= points:
        return values
    return [float(chunk.mean()) for chunk in np.array_split(np.asarray(values), points)]
