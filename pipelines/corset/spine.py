"""Spine X-ray -> centre line, tilt per vertebral level, Cobb angle(s), embedding vector.

Image frame: an antero-posterior X-ray, bone bright, row 0 at the top (head), columns along the
patient's lateral axis; `x` grows with the column, `z` grows upward, both in mm (pixel spacing
from DICOM, else --spacing). Levels: LEVELS = 17 (T1..L5) equal parts of the detected column,
index 0 at the top. Tilt of a level = atan(dx/dz) of the centre line at the level's centre, in
degrees (positive when the line moves toward +x going up). Cobb angle = the largest difference
between two level tilts (primary curve; its most tilted levels are the end vertebrae); the
secondary Cobb angle is the largest tilt difference among levels outside the primary curve.

Embedding (EMBEDDING_SIZE = 5 + 2 * LEVELS = 39 floats), in this order:
    [0]       signed primary Cobb / 90 (sign of the apex's offset toward +x)
    [1]       secondary Cobb / 90
    [2]       apex level / 16; [3] upper end level / 16; [4] lower end level / 16
    [5:22]    tilt per level / 45 deg, top to bottom
    [22:39]   lateral offset per level from the line through the end levels / spine length
Mirroring the image left-right negates entries 0, 5:22 and 22:39 (`mirror_embedding`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput, JobFailed

LEVELS = 17
EMBEDDING_SIZE = 5 + 2 * LEVELS
MIRRORED = np.r_[0, 5 : 5 + 2 * LEVELS]  # embedding entries that change sign under a mirror
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class SpineMeasure:
    """What embed-spine finds; lengths in mm, angles in degrees, pixels as (row, column)."""

    centre_rows: np.ndarray  # (N,) pixel rows of the traced centre line
    centre_cols: np.ndarray  # (N,) fitted columns
    level_rows: np.ndarray  # (LEVELS,) row of each level centre
    level_cols: np.ndarray  # (LEVELS,)
    tilts_deg: np.ndarray  # (LEVELS,)
    cobb_deg: float
    upper_end: int  # level index
    lower_end: int
    apex: int
    secondary_cobb_deg: float
    spacing_mm: tuple[float, float]
    embedding: np.ndarray = field(default_factory=lambda: np.zeros(EMBEDDING_SIZE))

    def as_dict(self) -> dict:
        sy, sx = self.spacing_mm
        return {
            "format": "recon.spine/1",
            "cobb_deg": self.cobb_deg,
            "end_vertebrae": {"upper": self.upper_end, "lower": self.lower_end},
            "apex_level": self.apex,
            "secondary_cobb_deg": self.secondary_cobb_deg,
            "levels": LEVELS,
            "tilts_deg": self.tilts_deg.tolist(),
            "level_centres_px": np.stack([self.level_rows, self.level_cols], 1).tolist(),
            "level_centres_mm": np.stack([self.level_rows * sy, self.level_cols * sx], 1).tolist(),
            "centre_line_px": np.stack([self.centre_rows, self.centre_cols], 1).tolist(),
            "spacing_mm": list(self.spacing_mm),
            "embedding": self.embedding.tolist(),
            "embedding_layout": "see corset/spine.py (signed Cobb, secondary, apex/ends, "
            "17 tilts / 45 deg, 17 lateral offsets / spine length; level 0 at the top)",
        }


def load_spine_image(path: Path, spacing: float | None = None):
    """PNG/JPEG/TIFF or DICOM X-ray -> (float image (H, W) in [0, 1], (row, col) spacing mm)."""
    from recon.pipelines.common.io import read_image, require_file

    path = require_file(Path(path), "X-ray")
    suffix = path.suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(132)
    if suffix in DICOM_SUFFIXES or head[128:132] == b"DICM":
        image, found = _read_dicom(path)
        pixel = tuple(found) if found else (spacing or 1.0, spacing or 1.0)
    elif suffix in IMAGE_SUFFIXES:
        image = read_image(path)
        pixel = (spacing or 1.0, spacing or 1.0)
    else:
        raise BadInput(f"{path}: not a spine X-ray (expected PNG/JPEG/TIFF or DICOM)")
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[..., :3].mean(axis=2)
    if image.ndim != 2:
        raise BadInput(f"{path}: expected a single 2D X-ray, got an array of shape {image.shape}")
    if min(image.shape) < 32:
        raise BadInput(f"{path}: image is {image.shape[1]}x{image.shape[0]}, too small for a spine")
    low, high = np.percentile(image, [0.5, 99.5])
    if high <= low:
        raise JobFailed(f"{path}: image is blank, no spine found")
    return np.clip((image - low) / (high - low), 0, 1), pixel


def _read_dicom(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        image = ds.pixel_array.astype(np.float64)
    except Exception as error:  # pydicom raises many types for broken files
        raise BadInput(f"{path}: not a readable DICOM image ({error})") from error
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        image = image.max() - image
    found = None
    for tag in ("ImagerPixelSpacing", "PixelSpacing"):
        if tag in ds:
            found = [float(v) for v in ds.data_element(tag).value][:2]
            break
    return image, found


# Vertebral-body widths searched, as fractions of the image width: on a chest- or spine-sized AP
# field a thoracic body (with its pedicles) is about 7-10% of the width, a lumbar one about 12%.
BODY_WIDTHS = (0.06, 0.08, 0.10, 0.12, 0.14)


def centre_line_response(image: np.ndarray) -> np.ndarray:
    """Vertebral-column response (H, W): evidence for BOTH lateral borders of a vertebral body.

    For each body width w (BODY_WIDTHS of the image width, so PNGs without a pixel spacing work
    the same) and centre column c: the geometric mean of the rising step at c - w/2 and the
    falling step at c + w/2 (step: mean of the w/4 columns just beyond minus just before), on
    the image smoothed down the rows over about half a vertebra (sigma 1.2% of the height); the
    best width wins. Bright tissue with one sharp border only (heart, contrast-filled vessels
    beside the spine, a lung edge) scores ~0 and a smooth background (abdomen) cancels out,
    where a band-minus-flanks brightness response is pulled toward them. A narrow two-bordered
    bone over the spine (the sternum when the patient is turned) still competes.
    """
    from scipy.ndimage import gaussian_filter, uniform_filter1d

    rows, cols = image.shape
    smooth = gaussian_filter(image, sigma=(0.012 * rows, 1.0))
    best = np.zeros(image.shape)
    for fraction in BODY_WIDTHS:
        width = max(4, int(round(fraction * cols)))
        run = max(2, int(round(width / 4)))
        mean = uniform_filter1d(smooth, run, axis=1, mode="nearest")
        gap = run // 2 + 1
        step = _shift_cols(mean, gap) - _shift_cols(mean, -gap)  # > 0 where it gets brighter
        rising = np.maximum(_shift_cols(step, -(width // 2)), 0)
        falling = np.maximum(-_shift_cols(step, width // 2), 0)
        best = np.maximum(best, np.sqrt(rising * falling))
    return best


def _shift_cols(a: np.ndarray, k: int) -> np.ndarray:
    """out[:, c] = a[:, c + k], the edge columns repeated."""
    out = np.empty_like(a)
    cols = a.shape[1]
    if k >= 0:
        out[:, : cols - k] = a[:, k:]
        out[:, cols - k :] = a[:, -1:]
    else:
        out[:, -k:] = a[:, : cols + k]
        out[:, :-k] = a[:, :1]
    return out


def trace_centre_line(response: np.ndarray, max_step: int = 1, jump_cost: float = 0.05):
    """Best smooth top-to-bottom path through the response: columns per row (H,), by DP.

    The path moves at most max_step columns per row (45 deg for 1) and pays jump_cost per
    column moved (the response is in units of its 99th percentile, see _unit), so it follows
    one column instead of hopping between neighbouring ridges. Only the central 70% of the
    columns are searched (an AP spine X-ray is roughly centred).
    """
    rows, cols = response.shape
    lo, hi = int(0.15 * cols), int(0.85 * cols)
    score = response[:, lo:hi].copy()
    back = np.zeros(score.shape, dtype=np.int64)
    width = hi - lo
    idx = np.arange(width)
    for r in range(1, rows):
        prev = score[r - 1]
        best = np.full(width, -np.inf)
        arg = idx.copy()
        for d in range(-max_step, max_step + 1):
            shifted = np.full(width, -np.inf)
            if d >= 0:
                shifted[: width - d] = prev[d:] - jump_cost * abs(d)
            else:
                shifted[-d:] = prev[: width + d] - jump_cost * abs(d)
            better = shifted > best
            best[better] = shifted[better]
            arg[better] = idx[better] + d
        score[r] += best
        back[r] = arg
    path = np.zeros(rows, dtype=np.int64)
    path[-1] = int(np.argmax(score[-1]))
    for r in range(rows - 1, 0, -1):
        path[r - 1] = back[r, path[r]]
    return path + lo


def _subpixel(response: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Path columns refined to the vertex of a parabola through the response at c-1, c, c+1."""
    cols = response.shape[1]
    c = np.clip(path, 1, cols - 2)
    r = np.arange(len(path))
    left, mid, right = response[r, c - 1], response[r, c], response[r, c + 1]
    curve = left - 2 * mid + right
    peaked = curve < -1e-12
    offset = np.where(peaked, 0.5 * (left - right) / np.where(peaked, curve, -1.0), 0.0)
    return c + np.clip(offset, -0.5, 0.5)


def _unit(response: np.ndarray) -> np.ndarray:
    return response / max(float(np.percentile(np.abs(response), 99)), 1e-12)


def _spine_extent(
    strength: np.ndarray, path: np.ndarray | None = None, tolerance: float = np.inf
) -> tuple[int, int]:
    """Rows [top, bottom) where the traced path lies on the spine.

    Hysteresis on the smoothed path response s (relative to its 90th percentile p): the core is
    the longest run with s > 0.4 p; it grows row by row while s > 0.15 p (the lumbar spine behind
    the abdomen responds weakly but is still the only column there) and, when `path` is given,
    while the path stays within `tolerance` columns of the straight line fitted to the nearest
    12% of the rows already inside (clutter at the shoulders pulls the path sideways).
    """
    from scipy.ndimage import uniform_filter1d

    count = len(strength)
    smooth = uniform_filter1d(strength, max(3, count // 40))
    level = np.percentile(smooth, 90)
    above = smooth > 0.4 * level
    best, start, best_run = (0, 0), None, 0
    for r, flag in enumerate(np.r_[above, False]):
        if flag and start is None:
            start = r
        elif not flag and start is not None:
            if r - start > best_run:
                best, best_run = (start, r), r - start
            start = None
    top, bottom = best
    if bottom <= top:
        return best
    weak = smooth <= 0.15 * level
    span = max(5, int(0.12 * count))

    def leaves(row: int, lo: int, hi: int) -> bool:
        if path is None or hi - lo < 3:
            return False
        fit = np.polyfit(np.arange(lo, hi), path[lo:hi], 1)
        return abs(np.polyval(fit, row) - path[row]) > tolerance

    while top > 0 and not (weak[top - 1] or leaves(top - 1, top, min(bottom, top + span))):
        top -= 1
    while bottom < count and not (weak[bottom] or leaves(bottom, max(top, bottom - span), bottom)):
        bottom += 1
    return top, bottom


def measure_spine(image: np.ndarray, spacing: tuple[float, float]) -> SpineMeasure:
    """Trace the spine in an X-ray (H, W) in [0, 1] and measure it (see module doc)."""
    response = _unit(centre_line_response(image))
    columns = trace_centre_line(response)
    strength = response[np.arange(len(columns)), columns]
    path = _subpixel(response, columns)
    # Most pixels of an X-ray show no column, so the spine stands far above the response's upper
    # quartile; in noise the best path is only the upper tail of an everywhere-response.
    background = float(np.percentile(response, 75))
    top, bottom = _spine_extent(strength, path, tolerance=0.015 * image.shape[1])
    rows = image.shape[0]
    if bottom - top < 0.25 * rows or np.median(strength[top:bottom]) < 3.0 * background:
        raise JobFailed("no spine found in the X-ray (no bright vertical column)")
    sy, sx = spacing
    r = np.arange(top, bottom, dtype=np.float64)
    z = -r * sy  # mm, upward
    t = (z - z.mean()) / (np.ptp(z) / 2)
    coeffs = np.polynomial.polynomial.polyfit(t, path[top:bottom] * sx, deg=5)
    x = np.polynomial.polynomial.polyval(t, coeffs)
    level_idx = ((np.arange(LEVELS) + 0.5) * len(r) / LEVELS).astype(int)
    tilts = np.degrees(np.arctan(_local_slopes(z, path[top:bottom] * sx, level_idx, len(r))))
    level_rows, level_x = r[level_idx], x[level_idx]
    upper, lower = sorted((int(np.argmax(tilts)), int(np.argmin(tilts))))
    cobb = float(tilts.max() - tilts.min())
    length = float(np.ptp(z))
    chord = np.interp(
        level_rows, [level_rows[upper], level_rows[lower] + 1e-9], [level_x[upper], level_x[lower]]
    )
    offsets = level_x - chord
    inside = np.arange(upper, lower + 1)
    apex = int(inside[np.argmax(np.abs(offsets[inside]))])
    secondary = max(float(np.ptp(tilts[: upper + 1])), float(np.ptp(tilts[lower:])), 0.0)
    sign = 1.0 if offsets[apex] >= 0 else -1.0
    embedding = np.concatenate(
        [
            [sign * cobb / 90, secondary / 90, apex / 16, upper / 16, lower / 16],
            tilts / 45.0,
            offsets / length,
        ]
    )
    return SpineMeasure(
        centre_rows=r,
        centre_cols=x / sx,
        level_rows=level_rows,
        level_cols=level_x / sx,
        tilts_deg=tilts,
        cobb_deg=cobb,
        upper_end=upper,
        lower_end=lower,
        apex=apex,
        secondary_cobb_deg=secondary,
        spacing_mm=(float(sy), float(sx)),
        embedding=embedding.astype(np.float64),
    )


def _local_slopes(z: np.ndarray, x: np.ndarray, centres: np.ndarray, count: int) -> np.ndarray:
    """dx/dz at each level centre: a line fitted to the traced path over +-0.75 level."""
    half = max(2, int(0.75 * count / LEVELS))
    slopes = []
    for c in centres:
        window = slice(max(0, c - half), min(count, c + half + 1))
        slopes.append(np.polyfit(z[window], x[window], 1)[0])
    return np.asarray(slopes)


def mirror_embedding(embedding: np.ndarray) -> np.ndarray:
    """The embedding of the left-right mirrored X-ray (..., EMBEDDING_SIZE)."""
    mirrored = np.array(embedding, dtype=np.float64, copy=True)
    mirrored[..., MIRRORED] *= -1
    return mirrored


def debug_overlay(image: np.ndarray, measure: SpineMeasure) -> np.ndarray:
    """RGB uint8 overlay: centre line (green), level centres (yellow), end levels (red)."""
    from skimage.draw import disk, line

    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    rows, cols = grey.shape
    rr = np.clip(np.round(measure.centre_rows).astype(int), 0, rows - 1)
    cc = np.clip(np.round(measure.centre_cols).astype(int), 0, cols - 1)
    rgb[rr, cc] = (0, 255, 0)
    radius = max(2, rows // 150)
    half = max(6, cols // 12)
    for level, (r, c, tilt) in enumerate(
        zip(measure.level_rows, measure.level_cols, measure.tilts_deg, strict=True)
    ):
        end = level in (measure.upper_end, measure.lower_end)
        colour = (255, 0, 0) if end else (255, 255, 0)
        a = math.radians(tilt)
        dr, dc = half * math.sin(a), half * math.cos(a)  # endplate line, perpendicular to axis
        r0, c0, r1, c1 = (
            int(np.clip(v, 0, lim - 1))
            for v, lim in ((r - dr, rows), (c - dc, cols), (r + dr, rows), (c + dc, cols))
        )
        lr, lc = line(r0, c0, r1, c1)
        rgb[lr, lc] = colour
        dr_, dc_ = disk((r, c), radius, shape=grey.shape)
        rgb[dr_, dc_] = colour
    return rgb


@dataclass
class SyntheticXray:
    image: np.ndarray  # (H, W) uint16, bone bright
    spacing_mm: float  # isotropic
    tilts_deg: np.ndarray  # (LEVELS,) true vertebra tilts, top to bottom
    cobb_deg: float  # max - min of the true tilts
    level_rows: np.ndarray  # (LEVELS,) true vertebra centre rows
    level_cols: np.ndarray


def synth_spine_xray(
    cobb_deg: float,
    height: float = 500.0,
    width: float = 320.0,
    rows: int = 256,
    seed: int = 0,
) -> SyntheticXray:
    """An AP X-ray of a single-curve spine x(z) = spine_curve(z, height, cobb_deg), z in [0, h].

    The spine spans the torso height (17 vertebrae); soft tissue, lungs and ribs around it, blur
    and noise. cobb_deg may be negative (convex toward -x).
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
    centre_z = height - (np.arange(LEVELS) + 0.5) * height / LEVELS  # top first
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
    vert_h, vert_w = 0.75 * height / LEVELS, rng.uniform(34, 44)
    for cz, cx, a in zip(centre_z, centre_x, tilts, strict=True):
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
    image = np.clip(image + 0.05, 0, 1)
    level_rows = (height + margin - centre_z) / spacing - 0.5
    level_cols = centre_x / spacing + cols / 2 - 0.5
    tilts_deg = np.degrees(tilts)
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
