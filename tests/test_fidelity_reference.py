"""The fidelity reference is held out from everything that learns, and the memorisation check flags copies."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from foscu_bench.errors import ConfigError
from foscu_bench.runner import RunConfig, prepare


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_fidelity_reference_and_training_ids_are_disjoint_at_every_level(cache, tmp_path):
    from foscu_bench.profiles import get_profile

    for profile, target in (("quick", 200), ("tiny", None)):
        ctx = prepare(RunConfig(generators=("classic-aug",), profile=profile, real_cases=(8, 16, None)),
                      tmp_path / profile)
        fingerprint = ctx.dataset.fingerprint()
        held_out = ctx.held_out_ids()
        held_out_split = sorted(ctx.split.val) + sorted(ctx.split.test)
        target = target or len(held_out)
        # 2 x 100 volumes at quick (reference B and floor A): validation and test cases first, fresh reference
        # patients only where those are fewer (tiny; quick had 128 of them until session 13, now 368)
        assert len(held_out) == len(set(held_out)) == target
        assert held_out[:min(target, len(held_out_split))] == held_out_split[:target]
        fresh = [c for c in held_out if c not in ctx.dataset.case_ids]
        assert len(fresh) == max(0, target - len(held_out_split))
        assert all(c.startswith("phantom_ref_") for c in fresh)
        if profile == "tiny":
            assert fresh, "the tiny phantom's held-out split is too small: fresh reference patients fill the pool"
        for n_real, draw in ctx.levels():
            assert not set(held_out) & set(ctx.train_ids(n_real, draw))
        assert not set(held_out) & set(ctx.split.train)
        # the reference patients are outside the dataset: its identity (and every committed run's key) is unchanged
        assert ctx.dataset.fingerprint() == fingerprint
        assert len(ctx.dataset.case_ids) == get_profile(profile).n_phantom_cases


def test_reference_patients_have_their_own_random_stream(cache):
    from foscu_bench.controls import oracle_seed
    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.data.phantom import case_seed, generate_case
    from foscu_bench.data.phantom_source import reference_seed

    dataset = open_dataset("phantom", profile="tiny")
    (reference_id,) = dataset.reference_case_ids(1)
    raw = dataset.raw_case(reference_id)
    config = dataset.source.config
    assert raw.meta["phantom_seed"][0] != 0 and len(raw.meta["phantom_seed"]) == 3
    np.testing.assert_array_equal(raw.image, generate_case(reference_seed(0, 0), config).image)
    for other in (case_seed(0, 0), oracle_seed(0, 0)):
        assert not np.array_equal(raw.image, generate_case(other, config).image)
    assert dataset.pair(reference_id).image.shape == (1, 16, 16, 16)


def test_the_copy_control_is_flagged_as_near_copies_and_fresh_patients_are_not(cache, tmp_path):
    from foscu_bench.controls import CopyControl, PhantomOracle
    from foscu_bench.metrics.features import get_extractor
    from foscu_bench.metrics.fidelity import fidelity_report

    ctx = prepare(RunConfig(generators=("copy-control",), profile="tiny", controls=False), tmp_path)
    train = ctx.training_set()
    held_out = np.stack([p.image for p in ctx.pairs("held_out")])
    extractor = get_extractor("foscu-ae3d-corpus")
    reports = {}
    for generator in (CopyControl(), PhantomOracle()):
        generator.fit(train, ctx.profile, seed=0)
        images = np.stack([p.image for p in generator.sample(len(held_out) // 2, seed=0)])
        reports[generator.name] = fidelity_report(
            images, held_out, extractor, seed=0, n_boot=20, ms_ssim_pairs=4,
            train_images=np.stack([p.image for p in train]), train_ids=[p.case_id for p in train])["memorisation"]
    copies, fresh = reports["copy-control"], reports["phantom-oracle"]
    assert copies["near_copy_fraction"] >= 0.75 and copies["p_value"] < 1e-3, copies
    assert fresh["p_value"] > 0.01 and fresh["distance_ratio"] > 0.6, fresh
    assert copies["closest"][0]["nearest_train_case"] in ctx.split.train


def _fake_run(check: dict | None, tmp_path: Path):
    entry = {"memorisation": check} if check is not None else {}
    return SimpleNamespace(fidelity={"generators": {"g": entry}}, layout=SimpleNamespace(fidelity=tmp_path / "f.json"))


def test_export_refuses_near_copies_unless_told(tmp_path):
    from foscu_bench.hub import memorisation_checks

    flagged = {"near_copies": 9, "n_synthetic": 10, "expected_fraction_by_chance": 0.01, "p_value": 1e-15,
               "closest": [{"nearest_train_case": "phantom_0003"}], "distance_ratio": 0.05}
    with pytest.raises(ConfigError, match=r"(?s)9 of 10 checked volumes .* phantom_0003.*--allow-near-copies"):
        memorisation_checks(_fake_run(flagged, tmp_path), ["g"])
    assert memorisation_checks(_fake_run(flagged, tmp_path), ["g"], allow_near_copies=True)["g"] == flagged
    with pytest.raises(ConfigError, match="no memorisation check"):
        memorisation_checks(_fake_run(None, tmp_path), ["g"])
    passed = dict(flagged, near_copies=0, p_value=1.0)
    assert memorisation_checks(_fake_run(passed, tmp_path), ["g"])["g"]["p_value"] == 1.0
