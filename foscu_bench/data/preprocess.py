"""Preprocessing with MONAI transforms: every source, the phantom included, goes through the same chain.

Chain: map labels -> reorient to RAS -> resample to the profile spacing (bilinear image, nearest label)
-> percentile intensity normalisation to [0, 1] -> crop to the body's bounding box -> centre crop/pad to the
profile shape. The crop is driven by the image alone (never the label), so test cases are framed exactly as
a deployed model would frame them; the fraction of the liver kept inside the frame is recorded per case.
"""

from __future__ import annotations

import json

import numpy as np

from foscu_bench.data.label_map import LabelMap
from foscu_bench.data.volume_io import RawCase
from foscu_bench.pair import Pair
from foscu_bench.profiles import Profile

PREPROCESS_VERSION = "2"
BODY_THRESHOLD = 0.08
"""Normalised intensity above which a voxel counts as body when framing the crop (air/noise is ~0-0.03)."""


def axcodes(affine: np.ndarray) -> str:
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine))


def preprocess_case(raw: RawCase, label_map: LabelMap, profile: Profile) -> Pair:
    """Turn a source case into a ``Pair`` on the profile grid."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import (Compose, CropForegroundd, Orientationd, ResizeWithPadOrCropd,
                                  ScaleIntensityRangePercentilesd, Spacingd)

    label = label_map.apply(raw.label_path, raw.label)
    native_spacing = tuple(float(s) for s in np.linalg.norm(raw.affine[:3, :3], axis=0))
    liver_ml_native = float(np.count_nonzero(label)) * float(np.prod(native_spacing)) / 1000.0
    affine = torch.as_tensor(raw.affine, dtype=torch.float64)
    data = {"image": MetaTensor(torch.from_numpy(np.ascontiguousarray(raw.image, dtype=np.float32))[None], affine=affine),
            "label": MetaTensor(torch.from_numpy(label.astype(np.float32))[None], affine=affine.clone())}
    low, high = profile.intensity_percentiles
    chain = Compose([
        Orientationd(keys=["image", "label"], axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys=["image", "label"], pixdim=profile.spacing, mode=("bilinear", "nearest"),
                 padding_mode="zeros"),
        ScaleIntensityRangePercentilesd(keys="image", lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=["image", "label"], source_key="image", select_fn=lambda x: x > BODY_THRESHOLD,
                        allow_smaller=True),
        ResizeWithPadOrCropd(keys=["image", "label"], spatial_size=profile.shape),
    ])
    out = chain(data)
    image = out["image"].numpy().astype(np.float32)
    label_out = np.rint(out["label"].numpy()[0]).astype(np.uint8)
    liver_ml = float(np.count_nonzero(label_out)) * float(np.prod(profile.spacing)) / 1000.0
    meta = {
        "native_shape": list(raw.image.shape),
        "native_spacing": [round(s, 4) for s in native_spacing],
        "native_orientation": axcodes(raw.affine),
        "liver_ml_native": round(liver_ml_native, 3),
        "liver_kept_fraction": round(liver_ml / liver_ml_native, 4) if liver_ml_native else 0.0,
        "affine": np.asarray(out["image"].affine, dtype=np.float64).tolist(),
        "source": raw.meta,
    }
    meta = json.loads(json.dumps(meta))  # as the cache stores it: a fresh pair equals its cached copy
    return Pair(image=image, label=label_out, spacing=profile.spacing, case_id=raw.case_id,
                patient_id=raw.patient_id, meta=meta)
