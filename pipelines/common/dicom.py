"""The one DICOM image reader: pixels through the modality (and optionally VOI) LUT, bright =
dense, the region that is image, and one clear line for every broken tag.

- Reading: pydicom's dcmread, which here also takes a file without the 128-byte preamble
  (read_dataset). The stored values are decoded by recon.pipelines.common.dicom_pixels, turned
  into modality (and display) values and told which way they run by
  recon.pipelines.common.dicom_values, then inverted within their own range where lower values
  are denser, so that bright means dense in every image returned. Spacing is read by
  recon.pipelines.common.dicom_spacing.
- A multi-frame file (a fluoroscopy or angiography run) gives the one frame asked for; without
  one it is refused, naming its frame count. Enhanced XA/XRF files and images of modalities
  that are no projection X-ray are refused by name.
- The region that is image (image_region): pixels equal to Pixel Padding Value (0028,0120), or
  within it and Pixel Padding Range Limit (0028,0121), in stored values, and pixels outside a
  display shutter (Shutter Shape (0018,1600) RECTANGULAR, CIRCULAR, POLYGONAL; several shapes
  intersect) are not image: the collimated-out border of a film, the round field of a
  fluoroscope. Readers that invert scale within the region and set the rest to its minimum.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.dicom_pixels import decoded_pixels
from recon.pipelines.common.dicom_tags import (
    as_pixel_representation,
    code_string,
    integer_tag,
    sop_class,
)
from recon.pipelines.common.dicom_values import (
    MODALITY_LUT,
    BeamRelation,
    apply_voi,
    beam_relation,
    lut_table,
    modality_lut_applies,
    modality_values,
    require_rescale,
)
from recon.pipelines.common.errors import BadInput, first_line

DICOM_SUFFIXES = (".dcm", ".dicom")

ENHANCED_XRAY = {
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA",
    "1.2.840.10008.5.1.4.1.1.12.2.1": "Enhanced XRF",
}

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
    without the 128-byte preamble and DICM) or 0008 (a data set with no file meta at all), or a
    big-endian one of group 0008 (such a data set in Explicit VR Big Endian; file meta is
    always little-endian), as older writers and some archives' exports leave a file."""
    if len(head) < 8:
        return False
    little = head[:2] in (b"\x02\x00", b"\x08\x00") and head[3] == 0
    return little or (head[:2] == b"\x00\x08" and head[2] == 0)


def dataset_problem(error: Exception) -> str:
    """What read_dataset's error says, for a user: "no DICOM header" where pydicom's own text
    tells a programmer to pass force=True."""
    from pydicom.errors import InvalidDicomError

    return "no DICOM header" if isinstance(error, InvalidDicomError) else first_line(error)


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
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = read_dataset(path)
        except Exception as error:  # pydicom raises many types for a damaged header
            raise BadInput(f"{path}: not a DICOM {what} ({dataset_problem(error)})") from error
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
            require_rescale(ds, path)
        elif modality_lut_applies(ds):  # an XA/RF LOG file's is not applied (beam_relation)
            lut_table(ds, ds.ModalityLUTSequence[0], MODALITY_LUT, path)  # checked before decoding
        frames = integer_tag(ds, "NumberOfFrames", path) if ds.get("NumberOfFrames") else 0
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
        padding = as_pixel_representation(ds, integer_tag(ds, "PixelPaddingValue", path))
        limit = ds.get("PixelPaddingRangeLimit", None)
        limit = (
            padding
            if limit in (None, "")
            else as_pixel_representation(ds, integer_tag(ds, "PixelPaddingRangeLimit", path))
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
