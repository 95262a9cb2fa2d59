"""A prepared run: dataset opened, split made, identity and directory fixed, data loaded on demand.

The context holds state only; what happens to it lives in the other runner modules (``plan``, ``fit_cache``,
``executors``, ``assemble``, ``manifest``, ``serial``), each usable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    generators: tuple[str, ...] = ()
    """What the run benchmarks: the asked generators, then the controls (``controls``)."""
    memo: dict = field(default_factory=dict)
    """Per-process memo (loaded pairs, the feature extractor, hash checks); never persisted."""

    @property
    def run_id(self) -> str:
        return self.layout.run_id

    @property
    def directory(self) -> Path:
        return self.layout.directory

    # -- the real-data axis --------------------------------------------------------------------------------
    def levels(self) -> list[tuple[int | None, int]]:
        """(n_real, draw) of every real-data level; (None, 0) is the whole training split."""
        out = []
        for n in self.config.real_cases:
            if n is None or n >= len(self.split.train):
                out.append((None, 0))
            else:
                out += [(n, draw) for draw in range(self.config.real_draws)]
        return list(dict.fromkeys(out))

    def train_ids(self, n_real: int | None = None, draw: int = 0) -> list[str]:
        """The training cases of a level: the first ``n_real`` of a seeded permutation of the training split, so
        every smaller subset of a draw lies inside the larger ones (nested)."""
        ids = list(self.split.train)
        if n_real is None:
            return ids
        order = np.random.default_rng(np.random.SeedSequence([self.config.split_seed, SUBSET_STREAM, draw]))
        return [ids[i] for i in order.permutation(len(ids))[:n_real]]

    def meta(self, generator: str) -> GeneratorMeta:
        """A generator of the run, or one whose fit a generator of the run takes (``fit_source``)."""
        return self.metas.get(generator) or get_meta(generator)

    def fit_source(self, generator: str) -> str:
        """The generator whose fit ``generator`` takes (``GeneratorMeta.extra["fit_from"]``: an ablation that samples
        differently from the same fitted networks), else ``generator`` itself."""
        return self.meta(generator).extra.get("fit_from", generator)

    def fit_parts(self, generator: str | None) -> tuple[str, ...]:
        """The parts of ``generator``'s fit that train as steps of their own (``Generator.fit_parts``). A generator
        that takes another's fit has that one's parts, trained into that one's cache entry; none where that
        generator is in the run too (its own steps train them, and the taking fit waits for its fit)."""
        if not generator or self.fit_source_in_run(generator):
            return ()
        return tuple(self.meta(self.fit_source(generator)).load_class().fit_parts)

    def fit_source_in_run(self, generator: str) -> str | None:
        """The generator of this run whose fit ``generator`` takes (its steps train that fit), else None."""
        source = self.fit_source(generator)
        return source if source != generator and source in self.generators else None

    def n_train(self, n_real: int | None) -> int:
        return len(self.split.train) if n_real is None else n_real

    def held_out_ids(self) -> list[str]:
        """The fidelity pool: real volumes no generator, feature extractor or U-Net ever trained on.

        Validation and test cases first; where they are fewer than twice the fidelity sample size (the floor needs
        two disjoint held-out sets of n) and the source makes patients (the phantom), fresh reference patients
        from their own stream fill the pool. Raises ``LeakageError`` if any training case got in.
        """
        from foscu_bench.data.splits import LeakageError
        from foscu_bench.metrics.fidelity import fidelity_volumes

        if "held_out_ids" not in self.memo:
            target = 2 * fidelity_volumes(self.profile.name)
            pool = sorted(self.split.val) + sorted(self.split.test)
            pool = pool[:target] + self.dataset.reference_case_ids(target - len(pool))
            leaked = set(pool) & set(self.split.train)
            if leaked:
                raise LeakageError(f"fidelity reference holds training cases {sorted(leaked)[:5]}")
            self.memo["held_out_ids"] = pool
        return self.memo["held_out_ids"]

    # -- data ------------------------------------------------------------------------------------------
    def pairs(self, which: str, n_real: int | None = None, draw: int = 0) -> list[Pair]:
        """``train`` (of a level), ``test``, ``val``, ``held_out`` (the fidelity pool) or ``all`` real pairs,
        loaded once per process."""
        ids = {"train": None, "test": self.split.test, "val": self.split.val, "all": self.dataset.case_ids,
               "held_out": None}[which]
        if which == "train":
            ids = self.train_ids(n_real, draw)
        elif which == "held_out":
            ids = self.held_out_ids()
        key = ("pairs", tuple(ids))
        if key not in self.memo:
            missing = [c for c in ids if ("pair", c) not in self.memo]
            with self.reporter.task(f"loading {which} cases", len(missing)) as update:
                for i, pair in enumerate(self.dataset.pairs(missing)):
                    self.memo[("pair", pair.case_id)] = pair
                    update(i + 1)
            loaded = [self.memo[("pair", c)] for c in ids]
            self.memo[key] = loaded
        return self.memo[key]

    def training_set(self, n_real: int | None = None, draw: int = 0):
        from foscu_bench.data.splits import TrainingSet

        return TrainingSet(self.pairs("train", n_real, draw), self.split)

    def synthetic_pairs(self, generator: str, seed: int, n_real: int | None = None, draw: int = 0) -> list[Pair]:
        return load_synthetic(self.layout.synthetic(generator, seed, n_real, draw), self.profile)

    # -- conveniences for the CLI ---------------------------------------------------------------------------
    def plan(self, threads: int | None = None):
        from foscu_bench.runner.plan import plan

        return plan(self, threads)

    def execute(self, argv: list[str] | None = None, workers: int = 1, threads: int | None = None,
                executor: str = "local", scheduler: str | None = None) -> dict:
        from foscu_bench.runner.serial import execute

        return execute(self, argv, workers=workers, threads=threads, executor=executor, scheduler=scheduler)


def prepare(config: RunConfig, out: str | Path = "runs", reporter: Reporter | None = None) -> RunContext:
    """Open the dataset, make the split and fix the run's identity; cheap, nothing is trained."""
    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.data.splits import split_dataset
    from foscu_bench.precision import resolve_device

    profile = get_profile(config.profile)
    device = resolve_device(config.device)
    dataset = open_dataset(config.dataset, label_map=config.label_map, profile=profile)
    generators = tuple(config.generators) + tuple(
        c for c in default_controls(dataset) if config.controls and c not in config.generators)
    metas = {name: get_meta(name) for name in generators}
    split = split_dataset(dataset, config.split_seed)
    fingerprint = dataset.fingerprint()
    directory = Path(out) / run_id(config, dataset.name, profile.name, fingerprint, device.type)
    return RunContext(config=config, profile=profile, dataset=dataset, split=split, layout=RunLayout(directory),
                      device=device, n_synthetic=config.synthetic or len(split.train), metas=metas,
                      fingerprint=fingerprint, reporter=reporter or NullReporter(), generators=generators)


SUBSET_STREAM = 0x5B5E7
"""Second entropy word of the real-data subset permutations (the split itself uses its own stream)."""


def default_controls(dataset) -> tuple[str, ...]:
    """The positive control where the dataset is a phantom (it needs the simulator), the negative one always."""
    from foscu_bench.controls import NEGATIVE, POSITIVE

    return (POSITIVE, NEGATIVE) if dataset.source.kind == "phantom" else (NEGATIVE,)
