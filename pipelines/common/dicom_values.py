"""What a DICOM X-ray's values mean: the modality transform, the display (VOI) transform, and
which way the values run.

- The modality transform (modality_values): Rescale Slope/Intercept, which come together
  (pydicom's `apply_modality_lut`), or a Modality LUT, looked up here as a VOI LUT is. With
  voi=True readers then apply the display the file asks for (apply_voi): its VOI LUT, looked
  up here (8- to 16-bit entries, or 8-bit ones packed two to a word: pydicom's lookup wraps an
  8-bit table's indices and reads neither 12-bit entries nor packed ones), else its window
  (pydicom's `apply_windowing`).
- Which way the values run (beam_relation): Pixel Intensity Relationship Sign (0028,1041),
  which DX and CR files carry for the values stored in Pixel Data (+1: lower values, less beam
  intensity, denser), turned by a negative Rescale Slope or a Modality LUT decreasing over the
  values used; XA and RF files carry no sign, and there LIN and LOG both rise with the beam;
  else the Photometric Interpretation (MONOCHROME1: bright = air). Pixel Intensity
  Relationship (0028,1040) says whether the values are proportional to the beam intensity
  (LIN) or already logarithmic (LOG) or processed for display (DISP), which decides whether
  registration takes their -log. An XA/RF LOG file's Modality LUT (back to linear intensity,
  no part of display) is not applied.
- A Rescale Slope without its Intercept, a window of width 0 or a LUT whose data does not fit
  its descriptor raises BadInput naming the file and the tag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.dicom_tags import (
    as_pixel_representation,
    code_string,
    dicom_number,
    sop_class,
    tag_name,
)
from recon.pipelines.common.errors import BadInput, first_line

MODALITY_LUT = "the Modality LUT Sequence (0028,3000)"


@dataclass(frozen=True)
class BeamRelation:
    """How an X-ray's values (after the modality LUT) relate to the X-ray beam."""

    invert: bool  # lower values are denser: bright = dense needs them inverted
    linear: bool | None  # LIN: True; LOG or DISP: False; the file does not say: None
    source: str  # the tags this was read from, for records

    def describe(self) -> str:
        kind = {True: "linear in the beam", False: "not linear in the beam", None: "unknown"}
        order = "lower values denser (inverted)" if self.invert else "higher values denser"
        return f"{self.source}: {order}; {kind[self.linear]}"


def beam_relation(
    ds, path: Path, photometric: str, stored: np.ndarray | None = None
) -> BeamRelation:
    """Which way a DICOM X-ray's values run and whether they are linear in the beam intensity
    (see the module doc); stored (the pixels as stored) gives the range over which a Modality
    LUT's direction is judged. BadInput for a sign other than +1 or -1."""
    relationship = code_string(ds, "PixelIntensityRelationship")
    linear = None if not relationship else relationship == "LIN"
    parts = [f"Pixel Intensity Relationship {relationship}"] if relationship else []
    if linear is None and code_string(ds, "RescaleType") == "OD":
        linear = False  # optical density, log10 of the transmission: logarithmic already
        parts.append("Rescale Type OD")
    keyword = "PixelIntensityRelationshipSign"
    raw = ds[keyword].value if keyword in ds else None
    if raw is not None and raw != "":
        try:
            sign = int(raw)
        except (TypeError, ValueError):
            sign = 0
        if sign not in (1, -1):
            raise BadInput(
                f"{path}: Pixel Intensity Relationship Sign (0028,1041) is {raw!r}, not +1 or -1"
            )
        parts.append(f"sign {sign:+d}")
    elif relationship in ("LIN", "LOG") and _xa_or_rf(ds):  # no sign there: both rise
        sign = 1
        parts.append(f"sign +1 (implied by {relationship} in {ds.get('Modality')})")
    else:
        parts.append(photometric)
        return BeamRelation(photometric == "MONOCHROME1", linear, ", ".join(parts))
    if not modality_lut_applies(ds):
        parts.append("Modality LUT not applied (it maps LOG back to linear)")
        return BeamRelation(sign > 0, linear, ", ".join(parts))
    rising = _modality_rises(ds, path, stored)
    if not rising:
        parts.append("modality LUT decreasing")
    return BeamRelation((sign > 0) == rising, linear, ", ".join(parts))


def _xa_or_rf(ds) -> bool:
    """An angiography or fluoroscopy image (XA, RF), whose module has Pixel Intensity
    Relationship but no Sign."""
    return code_string(ds, "Modality") in ("XA", "RF") or sop_class(ds).startswith(
        "1.2.840.10008.5.1.4.1.1.12."
    )


def modality_lut_applies(ds) -> bool:
    """False for a LOG XA or RF image with a Modality LUT Sequence: that LUT maps the log values
    back to linear intensity and is no part of display (PS3.3 C.8.7.1.1.2), so the values are
    read as stored, as LOG says."""
    relationship = code_string(ds, "PixelIntensityRelationship")
    return not (relationship == "LOG" and "ModalityLUTSequence" in ds and _xa_or_rf(ds))


def _modality_rises(ds, path: Path, stored: np.ndarray | None = None) -> bool:
    """Whether the modality transform (Rescale Slope, or the Modality LUT Sequence over the
    stored values the image uses, else over its whole table) keeps their order."""
    if not ds.get("ModalityLUTSequence"):
        return dicom_number(ds, "RescaleSlope", 1.0, path) >= 0
    if stored is not None and stored.size:
        used = np.array([stored.min(), stored.max()])
    else:
        entries, first, _ = _lut_descriptor(ds, ds.ModalityLUTSequence[0], MODALITY_LUT, path)
        used = np.array([first, first + entries - 1])
    ends = modality_values(used, ds, path)
    return bool(ends[-1] >= ends[0])


def require_rescale(ds, path: Path) -> None:
    """BadInput for a rescale that would be wrong: a Rescale Slope of 0 (every pixel one value),
    or Rescale Slope (0028,1053) without Rescale Intercept (0028,1052) or the reverse, which
    come together (Type 1C, PS3.3 C.11.1) and which pydicom then skips, while beam_relation
    would still turn the values by the slope's sign."""
    if dicom_number(ds, "RescaleSlope", 1.0, path) == 0:
        raise BadInput(
            f"{path}: RescaleSlope (0028,1053) is 0, which maps every pixel to one value"
        )
    dicom_number(ds, "RescaleIntercept", 0.0, path)
    given = {k: ds.get(k, None) not in (None, "") for k in ("RescaleSlope", "RescaleIntercept")}
    if given["RescaleSlope"] != given["RescaleIntercept"]:
        there, missing = ("RescaleSlope", "RescaleIntercept")[:: 1 if given["RescaleSlope"] else -1]
        raise BadInput(
            f"{path}: {tag_name(there)} is there without {tag_name(missing)}; a rescale needs "
            "both (PS3.3 C.11.1)"
        )


def modality_values(stored: np.ndarray, ds, path: Path) -> np.ndarray:
    """Stored values through the modality transform, float64: the first item of the Modality
    LUT Sequence, looked up by lut_table (8- to 16-bit entries, one per word or 8-bit ones
    packed two to a word; values outside the table take its first or last entry, PS3.3
    C.11.1.1.1), except in an XA/RF LOG file (modality_lut_applies); else Rescale Slope and
    Intercept (pydicom's apply_modality_lut). BadInput naming the tag for a LUT that cannot be
    applied."""
    items = ds.get("ModalityLUTSequence")
    if items:
        if not modality_lut_applies(ds):
            return np.asarray(stored, dtype=np.float64)
        table, first = lut_table(ds, items[0], MODALITY_LUT, path)
        index = np.clip(np.asarray(stored, dtype=np.int64) - first, 0, len(table) - 1)
        return table[index].astype(np.float64)
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)


def apply_voi(pixels: np.ndarray, ds, path: Path) -> np.ndarray:
    """Pixels (H, W) after the modality LUT through the file's VOI LUT (the first item of its VOI
    LUT Sequence (0028,3010), looked up by lut_table), else its first window (Window Center
    and Width, by pydicom's apply_windowing), else as they are; float64. pydicom's own VOI LUT
    lookup indexes an 8-bit table with 8-bit indices, so that stored values beyond 255 wrap.
    BadInput naming the tag that cannot be applied."""
    from pydicom.pixels import apply_windowing

    items = ds.get("VOILUTSequence") or []
    if items and all(items[0].get(k) is not None for k in ("LUTDescriptor", "LUTData")):
        table, first = lut_table(ds, items[0], "the VOI LUT Sequence (0028,3010)", path)
        index = np.clip(np.floor(pixels) - first, 0, len(table) - 1).astype(np.int64)
        return table[index].astype(np.float64)
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return pixels
    _check_window(ds, path)
    try:
        return np.asarray(apply_windowing(pixels, ds), dtype=np.float64)
    except Exception as error:  # pydicom refuses a VOI LUT Function it does not know
        problem = first_line(error)
        raise BadInput(f"{path}: cannot apply its display window ({problem})") from error


def _check_window(ds, path: Path) -> None:
    """BadInput naming Window Center (0028,1050) or Window Width (0028,1051) when the first
    window is not numbers, or its width is below what VOI LUT Function (0028,1056) needs (at
    least 1 for LINEAR, above 0 otherwise: PS3.3 C.11.2.1.2)."""
    numbers = {}
    for keyword in ("WindowCenter", "WindowWidth"):
        element = ds[keyword]
        raw = element.value[0] if element.VM > 1 else element.value
        try:
            numbers[keyword] = float(raw)
        except (TypeError, ValueError):
            numbers[keyword] = math.nan
        if not math.isfinite(numbers[keyword]):
            raise BadInput(f"{path}: {tag_name(keyword)} is {raw!r}, not a number")
    function = code_string(ds, "VOILUTFunction") or "LINEAR"
    width, linear = numbers["WindowWidth"], function == "LINEAR"
    if (width < 1) if linear else (width <= 0):
        least = "at least 1" if linear else "above 0"
        raise BadInput(
            f"{path}: {tag_name('WindowWidth')} is {width:g}; a {function} window's width must "
            f"be {least}"
        )


def lut_table(ds, item, sequence: str, path: Path) -> tuple[np.ndarray, int]:
    """(the entries (N,) int64, the first stored value mapped) of a LUT item (a VOI LUT
    Sequence's): 8- to 16-bit entries, one per 16-bit word of LUT Data, or 8-bit entries
    packed two to a word, the first in the low byte (PS3.3 C.11.2.1.1), as the data's length
    shows. BadInput naming the sequence and the tag for any other."""
    entries, first, bits = _lut_descriptor(ds, item, sequence, path)
    if not 8 <= bits <= 16:
        raise BadInput(
            f"{path}: {sequence} gives {bits}-bit entries in its LUT Descriptor (0028,3002), "
            "not 8 to 16"
        )
    words = _lut_words(ds, item, sequence, path)
    if len(words) >= entries:
        return words[:entries], first
    if bits == 8 and len(words) == (entries + 1) // 2:
        return np.stack([words & 0xFF, words >> 8], axis=-1).ravel()[:entries], first
    raise BadInput(
        f"{path}: {sequence}'s LUT Data (0028,3006) holds {len(words)} 16-bit words for "
        f"{entries} {bits}-bit entries"
    )


def _lut_descriptor(ds, item, sequence: str, path: Path) -> tuple[int, int, int]:
    """(entries, first stored value mapped, bits per entry) of a LUT item's LUT Descriptor
    (0028,3002); 0 entries means 65536 (PS3.3 C.11.1.1.1). A Modality LUT's first value is
    read as Pixel Representation says (as_pixel_representation)."""
    raw = item.get("LUTDescriptor", None)
    try:
        values = [int(v) for v in raw]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3:
        raise BadInput(f"{path}: {sequence}'s LUT Descriptor (0028,3002) is not three numbers")
    first = as_pixel_representation(ds, values[1]) if sequence == MODALITY_LUT else values[1]
    return values[0] or 65536, first, values[2]


def _lut_words(ds, item, sequence: str, path: Path) -> np.ndarray:
    """A LUT item's LUT Data (0028,3006) as 16-bit words (int64): OW bytes in the file's byte
    order, or US values."""
    value = item["LUTData"].value if "LUTData" in item else None
    if isinstance(value, bytes):
        little = getattr(ds, "original_encoding", (None, True))[1] is not False
        usable = value[: len(value) // 2 * 2]
        return np.frombuffer(usable, dtype="<u2" if little else ">u2").astype(np.int64)
    try:
        words = np.atleast_1d(np.asarray(value, dtype=np.int64))
    except (TypeError, ValueError):
        words = np.empty(0, np.int64)
    if value is None or words.ndim != 1 or not words.size:
        raise BadInput(f"{path}: {sequence}'s LUT Data (0028,3006) is missing or not numbers")
    return words
