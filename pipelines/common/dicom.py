"""The one DICOM image reader: pixels through the modality (and optionally VOI) LUT, bright = dense,
pixel spacing as [row, column] mm, and one clear line for every broken tag.

- Decoding: compressed pixel data (JPEG, JPEG 2000, JPEG-LS, RLE) goes through pydicom's
  decoders, tried in an order that never reaches one known to kill the process on a damaged
  stream (safe_decoders); a stream no decoder reads is one line naming the transfer syntax.
- Pixels: the modality transform (modality_values): Rescale Slope/Intercept, which come
  together (pydicom's `apply_modality_lut`), or a Modality LUT, looked up here as a VOI LUT is;
  then with voi=True the display the file asks for (apply_voi): its VOI LUT, looked up here
  (8- to 16-bit entries, or 8-bit ones packed two to a word: pydicom's lookup wraps an 8-bit
  table's indices and reads neither 12-bit entries nor packed ones), else its window
  (pydicom's `apply_windowing`); then inverted within their own range where lower values are
  denser, so that bright means dense in every image returned.
  A multi-frame file (a fluoroscopy or angiography run) gives the one frame asked for; without
  one it is refused, naming its frame count.
- Which way the values run (beam_relation): Pixel Intensity Relationship Sign (0028,1041),
  which DX and CR files carry for the values stored in Pixel Data (+1: lower values, less beam
  intensity, denser), turned by a negative Rescale Slope or a Modality LUT decreasing over the
  values used; XA and RF files carry no sign, and there LIN and LOG both rise with the beam;
  else the Photometric Interpretation (MONOCHROME1: bright = air). Pixel Intensity
  Relationship (0028,1040) says whether the values are proportional to the beam intensity
  (LIN) or already logarithmic (LOG) or processed for display (DISP), which decides whether
  registration takes their -log. An XA/RF LOG file's Modality LUT (back to linear intensity,
  no part of display) is not applied.
- The region that is image (image_region): pixels equal to Pixel Padding Value (0028,0120), or
  within it and Pixel Padding Range Limit (0028,0121), in stored values, and pixels outside a
  display shutter (Shutter Shape (0018,1600) RECTANGULAR, CIRCULAR, POLYGONAL; several shapes
  intersect) are not image: the collimated-out border of a film, the round field of a
  fluoroscope. Readers that invert scale within the region and set the rest to its minimum.
- Spacing, both as [row, column] mm (DICOM's order). PixelSpacing (0028,0030) is calibrated to
  the patient when Pixel Spacing Calibration Type (0028,0A02) says so (GEOMETRY, FIDUCIAL) or
  when it differs from ImagerPixelSpacing (0018,1164); equal to it (within 0.1%: a rounded
  copy), it is the detector's own, not calibrated (PS3.3 10.7.1.1). The magnification factor
  is read only where it scales a spacing. Without either tag its calibration cannot be known:
  * at the detector plane: ImagerPixelSpacing, else PixelSpacing x
    EstimatedRadiographicMagnificationFactor (0018,1114, 1 when absent), PixelSpacing taken as
    calibrated; spacing_doubt says when that reading is a guess that matters (a factor other
    than 1 and no calibration type);
  * at the patient plane: a calibrated PixelSpacing, or one without ImagerPixelSpacing to
    compare, else ImagerPixelSpacing / the magnification factor.
- A tag that is present but unusable (one-value PixelSpacing, an empty or non-numeric
  DistanceSourceToDetector, NaN, a spacing <= 0, a Rescale Slope without its Intercept, a
  window of width 0, a LUT whose data does not fit its descriptor) raises BadInput naming the
  file and the tag.
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from recon.pipelines.common.errors import BadInput, first_line

DICOM_SUFFIXES = (".dcm", ".dicom")
SPACING_TAGS = {
    "ImagerPixelSpacing": "(0018,1164)",
    "PixelSpacing": "(0028,0030)",
}
MAGNIFICATION = "EstimatedRadiographicMagnificationFactor"
CALIBRATION_TYPES = ("GEOMETRY", "FIDUCIAL")  # Pixel Spacing Calibration Type: at the patient
# PixelSpacing within 0.1% of ImagerPixelSpacing is a (rounded) copy of it, not a calibration:
# a magnification factor, source-to-detector over source-to-patient, is far above 1.001
COPY_RTOL = 1e-3
ENHANCED_XRAY = {
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA",
    "1.2.840.10008.5.1.4.1.1.12.2.1": "Enhanced XRF",
}
ALL_PLUGINS_FAILED = "Unable to decode as exceptions were raised by all available plugins:"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"  # JPEG Extended (Process 2 and 4): 12-bit JPEG
# Modalities whose images are no projection X-ray (slices, volumes' frames, maps, documents),
# refused where a film is read; a projection's (DX, CR, RF, XA, MG, RTIMAGE) or none (OT, a
# secondary capture) is taken
NOT_PROJECTION = {
    "CT": "a CT slice",
    "MR": "an MR image",
    "PT": "a PET image",
    "NM": "a nuclear medicine image",
    "US": "an ultrasound image",
    "SEG": "a segmentation",
    "RTDOSE": "a radiotherapy dose map",
    "RTSTRUCT": "a radiotherapy structure set",
    "OCT": "an optical coherence tomogram",
    "SM": "a slide microscopy image",
    "OP": "an ophthalmic photograph",
    "XC": "an external camera photograph",
    "ES": "an endoscopy image",
    "GM": "a general microscopy image",
    "IVUS": "an intravascular ultrasound image",
    "SR": "a structured report",
    "DOC": "a document",
    "RTPLAN": "a radiotherapy plan",
    "RTRECORD": "a radiotherapy treatment record",
    "ECG": "an electrocardiogram",
    "PR": "a presentation state",
    "KO": "a key object selection",
    "REG": "a registration",
}


@dataclass
class DicomImage:
    path: Path
    dataset: object  # the pydicom Dataset (header only is used after reading)
    pixels: np.ndarray  # (H, W) float64 after the modality (and VOI) LUT, bright = dense
    photometric: str  # MONOCHROME1 | MONOCHROME2 as stored
    beam: BeamRelation  # which way the values run, and whether they are linear in the beam
    region: np.ndarray | None = None  # (H, W) bool, True = image; None: every pixel is image
    region_source: str = ""  # the tags that marked the rest (padding value, shutter shapes)
    frame: int = 1  # the frame read (1-based)
    frames: int = 1  # how many the file holds


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


def code_string(ds, keyword: str) -> str:
    """A code-string tag (Modality, Rescale Type, ...) of a DICOM header, upper case; "" when
    absent or empty."""
    return str(ds.get(keyword, "") or "").strip().upper()


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
        entries, first, _ = _lut_descriptor(ds.ModalityLUTSequence[0], MODALITY_LUT, path)
        used = np.array([first, first + entries - 1])
    ends = modality_values(used, ds, path)
    return bool(ends[-1] >= ends[0])


def _require_rescale(ds, path: Path) -> None:
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


MODALITY_LUT = "the Modality LUT Sequence (0028,3000)"


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
    entries, first, bits = _lut_descriptor(item, sequence, path)
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


def _lut_descriptor(item, sequence: str, path: Path) -> tuple[int, int, int]:
    """(entries, first stored value mapped, bits per entry) of a LUT item's LUT Descriptor
    (0028,3002); 0 entries means 65536 (PS3.3 C.11.1.1.1)."""
    raw = item.get("LUTDescriptor", None)
    try:
        values = [int(v) for v in raw]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3:
        raise BadInput(f"{path}: {sequence}'s LUT Descriptor (0028,3002) is not three numbers")
    return values[0] or 65536, values[1], values[2]


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


def tag_name(keyword: str) -> str:
    """A DICOM keyword with its (gggg,eeee) tag number, as the one-line messages name tags."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return keyword if tag is None else f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def looks_like_dicom(path: Path) -> bool:
    """True for a .dcm/.dicom name, a file with the DICM preamble, or one that starts at its
    first data element (see _bare_start)."""
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or _bare_start(head)


def _bare_start(head: bytes) -> bool:
    """Whether bytes open with a little-endian data element of group 0002 (file meta written
    without the 128-byte preamble and DICM) or 0008 (a data set with no file meta at all), as
    older writers and some archives' exports leave a file."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3] == 0


def sop_class(ds) -> str:
    """The SOP Class UID: the data set's, else the file meta's Media Storage SOP Class UID (a
    writer that keeps it there alone)."""
    uid = str(ds.get("SOPClassUID", "") or "").strip()
    meta = getattr(ds, "file_meta", None)
    if not uid and meta is not None:
        uid = str(meta.get("MediaStorageSOPClassUID", "") or "").strip()
    return uid


def read_dataset(path: Path, stop_before_pixels: bool = False):
    """pydicom's dcmread, which also takes a file without the preamble (see _bare_start): file
    meta read as written, or, with none, the transfer syntax the elements were read in recorded
    for the pixel decoders. InvalidDicomError for a file that is neither."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        with Path(path).open("rb") as handle:
            if not _bare_start(handle.read(8)):
                raise
    ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        syntax = ExplicitVRBigEndian if not little else ExplicitVRLittleEndian
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else syntax
    return ds


def read_dicom_image(
    path: Path,
    voi: bool = False,
    what: str = "X-ray",
    invert: bool = True,
    shutters: bool = True,
    frame: int | None = None,
    frame_flag: str | None = None,
) -> DicomImage:
    """A single-image DICOM as float pixels (H, W), bright = dense (see module doc).

    voi=True also applies the file's VOI LUT / window (what a viewer shows); registration wants
    the raw modality values and leaves it off. invert=False leaves the pixels as stored, for a
    reader that inverts after its own normalisation (by `beam.invert`); invert=True also sets
    the pixels outside the image region (padding, shutters; shutters=False: none) to the
    region's minimum. frame (1-based) picks one frame of a multi-frame file, which is refused
    without one (the line names frame_flag, the option that picks it, when there is one).
    BadInput for anything that is not a 2D image.
    """
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = read_dataset(path)
        except InvalidDicomError as error:
            raise BadInput(f"{path}: not a DICOM {what} (no DICOM header)") from error
        except Exception as error:  # pydicom raises many types for a damaged header
            raise BadInput(f"{path}: not a DICOM {what} ({first_line(error)})") from error
        if sop_class(ds) in ENHANCED_XRAY:
            raise BadInput(
                f"{path}: an {ENHANCED_XRAY[sop_class(ds)]} image keeps its geometry and "
                "intensity tags per frame, which are not read; export the run as XA or RF"
            )
        modality = code_string(ds, "Modality")
        if modality in NOT_PROJECTION:
            raise BadInput(
                f"{path}: Modality (0008,0060) {modality} is {NOT_PROJECTION[modality]}, not a "
                "projection X-ray (DX, CR, RF, XA)"
            )
        photometric = code_string(ds, "PhotometricInterpretation") or "MONOCHROME2"
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise BadInput(
                f"{path}: Photometric Interpretation {photometric} is not a grey-scale {what} "
                "(MONOCHROME1 or MONOCHROME2)"
            )
        if "PhotometricInterpretation" in ds:  # a code string in lower case: pydicom's spelling
            ds.PhotometricInterpretation = photometric
        if not ds.get("ModalityLUTSequence"):
            _require_rescale(ds, path)
        elif modality_lut_applies(ds):  # an XA/RF LOG file's is not applied (beam_relation)
            lut_table(ds, ds.ModalityLUTSequence[0], MODALITY_LUT, path)  # checked before decoding
        frames = _integer(ds, "NumberOfFrames", path) if ds.get("NumberOfFrames") else 0
        stored = None
        if frames < 1:  # the count is missing, empty or 0: the pixel data tells
            stored = decoded_pixels(ds, path, what)
            frames = stored.shape[0] if stored.ndim == 3 else 1
        if frames > 1 and frame is None:
            pick = f"pick one with {frame_flag} N (1 to {frames})" if frame_flag else ""
            pick = pick or f"{_article(what)} {what} is one frame"
            raise BadInput(f"{path}: holds {frames} frames (a run); {pick}")
        if frame is not None and not 1 <= frame <= frames:
            raise BadInput(
                f"{path}: {frame_flag or 'frame'} {frame} is not one of its {frames} frame"
                + ("s" if frames > 1 else "")
            )
        if stored is None:  # only the frame asked for: a long run would take gigabytes
            stored = decoded_pixels(ds, path, what, frame - 1 if frames > 1 else None)
        elif stored.ndim == 3:
            stored = stored[frame - 1]
        try:
            pixels = modality_values(stored, ds, path)
        except BadInput:
            raise
        except Exception as error:  # a rescale pydicom cannot apply
            problem = first_line(error)
            raise BadInput(f"{path}: cannot apply its modality LUT ({problem})") from error
        if voi:
            pixels = apply_voi(pixels, ds, path)
    if pixels.ndim != 2:
        raise BadInput(f"{path}: DICOM pixel data has shape {pixels.shape}, not a 2D image")
    if not np.isfinite(pixels).all():
        raise BadInput(f"{path}: DICOM pixels are not finite after the rescale")
    beam = beam_relation(ds, path, photometric, stored)
    region, region_source = image_region(ds, stored, path, shutters)
    if invert:
        inside = pixels if region is None else pixels[region]
        low, high = float(inside.min()), float(inside.max())
        if beam.invert:
            pixels = high + low - pixels
        if region is not None:
            pixels = np.where(region, pixels, low)
    return DicomImage(
        path, ds, pixels, photometric, beam, region, region_source, frame or 1, frames
    )


def image_region(
    ds, stored: np.ndarray, path: Path, shutters: bool = True
) -> tuple[np.ndarray | None, str]:
    """(H, W) bool, True where a pixel of the stored frame (H, W) is image (see the module doc),
    and the tags that said so; (None, "") when every pixel is, or shutters=False. A BITMAP
    shutter (an overlay) is not read and is named in the source. BadInput for a shutter whose
    tags are missing or broken, or a region of fewer than 64 pixels."""
    if not shutters:
        return None, ""
    shape = stored.shape[-2:]
    region = np.ones(shape, bool)
    sources = []
    if ds.get("PixelPaddingValue", None) not in (None, ""):
        padding = _stored_integer(ds, "PixelPaddingValue", stored, path)
        limit = ds.get("PixelPaddingRangeLimit", None)
        limit = (
            padding
            if limit in (None, "")
            else _stored_integer(ds, "PixelPaddingRangeLimit", stored, path)
        )
        low, high = sorted((padding, limit))
        region &= ~((stored >= low) & (stored <= high))
        sources.append(f"Pixel Padding Value {padding}" + (f" to {limit}" if low < high else ""))
    raw = ds.get("ShutterShape", None)
    shapes = [] if raw in (None, "") else [raw] if isinstance(raw, str) else list(raw)
    for name in (str(s).strip().upper() for s in shapes):
        if name == "BITMAP":
            sources.append("bitmap shutter (not read)")
            continue
        region &= _shutter(ds, name, shape, path)
        sources.append(f"{name.lower()} shutter")
    if region.all():
        return None, " and ".join(s for s in sources if "not read" in s)
    if region.sum() < 64:
        raise BadInput(
            f"{path}: {' and '.join(sources)} leave {int(region.sum())} of "
            f"{region.size} pixels as image"
        )
    return region, " and ".join(sources)


def _article(noun: str) -> str:
    return "an" if noun.lower().startswith(("x-", "a", "e", "i", "o", "u")) else "a"


def _integer(ds, keyword: str, path: Path) -> int:
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError) as error:
        raise BadInput(f"{path}: DICOM tag {keyword} is not an integer") from error


def _stored_integer(ds, keyword: str, stored: np.ndarray, path: Path) -> int:
    """A tag in stored pixel values (Pixel Padding Value, its Range Limit), whose VR is US or
    SS as Pixel Representation says: one written as US in a signed file (-2000 as 63536) is
    read as the signed value its bits hold."""
    value = _integer(ds, keyword, path)
    if np.issubdtype(stored.dtype, np.signedinteger) and value > np.iinfo(stored.dtype).max:
        bits = 8 * stored.dtype.itemsize
        if value < 2**bits:
            value -= 2**bits
    return value


def _numbers(ds, keyword: str, shutter: str, path: Path) -> list[float]:
    """A shutter tag's finite numbers; BadInput naming it when missing or broken."""
    raw = ds.get(keyword, None)
    try:
        values = [] if raw in (None, "") else [float(v) for v in np.atleast_1d(raw)]
    except (TypeError, ValueError):
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise BadInput(f"{path}: the {shutter} display shutter's {keyword} is missing or broken")
    return values


def _shutter(ds, name: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    """The pixels inside one display shutter (DICOM positions are 1-based row, column)."""
    rows, cols = np.mgrid[1 : shape[0] + 1, 1 : shape[1] + 1]
    shutter = name.lower()

    def one(keyword: str) -> float:
        values = _numbers(ds, keyword, shutter, path)
        if len(values) != 1:
            raise BadInput(f"{path}: the {shutter} display shutter's {keyword} needs one value")
        return values[0]

    if name == "RECTANGULAR":
        left, right = one("ShutterLeftVerticalEdge"), one("ShutterRightVerticalEdge")
        upper, lower = one("ShutterUpperHorizontalEdge"), one("ShutterLowerHorizontalEdge")
        return (cols >= left) & (cols <= right) & (rows >= upper) & (rows <= lower)
    if name == "CIRCULAR":
        centre = _numbers(ds, "CenterOfCircularShutter", shutter, path)
        if len(centre) != 2:
            raise BadInput(
                f"{path}: the circular display shutter's CenterOfCircularShutter needs a row "
                "and a column"
            )
        radius = one("RadiusOfCircularShutter")
        return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    if name == "POLYGONAL":
        from skimage.draw import polygon2mask

        vertices = _numbers(ds, "VerticesOfThePolygonalShutter", shutter, path)
        if len(vertices) < 6 or len(vertices) % 2:
            raise BadInput(
                f"{path}: the polygonal display shutter's VerticesOfThePolygonalShutter needs "
                "at least 3 (row, column) pairs"
            )
        return polygon2mask(shape, np.asarray(vertices).reshape(-1, 2) - 1.0)
    raise BadInput(
        f"{path}: Shutter Shape (0018,1600) {name} is not a shutter shape "
        "(RECTANGULAR, CIRCULAR, POLYGONAL or BITMAP)"
    )


def safe_decoders() -> dict[str, tuple[str, ...]]:
    """Decoders to try, in order, per transfer syntax UID, where pydicom's own order reaches one
    that kills the process on some damaged streams instead of raising: GDCM aborts (an uncaught
    C++ exception) on corrupt JPEG 2000 data and on JPEG data with a broken marker, and
    pylibjpeg-rle panics (a Rust panic, which is not an Exception) on corrupt RLE data. JPEG and
    JPEG-LS streams reach GDCM only after their marker structure is checked (jpeg_damage), and
    Pillow (8-bit JPEG) and CharLS (JPEG-LS) come first. Other syntaxes: pydicom's order ("")."""
    from pydicom.uid import (
        JPEG2000TransferSyntaxes,
        JPEGBaseline8Bit,
        JPEGLSTransferSyntaxes,
        RLELossless,
    )

    return {
        **{uid: ("pylibjpeg", "pillow") for uid in JPEG2000TransferSyntaxes},
        **{uid: ("pyjpegls", "gdcm") for uid in JPEGLSTransferSyntaxes},
        JPEGBaseline8Bit: ("pillow", "gdcm"),
        RLELossless: ("pydicom",),
    }


def jpeg_damage(frame: bytes, jpeg_ls: bool = False) -> str | None:
    """Where a JPEG or JPEG-LS codestream breaks its marker structure (start of image, segments
    whose lengths fit, scans that end at a marker, end of image), or None when it holds."""
    size = len(frame)
    if size < 4 or frame[:2] != b"\xff\xd8":
        return "no start-of-image marker"
    at = 2
    while at < size:
        if frame[at] != 0xFF:
            return f"no marker at byte {at}"
        while at < size and frame[at] == 0xFF:  # fill bytes
            at += 1
        if at >= size:
            break
        marker, at = frame[at], at + 1
        if marker == 0xD9:  # end of image
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart markers and TEM: no length
            continue
        length = int.from_bytes(frame[at : at + 2], "big") if at + 2 <= size else 0
        if length < 2 or at + length > size:
            return f"the segment at byte {at - 2} runs past the end"
        at += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            while at < size - 1 and not _scan_ends(frame[at], frame[at + 1], jpeg_ls):
                at += 1
    return "no end-of-image marker"


def _scan_ends(byte: int, following: int, jpeg_ls: bool) -> bool:
    """A marker inside scan data: 0xFF then (JPEG) neither a stuffed 0x00 nor a restart marker,
    or (JPEG-LS, which stuffs a zero bit) a byte with its top bit set."""
    if byte != 0xFF:
        return False
    return following >= 0x80 if jpeg_ls else following != 0x00 and not 0xD0 <= following <= 0xD7


def _damaged_jpeg(ds, syntax, index: int | None = None) -> str | None:
    """The first frame damage of a JPEG-family or JPEG-LS dataset (see jpeg_damage), or None;
    with index (0-based), that frame's only."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

    if syntax not in JPEGTransferSyntaxes and syntax not in JPEGLSTransferSyntaxes:
        return None
    count = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
    except Exception as error:  # pydicom raises several types for broken encapsulation
        return f"the encapsulated frames are damaged ({first_line(error)})"
    for number, frame in enumerate(frames):
        if index is not None and number != index:
            continue
        damage = jpeg_damage(frame, syntax in JPEGLSTransferSyntaxes)
        if damage is not None:
            return f"damaged JPEG stream in frame {number + 1}: {damage}"
    return None


def decoded_pixels(ds, path: Path, what: str = "image", index: int | None = None) -> np.ndarray:
    """The stored pixel values of a read dataset, decompressed as its transfer syntax says
    (safe_decoders order): every frame, or only frame `index` (0-based) of a multi-frame file;
    BadInput naming the file and the transfer syntax when the pixel data is missing or no
    installed decoder can read it."""
    from pydicom.pixels import pixel_array

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        from pydicom.uid import UID

        kind = str(UID(sop_class(ds)).name or "").removesuffix(" Storage")
        if kind and "image" not in kind.lower():  # an object that never holds pixels
            raise BadInput(f"{path}: holds no image: a DICOM {kind} object")
        raise BadInput(f"{path}: has no pixel data (is the file cut short?)")
    name = getattr(syntax, "name", None) or "unknown transfer syntax"
    damage = _damaged_jpeg(ds, syntax, index)
    if damage is not None:
        raise BadInput(f"{path}: cannot read the {what}'s pixel data ({name}): {damage}")
    errors = []
    with _native_stderr() as native:  # C decoders (GDCM, OpenJPEG) print their own complaints
        for plugin in safe_decoders().get(syntax, ("",)):
            try:
                if index is not None:
                    return pixel_array(ds, index=index, decoding_plugin=plugin)
                ds.pixel_array_options(decoding_plugin=plugin)
                return ds.pixel_array
            except Exception as error:  # pydicom and its decoders raise many types
                errors.append(error)
    reason = f"{errors[0]} {' '.join(native)}".replace(ALL_PLUGINS_FAILED, "")
    reason = " ".join(reason.split())[:300] or type(errors[0]).__name__
    if syntax == JPEG_EXTENDED:  # 12-bit JPEG, which no installed decoder reads
        reason += "; a copy stored uncompressed is read (e.g. DCMTK's `dcmdjpeg IN OUT`)"
    raise BadInput(f"{path}: cannot read the {what}'s pixel data ({name}): {reason}") from errors[0]


@contextmanager
def _native_stderr():
    """Send what native code writes to file descriptor 2 to a temporary file for the duration;
    yields a list that holds that text once the block has ended. Process-wide: whatever another
    thread writes to stderr meanwhile goes there too (the commands that read DICOMs run one)."""
    import sys
    import tempfile

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (closed by the caller): nothing to keep apart
        yield []
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        text: list[str] = []
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace").strip())


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


def pixel_spacing(
    ds, path: Path, plane: Literal["detector", "patient"] = "detector"
) -> tuple[tuple[float, float], str] | None:
    """([row, column] mm, the tags it came from) at the detector or the patient plane (see the
    module doc), or None when the file has neither spacing tag. BadInput for a broken one."""
    if plane not in ("detector", "patient"):
        raise ValueError(f"plane must be detector or patient, not {plane}")
    # the magnification factor is read only where it scales: a broken one elsewhere is unused
    if plane == "detector":  # the other tag is not read: a broken one there does not matter
        if (imager := spacing_tag(ds, "ImagerPixelSpacing", path)) is not None:
            return imager, "ImagerPixelSpacing"
        patient = spacing_tag(ds, "PixelSpacing", path)
        if patient is None:
            return None
        return _scaled(patient, "PixelSpacing", magnification_factor(ds, path), path, False)
    patient = spacing_tag(ds, "PixelSpacing", path)
    if patient is not None and code_string(ds, "PixelSpacingCalibrationType") in CALIBRATION_TYPES:
        return patient, "PixelSpacing"
    imager = spacing_tag(ds, "ImagerPixelSpacing", path)
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
    if spacing_tag(ds, "ImagerPixelSpacing", path) is not None:
        return None
    if spacing_tag(ds, "PixelSpacing", path) is None:
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
