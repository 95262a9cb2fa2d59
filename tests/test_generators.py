"""Generator protocol, registry, checkpoints, and the four baselines at the tiny profile."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from foscu_bench import generator as G
from foscu_bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from foscu_bench.data.dataset import open_dataset
from foscu_bench.data.splits import LeakageError, TrainingSet, split_dataset
from foscu_bench.errors import ConfigError
from foscu_bench.profiles import get_profile
from foscu_bench.sample_checks import liver_components, max_training_correlation, sample_report

TINY = get_profile("tiny")
BASELINES = {  # reduced budgets: these tests check validity and plumbing, not image quality
    "classic-aug": {},
    "synthseg": {},
    "cond-gan": {"iterations": 20},
    "cond-ddpm": {"iterations": 10, "sampling_steps": 4},
}
# A sample counts as a copy of a training image above this correlation. Justification (test below, measured on
# the tiny phantom): a training image re-noised at the phantom's own noise level correlates >= 0.98 with the
# original, while two different patients correlate 0.48-0.64 and a one-voxel shift of the same image ~0.55.
# So 0.97 flags verbatim and re-noised copies and nothing else; it is a memorisation alarm, not a diversity score
# (classic-aug samples are deformed real images by design and legitimately reach ~0.8 at the quick profile).
COPY_CORRELATION = 0.97


@pytest.fixture(scope="module")
def tiny_split():
    ds = open_dataset("phantom", profile="tiny")
    split = split_dataset(ds, seed=0)
    return ds, TrainingSet.from_dataset(ds, split)


@pytest.fixture(scope="module")
def fitted(tiny_split):
    _, train = tiny_split
    gens = {}
    for name, config in BASELINES.items():
        gen = G.create(name, **config)
        gen.fit(train, TINY, seed=0, device="cpu")
        gens[name] = gen
    return gens


def test_registry_lists_the_four_baselines_with_citations():
    metas = G.registry()
    assert set(BASELINES) <= set(metas)
    for name in BASELINES:
        assert metas[name].citation and metas[name].reference.startswith("http")
    assert metas["cond-ddpm"].kind == "learned" and metas["synthseg"].kind == "rule-based"
    with pytest.raises(ConfigError, match="did you mean 'cond-gan'"):
        G.get_meta("cond-gann")


def test_entry_point_generators_are_loaded_and_checked(monkeypatch):
    meta = G.GeneratorMeta(name="third-party", kind="learned", target="somepkg.mod:Gen", citation="X et al.",
                           reference="https://example.org", conditioning="none", description="test")

    class EP:
        def __init__(self, name, value):
            self.name, self.value = name, value

        def load(self):
            return self.value

    monkeypatch.setattr(G, "entry_points", lambda group: [EP("third-party", meta)])
    assert G.registry()["third-party"] is meta
    monkeypatch.setattr(G, "entry_points", lambda group: [EP("bad", object())])
    with pytest.raises(ConfigError, match="must point to a GeneratorMeta"):
        G.registry()
    with pytest.raises(ValueError, match="module:Class"):
        G.GeneratorMeta(name="x", kind="learned", target="nocolon", citation="c", reference="r",
                        conditioning="c", description="d")


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_samples_are_valid_and_non_degenerate(name, fitted, tiny_split):
    _, train = tiny_split
    gen = fitted[name]
    pairs = G.sample_validated(gen, 4, seed=1, shape=TINY.shape)
    for pair in pairs:
        assert float(pair.image.std()) > 0.01, "constant image"
        assert np.count_nonzero(pair.label) > 20, "no liver"
    correlation = max_training_correlation([p.image for p in pairs], [p.image for p in train])
    assert correlation.max() < COPY_CORRELATION, f"{name} copies training images: {correlation}"
    labels = [p.label for p in pairs]
    assert any(not np.array_equal(labels[0], other) for other in labels[1:]), "labels do not vary"
    for label in labels:  # deformed, never a verbatim training label
        assert not any(np.array_equal(label, t.label) for t in train)
    assert len({p.case_id for p in pairs}) == 4 and all(p.case_id.startswith(name) for p in pairs)


def test_copy_correlation_bound_is_justified(tiny_split):
    _, train = tiny_split
    image = train[0].image
    rng = np.random.default_rng(0)
    renoised = np.abs(image + rng.normal(0, 0.035 * float(image[0][train[0].label > 0].mean()), image.shape))
    others = [p.image for p in train[1:]]
    assert max_training_correlation([renoised], [image])[0] >= 0.98
    assert max_training_correlation([image], others)[0] < 0.8  # different patients are far below the bound


@pytest.mark.parametrize("name", list(BASELINES))
def test_save_load_sample_is_identical(name, fitted, tmp_path):
    gen = fitted[name]
    first = G.sample_validated(gen, 2, seed=5, shape=TINY.shape)
    gen.save(tmp_path / name)
    loaded = G.load(name, tmp_path / name)
    again = G.sample_validated(loaded, 2, seed=5, shape=TINY.shape)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
    different = G.sample_validated(loaded, 2, seed=6, shape=TINY.shape)
    assert not np.array_equal(different[0].image, first[0].image)


def test_checkpoints_refuse_pickle_and_tampering(fitted, tmp_path):
    gen = fitted["cond-gan"]
    gen.save(tmp_path / "ckpt")
    # tampered weights: one flipped byte in the tensor payload
    path = tmp_path / "ckpt" / "tensors.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        G.load("cond-gan", tmp_path / "ckpt")
    # a pickle inside the directory, or a pickle file instead of a directory
    save_checkpoint(tmp_path / "p", {"w": np.ones(3, np.float32)}, {"generator": "cond-gan"})
    (tmp_path / "p" / "model.pt").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="pickle checkpoints are refused"):
        load_checkpoint(tmp_path / "p")
    with pytest.raises(CheckpointError, match="pickle checkpoints are refused"):
        load_checkpoint(tmp_path / "p" / "model.pt")
    # a checkpoint of another generator
    save_checkpoint(tmp_path / "other", {"maps": np.zeros((1, 2, 2, 2), np.uint8)}, {"generator": "synthseg"})
    with pytest.raises(CheckpointError, match="not 'cond-gan'"):
        G.load("cond-gan", tmp_path / "other")
    # a checkpoint fitted with another configuration of the same generator (sizes changed since): a clear refusal,
    # not a tensor-shape error from deep inside torch
    gen.save(tmp_path / "older")
    record = json.loads((tmp_path / "older" / "config.json").read_text())
    record["config"]["generator_config"]["an_older_size"] = 3
    save_checkpoint(tmp_path / "older", load_checkpoint(tmp_path / "older")[0], record["config"])
    with pytest.raises(CheckpointError, match="another 'cond-gan' configuration .*differs in an_older_size.*fit again"):
        G.load("cond-gan", tmp_path / "older")
    # a config that is not JSON
    (tmp_path / "other" / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "other")


def test_fit_refuses_anything_but_a_training_set(tiny_split):
    ds, train = tiny_split
    with pytest.raises(LeakageError):
        G.create("classic-aug").fit(list(train), TINY, seed=0)
    with pytest.raises(LeakageError):
        G.create("synthseg").fit(ds.pairs(), TINY, seed=0)


def test_invalid_samples_are_caught(fitted):
    class Broken:
        name = "broken"

        def sample(self, n, seed):
            for pair in fitted["classic-aug"].sample(n, seed):
                image = pair.image.copy()
                image[0, 0, 0, 0] = np.nan
                yield replace(pair, image=image)

    with pytest.raises(G.SampleError, match="NaN"):
        G.sample_validated(Broken(), 2, 0, TINY.shape)


def test_sample_report_measures_what_it_says(tiny_split):
    """Each check on pairs with a known difference from the real ones: the report must find exactly that."""
    from scipy import ndimage

    _, train = tiny_split
    real = list(train)
    brighter = [replace(p, image=np.where(p.label[None] == 1, p.image + 0.1, p.image).astype(np.float32)) for p in real]
    report = sample_report(brighter, real)
    assert report["liver_volume_ks"] == 0.0 and report["liver_volume_ks_p"] == 1.0  # the same labels
    assert report["intensity_wasserstein"]["liver"] == pytest.approx(0.1, abs=1e-6)  # exactly the shift
    assert report["intensity_wasserstein"]["background"] == pytest.approx(0.0, abs=1e-12)
    assert report["max_training_correlation"] > COPY_CORRELATION  # near copies are flagged
    smaller = [replace(p, label=np.where(ndimage.binary_erosion(p.label > 0), p.label, 0).astype(np.uint8))
               for p in real]
    report = sample_report(smaller, real)
    assert report["liver_volume_ks"] == 1.0 and report["liver_volume_ks_p"] < 1e-3  # every liver shrank
    assert report["liver_ml_synthetic_mean"] < report["liver_ml_real_mean"]
    expected = np.mean([liver_components(p.label)[1] >= 0.95 for p in smaller])
    assert report["one_dominant_liver_fraction"] == pytest.approx(expected)
    json.dumps(report)
    two = np.zeros((10, 10, 10), np.uint8)
    two[1:4, 1:4, 1:4] = 1
    two[6:9, 6:9, 6:9] = 1
    two[6, 6, 6] = 2
    assert liver_components(two) == (2, 0.5)


def test_generators_list_cli(capsys):
    from foscu_bench.cli import main

    main(["generators", "list", "--profile", "tiny", "--json"])
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["cond-ddpm"]["parameters"] > 0 and not by_name["classic-aug"]["parameters"]
    assert "Billot" in by_name["synthseg"]["citation"]


def test_image_label_consistency_scores_agreement():
    """A stand-in segmenter that thresholds the image: images equal to their labels score Dice 1 exactly,
    and a label shifted by 2 voxels along x scores the hand-computed Dice of the overlap."""
    import torch

    from foscu_bench.pair import Pair
    from foscu_bench.sample_checks import image_label_consistency

    class Threshold(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            fg = (x > 0.5).float()
            return torch.cat([1 - fg, fg, torch.zeros_like(fg)], dim=1)

    label = np.zeros(TINY.shape, np.uint8)
    label[4:12, 4:12, 4:12] = 1
    exact = Pair(image=label[None].astype(np.float32), label=label, spacing=TINY.spacing, case_id="a")
    shifted = Pair(image=label[None].astype(np.float32), label=np.roll(label, 2, axis=0), spacing=TINY.spacing,
                   case_id="b")
    dice = image_label_consistency([exact, shifted], Threshold(), TINY.segmentation)
    np.testing.assert_allclose(dice, [1.0, 6 / 8])


def test_cond_ddpm_batched_sampling_matches_one_volume_at_a_time(fitted):
    """cond-ddpm denoises sample_batch volumes in one DDIM loop; each volume starts from its own seed's noise, so
    batching changes nothing but the last bits of the arithmetic."""
    gen = fitted["cond-ddpm"]
    assert gen.config()["sample_batch"] > 1
    labels = [gen.labels[0], gen.labels[1]]
    batched = gen.generate_batch(labels, [5, 6])
    np.testing.assert_allclose(batched[1], gen.generate(labels[1], 6), atol=1e-4)
    assert not np.allclose(batched[0], batched[1])


def test_tumour_and_image_reports_measure_what_they_say(tiny_split):
    """Known differences: tumour-free copies have no tumours; blurred images are less sharp; a set of one image
    repeated has MS-SSIM 1 among its members; the tumour fraction and lesion count match a hand count."""
    from scipy import ndimage

    from foscu_bench.sample_checks import image_report, sharpness, tumour_report

    _, train = tiny_split
    real = list(train)
    no_tumour = [replace(p, label=np.where(p.label == 2, 1, p.label).astype(np.uint8)) for p in real]
    report = tumour_report(no_tumour, real)
    assert report["tumour_fraction_synthetic"] == 0.0
    assert report["tumour_fraction_real"] == pytest.approx(np.mean([p.has_tumour for p in real]))
    assert np.isnan(report["tumour_volume_ks"])
    counts = [ndimage.label(p.label == 2, structure=np.ones((3, 3, 3)))[1] for p in real if p.has_tumour]
    assert report["lesions_per_tumour_case_real"] == pytest.approx(np.mean(counts))
    same = tumour_report(real, real)
    assert same["tumour_volume_ks"] == 0.0 and same["tumour_ml_synthetic_median"] == same["tumour_ml_real_median"]
    blurred = [replace(p, image=ndimage.uniform_filter(p.image, size=(1, 3, 3, 3)).astype(np.float32)) for p in real]
    assert sharpness([p.image for p in blurred]) < 0.8 * sharpness([p.image for p in real])
    constant = np.full((1, 4, 4, 4), 0.5)
    assert sharpness([constant]) == 0.0
    copies = [replace(p, image=real[0].image) for p in real]
    images = image_report(copies, real, n_pairs=8)
    assert images["ms_ssim_among_synthetic"] == pytest.approx(1.0, abs=1e-4)
    assert images["ms_ssim_among_real"] < 0.99


def test_tumour_consistency_scores_only_tumour_cases():
    import torch

    from foscu_bench.pair import Pair
    from foscu_bench.sample_checks import tumour_consistency

    class Threshold(torch.nn.Module):  # tumour where the image is above 0.75, liver above 0.25
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            tumour, liver = (x > 0.75).float(), ((x > 0.25) & (x <= 0.75)).float()
            return torch.cat([1 - tumour - liver, liver, tumour], dim=1)

    label = np.zeros(TINY.shape, np.uint8)
    label[4:12, 4:12, 4:12] = 1
    label[6:8, 6:8, 6:8] = 2
    image = (label / 2.0)[None].astype(np.float32)
    with_tumour = Pair(image=image, label=label, spacing=TINY.spacing, case_id="a")
    without = Pair(image=image, label=np.minimum(label, 1), spacing=TINY.spacing, case_id="b")
    np.testing.assert_allclose(tumour_consistency([with_tumour, without], Threshold(), TINY.segmentation), [1.0])


def test_memorisation_report_tells_copies_from_new_cases(tiny_split):
    """Copies of training pairs score 1 on both nearest-training measures; unseen real cases score lower."""
    from foscu_bench.sample_checks import memorisation_report, nearest_training_dice

    _, train = tiny_split
    real = list(train)
    training, unseen = real[: len(real) // 2], real[len(real) // 2:]
    report = memorisation_report(training, training, unseen)
    assert report["nearest_training_dice_median"] == pytest.approx(1.0)
    assert report["training_correlation_median"] == pytest.approx(1.0)
    assert report["nearest_training_dice_median_held_out"] < 0.99
    assert report["training_correlation_median_held_out"] < 0.99
    cube = np.zeros((6, 6, 6), np.uint8)
    cube[:2] = 1
    half = np.zeros_like(cube)
    half[:1] = 1
    np.testing.assert_allclose(nearest_training_dice([half], [cube]), [2 * 36 / (36 + 72)])
