"""Duo-Diffusion at the tiny profile: both stages fit, samples are valid and new, training resumes exactly."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from foscu_bench import generator as G
from foscu_bench.data.dataset import open_dataset
from foscu_bench.data.splits import TrainingSet, split_dataset
from foscu_bench.errors import ConfigError
from foscu_bench.generators.duo_diffusion.generator import postprocess_label
from foscu_bench.generators.duo_diffusion.sampling import sampling_scheduler
from foscu_bench.profiles import get_profile

TINY = get_profile("tiny")
STAGE_ITERATIONS = {"label_autoencoder": 12, "label_diffusion": 12, "image_autoencoder": 12, "image_diffusion": 12,
                    "controlnet": 12}


@pytest.fixture(scope="module")
def train():
    ds = open_dataset("phantom", profile="tiny")
    return TrainingSet.from_dataset(ds, split_dataset(ds, 0))


@pytest.fixture(scope="module")
def fitted(train, tmp_path_factory):
    gen = G.create("duo-diffusion", iterations=STAGE_ITERATIONS, sampling_steps=4)
    gen.fit(train, TINY, seed=0, device="cpu", work_dir=tmp_path_factory.mktemp("duo"))
    return gen


def test_both_stages_fit_and_sample_valid_new_pairs(fitted, train):
    assert set(fitted.logs) == {"label_autoencoder", "label_diffusion", "image_autoencoder", "image_diffusion",
                                "controlnet"}
    assert all(len(log["losses"]) == 12 and np.isfinite(log["losses"]).all() for log in fitted.logs.values())
    pairs = G.sample_validated(fitted, 3, seed=1, shape=TINY.shape)
    for pair in pairs:
        assert pair.label.any() and float(pair.image.std()) > 0.01
        assert pair.meta["label_source"] == "generated"
        assert not any(np.array_equal(pair.label, t.label) for t in train), "label copied from training"


def test_save_load_sample_identical_and_samplers(fitted, tmp_path):
    first = G.sample_validated(fitted, 2, seed=3, shape=TINY.shape)
    fitted.save(tmp_path / "ckpt")
    loaded = G.load("duo-diffusion", tmp_path / "ckpt")
    assert loaded.min_tumour_voxels == fitted.min_tumour_voxels > 0
    again = G.sample_validated(loaded, 2, seed=3, shape=TINY.shape)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
    # DDPM walks every step of the training schedule (1000: 3000 network calls, ~100 s at tiny on 2 cores, so the
    # end-to-end sample below runs the same code over a 20-step schedule)
    schedule = sampling_scheduler(loaded.duo_config, "ddpm", 10, 1, "cpu")
    assert len(schedule.timesteps) == loaded.duo_config.train_timesteps == 1000
    short = copy.copy(loaded)
    short.duo_config = replace(loaded.duo_config, train_timesteps=20)
    ddpm = next(short.sample(1, seed=3, sampler="ddpm"))
    assert ddpm.meta["sampler"] == "ddpm" and np.isfinite(ddpm.image).all()
    with pytest.raises(ConfigError, match="cannot be sampled with 'rflow'"):
        next(loaded.sample(1, seed=3, sampler="rflow"))


def test_images_follow_their_control_label_only_through_the_controlnet(fitted):
    """The label reaches the image only through the ControlNet's residuals: two controls with the same noise give
    different images, and identical ones once the ControlNet's zero-initialised output convolutions are zero."""

    labels = fitted.generate_labels(2, seed=11)
    assert not np.array_equal(labels[0], labels[1])
    a = fitted.images_for_labels([labels[0]], seed=5)[0]
    b = fitted.images_for_labels([labels[1]], seed=5)[0]
    assert not np.allclose(a, b)
    assert np.array_equal(a, fitted.images_for_labels([labels[0]], seed=5)[0])  # same control, same image
    silenced = copy.deepcopy(fitted)
    with torch.no_grad():
        for name, parameter in silenced.modules["controlnet"].named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                parameter.zero_()
    a0 = silenced.images_for_labels([labels[0]], seed=5)[0]
    b0 = silenced.images_for_labels([labels[1]], seed=5)[0]
    np.testing.assert_array_equal(a0, b0)


def test_control_guidance_extrapolates_from_the_unconditional_image_model(fitted):
    """``control_guidance`` w: uncond + w (controlled - uncond), the plain image U-Net as the unconditional model.
    w = 0 is exactly the image model without its ControlNet (a silenced ControlNet gives the same images); w = 1 is
    the plain ControlNet; one denoising step at w = 2.5 equals the formula computed by hand."""
    from foscu_bench.conditioning import label_channels
    from foscu_bench.generators.duo_diffusion.sampling import _step

    label = fitted.generate_labels(1, seed=11)[0]
    plain = fitted.images_for_labels([label], seed=5)[0]
    guided = copy.deepcopy(fitted)
    guided.duo_config = replace(fitted.duo_config, control_guidance=1.0)
    np.testing.assert_array_equal(guided.images_for_labels([label], seed=5)[0], plain)
    guided.duo_config = replace(fitted.duo_config, control_guidance=0.0)
    unconditional = guided.images_for_labels([label], seed=5)[0]
    silenced = copy.deepcopy(fitted)
    with torch.no_grad():
        for name, parameter in silenced.modules["controlnet"].named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                parameter.zero_()
    np.testing.assert_allclose(unconditional, silenced.images_for_labels([label], seed=5)[0], atol=1e-5)
    assert not np.allclose(unconditional, plain)

    unet, controlnet = fitted.modules["image_unet"], fitted.modules["controlnet"]
    shape = fitted._latent_shape("image", 1)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    control = torch.from_numpy(label_channels(label)[None])
    scheduler = sampling_scheduler(fitted.duo_config, "ddim", 4, int(np.prod(shape[2:])), "cpu")
    t = list(scheduler.timesteps)[0]
    with torch.no_grad():
        stepped = _step(unet, scheduler, "ddim", x, t, list(scheduler.timesteps), 0, shape, "cpu", None, controlnet,
                        control, guidance=2.5)
        tt = torch.full((1,), int(t), dtype=torch.long)
        down, mid = controlnet(x=x, timesteps=tt, controlnet_cond=control)
        controlled = unet(x, tt, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        by_hand = unet(x, tt) + 2.5 * (controlled - unet(x, tt))
        expected = sampling_scheduler(fitted.duo_config, "ddim", 4, int(np.prod(shape[2:])), "cpu").step(
            by_hand, int(t), x)[0]
    torch.testing.assert_close(stepped, expected)


def test_batched_sampling_gives_each_volume_its_own_noise(fitted):
    """Volumes are denoised sample_batch at a time, but volume i depends on its own seed only: alone or beside
    another volume it comes out the same (up to the last bits of batched arithmetic), and the sample stream is
    the same whatever the batch size."""
    import dataclasses

    pair = fitted.generate_labels(2, seed=0, seeds=[7, 8])
    alone = fitted.generate_labels(1, seed=0, seeds=[7])
    assert np.mean(pair[0] == alone[0]) > 0.99
    images = fitted.images_for_labels(pair, seed=0, seeds=[3, 4])
    image_alone = fitted.images_for_labels(pair[:1], seed=0, seeds=[3])
    assert images[0].shape == image_alone[0].shape == (1, *TINY.shape)
    np.testing.assert_allclose(images[0], image_alone[0], atol=1e-3)
    batched = [p.image for p in fitted.sample(3, seed=2)]
    original = fitted.duo_config
    try:
        fitted.duo_config = dataclasses.replace(original, sample_batch=1)
        one_by_one = [p.image for p in fitted.sample(3, seed=2)]
    finally:
        fitted.duo_config = original
    assert original.sample_batch > 1
    for a, b in zip(batched, one_by_one):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_training_resumes_exactly_after_a_crash(train, tmp_path):
    iterations = {"label_autoencoder": 6, "label_diffusion": 6, "image_autoencoder": 6, "image_diffusion": 6,
                  "controlnet": 6}
    reference = G.create("duo-diffusion-real-labels", iterations=iterations, checkpoint_every=2)
    reference.fit(train, TINY, seed=4, work_dir=tmp_path / "ref")

    def crash(stage, iteration, total, loss):
        if stage == "image_diffusion" and iteration == 5:
            raise KeyboardInterrupt("simulated kill")

    crashed = G.create("duo-diffusion-real-labels", iterations=iterations, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(train, TINY, seed=4, progress=crash, work_dir=tmp_path / "run")
    resumed = G.create("duo-diffusion-real-labels", iterations=iterations, checkpoint_every=2)
    resumed.fit(train, TINY, seed=4, work_dir=tmp_path / "run")
    assert resumed.logs["image_diffusion"]["losses"] == reference.logs["image_diffusion"]["losses"]
    for name, module in reference.modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, resumed.modules[name].state_dict()[key]), f"{name}.{key}"


def test_fit_parts_trained_apart_then_the_fit_equals_one_fit(train, tmp_path):
    """The runner trains the label chain and the image chain as steps of their own, side by side (``fit_parts``):
    the fit that resumes them must end with the networks and losses of a fit that trained both in one go."""
    iterations = {"label_autoencoder": 4, "label_diffusion": 4, "image_autoencoder": 4, "image_diffusion": 4,
                  "controlnet": 4}
    whole = G.create("duo-diffusion", iterations=iterations, checkpoint_every=2)
    whole.fit(train, TINY, seed=2, work_dir=tmp_path / "whole")
    assert whole.fit_parts == ("labels", "images") and G.create("duo-diffusion-real-labels").fit_parts == ()
    for part in ("images", "labels"):  # in a fresh generator each, in either order
        G.create("duo-diffusion", iterations=iterations, checkpoint_every=2).fit_part(
            part, train, TINY, seed=2, work_dir=tmp_path / "split")
    stages = []
    split = G.create("duo-diffusion", iterations=iterations, checkpoint_every=2)
    split.fit(train, TINY, seed=2, work_dir=tmp_path / "split", progress=lambda stage, *_: stages.append(stage))
    assert stages == []  # every stage resumed from its last checkpoint, none retrained
    # the stages' clocks travel in their checkpoints: the resuming fit reports the parts' compute, not its own
    assert split.training_seconds() > 0.5 * whole.training_seconds()
    assert split.logs.keys() == whole.logs.keys() and split.scale == whole.scale
    for stage in whole.logs:
        assert split.logs[stage]["losses"] == whole.logs[stage]["losses"], stage
    assert split.modules.keys() == whole.modules.keys() and "discriminator" not in split.modules
    for name, module in whole.modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, split.modules[name].state_dict()[key]), f"{name}.{key}"
    with pytest.raises(ConfigError, match="no fit part 'everything'"):
        split.fit_part("everything", train, TINY, seed=2, work_dir=tmp_path / "other")


def test_ablation_conditions_on_deformed_real_labels(train):
    gen = G.create("duo-diffusion-real-labels", iterations=STAGE_ITERATIONS, sampling_steps=3)
    gen.fit(train, TINY, seed=0)
    assert "label_autoencoder" not in gen.modules
    pair = G.sample_validated(gen, 1, seed=0, shape=TINY.shape)[0]
    assert pair.meta["label_source"].startswith("deformed:")


def test_ablation_takes_duo_diffusions_fitted_image_stage(fitted, tmp_path):
    """The runner gives the ablation duo-diffusion's fit (``fit_from``): the same image networks and latent scale,
    no label networks, and its samples render deformed real labels."""
    import torch

    from foscu_bench.runner.fit_cache import load_fit_as

    fitted.save(tmp_path / "duo")
    ablation = load_fit_as("duo-diffusion-real-labels", tmp_path / "duo", tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
    assert set(ablation.modules) == {"image_autoencoder", "image_unet", "controlnet"}
    for name, module in ablation.modules.items():
        assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(),
                                                     fitted.modules[name].state_dict().values()))
    assert ablation.scale == {"image": fitted.scale["image"]} and ablation.train_case_ids == fitted.train_case_ids
    pairs = G.sample_validated(ablation, 2, seed=0, shape=TINY.shape)
    assert all(p.meta["label_source"].startswith("deformed:") for p in pairs)


def test_postprocess_removes_small_components_and_stray_tumour():
    label = np.zeros((20, 20, 20), np.uint8)
    label[2:12, 2:12, 2:12] = 1
    label[5:7, 5:7, 5:7] = 2
    label[16:18, 16:18, 16:18] = 2  # isolated tumour blob: 8 voxels << 10% of 1000
    label[0, 19, 19] = 1
    out = postprocess_label(label, 0.1)
    assert out[16:18, 16:18, 16:18].sum() == 0 and out[0, 19, 19] == 0
    assert (out == 2).sum() == 8 and (out > 0).sum() == 1000


def test_tumours_smaller_than_any_training_tumour_become_liver():
    from foscu_bench.generators.duo_diffusion.augmentation import smallest_tumour_component

    training = np.zeros((2, 20, 20, 20), np.uint8)
    training[:, 2:14, 2:14, 2:14] = 1
    training[0, 3:5, 3:5, 3:5] = 2          # 8 voxels
    training[1, 8:11, 8:11, 8:11] = 2       # 27 voxels
    training[1, 12, 12, 12] = 2             # 1 voxel, two voxels away from the 27: a tumour of its own
    assert smallest_tumour_component(training) == 1
    assert smallest_tumour_component(training[:1]) == 8
    assert smallest_tumour_component(np.minimum(training, 1)) == 0
    generated = np.zeros((20, 20, 20), np.uint8)
    generated[2:14, 2:14, 2:14] = 1
    generated[3:5, 3:5, 3:5] = 2            # 8 voxels: kept at threshold 8
    generated[8:10, 8:10, 8] = 2            # 4 voxels: below 8 -> liver
    out = postprocess_label(generated, 0.1, min_tumour_voxels=8)
    assert (out == 2).sum() == 8 and out[8:10, 8:10, 8].tolist() == [[1, 1], [1, 1]]
    assert (out > 0).sum() == (generated > 0).sum()  # tumours become liver, never background
    assert (postprocess_label(generated, 0.1, min_tumour_voxels=20 ** 3 + 1) == 2).sum() == 0


def test_deformed_copies_are_consistent_pairs_and_reproducible(train):
    from foscu_bench.generator import training_arrays
    from foscu_bench.generators.duo_diffusion.augmentation import with_deformed_copies

    images, labels = training_arrays(train)
    images, labels = images[:3], labels[:3]
    more_images, more_labels = with_deformed_copies(images, labels, 2, 1.0, seed=5)
    assert more_images.shape == (9, *images.shape[1:]) and more_labels.dtype == np.uint8
    np.testing.assert_array_equal(more_images[:3], images)  # the real pairs come first, untouched
    np.testing.assert_array_equal(more_labels[:3], labels)
    again_images, again_labels = with_deformed_copies(images, labels, 2, 1.0, seed=5)
    np.testing.assert_array_equal(again_labels, more_labels)
    np.testing.assert_allclose(again_images, more_images)
    assert not any(np.array_equal(more_labels[3 + k], labels[k // 2]) for k in range(6)), "copies must be deformed"
    # one deformation for image and label: an image that *is* its label mask stays its label mask
    masks = (labels > 0).astype(np.float32)
    deformed_masks, deformed_labels = with_deformed_copies(masks, labels, 2, 1.0, seed=5)
    for mask, label in zip(deformed_masks[3:], deformed_labels[3:]):
        organ = label > 0
        dice = 2 * ((mask > 0.5) & organ).sum() / ((mask > 0.5).sum() + organ.sum())
        assert dice > 0.9, dice
        assert 0.0 <= mask.min() and mask.max() <= 1.0
    with pytest.raises(AssertionError):  # a different seed gives other copies
        np.testing.assert_array_equal(with_deformed_copies(images, labels, 2, 1.0, seed=6)[1], more_labels)


def test_cached_control_embedding_is_exact_and_restored(fitted):
    from foscu_bench.generators.duo_diffusion.sampling import cached_control_embedding
    from foscu_bench.conditioning import label_channels

    controlnet = fitted.modules["controlnet"]
    control = torch.from_numpy(label_channels(fitted.labels[0])[None])
    x = torch.randn(1, fitted.duo_config.image_autoencoder.latent_channels, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    original = controlnet.controlnet_cond_embedding
    with torch.no_grad():
        down_ref, mid_ref = controlnet(x=x, timesteps=t, controlnet_cond=control)
        with cached_control_embedding(controlnet, control):
            down, mid = controlnet(x=x, timesteps=t, controlnet_cond=control)
    assert controlnet.controlnet_cond_embedding is original
    assert torch.equal(mid, mid_ref) and all(torch.equal(a, b) for a, b in zip(down, down_ref))


def test_bf16_training_path(train):
    iterations = {k: 4 for k in STAGE_ITERATIONS}
    gen = G.create("duo-diffusion", iterations=iterations, sampling_steps=3, precision="bf16")
    gen.fit(train, TINY, seed=0)
    assert gen.duo_config.precision == "bf16"
    assert all(np.isfinite(log["losses"]).all() for log in gen.logs.values())
    pair = G.sample_validated(gen, 1, seed=0, shape=TINY.shape)[0]
    assert pair.image.dtype == np.float32
    assert {log["precision"] for log in gen.logs.values()} == {"bf16"}
    with pytest.raises(ValueError, match="precision"):
        G.create("duo-diffusion", iterations=iterations, precision="fp8").fit(train, TINY, seed=0)


def test_auto_precision_keeps_the_latent_stages_in_fp32():
    """bf16 autoencoders where the CPU has bf16 units; the latent stages stay fp32 (CPU: oneDNN's bf16 convolution
    backward gave NaN gradients at the 2^3 bottleneck; GPU: no faster); fp32 and bf16 settings apply to every stage."""
    import torch

    from foscu_bench.generators.duo_diffusion.config import STAGES, config_for
    from foscu_bench.generators.duo_diffusion.training import stage_precision
    from foscu_bench.precision import resolve_precision

    cpu = torch.device("cpu")
    native = resolve_precision(cpu, "auto")
    auto = config_for("quick")
    assert auto.precision == "auto"
    assert {s: stage_precision(auto, cpu, s) for s in STAGES} == {
        "label_autoencoder": native, "image_autoencoder": native, "label_diffusion": "fp32",
        "image_diffusion": "fp32", "controlnet": "fp32"}
    for forced in ("fp32", "bf16"):
        assert {stage_precision(config_for("quick", precision=forced), cpu, s) for s in STAGES} == {forced}


def test_autoencoder_patches_and_the_diffusion_batch(train):
    """The paper's throughput settings at tiny: autoencoders on random crops (still encoding whole volumes after),
    latent stages with their own batch; a crop larger than the volume is refused by name."""
    import torch

    from foscu_bench.generators.duo_diffusion.config import config_for
    from foscu_bench.generators.duo_diffusion.training import random_patches

    data = torch.arange(2 * 1 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4, 4)
    rng = np.random.default_rng(0)
    crops = random_patches(data, np.array([1, 0, 1]), (2, 3, 4), rng)
    assert crops.shape == (3, 1, 2, 3, 4)
    assert all(any(torch.equal(c, data[i, :, x:x + 2, y:y + 3, :]) for x in range(3) for y in range(2))
               for c, i in zip(crops, [1, 0, 1]))
    assert torch.equal(random_patches(data, np.array([1]), None, rng), data[[1]])
    with pytest.raises(ValueError, match="larger than the volumes"):
        random_patches(data, np.array([0]), (5, 4, 4), rng)
    iterations = {k: 3 for k in STAGE_ITERATIONS}
    gen = G.create("duo-diffusion", iterations=iterations, sampling_steps=3)
    gen.overrides.update(autoencoder_patch=(8, 8, 8), diffusion_batch_size=6)
    gen.fit(train, TINY, seed=0)
    assert gen.duo_config.autoencoder_patch == (8, 8, 8) and gen.duo_config.diffusion_batch_size == 6
    pair = G.sample_validated(gen, 1, seed=0, shape=TINY.shape)[0]
    assert pair.image.shape[1:] == TINY.shape
    assert config_for("paper").autoencoder_patch == (64, 64, 64)


def test_divergence_stops_training_with_a_clear_error():
    from foscu_bench.generators.duo_diffusion.config import config_for
    from foscu_bench.generators.duo_diffusion.networks import build_diffusion_unet
    from foscu_bench.generators.duo_diffusion.training import train_diffusion

    config = config_for("tiny", iterations={"label_diffusion": 3})
    latents = torch.full((2, config.label_autoencoder.latent_channels, 8, 8, 8), float("nan"))
    unet = build_diffusion_unet(config.diffusion, config.label_autoencoder.latent_channels)
    with pytest.raises(FloatingPointError, match="'label_diffusion' diverged: loss nan at iteration 1"):
        train_diffusion("label_diffusion", unet, latents, config, seed=0, device="cpu")


def _gaussian_data_model(alphas_cumprod, s: float):
    """The exact v-prediction of data N(0, s^2): v = alpha sigma (1 - s^2) x / (alpha^2 s^2 + sigma^2)."""
    import torch

    def model(x, t: int):
        abar = alphas_cumprod[t].double()
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        return (alpha * sigma * (1 - s * s) / (alpha * alpha * s * s + sigma * sigma) * x.double()).float()

    return model


def _solve(scheduler, model, x):
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, int(t)), int(t), x)[0]
    return x


def test_dpm_solver_matches_the_exact_ode_solution_on_gaussian_data():
    """Independent check of DPM-Solver++(2M): for Gaussian data the probability-flow ODE keeps x_t / std_t
    constant, so the clean sample is x_T * s / std_T exactly. 20 log-SNR steps land within 1%, 10 within 3%
    (ending at t = 0, where the data prediction still shrinks by ~0.5%); uniform timesteps do far worse."""
    import torch
    from monai.networks.schedulers import DDPMScheduler

    from foscu_bench.errors import ConfigError
    from foscu_bench.generators.duo_diffusion.sampling import BETAS, DPMSolverMultistep

    abar = DDPMScheduler(num_train_timesteps=1000, **BETAS).alphas_cumprod
    x_T = torch.randn(2048, generator=torch.Generator().manual_seed(0))
    for s in (0.3, 0.5, 0.8):
        model = _gaussian_data_model(abar, s)
        exact = x_T * s / (abar[-1] * s * s + 1 - abar[-1]).sqrt()
        errors = {}
        for steps in (10, 20):
            scheduler = DPMSolverMultistep(abar, steps)
            assert len(scheduler.timesteps) <= steps and scheduler.timesteps[0] == 999 and scheduler.timesteps[-1] == 0
            errors[steps] = float((_solve(scheduler, model, x_T.clone()) / exact).mean() - 1)
        assert abs(errors[20]) < 0.01 and abs(errors[10]) < 0.03, (s, errors)
        uniform = DPMSolverMultistep(abar, 10)
        uniform.timesteps = torch.linspace(999, 0, 10).round().long()
        assert abs(float((_solve(uniform, model, x_T.clone()) / exact).mean() - 1)) > abs(errors[10])
    with pytest.raises(ConfigError, match="at least 2 steps"):
        DPMSolverMultistep(abar, 1)
    with pytest.raises(ConfigError, match="sample"):
        DPMSolverMultistep(abar, 10, "sample")


def test_dpm_solver_samples_a_ddpm_trained_model(fitted):
    pairs = list(fitted.sample(2, seed=3, sampler="dpm++", steps=6))
    assert len(pairs) == 2 and all(p.meta.get("sampler", "dpm++") == "dpm++" for p in pairs)
    assert all(np.isfinite(p.image).all() and 0 <= p.image.min() and p.image.max() <= 1.0 + 1e-6 for p in pairs)


def test_latent_stages_end_with_the_moving_average_of_their_weights():
    """The EMA run's final weights equal an independent replay of the warm-up EMA over the raw run's trajectory
    (the average does not change the trajectory itself), and the loss log is the raw run's."""
    import dataclasses

    from foscu_bench.generators.duo_diffusion.config import config_for
    from foscu_bench.generators.duo_diffusion.networks import build_diffusion_unet
    from foscu_bench.generators.duo_diffusion.training import train_diffusion

    config = config_for("tiny", iterations={"label_diffusion": 5})
    latents = torch.randn((4, config.label_autoencoder.latent_channels, 8, 8, 8), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    initial = build_diffusion_unet(config.diffusion, config.label_autoencoder.latent_channels)
    raw_unet, averaged_unet = copy.deepcopy(initial), copy.deepcopy(initial)
    trajectory = []
    raw = train_diffusion("label_diffusion", raw_unet, latents, dataclasses.replace(config, ema_decay=0.0), seed=3,
                          device="cpu", progress=lambda *_: trajectory.append(copy.deepcopy(raw_unet.state_dict())))
    averaged = train_diffusion("label_diffusion", averaged_unet, latents, config, seed=3, device="cpu")
    assert averaged["losses"] == raw["losses"]
    expected = {k: v.clone() for k, v in initial.state_dict().items()}
    for t, weights in enumerate(trajectory):
        decay = min(config.ema_decay, (1 + t) / (10 + t))
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    for key, value in averaged_unet.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)
    assert not torch.equal(averaged_unet.state_dict()[key], raw_unet.state_dict()[key])


def test_autoencoder_variants_set_the_compression_by_channels_per_level(monkeypatch):
    """bench/duo_autoencoder_variants.py's ``ch=`` key: one level fewer halves the autoencoder's compression factor
    (the measurement behind the latent-grid finding); other keys keep the fit's settings; unknown keys stop it."""
    from conftest import BENCH, bench_module
    from foscu_bench.generators.duo_diffusion.config import config_for

    monkeypatch.syspath_prepend(str(BENCH))  # the script imports bench_setup beside it
    variants = bench_module("duo_autoencoder_variants")
    base = config_for("quick")
    assert base.image_autoencoder.factor == 2  # quick's image latent: 16^3 x 4
    coarser = variants.variant_config(base, "ch=16,32,64;latent=8")  # the 8^3 x 8 latent quick had before
    assert coarser.image_autoencoder.channels == (16, 32, 64) and coarser.image_autoencoder.factor == 4
    assert coarser.image_autoencoder.latent_channels == 8
    assert coarser.iterations == base.iterations and coarser.adversarial_weight == base.adversarial_weight
    assert variants.variant_config(coarser, "ch=16,32;latent=4").image_autoencoder == base.image_autoencoder
    assert variants.variant_config(base, "latent=1").image_autoencoder.channels == base.image_autoencoder.channels
    with pytest.raises(SystemExit, match="unknown variant keys"):
        variants.variant_config(base, "levels=2")


def test_quick_image_stage_has_its_own_latent_unet_at_twice_the_label_latents_resolution():
    """Quick: labels 32^3 -> 8^3 x 3 under the label U-Net (32, 64, 64); images 32^3 -> 16^3 x 4 under a U-Net and
    ControlNet of their own (16, 32, 64, 64), whose conditioning embedding downsamples the full-resolution label
    once. One denoising call of each at quick sizes returns its latent's shape."""
    from foscu_bench.generators.duo_diffusion.config import config_for
    from foscu_bench.generators.duo_diffusion.generator import DuoDiffusion

    config = config_for("quick")
    modules = DuoDiffusion()._build_all(config)
    assert config.image_diffusion_size.channels == (16, 32, 64, 64) and config.diffusion.channels == (32, 64, 64)
    assert modules["image_unet"].block_out_channels == (16, 32, 64, 64)
    assert modules["label_unet"].block_out_channels == (32, 64, 64)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        z = modules["image_autoencoder"].encode_stage_2_inputs(torch.rand(2, 1, 32, 32, 32))
        assert z.shape == (2, 4, 16, 16, 16)
        down, mid = modules["controlnet"](z, t, controlnet_cond=torch.rand(2, 2, 32, 32, 32))
        out = modules["image_unet"](z, t, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        assert out.shape == z.shape
        labels = modules["label_autoencoder"].encode_stage_2_inputs(torch.rand(2, 3, 32, 32, 32))
        assert labels.shape == (2, 3, 8, 8, 8) and modules["label_unet"](labels, t).shape == labels.shape


def test_label_autoencoder_bench_swaps_the_fits_label_loss_only_inside_its_block(monkeypatch):
    """bench/duo_label_autoencoder_tumours.py measures loss variants without generator knobs: inside ``label_loss``
    the DiceCELoss that train_autoencoder builds has the variant's batch Dice and class weights; outside, the fit's."""
    import monai.losses

    from conftest import BENCH, bench_module

    monkeypatch.syspath_prepend(str(BENCH))
    bench = bench_module("duo_label_autoencoder_tumours")
    original = monai.losses.DiceCELoss
    with bench.label_loss({"batch": True, "weight": (1.0, 1.0, 4.0)}):
        loss = monai.losses.DiceCELoss(softmax=True, include_background=True)
        assert loss.dice.batch and loss.cross_entropy.weight.tolist() == [1.0, 1.0, 4.0]
    assert monai.losses.DiceCELoss is original and not original(softmax=True).dice.batch
