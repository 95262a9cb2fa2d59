"""The conformance kit on every built-in generator, and on broken generators it must catch."""

from __future__ import annotations

import numpy as np
import pytest

from foscu_bench import generator as G
from foscu_bench.testing import CHECKS, ConformanceError, check_generator

FAST = {stage: 4 for stage in ("label_autoencoder", "label_diffusion", "image_autoencoder", "image_diffusion",
                               "controlnet")}
SMALL_SETTINGS = {  # small budgets: the kit checks the contract, not image quality
    "classic-aug": {},
    "synthseg": {},
    "cond-gan": {"iterations": 4},
    "cond-ddpm": {"iterations": 4, "sampling_steps": 2},
    "duo-diffusion": {"iterations": FAST, "sampling_steps": 2},
    "duo-diffusion-real-labels": {"iterations": FAST, "sampling_steps": 2},
    "phantom-oracle": {},
    "mismatched-labels": {},
    "copy-control": {},
}


def test_every_registered_generator_is_covered():
    assert set(G.registry()) == set(SMALL_SETTINGS)


@pytest.mark.parametrize("name", sorted(SMALL_SETTINGS))
def test_builtin_generator_passes_the_conformance_kit(name):
    report = check_generator(name, settings=SMALL_SETTINGS[name])
    assert report["checks"] == list(CHECKS)
    assert report["generator"] == name
    if G.get_meta(name).kind == "learned":
        assert report["parameter_count"] > 0 and report["progress_calls"] > 0
    # the resolved config holds the sizes, not only the constructor overrides
    assert len(report["config"]) > len(SMALL_SETTINGS[name]) or G.get_meta(name).kind in ("rule-based", "control")


class _Broken(G.GeneratorBase):
    """classic-aug with one defect switched on per test."""

    name = "broken"

    def __init__(self, defect: str = "") -> None:
        super().__init__()
        self.defect = defect
        self.images = self.labels = None

    def settings(self) -> dict:
        return {} if self.defect == "settings" else {"defect": self.defect}

    def fit(self, train, profile, seed, device="cpu", *, progress=None, work_dir=None) -> None:
        from foscu_bench.data.splits import require_training_set

        if self.defect != "leak":
            train = require_training_set(train)
        self.images, self.labels = G.training_arrays(train)
        self._remember_fit(train, profile, seed)

    def sample(self, n, seed):
        profile = self._require_fitted()
        rng = np.random.default_rng(None if self.defect == "random" else seed)
        for i in range(n):
            j = int(rng.integers(len(self.images)))
            yield G.make_pair(self.images[j] * rng.uniform(0.5, 1), self.labels[j], profile,
                              G.synthetic_case_id(self.name, seed, i))

    def _tensors(self):
        return {"images": self.images, "labels": self.labels}

    def _restore(self, arrays, config):
        self.images = arrays["images"] if self.defect != "restore" else arrays["images"] * 0.5
        self.labels = arrays["labels"]


def test_a_correct_generator_passes():
    assert check_generator(_Broken, learned=False)["checks"] == list(CHECKS)


@pytest.mark.parametrize("defect, check", [("settings", "config"), ("leak", "refuses_non_training_data"),
                                           ("random", "sample"), ("restore", "checkpoint")])
def test_the_kit_catches_each_defect(defect, check):
    with pytest.raises(ConformanceError, match=rf"\[{check}\]"):
        check_generator(_Broken, settings={"defect": defect}, learned=False)
