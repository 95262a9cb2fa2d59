"""A test double for ``Generator.fit_parts``: classic-aug whose fit has one part, trained as a runner step of its
own, that the fit must find finished in its work directory."""

from __future__ import annotations

from pathlib import Path

from foscu_bench.baselines.classic_aug import ClassicAugmentation


class SplitFitAugmentation(ClassicAugmentation):
    name = "split-classic-aug"
    fit_parts = ("half",)

    def fit_part(self, part, train, profile, seed: int, device="cpu", *, work_dir, progress=None) -> None:
        (Path(work_dir) / "half.done").write_text(str(seed))

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        if not (Path(work_dir) / "half.done").is_file():
            raise AssertionError("the fit ran before its part")
        super().fit(train, profile, seed, device, progress=progress, work_dir=work_dir)


class TakesSplitFit(SplitFitAugmentation):
    """An ablation double that takes split-classic-aug's fit (``fit_from``): fitting it itself is a failure."""

    name = "takes-split-fit"

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        raise AssertionError("a generator that takes another's fit was fitted itself")
