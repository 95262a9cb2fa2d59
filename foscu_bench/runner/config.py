"""What a user asks of a run (``RunConfig``) and the run's identity derived from it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from foscu_bench.errors import ConfigError
from foscu_bench.hashing import json_hash

RUN_SCHEMA_VERSION = 1


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


def run_id(config: RunConfig, dataset_name: str, profile_name: str, fingerprint: str, device_type: str) -> str:
    """``<dataset>-<profile>-<generators>-<seeds>seeds-<hash>``: the same command resumes the same directory."""
    identity = {"config": {k: v for k, v in asdict(config).items() if k not in ("extractor", "extractor_weights")}
                | {"device": device_type, "generators": sorted(config.generators)},
                "dataset": fingerprint, "schema": RUN_SCHEMA_VERSION}
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset_name).strip("-").lower() or "dataset"
    names = "+".join(sorted(config.generators))
    return (f"{slug}-{profile_name}-{names if len(names) <= 48 else f'{len(config.generators)}-generators'}-"
            f"{config.seeds}seeds-{json_hash(identity)[:8]}")
