"""What the learned label-conditioned baselines (cond-gan, cond-ddpm) share: a network sampled on deformed real
training labels, its checkpoint, its resolved size table and the start of its fit.

The generator contract and its bookkeeping live in ``foscu_bench.generator``; label conditioning helpers in
``foscu_bench.conditioning``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterator

import numpy as np

from foscu_bench.conditioning import draw_deformed_label
from foscu_bench.data.splits import require_training_set
from foscu_bench.generator import GeneratorBase, make_pair, synthetic_case_id, training_arrays, volume_streams
from foscu_bench.pair import Pair
from foscu_bench.profiles import Profile


class LabelConditionedNetwork(GeneratorBase):
    """A learned label-to-image network sampled on deformed real training labels (cond-gan, cond-ddpm).

    Subclasses provide ``SIZES`` (per-profile sizes and budgets), ``_build(profile)`` (the sampling-time
    network), ``fit`` (which ends with ``_finish_fit``) and ``_image_for(label, rng)``; checkpointing, the
    resolved config and the sampling loop live here.
    """

    SIZES: ClassVar[dict[str, dict]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.network = None
        self.labels: np.ndarray | None = None

    def config(self, profile: Profile | None = None) -> dict:
        """Constructor settings + the profile's size table, with ``iterations`` resolved."""
        size = dict(self.SIZES[self._profile_for(profile).name])
        settings = self.settings()
        size["iterations"] = settings.get("iterations") or size["iterations"]
        return {**size, **settings, "iterations": size["iterations"]}

    def _build(self, profile: Profile):  # pragma: no cover - overridden
        raise NotImplementedError

    def _networks(self, profile: Profile) -> list:
        return [self._build(profile)]

    def _image_for(self, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _images_for(self, labels: list[np.ndarray], rngs: list[np.random.Generator]) -> list[np.ndarray]:
        """Images for a batch of labels, each with its volume's stream; subclasses with a ``sample_batch`` > 1
        generate them in one network call."""
        return [self._image_for(label, rng) for label, rng in zip(labels, rngs)]

    def _sampling_mode(self):
        """Context in which the network samples (eval mode by default)."""
        from contextlib import nullcontext

        return nullcontext()

    def _fit_setup(self, train, profile: Profile, seed: int, device):
        """The start every learned fit shares: refuse non-training data, stack arrays, resolve sizes, seed."""
        import torch

        train = require_training_set(train)
        images, labels = training_arrays(train)
        size = self.config(profile)
        dev = torch.device(device)
        torch.manual_seed(seed)
        return train, images, labels, size, size["iterations"], dev, np.random.default_rng(seed)

    def _finish_fit(self, network, labels: np.ndarray, train, profile: Profile, seed: int, device) -> None:
        self.network = network.eval()
        self.labels = labels
        self.device = str(device)
        self._remember_fit(train, profile, seed)

    def sample(self, n: int, seed: int) -> Iterator[Pair]:
        import torch

        profile = self._require_fitted()
        torch.manual_seed(seed)
        # ``sample_batch``: volumes per network call (size table, default 1); each volume has its own stream
        batch = int(self.config(profile).get("sample_batch", 1))
        with self._sampling_mode():
            for start, rngs in volume_streams(n, seed, batch):
                drawn = [draw_deformed_label(self.labels, rng) for rng in rngs]
                images = self._images_for([label for _, label in drawn], rngs)
                for i, ((index, label), image) in enumerate(zip(drawn, images), start):
                    yield make_pair(image, label, profile, synthetic_case_id(self.name, seed, i),
                                    source_case=self.train_case_ids[index])

    def _tensors(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        state["labels"] = self.labels
        return state

    def _restore(self, arrays: dict[str, np.ndarray], config: dict) -> None:
        import torch

        from foscu_bench.checkpoint import load_module_state

        network = self._build(self.profile)
        load_module_state(network, arrays, "network")
        self.network = network.to(torch.device(self.device)).eval()
        self.labels = arrays["labels"]
