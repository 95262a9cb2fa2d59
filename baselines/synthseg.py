"""``synthseg``: label-to-image domain randomisation (Billot et al., SynthSeg, Medical Image Analysis 2023).

SynthSeg renders training images from label maps with random intensities, so a segmenter learns shape, not
contrast. The generative model per sample:
1. a deformed real training label map (random affine + elastic; nearest) - the conditioning is *deformed real
   training labels*, as for the other label-conditioned baselines;
2. a Gaussian mixture: each structure gets a mean ~ U(0, 1) and a standard deviation ~ U(0, 0.08);
3. spatially varying blur, and resolution randomisation: with probability 0.5 one axis is downsampled by a
   factor in [1.5, 3.5] and upsampled back (thick slices / anisotropic acquisitions);
4. a smooth multiplicative bias field, a gamma transform exp(N(0, 0.25)) and Gaussian noise;
5. min-max normalisation to [0, 1].

Our labels have three classes, but SynthSeg needs many structures to make an abdomen rather than one uniform
blob around the liver. ``fit`` therefore splits the background into ``n_background_clusters`` pseudo-structures
by k-means on the training images' intensities (fitted on training cases only); SynthSeg's authors obtain
extra labels the same way for unlabelled tissue (Billot et al. 2023, Sec. 3.1; SynthSR). Liver and tumour keep
their own labels.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from scipy import ndimage

from foscu_bench.conditioning import deformation_transform
from foscu_bench.generator import GeneratorBase, make_pair, synthetic_case_id, training_arrays
from foscu_bench.data.splits import require_training_set
from foscu_bench.pair import Pair


def pseudo_label_maps(images: np.ndarray, labels: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Background voxels clustered by intensity (k-means on training voxels); liver = K, tumour = K + 1."""
    from scipy.cluster.vq import kmeans2

    background = images[labels == 0]
    rng = np.random.default_rng(seed)
    subset = background[rng.choice(background.size, size=min(background.size, 200_000), replace=False)]
    centroids, _ = kmeans2(subset.astype(np.float64)[:, None], n_clusters, seed=seed, minit="++")
    centroids = np.sort(centroids[:, 0])
    assignment = np.abs(images[..., None] - centroids).argmin(axis=-1).astype(np.uint8)
    maps = np.where(labels == 0, assignment, n_clusters + labels.astype(np.int16) - 1).astype(np.uint8)
    return maps, centroids.astype(np.float32)


class SynthSeg(GeneratorBase):
    name = "synthseg"

    def __init__(self, n_background_clusters: int = 6, deformation_strength: float = 1.0) -> None:
        super().__init__()
        self.n_background_clusters = int(n_background_clusters)
        self.deformation_strength = float(deformation_strength)
        self.maps: np.ndarray | None = None

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        train = require_training_set(train)
        images, labels = training_arrays(train)
        self.maps, self.centroids = pseudo_label_maps(images, labels, self.n_background_clusters, seed)
        self._remember_fit(train, profile, seed)

    def _render(self, pseudo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """SynthSeg's generative model applied to one deformed pseudo-label map."""
        n_structures = self.n_background_clusters + 2
        means = rng.uniform(0.0, 1.0, n_structures)
        sds = rng.uniform(0.0, 0.08, n_structures)
        image = means[pseudo] + sds[pseudo] * rng.standard_normal(pseudo.shape)
        image = ndimage.gaussian_filter(image, sigma=rng.uniform(0.0, 1.0, 3))
        if rng.uniform() < 0.5:  # resolution randomisation along one axis
            axis = int(rng.integers(3))
            factor = rng.uniform(1.5, 3.5)
            zoom = [1.0, 1.0, 1.0]
            zoom[axis] = 1.0 / factor
            low = ndimage.zoom(image, zoom, order=1)
            image = ndimage.zoom(low, np.array(image.shape) / np.array(low.shape), order=1)
            image = image[tuple(slice(0, s) for s in pseudo.shape)]
        coarse = rng.normal(0, 0.3, (4, 4, 4))
        bias = np.exp(ndimage.zoom(coarse, np.array(pseudo.shape) / 4, order=3))[tuple(slice(0, s) for s in pseudo.shape)]
        image = image * bias
        image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
        image = image ** np.exp(rng.normal(0, 0.25))
        image = image + rng.normal(0, rng.uniform(0, 0.05), pseudo.shape)
        return (image - image.min()) / max(float(np.ptp(image)), 1e-6)

    def sample(self, n: int, seed: int) -> Iterator[Pair]:
        import torch

        profile = self._require_fitted()
        rng = np.random.default_rng(seed)
        k = self.n_background_clusters
        for i in range(n):
            index = int(rng.integers(len(self.maps)))
            sample_seed = int(rng.integers(2 ** 31))
            chain = deformation_transform(profile.shape, ["map"], ["nearest"], sample_seed, self.deformation_strength)
            pseudo = np.rint(np.asarray(chain({"map": torch.from_numpy(self.maps[index][None].astype(np.float32))})["map"])[0])
            pseudo = pseudo.astype(np.int64)
            label = np.zeros(pseudo.shape, dtype=np.uint8)
            label[pseudo == k] = 1
            label[pseudo == k + 1] = 2
            image = self._render(pseudo, np.random.default_rng(sample_seed))
            yield make_pair(image, label, profile, synthetic_case_id(self.name, seed, i),
                            source_case=self.train_case_ids[index])

    def settings(self) -> dict:
        return {"n_background_clusters": self.n_background_clusters,
                "deformation_strength": self.deformation_strength}

    def _tensors(self) -> dict:
        return {"maps": self.maps, "centroids": self.centroids}

    def _restore(self, arrays, config) -> None:
        self.maps, self.centroids = arrays["maps"], arrays["centroids"]
