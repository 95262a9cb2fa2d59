"""A prepared run: dataset opened, split made, identity and directory fixed, data loaded on demand.

The context holds state only; what happens to it lives in the other runner modules (``plan``, ``fit_cache``,
``executors``, ``assemble``, ``manifest``, ``serial``), each usable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from foscu_bench.generator import GeneratorMeta, get_meta
from foscu_bench.pair import Pair
from foscu_bench.profiles import Profile, get_profile
from foscu_bench.reporting import NullReporter, Reporter
from foscu_bench.runner.config import RunConfig, run_id
from foscu_bench.store import RunLayout, load_synthetic


@dataclass
class RunContext:
    config: RunConfig
    profile: Profile
    dataset: object
    split: object
    layout: RunLayout
    device: object
    n_synthetic: int
    metas: dict[str, GeneratorMeta]
    fingerprint: str
    reporter: Reporter = field(default_factory=NullReporter)
    memo: dict = field(default_factory=dict)
    """Per-process memo (loaded pairs, the feature extractor, hash checks); never persisted."""

    @property
    def run_id(self) -> str:
        return self.layout.run_id

    @property
    def directory(self) -> Path:
        return self.layout.directory

    # -- data ------------------------------------------------------------------------------------------
    def pairs(self, which: str) -> list[Pair]:
        """``train``, ``test`` or ``all`` real pairs, loaded once per process."""
        key = ("pairs", which)
        if key not in self.memo:
            ids = {"train": self.split.train, "test": self.split.test, "all": self.dataset.case_ids}[which]
            with self.reporter.task(f"loading {which} cases", len(ids)) as update:
                done = []
                self.memo[key] = self.dataset.pairs(ids, progress=lambda c: (done.append(c), update(len(done))))
        return self.memo[key]

    def training_set(self):
        from foscu_bench.data.splits import TrainingSet

        return TrainingSet(self.pairs("train"), self.split)

    def synthetic_pairs(self, generator: str, seed: int) -> list[Pair]:
        return load_synthetic(self.layout.synthetic(generator, seed), self.profile)

    # -- conveniences for the CLI ---------------------------------------------------------------------------
    def plan(self):
        from foscu_bench.runner.plan import plan

        return plan(self)

    def execute(self, argv: list[str] | None = None) -> dict:
        from foscu_bench.runner.serial import execute

        return execute(self, argv)


def prepare(config: RunConfig, out: str | Path = "runs", reporter: Reporter | None = None) -> RunContext:
    """Open the dataset, make the split and fix the run's identity; cheap, nothing is trained."""
    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.data.splits import split_dataset
    from foscu_bench.segmentation import resolve_device

    profile = get_profile(config.profile)
    metas = {name: get_meta(name) for name in config.generators}
    device = resolve_device(config.device)
    dataset = open_dataset(config.dataset, label_map=config.label_map, profile=profile)
    split = split_dataset(dataset, config.split_seed)
    fingerprint = dataset.fingerprint()
    directory = Path(out) / run_id(config, dataset.name, profile.name, fingerprint, device.type)
    return RunContext(config=config, profile=profile, dataset=dataset, split=split, layout=RunLayout(directory),
                      device=device, n_synthetic=config.synthetic or len(split.train), metas=metas,
                      fingerprint=fingerprint, reporter=reporter or NullReporter())
