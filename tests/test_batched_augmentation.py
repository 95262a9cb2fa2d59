"""The batched (GPU-path) augmentation against MONAI's own transforms, parameter for parameter."""

import numpy as np
import pytest
import torch

from foscu_bench import batched_augmentation as ba


def _volume(shape=(18, 20, 22), seed=0):
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.random((1, *shape), dtype=np.float32))
    label = torch.zeros(1, *shape)
    label[:, 4:14, 5:15, 6:17] = 1
    label[:, 7:10, 8:11, 9:12] = 2
    return image, label


def _params_with(**values) -> np.ndarray:
    p = np.zeros(ba.N_PARAMETERS)
    p[ba.MATRIX] = np.eye(3).ravel()
    for name, value in values.items():
        p[getattr(ba, name)] = value
    return p


def test_affine_equals_monai_affine_on_a_non_cubic_volume():
    from monai.transforms import Affine
    from monai.transforms.utils import create_rotate, create_scale

    image, label = _volume()
    angles, scales = [0.1, -0.07, 0.12], [1.08, 0.93, 1.05]
    params = _params_with(AFFINE_ON=1.0)
    params[ba.MATRIX] = (np.asarray(create_rotate(3, angles)) @ np.asarray(create_scale(3, scales)))[:3, :3].ravel()
    ours_image, ours_label = ba.apply_batch(image[None], label[None], params[None])
    monai_image = Affine(rotate_params=angles, scale_params=scales, mode="bilinear", padding_mode="zeros",
                         image_only=True)(image)
    monai_label = Affine(rotate_params=angles, scale_params=scales, mode="nearest", padding_mode="zeros",
                         image_only=True)(label)
    assert torch.allclose(ours_image[0], torch.as_tensor(monai_image), atol=1e-5)
    assert (ours_label[0] == torch.as_tensor(monai_label)).float().mean() > 0.999
    assert not torch.allclose(ours_image[0], image, atol=1e-2)  # the transform did something


def test_intensity_transforms_equal_monai_and_noise_is_seeded():
    from monai.transforms import AdjustContrast, ScaleIntensity, ShiftIntensity

    image, label = _volume()
    params = _params_with(SCALE=0.07, SHIFT=-0.03, CONTRAST_ON=1.0, GAMMA=1.2)
    ours, ours_label = ba.apply_batch(image[None], label[None], params[None])
    expected = AdjustContrast(1.2)(ShiftIntensity(-0.03)(ScaleIntensity(minv=None, maxv=None, factor=0.07)(image)))
    assert torch.allclose(ours[0], torch.as_tensor(expected), atol=1e-5)
    assert torch.equal(ours_label[0], label)  # intensity transforms leave the label alone
    noisy = _params_with(NOISE_ON=1.0, NOISE_SD=0.02, NOISE_SEED=11)
    a, _ = ba.apply_batch(image[None], label[None], noisy[None])
    b, _ = ba.apply_batch(image[None], label[None], np.stack([_params_with(), noisy]))
    assert torch.equal(a[0], b[1])  # a sample's noise depends on its own seed, not on its batch
    assert 0.015 < float((a[0] - image).std()) < 0.025
    untouched, _ = ba.apply_batch(image[None], label[None], _params_with()[None])
    assert torch.equal(untouched[0], image)


def test_parameter_draws_follow_the_monai_chain_distribution():
    rng = np.random.default_rng(0)
    draws = np.stack([ba.draw_parameters(rng) for _ in range(4000)])
    for column, prob in ((ba.AFFINE_ON, ba.AFFINE_PROB), (ba.CONTRAST_ON, ba.CONTRAST_PROB),
                         (ba.NOISE_ON, ba.NOISE_PROB), (ba.SCALE, ba.SCALE_INTENSITY_PROB)):
        assert abs((draws[:, column] != 0).mean() - prob) < 0.03
    affine = draws[draws[:, ba.AFFINE_ON] > 0][:, ba.MATRIX].reshape(-1, 3, 3)
    determinants = np.linalg.det(affine)  # rotation x scale: det = product of the three scale factors
    assert determinants.min() > 0.9 ** 3 - 1e-9 and determinants.max() < 1.1 ** 3 + 1e-9
    gammas = draws[draws[:, ba.CONTRAST_ON] > 0][:, ba.GAMMA]
    assert gammas.min() >= 0.8 and gammas.max() <= 1.25
    assert np.all(np.abs(draws[:, ba.SHIFT]) <= ba.SHIFT_INTENSITY_OFFSET)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_batch_equals_cpu_batch():
    image, label = _volume()
    rng = np.random.default_rng(3)
    params = np.stack([ba.draw_parameters(rng) for _ in range(6)])
    params[:, ba.AFFINE_ON], params[:, ba.NOISE_ON] = 1.0, 0.0  # torch's CPU and CUDA generators differ
    cpu = ba.apply_batch(image[None].repeat(6, 1, 1, 1, 1), label[None].repeat(6, 1, 1, 1, 1), params)
    gpu = ba.apply_batch(image[None].repeat(6, 1, 1, 1, 1).cuda(), label[None].repeat(6, 1, 1, 1, 1).cuda(), params)
    assert torch.allclose(cpu[0], gpu[0].cpu(), atol=1e-4)
