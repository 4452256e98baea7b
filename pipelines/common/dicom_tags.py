"""Single DICOM tags read with one clear line for a broken one: code strings in any case, numbers
that must be finite, the SOP class wherever the file keeps it, and tag names with their
(gggg,eeee) numbers for messages."""

from __future__ import annotations

import math
from pathlib import Path

from recon.pipelines.common.errors import BadInput


def code_string(ds, keyword: str) -> str:
    """A code-string tag (Modality, Rescale Type, ...) of a DICOM header, upper case; "" when
    absent or empty."""
    return str(ds.get(keyword, "") or "").strip().upper()


def tag_name(keyword: str) -> str:
    """A DICOM keyword with its (gggg,eeee) tag number, as the one-line messages name tags."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return keyword if tag is None else f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def sop_class(ds) -> str:
    """The SOP Class UID: the data set's, else the file meta's Media Storage SOP Class UID (a
    writer that keeps it there alone)."""
    uid = str(ds.get("SOPClassUID", "") or "").strip()
    meta = getattr(ds, "file_meta", None)
    if not uid and meta is not None:
        uid = str(meta.get("MediaStorageSOPClassUID", "") or "").strip()
    return uid


def dicom_number(ds, keyword: str, default: float | None, path: Path) -> float:
    """A numeric tag as a finite float; default when absent or empty (None: required)."""
    name = tag_name(keyword)
    try:
        value = getattr(ds, keyword, None)
    except (TypeError, ValueError) as error:  # pydicom converts DS/IS values on access
        raise BadInput(f"{path}: DICOM tag {name} is not a number") from error
    if value is None or value == "":
        if default is None:
            raise BadInput(f"{path}: DICOM tag {name} is missing or empty")
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise BadInput(f"{path}: DICOM tag {name} is not a number ({value!r})") from error
    if not math.isfinite(number):
        raise BadInput(f"{path}: DICOM tag {name} is not finite ({value!r})")
    return number


def integer_tag(ds, keyword: str, path: Path) -> int:
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError) as error:
        raise BadInput(f"{path}: DICOM tag {keyword} is not an integer") from error


def as_pixel_representation(ds, value: int) -> int:
    """A value of a tag whose VR is US or SS as Pixel Representation says (Pixel Padding Value,
    a Modality LUT's first mapped value): one written as US in a signed file (-2000 as 63536)
    read as the signed 16-bit value its bits hold."""
    signed = str(ds.get("PixelRepresentation", 0)).strip() == "1"
    return value - 2**16 if signed and 2**15 <= value < 2**16 else value
