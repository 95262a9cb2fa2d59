"""Whole-volume batched prediction gives the sliding window's labels (one window, its Gaussian weight divides out)."""

from __future__ import annotations

import numpy as np
import torch

from foscu_bench.profiles import get_profile
from foscu_bench.segmentation import build_segmenter, predict, predict_many


def test_batched_whole_volume_prediction_equals_the_sliding_window():
    settings = get_profile("tiny").segmentation
    torch.manual_seed(0)
    model = build_segmenter(settings).eval()
    rng = np.random.default_rng(0)
    whole = [rng.random((1, *settings.patch_size), dtype=np.float32) for _ in range(11)]  # > one batch of 8
    larger = rng.random((1, 24, 16, 16), dtype=np.float32)  # not one patch: goes through the sliding window
    images = whole[:5] + [larger] + whole[5:]
    batched = predict_many(model, images, settings, device="cpu")
    single = [predict(model, image, settings, device="cpu") for image in images]
    assert [b.shape for b in batched] == [s.shape for s in single]
    assert batched[5].shape == (24, 16, 16)
    for b, s in zip(batched, single):
        assert b.dtype == np.uint8
        assert np.mean(b == s) > 0.999  # argmax ties under float rounding of the single window's weight only
    assert len({b.tobytes() for b in batched}) > 1  # the untrained net still gives distinct maps (not a constant)
