"""Spine X-ray -> centre line, tilt per vertebral level, Cobb angle(s) with an uncertainty,
embedding vector.

Image frame: an antero-posterior X-ray, bone bright, row 0 at the top (head), columns along the
patient's lateral axis; `x` grows with the column, `z` grows upward, both in mm (pixel spacing
[row, column] from DICOM, else --pixel-spacing, else 1 mm per pixel).
Centre line: the best smooth top-to-bottom path, over column and body width together, through a
response to the two lateral borders of the vertebral bodies (the width may change by one step a
row, at a cost, so one border cannot be paired with whichever bright edge beside the spine fits
another width), then a cubic least-squares spline x(z) with a knot every KNOT_LEVELS levels.
Levels: the traced column is split into LEVELS = 17 equal parts, each named after the vertebra
that lies there when the vertebrae the film shows (span, default T1-L5) have typical adult
heights, which grow down the spine (see recon.pipelines.corset.vertebrae). Vertebrae are not
found one by one, so the names are as right as the span given and the patient's proportions.
Tilt of a level = atan(dx/dz) of the spline at the level's centre, in degrees (positive when the
line moves toward +x going up). Cobb angle = the largest difference between two level tilts of
the SCORED levels, all but the outermost on each side (T3..L4 with the default span: the
outermost level rests on the last half level of the trace; the two most tilted scored levels are
the end vertebrae); the secondary Cobb angle
is the largest tilt difference among scored levels outside the primary curve. The Cobb angle's
uncertainty (cobb_sd_deg) adds in quadrature two parts: the standard deviation of the Cobb angle
over BOOTSTRAP moving-block bootstrap resamples of the traced path's residuals about the spline
(blocks one level long, fixed seed: how well the path pins the curve down), and ASYMMETRY_DEG
times the border asymmetry (how unequal the two traced borders are: when tissue beside the spine
makes one stronger, the path may sit off the vertebral bodies' centre by a smooth drift that its
scatter cannot show).

Embedding (EMBEDDING_SIZE = 5 + 2 * LEVELS = 39 floats), in this order:
    [0]       signed primary Cobb / 90 (sign of the apex's offset toward +x)
    [1]       secondary Cobb / 90
    [2]       apex level / 16; [3] upper end level / 16; [4] lower end level / 16
    [5:22]    tilt per level / 45 deg, top to bottom
    [22:39]   lateral offset per level from the line through the end levels / spine length
Mirroring the image left-right negates entries 0, 5:22 and 22:39 (`mirror_embedding`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput, JobFailed
from recon.pipelines.common.io import PICTURE_SUFFIXES
from recon.pipelines.corset.spine_trace import (
    body_widths_px,
    border_asymmetry,
    border_responses,
    row_smoothed,
    spine_extent,
    subpixel_path,
    trace_centre_line,
)
from recon.pipelines.corset.vertebrae import DEFAULT_SPAN, LEVEL_COUNTING, LEVELS, level_names

EMBEDDING_SIZE = 5 + 2 * LEVELS
MIRRORED = np.r_[0, 5 : 5 + 2 * LEVELS]  # embedding entries that change sign under a mirror
IMAGE_SUFFIXES = PICTURE_SUFFIXES
KNOT_LEVELS = 3.0  # spline knot spacing along the column, in levels
BOOTSTRAP = 200  # resamples for the Cobb angle's uncertainty
# Degrees of Cobb-angle standard deviation per unit of border asymmetry (see border_asymmetry),
# added in quadrature to the bootstrap's: the error a path on the wrong side of the vertebral
# bodies makes, which its scatter cannot show. Calibrated once for |error| <= 2 SD in 95% of the
# tuning films of tests/spine_phantoms.py (bent-CT DRRs, seeds 0-63 and 1000-1029).
ASYMMETRY_DEG = 7.0
# Border asymmetry above this is out of what the method was tuned on (at most 0.70 on those 94
# DRRs; rotated chest films traced along the heart border or the chest wall give 0.77-0.92):
# embed-spine then warns that the line may follow tissue beside the spine.
ASYMMETRY_WARN = 0.75
# A traced column counts as a spine when its median response is this many times the image's 75th
# percentile: pure noise gives up to about 1.8, spine films 2.8 and more.
NOISE_RATIO = 2.25
# Below this column contrast (the same ratio) a found column is faint, and embed-spine warns: films
# of the lumbar spine of an abdominal CT (tests/data/lumbar_ct), where bowel gas draws stronger
# edges than the vertebrae, gave 2.3-3.3 (a Cobb error of 26-41 deg); bent chest-CT DRRs 3.2-5.6,
# a clinical chest film (pydicom-data's RG1) 3.2-4.0 turned by up to 10 deg, synthetic spine
# films 20 and more.
FAINT_RATIO = 3.0
TURNED_RATIO = 1.5  # across / down column strength above which a film may be turned (a warning)
# Levels that count for the Cobb angle and its end vertebrae: all but the outermost on each side,
# whose tilt rests on the last half level of the traced path, where tracing is least sure.
SCORED = slice(1, LEVELS - 1)
# Films taller than this are traced on block means at most this tall: a 3000-row film (0.19 mm
# pixels) then takes 0.5 s and 0.1 GB instead of 6 s and 1 GB, and its Cobb angle moves by
# 0.05 deg on average (10 synthetic films).
TRACE_ROWS = 1024
# Sides of a spine or chest film in mm (a collimated thoracic film to a full-length spine film,
# with magnification): outside this, "no spine found" asks whether the pixel spacing is right.
FILM_MM = (100.0, 1200.0)
# Row and column pixel spacings further apart than this are named in the warning: detectors
# have square pixels or nearly so, and a stretched film reads stretched tilts.
ASPECT_LIMIT = 1.5


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
    cobb_sd_deg: float = 0.0  # sqrt(bootstrap SD^2 + (ASYMMETRY_DEG * border asymmetry)^2)
    cobb_interval_deg: tuple[float, float] = (0.0, 0.0)  # about 95%, see measure_spine
    cobb_sd_bootstrap_deg: float = 0.0  # the path's scatter alone
    cobb_sd_border_deg: float = 0.0  # ASYMMETRY_DEG * border_asymmetry
    border_asymmetry: float = 0.0  # see border_asymmetry()
    span: str = DEFAULT_SPAN  # the vertebrae the film shows, which name the levels
    across_ratio: float = 0.0  # column strength across / down the film (see _across_ratio)
    column_contrast: float = 0.0  # how far the traced column stands out (see _Trace.contrast)
    spacing_note: str = ""  # why the pixel spacing looks wrong (_spacing_note), or ""

    @property
    def level_names(self) -> tuple[str, ...]:
        return level_names(self.span)

    @property
    def end_vertebrae(self) -> tuple[str, str]:
        return self.level_names[self.upper_end], self.level_names[self.lower_end]

    @property
    def apex_vertebra(self) -> str:
        return self.level_names[self.apex]

    @property
    def warning(self) -> str | None:
        """Why the trace may be off the spine, or the angles wrong (every reason, the likeliest
        fault first, in one line), or None."""
        reasons = [self.spacing_note] if self.spacing_note else []
        if self.across_ratio > TURNED_RATIO:
            reasons.append(
                f"the column across the film is {self.across_ratio:.1f} times as strong as the "
                "one down it: the film may be turned a quarter (turn it upright, or mend its "
                "orientation tags)"
            )
        if self.column_contrast and self.column_contrast < FAINT_RATIO:
            reasons.append(
                f"the traced column barely stands out of the film (contrast "
                f"{self.column_contrast:.1f}, below {FAINT_RATIO:g}; a spine that shows gives "
                f"more): the line may follow other edges (bowel gas, the heart)"
            )
        if self.border_asymmetry > ASYMMETRY_WARN:
            reasons.append(
                f"the two borders of the traced column differ strongly (asymmetry "
                f"{self.border_asymmetry:.2f}, above {ASYMMETRY_WARN}): the line may follow "
                "tissue beside the spine (heart, chest wall)"
            )
        if not reasons:
            return None
        last = reasons[-1]
        return "; ".join(reasons) + ("" if last == self.spacing_note else "; check the overlay")

    def as_dict(self) -> dict:
        sy, sx = self.spacing_mm
        upper, lower = self.end_vertebrae
        return {
            "format": "recon.spine/2",
            "cobb_deg": self.cobb_deg,
            "cobb_sd_deg": self.cobb_sd_deg,
            "cobb_interval_deg": list(self.cobb_interval_deg),
            "cobb_sd_parts_deg": {  # named as in the table
                "path": self.cobb_sd_bootstrap_deg,
                "borders": self.cobb_sd_border_deg,
            },
            "border_asymmetry": self.border_asymmetry,
            "warning": self.warning,
            "across_ratio": self.across_ratio,
            "column_contrast": self.column_contrast,
            "end_vertebrae": {"upper": upper, "lower": lower},
            "apex_vertebra": self.apex_vertebra,
            "end_levels": {"upper": self.upper_end, "lower": self.lower_end},
            "apex_level": self.apex,
            "span": self.span,
            "level_names": list(self.level_names),
            "level_counting": LEVEL_COUNTING,
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


@dataclass
class SpineImage:
    image: np.ndarray  # (H, W) float in [0, 1], bone bright, head up, patient's left at right
    spacing_mm: tuple[float, float]  # [row, column]
    spacing_source: str  # "--pixel-spacing", the DICOM tag(s), or "none" (1 mm = 1 pixel)
    orientation: str = "as stored (an image file: the radiological display, L\\F)"
    spacing_unknown: str = ""  # why a DICOM's spacing is "none": its tags that say 0\\0

    @property
    def known_spacing(self) -> tuple[float, float] | None:
        return None if self.spacing_source == "none" else self.spacing_mm


def load_spine_xray(
    path: Path, pixel_spacing: tuple[float, float] | float | None = None
) -> SpineImage:
    """Picture (PNG, JPEG, TIFF, BMP, WebP) or DICOM X-ray -> image in [0, 1] and its [row,
    column] spacing in mm.

    DICOM goes through recon.pipelines.common.dicom (modality and VOI LUT, MONOCHROME1
    inverted, spacing at the patient plane: PixelSpacing, else ImagerPixelSpacing / the
    magnification). pixel_spacing (one number means row = column) overrides the file's."""
    from recon.pipelines.common.dicom import looks_like_dicom, read_dicom_image
    from recon.pipelines.common.dicom_spacing import pixel_spacing as dicom_spacing
    from recon.pipelines.common.dicom_spacing import unknown_spacing_tags
    from recon.pipelines.common.io import (
        grey_pixels,
        picture_orientation,
        read_image,
        require_file,
    )

    path = require_file(Path(path), "X-ray")
    given = None
    if pixel_spacing is not None:
        pair = np.broadcast_to(np.asarray(pixel_spacing, dtype=np.float64), (2,))
        given = (float(pair[0]), float(pair[1]))
    orientation, unknown = SpineImage.orientation, ""
    if looks_like_dicom(path):
        dicom = read_dicom_image(path, voi=True, what="spine X-ray")
        image = dicom.pixels
        # the flag overrides: the file's spacing is not read, so a broken one does not matter
        found = None if given else dicom_spacing(dicom.dataset, path, "patient")
        if given is not None:
            pixel, source = given, "--pixel-spacing"
        elif found is not None:
            pixel, source = found
        else:
            pixel, source = (1.0, 1.0), "none"
            if tags := unknown_spacing_tags(dicom.dataset, path):
                unknown = f"{' and '.join(tags)} is 0\\0, unknown"
        turns, mirror, orientation = film_frame(dicom.dataset, path)
        image = np.rot90(image, turns)
        image = image[:, ::-1] if mirror else image
        pixel = (pixel[1], pixel[0]) if turns % 2 else pixel
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        image = grey_pixels(read_image(path, one_frame=True))
        if (stored := picture_orientation(path)) != 1:
            orientation = orientation.replace(
                "as stored", f"as its EXIF Orientation {stored} turns it"
            )
        pixel, source = (given, "--pixel-spacing") if given else ((1.0, 1.0), "none")
    else:
        raise BadInput(f"{path}: not a spine X-ray (expected PNG, JPEG, TIFF, BMP, WebP or DICOM)")
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise BadInput(f"{path}: expected a single 2D X-ray, got an array of shape {image.shape}")
    if not np.isfinite(image).all():
        raise BadInput(f"{path}: holds NaN or infinite pixel values")
    if min(image.shape) < 32:
        raise BadInput(f"{path}: image is {image.shape[1]}x{image.shape[0]}, too small for a spine")
    low, high = np.percentile(image, [0.5, 99.5])
    if not high > low:
        raise JobFailed(f"{path}: image is blank, no spine found")
    image = np.clip((image - low) / (high - low), 0, 1)
    return SpineImage(image, pixel, source, orientation, unknown)


# Body Part Examined (0018,0015) values (PS3.16 Annex L's defined terms, and a few that vendors
# write) of films that show no thoracic or lumbar spine: the limbs, the head and the breast. Any
# other value, or free text, is measured: a part named otherwise may still be a spine film.
# fmt: off
NOT_SPINE = frozenset({
    "ANKLE", "ARM", "CALCANEUS", "CALF", "ELBOW", "EXTREMITY", "FEMUR", "FINGER", "FOOT",
    "FOREARM", "HAND", "HUMERUS", "KNEE", "LEG", "PATELLA", "THIGH", "THUMB", "TIBIA", "TOE",
    "WRIST",  # the limbs
    "BRAIN", "EAR", "EYE", "FACE", "HEAD", "IAC", "JAW", "MANDIBLE", "MAXILLA", "NOSE", "ORBIT",
    "SKULL", "TMJ", "ZYGOMA",  # the head
    "BREAST",
})
# fmt: on


def film_frame(ds, path: Path) -> tuple[int, bool, str]:
    """How to bring a DICOM film into the measuring frame (head up, the patient's left toward
    +column, the radiological display L\\F): np.rot90 turns, whether to mirror after them, and
    a line that says what was read and done. Patient Orientation, else Field of View Rotation /
    Horizontal Flip, else the film is taken as displayed. BadInput for a lateral view, or a
    Body Part Examined that shows no spine (NOT_SPINE)."""
    from recon.pipelines.common.dicom_tags import code_string
    from recon.pipelines.xray import dicom_stored_orientation, image_frame

    view = code_string(ds, "ViewPosition")
    expects = "embed-spine measures frontal (AP or PA) spine films"
    if view in ("LL", "RL", "LATERAL"):
        raise BadInput(f"{path}: View Position (0018,5101) {view} is a lateral view; {expects}")
    part = code_string(ds, "BodyPartExamined")
    if part in NOT_SPINE:
        raise BadInput(f"{path}: Body Part Examined (0018,0015) {part} shows no spine; {expects}")
    stored, source = dicom_stored_orientation(ds, path)
    frame = image_frame(stored, "AP", str(path), source, expects)
    mirror = not frame.reverse_x_axis  # the patient's right toward +column after the turns
    said = [source] if stored is None else [source, f"stored {stored[0]}\\{stored[1]}"]
    said += [f"turned {90 * frame.quarter_turns} deg"] * bool(frame.quarter_turns)
    said += ["mirrored"] * mirror
    return frame.quarter_turns, mirror, f"L\\F ({'; '.join(said)})"


def measure_spine(
    image: np.ndarray, spacing: tuple[float, float] | None, span: str = DEFAULT_SPAN
) -> SpineMeasure:
    """Trace the spine in an X-ray (H, W) in [0, 1] and measure it (see module doc).

    spacing: [row, column] mm per pixel, or None when unknown (then 1 mm per pixel, and the body
    widths searched are fractions of the image width). span: the vertebrae the film shows, which
    name the levels (see level_names; it changes no number). A film taller than TRACE_ROWS is
    traced on its block means (factor k: at most TRACE_ROWS rows); positions are given in the
    film's own pixels."""
    level_names(span)  # a bad span fails before the work
    rows, cols = image.shape
    factor = max(1, min(-(-rows // TRACE_ROWS), cols // 64))
    if factor == 1:
        return _measure(image, spacing, span)
    from skimage.transform import downscale_local_mean

    small = downscale_local_mean(image[: rows - rows % factor, : cols - cols % factor], factor)
    coarse = None if spacing is None else (spacing[0] * factor, spacing[1] * factor)
    measure = _measure(small, coarse, span, given=(image.shape, spacing))
    to_full = lambda px: px * factor + (factor - 1) / 2  # noqa: E731 - block index -> its centre
    return dataclasses.replace(
        measure,
        centre_rows=to_full(measure.centre_rows),
        centre_cols=to_full(measure.centre_cols),
        level_rows=to_full(measure.level_rows),
        level_cols=to_full(measure.level_cols),
        spacing_mm=(1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1])),
    )


@dataclasses.dataclass
class _Trace:
    """The best column path down a film (see _trace)."""

    smooth: np.ndarray  # the film smoothed down the rows (row_smoothed)
    widths_px: list[float]  # the body widths searched
    columns: np.ndarray  # (H,) the path's column per row
    widths: np.ndarray  # (H,) its body-width index per row
    path: np.ndarray  # (H,) its subpixel column per row
    top: int  # the rows [top, bottom) where it lies on a column
    bottom: int
    strength: float  # median border response there, in the film's intensity units
    contrast: float  # that median over the film's 75th percentile of the response (NOISE_RATIO)
    found: bool  # whether that is a spine: long enough and far above the background


def _trace(image: np.ndarray, spacing: tuple[float, float] | None) -> _Trace:
    """Trace the best column path down the film and say whether it is a spine."""
    widths_px = body_widths_px(image, spacing)
    smooth = row_smoothed(image)
    responses = border_responses(smooth, widths_px)
    scale = max(float(np.percentile(responses.max(axis=0), 99)), 1e-12)
    responses /= scale
    response = responses.max(axis=0)
    columns, widths = trace_centre_line(responses)
    strength = response[np.arange(len(columns)), columns]
    path = subpixel_path(responses[widths, np.arange(len(columns))], columns)
    # Most pixels of an X-ray show no column, so the spine stands far above the response's upper
    # quartile; in noise the best path is only the upper tail of an everywhere-response.
    background = float(np.percentile(response, 75))
    top, bottom = spine_extent(strength)
    median = float(np.median(strength[top:bottom])) if bottom > top else 0.0
    contrast = median / max(background, 1e-12)
    found = bottom - top >= 0.25 * image.shape[0] and contrast >= NOISE_RATIO
    return _Trace(
        smooth, widths_px, columns, widths, path, top, bottom, median * scale, contrast, found
    )


def _across_ratio(image: np.ndarray, spacing: tuple[float, float] | None, down: _Trace) -> float:
    """How much stronger the column traced across the film (the film turned a quarter) is than
    the one traced down it, when it is a spine (0 otherwise, and on a film whose size in mm is
    no spine film's, _scale_hint, where the spacing is the likelier fault). Held upright, 40
    bent-CT DRRs and 12 synthetic spine films gave at most 0.6, but `synth xray` chest films
    up to 1.4; on their side the spine films give 1.7 to 5."""
    if _scale_hint(image.shape, spacing):
        return 0.0
    across = _trace(np.rot90(image).copy(), None if spacing is None else spacing[::-1])
    if not across.found:
        return 0.0
    return float(across.strength / max(down.strength, 1e-12))


def _measure(
    image: np.ndarray, spacing: tuple[float, float] | None, span: str, given=None
) -> SpineMeasure:
    """measure_spine on the film as it is, or on its block means: given is then the film's own
    (shape, spacing), which messages name."""
    shape, stated = given or (image.shape, spacing)
    trace = _trace(image, spacing)
    across_ratio = _across_ratio(image, spacing, trace)
    if not trace.found and across_ratio > 0:
        raise JobFailed(
            "no spine found down the X-ray, but one across it: it may be turned a quarter (turn "
            "the film upright, or mend its orientation tags)"
        )
    if not trace.found:
        raise JobFailed(
            f"no spine found in the X-ray (no bright vertical column{_scale_hint(shape, stated)})"
        )
    smooth, widths_px, columns, widths = trace.smooth, trace.widths_px, trace.columns, trace.widths
    path, top, bottom = trace.path, trace.top, trace.bottom
    sy, sx = (1.0, 1.0) if spacing is None else spacing
    r = np.arange(top, bottom, dtype=np.float64)
    z = -r * sy  # mm, upward
    traced = path[top:bottom] * sx
    level_idx = ((np.arange(LEVELS) + 0.5) * len(r) / LEVELS).astype(int)
    fit = CentreLineFit(z)
    x, slopes = fit.evaluate(traced, level_idx)
    tilts = np.degrees(np.arctan(slopes))
    level_rows, level_x = r[level_idx], x[level_idx]
    scored = tilts[SCORED]
    upper, lower = sorted((int(np.argmax(scored)), int(np.argmin(scored))))
    upper, lower = upper + SCORED.start, lower + SCORED.start
    cobb = float(np.ptp(scored))
    spread = fit.bootstrap_cobb(traced, x, level_idx[SCORED])
    asymmetry = border_asymmetry(smooth, widths_px, columns, widths, (top, bottom))
    bootstrap_sd = float(np.std(spread))
    border_sd = ASYMMETRY_DEG * asymmetry
    sd = math.hypot(bootstrap_sd, border_sd)
    # the bootstrap's 2.5-97.5% range, each side widened in quadrature by 1.96 border SDs
    low, high = np.percentile(spread, [2.5, 97.5])
    interval = (
        max(0.0, cobb - math.hypot(max(cobb - low, 0.0), 1.96 * border_sd)),
        cobb + math.hypot(max(high - cobb, 0.0), 1.96 * border_sd),
    )
    length = float(np.ptp(z))
    chord = np.interp(
        level_rows, [level_rows[upper], level_rows[lower] + 1e-9], [level_x[upper], level_x[lower]]
    )
    offsets = level_x - chord
    inside = np.arange(upper, lower + 1)
    apex = int(inside[np.argmax(np.abs(offsets[inside]))])
    secondary = max(
        float(np.ptp(tilts[SCORED.start : upper + 1])), float(np.ptp(tilts[lower : SCORED.stop]))
    )
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
        cobb_sd_deg=sd,
        cobb_interval_deg=(float(interval[0]), float(interval[1])),
        cobb_sd_bootstrap_deg=bootstrap_sd,
        cobb_sd_border_deg=border_sd,
        border_asymmetry=asymmetry,
        span=span.strip().upper(),
        across_ratio=across_ratio,
        column_contrast=trace.contrast,
        spacing_note=_spacing_note(shape, stated),
    )


def _spacing_note(shape: tuple[int, ...], spacing: tuple[float, float] | None) -> str:
    """Why the pixel spacing looks wrong for a spine film, or "": rows and columns more than
    ASPECT_LIMIT times apart (every tilt would be stretched), or a film of no spine film's size
    (FILM_MM); shape: the film's (rows, columns)."""
    if spacing is None:
        return ""
    sy, sx = spacing
    if max(sy, sx) > ASPECT_LIMIT * min(sy, sx):
        return (
            f"the pixel spacing {sy:g} x {sx:g} mm (row x column) differs "
            f"{max(sy, sx) / min(sy, sx):.1f} times between rows and columns, which stretches "
            "every tilt: check the pixel spacing"
        )
    hint = _scale_hint(shape, spacing)
    return hint[2:] if hint else ""


def _scale_hint(shape: tuple[int, ...], spacing: tuple[float, float] | None) -> str:
    """'; at 0.2 x 0.2 mm per pixel the film is 51 x 51 mm: check the pixel spacing' when that
    size is not one of a spine or chest film (FILM_MM), else ''; shape: the film's (rows,
    columns)."""
    if spacing is None:
        return ""
    height, width = shape[0] * spacing[0], shape[1] * spacing[1]
    if FILM_MM[0] <= min(height, width) and max(height, width) <= FILM_MM[1]:
        return ""
    return (
        f"; at {spacing[0]:g} x {spacing[1]:g} mm per pixel the film is {width:.0f} x "
        f"{height:.0f} mm: check the pixel spacing"
    )


class CentreLineFit:
    """Least-squares cubic spline x(z) over the traced rows, a knot every KNOT_LEVELS levels;
    linear in x, so refitting a resample is one matrix product."""

    def __init__(self, z: np.ndarray) -> None:
        from scipy.interpolate import BSpline

        ascending = z[::-1]  # rows run downward, z upward
        pieces = max(1, int(round(LEVELS / KNOT_LEVELS)))
        inner = np.linspace(ascending[0], ascending[-1], pieces + 1)[1:-1]
        knots = np.r_[[ascending[0]] * 4, inner, [ascending[-1]] * 4]
        basis = BSpline.design_matrix(ascending, knots, 3).toarray()[::-1]  # (N, K), row order
        slope_basis = np.stack(
            [
                BSpline(knots, np.eye(basis.shape[1])[k], 3).derivative()(z)
                for k in range(basis.shape[1])
            ],
            axis=1,
        )
        self.count = len(z)
        self.smoother = basis @ np.linalg.pinv(basis)  # (N, N): traced x -> fitted x
        self.slope = slope_basis @ np.linalg.pinv(basis)  # (N, N): traced x -> dx/dz

    def evaluate(self, traced: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fitted x (N,) and slopes dx/dz at the level rows (LEVELS,)."""
        return self.smoother @ traced, self.slope[levels] @ traced

    def bootstrap_cobb(self, traced: np.ndarray, fitted: np.ndarray, levels: np.ndarray):
        """Cobb angles (BOOTSTRAP,) of the fit to fitted + moving-block resampled residuals."""
        residuals = traced - fitted
        block = max(2, self.count // LEVELS)
        starts = np.random.default_rng(0).integers(
            0, max(1, self.count - block + 1), size=(BOOTSTRAP, -(-self.count // block))
        )
        index = (starts[:, :, None] + np.arange(block)).reshape(BOOTSTRAP, -1)[:, : self.count]
        samples = fitted[None] + residuals[np.minimum(index, self.count - 1)]
        tilts = np.degrees(np.arctan(samples @ self.slope[levels].T))
        return np.ptp(tilts, axis=1)


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
