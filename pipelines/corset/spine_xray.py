"""Synthetic AP spine X-rays with a known Cobb angle, for `recon synth corset` and the tests.

A single-curve spine x(z) = spine_curve(z, height, cobb_deg) (recon.pipelines.shapes) of 17
vertebrae, T1 to L5 at their typical proportions (vertebrae.SEGMENT_MM), spanning the torso height,
drawn as tilted rectangular bodies with pedicles, in soft tissue with lungs and ribs, blurred,
scaled and noised. The true tilts and vertebra centres come with the image, so
spine.measure_spine can be scored against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.corset.vertebrae import SEGMENT_MM, span_vertebrae


@dataclass
class SyntheticXray:
    image: np.ndarray  # (H, W) uint16, bone bright
    spacing_mm: float  # isotropic
    tilts_deg: np.ndarray  # (17,) true vertebra tilts, T1 to L5
    cobb_deg: float  # max - min of the true tilts
    level_rows: np.ndarray  # (17,) true vertebra centre rows
    level_cols: np.ndarray


def synth_spine_xray(
    cobb_deg: float,
    height: float = 500.0,
    width: float = 320.0,
    rows: int = 256,
    seed: int = 0,
) -> SyntheticXray:
    """An AP X-ray of a single-curve spine x(z) = spine_curve(z, height, cobb_deg), z in [0, h].

    The spine spans the torso height (17 vertebrae, T1 to L5, each as tall as its share of
    vertebrae.SEGMENT_MM, with the disc below it); soft tissue, lungs and ribs around it, blur
    and noise. cobb_deg may be negative (convex toward -x). x is the torso's +x, the patient's
    right (z up, +y anterior), and the film is shown as radiographs are, and as embed-spine
    reads a film without orientation tags: the patient's right at the image's left, so +x runs
    toward -column (level_cols and tilts_deg follow the image: a tilt is positive when the
    spine moves toward +column going up).
    """
    from scipy.ndimage import gaussian_filter

    from recon.pipelines.shapes import spine_curve

    rng = np.random.default_rng(seed)
    margin = 0.08 * height
    spacing = (height + 2 * margin) / rows
    cols = int(round(rows * 0.8))
    z = height + margin - (np.arange(rows) + 0.5) * spacing
    x = (np.arange(cols) + 0.5 - cols / 2) * spacing
    xx, zz = np.meshgrid(x, z)
    segments = np.array([SEGMENT_MM[name] for name in span_vertebrae("T1-L5")])
    segments *= height / segments.sum()
    centre_z = height - (np.cumsum(segments) - segments / 2)  # top first
    centre_x = spine_curve(centre_z, height, cobb_deg)
    eps = 1e-3 * height
    slope = (
        spine_curve(centre_z + eps, height, cobb_deg)
        - spine_curve(centre_z - eps, height, cobb_deg)
    ) / (2 * eps)
    tilts = np.arctan(slope)

    image = np.zeros((rows, cols))
    body = (xx / (0.5 * width)) ** 2 < 1
    image += 0.25 * body
    for side in (-1, 1):
        lung = ((xx - side * 0.23 * width) / (0.16 * width)) ** 2 + (
            (zz - 0.72 * height) / (0.22 * height)
        ) ** 2 < 1
        image -= 0.1 * lung
    for k in range(12):  # ribs: arcs leaving the thoracic vertebrae
        zc, xc = centre_z[k], centre_x[k]
        for side in (-1, 1):
            u = side * (xx - xc)
            arc = zc - 0.0015 * u**2 / (width / 320)
            rib = (u > 15) & (u < 0.42 * width) & (np.abs(zz - arc) < 3.5)
            image += 0.12 * rib
    vert_w = rng.uniform(34, 44)
    for cz, cx, a, vert_h in zip(centre_z, centre_x, tilts, 0.75 * segments, strict=True):
        u = (xx - cx) * math.cos(a) - (zz - cz) * math.sin(a)
        v = (xx - cx) * math.sin(a) + (zz - cz) * math.cos(a)
        bone = (np.abs(u) < vert_w / 2) & (np.abs(v) < vert_h / 2)
        image += 0.45 * bone
        for side in (-1, 1):  # pedicles
            ped = ((u - side * 0.32 * vert_w) ** 2 + v**2) < (0.12 * vert_w) ** 2
            image += 0.15 * ped
    image = gaussian_filter(image, 1.2 / spacing * 2)
    image *= rng.uniform(0.8, 1.2)
    image += rng.normal(0, 0.02, image.shape)
    image = np.clip(image + 0.05, 0, 1)[:, ::-1]  # the patient's right (+x) at the image's left
    level_rows = (height + margin - centre_z) / spacing - 0.5
    level_cols = cols / 2 - 0.5 - centre_x / spacing
    tilts_deg = -np.degrees(tilts)
    return SyntheticXray(
        image=np.round(image * 65535).astype(np.uint16),
        spacing_mm=float(spacing),
        tilts_deg=tilts_deg,
        cobb_deg=float(tilts_deg.max() - tilts_deg.min()),
        level_rows=level_rows,
        level_cols=level_cols,
    )


def write_spine_png(path: Path, xray: SyntheticXray) -> Path:
    """Write a synthetic X-ray as 16-bit PNG (spacing goes in the truth file, not the PNG)."""
    from recon.pipelines.common.io import write_png

    return write_png(path, xray.image)
