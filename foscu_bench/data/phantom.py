"""Procedural abdominal MRI phantom: the embedded default dataset (no download, deterministic from a seed).

Anatomy is defined in millimetres in RAS patient coordinates (x: left->right, y: posterior->anterior,
z: inferior->superior; origin near the centre of the upper abdomen) by implicit shapes deformed with smooth
random fields. Because every random quantity is a function of physical position (random Fourier features,
not voxel noise), one seed is one "patient" at any grid: the tiny, quick and paper phantoms of a seed show the
same anatomy at different resolutions. Only the acquisition noise is drawn per voxel.

What it models, and why each piece is there:
- body outline with subcutaneous fat of varying thickness, abdominal-wall and paraspinal muscles, ribs;
- liver built from right lobe, left lobe and caudate lobe under a diaphragm dome, with smooth random
  deformation, size spread (volume CV ~20%, like adult livers) and position/rotation spread;
- intrahepatic portal-vein tree and hepatic veins (part of the liver label, as in CHAOS/LiTS), the
  retro-hepatic IVC (not liver), gallbladder in the liver's inferior fossa (not liver);
- neighbours with liver-like or confusing intensity: spleen, kidneys (cortex/medulla/sinus fat), stomach
  with air-fluid level, pancreas, bowel/mesentery texture, heart and lung bases above the dome, spine
  with discs, canal and psoas muscles, aorta;
- HCC-like tumours (label 2) in a configurable fraction of cases: 1-3 lobulated nodules, T1-hypo/T2-hyper
  (typical) or T1-hyper (fat/glycogen-containing), with a capsule-like rim and a necrotic core when large;
- MRI physics: T1- or T2-weighted (fat-suppressed, like CHAOS T2-SPIR) tissue contrast with per-case
  variation, in-organ texture, thick-slice partial volume (slices are integrated over their thickness),
  a smooth multiplicative bias field with receive-coil fall-off, and Rician noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Literal

import numpy as np

from foscu_bench.profiles import FIELD_OF_VIEW_MM

Weighting = Literal["T1", "T2"]

# --- tissue classes -------------------------------------------------------------------------------------
AIR, FAT, MUSCLE, VISCERA, LUNG, HEART, LIVER, HEPATIC_VESSEL, SPLEEN = range(9)
KIDNEY_CORTEX, KIDNEY_MEDULLA, STOMACH_WALL, STOMACH_LUMEN, STOMACH_AIR, GALLBLADDER = range(9, 15)
PANCREAS, AORTA, IVC, MARROW, CORTICAL_BONE, CSF, DISC = range(15, 22)
TUMOUR, TUMOUR_BRIGHT, CAPSULE, NECROSIS = range(22, 26)
N_TISSUES = 26

# Mean signal per tissue (arbitrary units, liver ~0.6 on T1). T1: gradient-echo, no contrast agent.
# T2: fat-suppressed T2 (SPIR-like): fluid brightest, liver darker than spleen and kidneys (as in CHAOS).
_T1 = {AIR: 0.0, FAT: 1.0, MUSCLE: 0.40, VISCERA: 0.50, LUNG: 0.03, HEART: 0.33, LIVER: 0.62,
       HEPATIC_VESSEL: 0.16, SPLEEN: 0.46, KIDNEY_CORTEX: 0.52, KIDNEY_MEDULLA: 0.34, STOMACH_WALL: 0.45,
       STOMACH_LUMEN: 0.14, STOMACH_AIR: 0.02, GALLBLADDER: 0.15, PANCREAS: 0.70, AORTA: 0.12, IVC: 0.15,
       MARROW: 0.68, CORTICAL_BONE: 0.05, CSF: 0.12, DISC: 0.34, TUMOUR: 0.40, TUMOUR_BRIGHT: 0.80,
       CAPSULE: 0.28, NECROSIS: 0.14}
_T2 = {AIR: 0.0, FAT: 0.16, MUSCLE: 0.22, VISCERA: 0.40, LUNG: 0.03, HEART: 0.30, LIVER: 0.36,
       HEPATIC_VESSEL: 0.10, SPLEEN: 0.74, KIDNEY_CORTEX: 0.72, KIDNEY_MEDULLA: 0.85, STOMACH_WALL: 0.40,
       STOMACH_LUMEN: 0.95, STOMACH_AIR: 0.02, GALLBLADDER: 1.00, PANCREAS: 0.45, AORTA: 0.08, IVC: 0.12,
       MARROW: 0.34, CORTICAL_BONE: 0.03, CSF: 1.00, DISC: 0.80, TUMOUR: 0.62, TUMOUR_BRIGHT: 0.44,
       CAPSULE: 0.20, NECROSIS: 0.95}
# Relative amplitude of smooth in-tissue texture (parenchyma is homogeneous, bowel and tumours are not).
_TEXTURE = {FAT: 0.05, MUSCLE: 0.07, VISCERA: 0.30, LIVER: 0.05, SPLEEN: 0.05, KIDNEY_CORTEX: 0.06,
            KIDNEY_MEDULLA: 0.08, PANCREAS: 0.10, MARROW: 0.12, HEART: 0.25, TUMOUR: 0.18,
            TUMOUR_BRIGHT: 0.18, STOMACH_LUMEN: 0.10}


@dataclass(frozen=True)
class PhantomConfig:
    """Acquisition and population settings of the phantom. Everything that changes the arrays is here."""

    spacing: tuple[float, float, float] = (6.0, 4.5, 10.0)
    field_of_view: tuple[float, float, float] = FIELD_OF_VIEW_MM
    weighting: Weighting = "T1"
    tumour_fraction: float = 0.4
    noise_level: float = 0.035
    """Rician noise sigma as a fraction of the mean liver signal (SNR of liver ~ 1 / noise_level)."""
    bias_strength: float = 0.25
    """Peak-to-mean amplitude of the smooth multiplicative bias field."""
    slice_supersampling: int = 3
    """Sub-slices integrated per acquired slice (thick-slice partial volume)."""

    def __post_init__(self) -> None:
        if self.weighting not in ("T1", "T2"):
            raise ValueError(f"weighting must be 'T1' or 'T2', got {self.weighting!r}")
        if not 0.0 <= self.tumour_fraction <= 1.0:
            raise ValueError(f"tumour_fraction must be in [0, 1], got {self.tumour_fraction}")
        if any(s <= 0 for s in self.spacing) or self.slice_supersampling < 1:
            raise ValueError("spacing must be positive and slice_supersampling >= 1")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(round(f / s)) for f, s in zip(self.field_of_view, self.spacing))  # type: ignore[return-value]

    def affine(self) -> np.ndarray:
        """RAS voxel-to-world affine; world origin at the field-of-view centre."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = [-(n * s) / 2 + s / 2 for n, s in zip(self.shape, self.spacing)]
        return affine

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PhantomCase:
    image: np.ndarray  # float32, (X, Y, Z), arbitrary MR units
    label: np.ndarray  # uint8, (X, Y, Z): 0 background, 1 liver, 2 tumour
    affine: np.ndarray  # 4x4 RAS
    tissue: np.ndarray  # uint8 tissue classes at slice centres (for analysis and tests)
    info: dict


# --- smooth random fields ------------------------------------------------------------------------------
def smooth_field(rng: np.random.Generator, wavelength_mm: float, n_terms: int = 12) -> Callable[[np.ndarray], np.ndarray]:
    """A zero-mean, unit-variance random field over physical space made of random Fourier features.

    Resolution independent: the field is a function of mm coordinates, evaluated on any grid.
    """
    directions = rng.normal(size=(n_terms, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = (2 * np.pi / wavelength_mm) * rng.uniform(0.6, 1.4, size=(n_terms, 1))
    omega = (directions * frequencies).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=n_terms).astype(np.float32)
    scale = np.float32(np.sqrt(2.0 / n_terms))

    def field(points: np.ndarray) -> np.ndarray:
        return scale * np.cos(points @ omega.T + phase).sum(axis=1)

    return field


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return (_rotation_z(rz) @ rot_y @ rot_x).astype(np.float32)


def ellipsoid(points: np.ndarray, centre, semi_axes, rotation: np.ndarray | None = None) -> np.ndarray:
    """Normalised implicit ellipsoid: < 0 inside, 0 on the surface, ~(distance / semi-axis) outside."""
    q = points - np.asarray(centre, dtype=np.float32)
    if rotation is not None:
        q = q @ rotation  # rotate points into the ellipsoid frame
    if any(np.ndim(a) for a in semi_axes):  # per-point semi-axes (tapered shapes)
        semi = np.stack(np.broadcast_arrays(*semi_axes), axis=-1).astype(np.float32)
    else:
        semi = np.asarray(semi_axes, dtype=np.float32)
    return np.sqrt(((q / semi) ** 2).sum(axis=1)) - 1.0


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: a union of two implicit shapes without a crease at the junction."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def segment_distance(points: np.ndarray, start, end) -> np.ndarray:
    """Euclidean distance (mm) from each point to the segment start-end."""
    a = np.asarray(start, dtype=np.float32)
    ab = np.asarray(end, dtype=np.float32) - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-6), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _tube_mask(points: np.ndarray, segments: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """Union of capsules (segment, radius); each is evaluated only inside its bounding box (speed)."""
    mask = np.zeros(len(points), dtype=bool)
    starts = np.array([s[0] for s in segments]); ends = np.array([s[1] for s in segments])
    radii = np.array([s[2] for s in segments])[:, None]
    lo_all, hi_all = (np.minimum(starts, ends) - radii).min(0), (np.maximum(starts, ends) + radii).max(0)
    near = np.flatnonzero(_in_box(points, lo_all, hi_all))
    candidates = points[near]
    for start, end, radius in segments:
        box = np.flatnonzero(_in_box(candidates, np.minimum(start, end) - radius, np.maximum(start, end) + radius))
        if box.size:
            mask[near[box[segment_distance(candidates[box], start, end) <= radius]]] = True
    return mask


def _in_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])


# --- anatomy ---------------------------------------------------------------------------------------------
def _vessel_tree(rng: np.random.Generator, root: np.ndarray, direction: np.ndarray, length: float,
                 radius: float, depth: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """A random branching tube tree (portal veins): each generation is shorter, thinner and spreads out."""
    end = root + direction * length
    segments = [(root.astype(np.float32), end.astype(np.float32), radius)]
    if depth > 0:
        for _ in range(rng.integers(2, 4)):
            child = direction + rng.normal(scale=0.55, size=3)
            child /= np.linalg.norm(child)
            segments += _vessel_tree(rng, end, child, length * rng.uniform(0.55, 0.8), max(radius * 0.65, 1.6), depth - 1)
    return segments


def _label_anatomy(points: np.ndarray, rng: np.random.Generator, tumour: bool) -> tuple[np.ndarray, dict]:
    """Assign a tissue class to every point (N x 3, mm). Returns tissue codes and per-case facts.

    Shapes are painted in priority order: later structures overwrite earlier ones.
    """
    n = len(points)
    info: dict = {}
    # Per-case anatomy: body habitus, liver size, position and rotation spread.
    body_scale = rng.uniform(0.88, 1.08)
    liver_scale = float(np.clip(rng.normal(1.0, 0.07), 0.82, 1.2))
    shift = np.array([rng.normal(0, 7), rng.normal(0, 6), rng.normal(0, 10)], dtype=np.float32)
    rotation = _rotation_z(rng.normal(0, np.deg2rad(4)))
    global_warp = [smooth_field(rng, 160.0) for _ in range(3)]
    p0 = (points - shift) @ rotation
    p = p0 + 6.0 * np.stack([f(p0) for f in global_warp], axis=1)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    tissue = np.full(n, AIR, dtype=np.uint8)

    # Body: ellipse, flatter posteriorly; subcutaneous fat of smoothly varying thickness.
    a_body, b_front, b_back = 168 * body_scale, 122 * body_scale, 108 * body_scale
    b_body = np.where(y >= 0, b_front, b_back)
    r_body = np.sqrt((x / a_body) ** 2 + ((y - 8) / b_body) ** 2)
    fat_thickness = rng.uniform(12, 32) * (1 + 0.35 * smooth_field(rng, 200.0)(p))
    inner = r_body + fat_thickness / (0.5 * (a_body + b_body))
    tissue[r_body <= 1.0] = FAT
    wall = (inner <= 1.0) & (inner > 1.0 - 10.0 / (0.5 * (a_body + b_body)))
    tissue[wall] = MUSCLE
    cavity = inner <= 1.0 - 10.0 / (0.5 * (a_body + b_body))
    tissue[cavity] = VISCERA  # bowel and mesentery; texture comes later
    # Bowel loops fill the lower abdomen; around the upper-abdominal organs there is more peritoneal fat.
    bowel_top = -25 + 15 * smooth_field(rng, 150.0)(p)
    fat_pattern = smooth_field(rng, 60.0)(p) + 0.4 * smooth_field(rng, 25.0)(p)
    visceral_fat = cavity & (fat_pattern > np.where(z > bowel_top, -0.2, 0.9))
    tissue[visceral_fat] = FAT

    # Ribs: intermittent cross-sections just inside the wall in the upper abdomen.
    rib_ring = (inner > 1.0 - 22.0 / (0.5 * (a_body + b_body))) & (inner <= 1.0 - 10.0 / (0.5 * (a_body + b_body)))
    rib_phase = np.sin(2 * np.pi * (z + 0.25 * np.abs(x)) / 38.0)
    tissue[rib_ring & (rib_phase > 0.55) & (z > -40) & (y > -90)] = CORTICAL_BONE
    tissue[rib_ring & (rib_phase > 0.75) & (z > -40) & (y > -90)] = MARROW

    # Diaphragm dome: lungs and heart above it, abdomen below.
    dome_right = 92 + 14 * liver_scale - ((x - 70) ** 2) / 900 - (y ** 2) / 1400
    dome_left = 78 - ((x + 70) ** 2) / 1000 - (y ** 2) / 1400
    dome = np.maximum(dome_right, dome_left) + 4 * smooth_field(rng, 120.0)(p)
    thorax = cavity & (z > dome)
    tissue[thorax] = LUNG
    diaphragm = cavity & ~thorax & (z > dome - 6)
    tissue[diaphragm] = MUSCLE
    heart = ellipsoid(p, (-18, 35, 150), (75, 62, 70)) < 0
    tissue[thorax & heart] = HEART

    # Spine, canal, discs, paraspinal and psoas muscles; aorta.
    vert = ((x / 24) ** 2 + ((y + 78) / 20) ** 2) <= 1
    cortex = ((x / 27) ** 2 + ((y + 78) / 23) ** 2) <= 1
    disc = np.abs(((z + 11) % 34) - 17) > 14
    paraspinal = ((np.abs(x) - 38) / 28) ** 2 + ((y + 112) / 20) ** 2 <= 1
    psoas_r = 10 + np.clip(-z, 0, None) * 0.18
    psoas = (((np.abs(x) - 36) ** 2 + (y + 70) ** 2) <= psoas_r ** 2) & (z < -10)
    tissue[(paraspinal | psoas) & (inner <= 1.0)] = MUSCLE
    tissue[cortex & (inner <= 1.0)] = CORTICAL_BONE
    tissue[vert & (inner <= 1.0)] = np.where(disc[vert & (inner <= 1.0)], DISC, MARROW)
    canal = (x ** 2 + (y + 112) ** 2) <= 9 ** 2
    tissue[canal & (inner <= 1.0)] = CSF
    aorta = ((x + 17) ** 2 + (y + 46) ** 2) <= 11 ** 2
    tissue[aorta & cavity] = AORTA

    # Kidneys with cortex, medulla and sinus fat (right one lower, under the liver).
    for side, cz in ((1, -42 + rng.normal(0, 6)), (-1, -25 + rng.normal(0, 6))):
        rot = _rotation(0.25, -0.2 * side, -0.35 * side)
        centre = (side * 72, -56, cz)
        level = ellipsoid(p, centre, (27, 24, 55), rot)
        tissue[(level < 0) & cavity] = KIDNEY_CORTEX
        tissue[(level < -0.25) & cavity] = KIDNEY_MEDULLA
        sinus = ellipsoid(p, (side * 62, -50, cz), (10, 12, 25), rot) < 0
        tissue[sinus & cavity] = FAT

    # Spleen (posterior left), stomach with air-fluid level (anterior left), pancreas.
    spleen_level = ellipsoid(p, (-96, -40, 45 + rng.normal(0, 6)), np.array([30, 55, 52], np.float32) * rng.uniform(0.85, 1.15),
                             _rotation(0.0, 0.2, 0.5)) + 0.12 * smooth_field(rng, 70.0)(p)
    tissue[(spleen_level < 0) & cavity & ~thorax] = SPLEEN
    stomach_rot = _rotation(0.3, 0.0, 0.4)
    stomach_centre = (-52, 38, 30 + rng.normal(0, 6))
    stomach_level = ellipsoid(p, stomach_centre, (42, 34, 55), stomach_rot) + 0.1 * smooth_field(rng, 60.0)(p)
    in_stomach = (stomach_level < 0) & cavity & ~thorax
    tissue[in_stomach] = STOMACH_WALL
    lumen = in_stomach & (stomach_level < -0.22)
    air_level = stomach_centre[2] + rng.uniform(5, 35)
    tissue[lumen] = np.where(z[lumen] > air_level, STOMACH_AIR, STOMACH_LUMEN)
    pancreas = _tube_mask(p, [(np.array([25, -20, -12], np.float32), np.array([-35, -28, -2], np.float32), 11.0),
                              (np.array([-35, -28, -2], np.float32), np.array([-85, -38, 12], np.float32), 8.0)])
    tissue[pancreas & cavity] = PANCREAS

    # Liver: right lobe + left lobe + caudate, smooth union, cut by the dome, deformed.
    liver_warp = [smooth_field(rng, 110.0) for _ in range(3)]
    q = p + 10.0 * np.stack([f(p) for f in liver_warp], axis=1)
    s = liver_scale
    right = ellipsoid(q, (72, 2, 20), (64 * s, 80 * s, 76 * s), _rotation(0.1, 0.15, 0.0))
    left_taper = 1.0 - 0.45 * np.clip((-q[:, 0] - 10) / 80.0, 0.0, 1.0)
    left = ellipsoid(q, (-10, 42, 58), (64 * s, 34 * s * left_taper, 30 * s * left_taper), _rotation(0.0, -0.2, 0.15))
    caudate = ellipsoid(q, (12, -18, 40), (22 * s, 20 * s, 30 * s))
    liver_level = smooth_min(smooth_min(right, left, 0.25), caudate, 0.2)
    liver_level = np.maximum(liver_level, (z - dome + 6) / 40.0)  # below the diaphragm
    liver = (liver_level < 0) & cavity & ~thorax & ~np.isin(tissue, (KIDNEY_CORTEX, KIDNEY_MEDULLA, MARROW, CORTICAL_BONE, DISC))
    liver &= ~((x + 17) ** 2 + (y + 46) ** 2 <= 14 ** 2)  # keep the aorta out
    tissue[liver] = LIVER

    # Vessels: IVC (retro-hepatic, not liver), hepatic veins and portal tree (intra-hepatic, liver label).
    ivc = ((x - 24) / 12) ** 2 + ((y + 34) / 14) ** 2 <= 1
    tissue[ivc & cavity & ~thorax] = IVC
    liver &= ~ivc
    hilum = np.array([32, 8, 8], np.float32) + rng.normal(0, 4, 3).astype(np.float32)
    portal = [(np.array([8, -10, -55], np.float32), hilum, 7.5)]
    for direction in ([0.9, 0.1, 0.45], [-0.9, 0.45, 0.4], [0.3, -0.7, 0.5]):
        d = np.asarray(direction, np.float32) + rng.normal(0, 0.15, 3).astype(np.float32)
        portal += _vessel_tree(rng, hilum, d / np.linalg.norm(d), rng.uniform(30, 45), 5.5, depth=2)
    hepatic = []
    confluence = np.array([24, -28, 72], np.float32)
    for direction in ([1.0, 0.5, 0.2], [0.1, 1.0, 0.1], [-0.9, 0.8, 0.1]):
        d = np.asarray(direction, np.float32) + rng.normal(0, 0.1, 3).astype(np.float32)
        hepatic += _vessel_tree(rng, confluence, d / np.linalg.norm(d), rng.uniform(45, 60), 5.0, depth=1)
    vessel = _tube_mask(p, portal + hepatic)
    tissue[vessel & (tissue == LIVER)] = HEPATIC_VESSEL
    tissue[vessel & (tissue == VISCERA) & (z < hilum[2])] = HEPATIC_VESSEL  # extra-hepatic portal trunk
    portal_trunk = vessel & ~liver
    liver_label_region = liver  # intra-hepatic vessels stay in the liver label

    # Gallbladder in the inferior fossa of the right lobe (excluded from the liver label).
    gb_centre = (44 + rng.normal(0, 5), 46 + rng.normal(0, 5), -12 + rng.normal(0, 8))
    gb = ellipsoid(p, gb_centre, np.array([15, 30, 17], np.float32) * rng.uniform(0.7, 1.2), _rotation(0.5, 0.0, 0.3)) < 0
    tissue[gb & cavity & ~thorax] = GALLBLADDER
    liver_label_region &= ~gb

    info.update(liver_scale=float(liver_scale), body_scale=float(body_scale), n_tumours=0, tumour_types=[])
    tumour_region = np.zeros(n, dtype=bool)
    if tumour:
        tumour_region = _add_tumours(p, rng, tissue, liver_label_region, liver_level, info)
    label = np.zeros(n, dtype=np.uint8)
    label[liver_label_region & ~portal_trunk] = 1
    label[tumour_region] = 2
    return np.stack([tissue, label], axis=1), info


def _add_tumours(p: np.ndarray, rng: np.random.Generator, tissue: np.ndarray, liver: np.ndarray,
                 liver_level: np.ndarray, info: dict) -> np.ndarray:
    """Paint 1-3 HCC-like nodules inside the liver; returns the tumour mask (nodule + capsule)."""
    candidates = p[liver & (liver_level < -0.25)]
    region = np.zeros(len(p), dtype=bool)
    if len(candidates) == 0:
        return region
    n_tumours = int(rng.choice([1, 1, 1, 2, 2, 3]))
    for _ in range(n_tumours):
        centre = candidates[rng.integers(len(candidates))] + rng.normal(0, 3, 3).astype(np.float32)
        radius = float(np.exp(rng.uniform(np.log(10), np.log(32))))
        lobulation = smooth_field(rng, 25.0)
        level = ellipsoid(p, centre, radius * rng.uniform(0.8, 1.2, 3).astype(np.float32),
                          _rotation(*rng.uniform(0, np.pi, 3))) + 0.12 * lobulation(p)
        nodule = (level < 0) & (liver | (level < -0.3))
        bright = rng.uniform() < 0.25
        capsule = nodule & (level > -3.0 / radius)
        tissue[nodule] = TUMOUR_BRIGHT if bright else TUMOUR
        tissue[capsule] = CAPSULE
        if radius > 20:
            tissue[nodule & (level < -0.55 + 0.1 * lobulation(p))] = NECROSIS
        region |= nodule
        info["tumour_types"].append("T1-hyper" if bright else "T1-hypo/T2-hyper")
    info["n_tumours"] = n_tumours
    return region


def _signal(points: np.ndarray, tissue: np.ndarray, rng: np.random.Generator, weighting: Weighting) -> np.ndarray:
    """Noise-free MR signal: per-case tissue means (each +-8%) times smooth in-tissue texture."""
    table = _T1 if weighting == "T1" else _T2
    means = np.array([table[t] * rng.normal(1.0, 0.08) for t in range(N_TISSUES)], dtype=np.float32)
    means[AIR] = 0.0
    texture_amp = np.zeros(N_TISSUES, dtype=np.float32)
    for t, amp in _TEXTURE.items():
        texture_amp[t] = amp
    texture = 0.7 * smooth_field(rng, 22.0, 16)(points) + 0.3 * smooth_field(rng, 9.0, 16)(points)
    return means[tissue] * (1.0 + texture_amp[tissue] * texture)


def generate_case(seed: int | np.random.SeedSequence, config: PhantomConfig = PhantomConfig(),
                  force_tumour: bool | None = None) -> PhantomCase:
    """Generate one phantom case; identical inputs give identical arrays on any machine with numpy >= 1.24."""
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    anatomy_seq, signal_seq, noise_seq = seq.spawn(3)
    anatomy_rng = np.random.default_rng(anatomy_seq)
    has_tumour = bool(anatomy_rng.uniform() < config.tumour_fraction) if force_tumour is None else force_tumour

    shape = config.shape
    affine = config.affine()
    k = config.slice_supersampling
    axes = [affine[i, 3] + affine[i, i] * np.arange(shape[i]) for i in range(3)]
    # Sub-slice positions across each slice's thickness, centre one included (k odd -> exact centre).
    offsets = (np.arange(k) - (k - 1) / 2) * (config.spacing[2] / k)
    z_sub = (axes[2][:, None] + offsets[None, :]).ravel()
    grid = np.stack(np.meshgrid(axes[0], axes[1], z_sub, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float32)

    coded, info = _label_anatomy(grid, anatomy_rng, has_tumour)
    signal_rng = np.random.default_rng(signal_seq)
    signal = _signal(grid, coded[:, 0], signal_rng, config.weighting)

    # Bias field: smooth random multiplicative field plus receive-coil fall-off towards the body centre.
    bias = np.exp(config.bias_strength * smooth_field(signal_rng, 320.0, 8)(grid))
    coil = 1.0 + 0.25 * np.clip((np.abs(grid[:, 1] - 8) / 120.0) ** 2 + (np.abs(grid[:, 0]) / 170.0) ** 2, 0, 1.5)
    signal = signal * bias * coil

    sub_shape = (shape[0], shape[1], shape[2], k)
    signal = signal.reshape(sub_shape).mean(axis=3)  # thick-slice partial volume
    centre = k // 2
    tissue = coded[:, 0].reshape(sub_shape)[..., centre]
    label = coded[:, 1].reshape(sub_shape)[..., centre]

    liver_mean = float(signal[label == 1].mean()) if np.any(label == 1) else float(signal.mean())
    sigma = config.noise_level * liver_mean
    noise_rng = np.random.default_rng(noise_seq)
    real = signal + noise_rng.normal(0, sigma, shape)
    imag = noise_rng.normal(0, sigma, shape)
    image = np.sqrt(real ** 2 + imag ** 2)  # Rician magnitude
    gain = float(np.random.default_rng(noise_seq.spawn(1)[0]).uniform(300, 1200))  # scanner units differ
    image = (image * gain).astype(np.float32)

    info.update(weighting=config.weighting, has_tumour=has_tumour, noise_sigma=sigma * gain)
    return PhantomCase(image=image, label=label.astype(np.uint8), affine=affine, tissue=tissue.astype(np.uint8), info=info)


def case_seed(dataset_seed: int, index: int) -> np.random.SeedSequence:
    """Seed of case ``index`` in a phantom dataset: independent streams, stable under changes of case count."""
    return np.random.SeedSequence([dataset_seed, index])
