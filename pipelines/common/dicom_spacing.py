"""A DICOM X-ray's pixel spacing, as [row, column] mm (DICOM's order), at the detector or the
patient plane.

PixelSpacing (0028,0030) is calibrated to the patient when Pixel Spacing Calibration Type
(0028,0A02) says so (GEOMETRY, FIDUCIAL) or when it differs from ImagerPixelSpacing (0018,1164);
equal to it (within 0.1%: a rounded copy), it is the detector's own, not calibrated (PS3.3
10.7.1.1). The magnification factor is read only where it scales a spacing. Without either tag
its calibration cannot be known:
* at the detector plane: ImagerPixelSpacing, else PixelSpacing x
  EstimatedRadiographicMagnificationFactor (0018,1114, 1 when absent), PixelSpacing taken as
  calibrated; spacing_doubt says when that reading is a guess that matters (a factor other
  than 1 and no calibration type);
* at the patient plane: a calibrated PixelSpacing, or one without ImagerPixelSpacing to
  compare, else ImagerPixelSpacing / the magnification factor.
A spacing of 0\\0 in an X-ray means unknown (some CR writers put it there, as in pydicom-data's
RG1 chest film): pixel_spacing reads it as absent. A one-value, non-numeric, NaN or negative
spacing, or one with a single 0, raises BadInput naming the file and tag.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np

from recon.pipelines.common.dicom_tags import code_string, dicom_number, tag_name
from recon.pipelines.common.errors import BadInput

SPACING_TAGS = {
    "ImagerPixelSpacing": "(0018,1164)",
    "PixelSpacing": "(0028,0030)",
}

MAGNIFICATION = "EstimatedRadiographicMagnificationFactor"

CALIBRATION_TYPES = ("GEOMETRY", "FIDUCIAL")  # Pixel Spacing Calibration Type: at the patient

# PixelSpacing within 0.1% of ImagerPixelSpacing is a (rounded) copy of it, not a calibration:
# a magnification factor, source-to-detector over source-to-patient, is far above 1.001
COPY_RTOL = 1e-3


def pixel_spacing(
    ds, path: Path, plane: Literal["detector", "patient"] = "detector"
) -> tuple[tuple[float, float], str] | None:
    """([row, column] mm, the tags it came from) at the detector or the patient plane (see the
    module doc), or None when the file has neither spacing tag. BadInput for a broken one."""
    if plane not in ("detector", "patient"):
        raise ValueError(f"plane must be detector or patient, not {plane}")
    # the magnification factor is read only where it scales: a broken one elsewhere is unused
    if plane == "detector":  # the other tag is not read: a broken one there does not matter
        if (imager := _xray_spacing(ds, "ImagerPixelSpacing", path)) is not None:
            return imager, "ImagerPixelSpacing"
        patient = _xray_spacing(ds, "PixelSpacing", path)
        if patient is None:
            return None
        return _scaled(patient, "PixelSpacing", magnification_factor(ds, path), path, False)
    patient = _xray_spacing(ds, "PixelSpacing", path)
    if patient is not None and code_string(ds, "PixelSpacingCalibrationType") in CALIBRATION_TYPES:
        return patient, "PixelSpacing"
    imager = _xray_spacing(ds, "ImagerPixelSpacing", path)
    copy = (
        patient is not None
        and imager is not None
        and np.allclose(patient, imager, rtol=COPY_RTOL, atol=0.0)
    )
    if patient is not None and not copy:
        return patient, "PixelSpacing"
    if imager is None:
        return None
    magnification = magnification_factor(ds, path)
    found = _scaled(imager, "ImagerPixelSpacing", magnification, path, divide=True)
    if copy and magnification != 1.0:
        found = (found[0], found[1] + "; PixelSpacing equals it: not calibrated")
    return found


def magnification_factor(ds, path: Path) -> float:
    """EstimatedRadiographicMagnificationFactor (0018,1114), 1 when absent; BadInput when it is
    not a positive number."""
    magnification = dicom_number(ds, MAGNIFICATION, 1.0, path)
    if magnification <= 0:
        raise BadInput(
            f"{path}: DICOM tag {tag_name(MAGNIFICATION)} must be positive, not {magnification}"
        )
    return magnification


def _scaled(
    values: tuple[float, float], tag: str, magnification: float, path: Path, divide: bool
) -> tuple[tuple[float, float], str]:
    """A spacing tag's values times (or divided by) the magnification factor, and its source."""
    if magnification == 1.0:
        return values, tag
    if magnification < 1:  # source-to-detector over -object: at least 1
        raise BadInput(
            f"{path}: DICOM tag {MAGNIFICATION} {magnification:g}, which scales its {tag}, "
            "must be at least 1 (the source-to-detector over the source-to-patient distance)"
        )
    scale = 1.0 / magnification if divide else magnification
    source = f"{tag} {'/' if divide else 'x'} {magnification:g} (magnification {magnification:g})"
    return (values[0] * scale, values[1] * scale), source


def spacing_doubt(ds, path: Path) -> str | None:
    """Why the detector spacing pixel_spacing reads is a guess, or None: the file has only
    PixelSpacing, states no calibration, and a magnification factor other than 1 scales it, so
    it is off by that factor if PixelSpacing was the detector's own (PS3.3 10.7.1.1: then it
    cannot be determined)."""
    if _xray_spacing(ds, "ImagerPixelSpacing", path) is not None:
        return None
    if _xray_spacing(ds, "PixelSpacing", path) is None:
        return None
    if code_string(ds, "PixelSpacingCalibrationType") in CALIBRATION_TYPES:
        return None
    magnification = magnification_factor(ds, path)
    if magnification == 1.0:
        return None
    return (
        f"PixelSpacing (0028,0030) states no calibration (no Pixel Spacing Calibration Type, no "
        f"ImagerPixelSpacing): read as at the patient and scaled by {MAGNIFICATION} "
        f"{magnification:g} to the detector; if it is the detector's own, pass --pixel-spacing "
        "ROW COL"
    )


def unknown_spacing_tags(ds, path: Path) -> list[str]:
    """The X-ray spacing tags that hold 0\\0 (unknown), named with their numbers, for messages."""
    return [
        f"{tag} {number}"
        for tag, number in SPACING_TAGS.items()
        if dicom_pair(ds, tag, path) == (0.0, 0.0)
    ]


def _xray_spacing(ds, tag: str, path: Path) -> tuple[float, float] | None:
    """spacing_tag, with 0\\0 (unknown) read as absent."""
    if dicom_pair(ds, tag, path) == (0.0, 0.0):
        return None
    return spacing_tag(ds, tag, path)


def spacing_tag(ds, tag: str, path: Path) -> tuple[float, float] | None:
    """A spacing tag as ([row, column] mm), None when absent or empty; BadInput when it is not
    two positive finite numbers."""
    values = dicom_pair(ds, tag, path)
    if values is not None and not all(v > 0 for v in values):
        name = f"{tag} {SPACING_TAGS.get(tag, '')}".strip()
        raise BadInput(f"{path}: {name} must be two positive numbers, not {list(values)}")
    return values


def dicom_pair(ds, tag: str, path: Path) -> tuple[float, float] | None:
    """A two-valued numeric tag ([row, column]) as finite floats, None when absent or empty;
    BadInput naming the tag when it holds one value, three, or something not a number."""
    try:
        raw = ds[tag].value if tag in ds else None
    except (TypeError, ValueError) as error:  # pydicom converts DS/IS values on access
        raise BadInput(f"{path}: DICOM tag {tag} is not a number") from error
    if raw is None or raw == "":
        return None
    single = isinstance(raw, str | bytes) or not hasattr(raw, "__iter__")
    items = [raw] if single else list(raw)
    name = f"{tag} {SPACING_TAGS.get(tag, '')}".strip()
    if len(items) != 2:
        raise BadInput(f"{path}: {name} has {len(items)} value(s); expected two [row, column]")
    try:
        values = (float(items[0]), float(items[1]))
    except (TypeError, ValueError) as error:
        raise BadInput(f"{path}: {name} is not two numbers ({raw!r})") from error
    if not all(math.isfinite(v) for v in values):
        raise BadInput(f"{path}: {name} is not finite ({list(values)})")
    return values
