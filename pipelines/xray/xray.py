"""X-ray files: DICOM with geometry tags, or PNG/TIFF with the geometry given by flags.

An X-ray in memory is an `Xray`: `image` (1, 1, H, W) float32 in [0, 1] with bright = dense
(MONOCHROME1 files are inverted, modality rescale applied), the detector `intrinsics`, and the
positioner angles when the file has them. Geometry from DICOM:
- sdd: DistanceSourceToDetector (0018,1110), mm;
- spacing: PixelSpacing (0028,0030), else ImagerPixelSpacing (0018,1164), read as [row, column]
  (dely, delx), mm/px;
- principal point: DetectorActiveOrigin (0018,7028) [row, column] in mm, with the column sign
  flipped as xvr does (x0 = -origin[1], y0 = origin[0]);
- initial pose (`--init dicom`): PositionerPrimaryAngle, PositionerSecondaryAngle and
  DistanceSourceToPatient, as xvr reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.drr import Intrinsics

DICOM_SUFFIXES = (".dcm", ".dicom", "")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LINEARIZE = ("auto", "on", "off")


@dataclass
class Xray:
    path: Path
    image: torch.Tensor  # (1, 1, H, W) float32 in [0, 1], bright = dense
    intrinsics: Intrinsics
    photometric: str  # MONOCHROME1 | MONOCHROME2
    positioner: tuple[float, float, float] | None = None  # primary deg, secondary deg, SDP mm


def read_xray(
    path: Path, sdd: float | None = None, spacing: tuple[float, float] | None = None
) -> Xray:
    """Read a DICOM, PNG or TIFF X-ray. sdd (mm) and spacing ([row, column] mm/px) override or
    supply the geometry; a PNG/TIFF needs both."""
    from recon.pipelines.common.io import require_file

    path = require_file(Path(path), "X-ray")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _read_plain_image(path, sdd, spacing)
    return _read_dicom(path, sdd, spacing)


def _read_plain_image(path: Path, sdd, spacing) -> Xray:
    from recon.pipelines.common.io import read_image

    pixels = read_image(path).astype(np.float32)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=-1)
    if sdd is None or spacing is None:
        missing = " and ".join(f for f, v in (("--sdd", sdd), ("--spacing", spacing)) if v is None)
        raise BadInput(f"{path}: a {path.suffix} X-ray carries no geometry; pass {missing}")
    image = _normalise(pixels, path)
    intrinsics = _intrinsics(path, sdd, spacing, pixels.shape, (0.0, 0.0))
    return Xray(path, image, intrinsics, "MONOCHROME2")


def _read_dicom(path: Path, sdd, spacing) -> Xray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, OSError, TypeError) as error:
        raise BadInput(f"{path}: not a DICOM X-ray ({_first_line(error)})") from error
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 3:  # multi-frame: maximum over frames, as xvr does by default
        pixels = pixels.max(axis=0)
    if pixels.ndim != 2:
        raise BadInput(f"{path}: DICOM pixel data has shape {pixels.shape}, not an image")
    pixels = pixels * float(getattr(ds, "RescaleSlope", 1.0) or 1.0) + float(
        getattr(ds, "RescaleIntercept", 0.0) or 0.0
    )
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if sdd is None:
        if "DistanceSourceToDetector" not in ds:
            raise BadInput(
                f"{path}: DICOM has no DistanceSourceToDetector (0018,1110); pass --sdd MM"
            )
        sdd = float(ds.DistanceSourceToDetector)
    if spacing is None:
        for tag in ("PixelSpacing", "ImagerPixelSpacing"):
            if tag in ds:
                spacing = tuple(float(v) for v in ds[tag].value)
                break
        else:
            raise BadInput(
                f"{path}: DICOM has neither PixelSpacing (0028,0030) nor "
                "ImagerPixelSpacing (0018,1164); pass --spacing ROW COL"
            )
    origin = (0.0, 0.0)
    if "DetectorActiveOrigin" in ds:
        row, col = (float(v) for v in ds.DetectorActiveOrigin)
        origin = (-col, row)
    image = _normalise(pixels, path)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    positioner = None
    if all(
        t in ds
        for t in ("PositionerPrimaryAngle", "PositionerSecondaryAngle", "DistanceSourceToPatient")
    ):
        positioner = (
            float(ds.PositionerPrimaryAngle),
            float(ds.PositionerSecondaryAngle),
            float(ds.DistanceSourceToPatient),
        )
    intrinsics = _intrinsics(path, sdd, spacing, pixels.shape, origin)
    return Xray(path, image, intrinsics, photometric, positioner)


def _intrinsics(path: Path, sdd, spacing, shape, origin) -> Intrinsics:
    values = [float(sdd), *(float(s) for s in spacing)]
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise BadInput(f"{path}: sdd and pixel spacing must be positive numbers, got {values}")
    return Intrinsics(
        sdd=values[0],
        height=int(shape[0]),
        width=int(shape[1]),
        delx=values[2],
        dely=values[1],
        x0=origin[0],
        y0=origin[1],
    )


def _normalise(pixels: np.ndarray, path: Path) -> torch.Tensor:
    if min(pixels.shape) < 8:
        raise BadInput(f"{path}: image {pixels.shape} is too small to be an X-ray")
    low, high = float(pixels.min()), float(pixels.max())
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        raise BadInput(f"{path}: image is blank (all pixels {low})")
    image = (pixels - low) / (high - low)
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
    applies it to MONOCHROME1 files only. Returns the image (1, 1, H', W') and its detector."""
    from torchvision.transforms.functional import center_crop

    if linearize not in LINEARIZE:
        raise BadInput(f"--linearize must be one of {', '.join(LINEARIZE)}, not {linearize}")
    image, intrinsics = xray.image, xray.intrinsics
    if crop:
        height, width = image.shape[-2] - crop, image.shape[-1] - crop
        if height < 8 or width < 8:
            raise BadInput(f"{xray.path}: --crop {crop} leaves no image")
        image = center_crop(image, [height, width])
        intrinsics = Intrinsics(
            intrinsics.sdd,
            height,
            width,
            intrinsics.delx,
            intrinsics.dely,
            intrinsics.x0,
            intrinsics.y0,
        )
    image = (image - image.min()) / (image.max() - image.min() + 1e-6)
    if subtract_background:
        background = image.flatten().mode().values.item()
        image = (image - background).clamp(0, 1)
    if linearize == "on" or (linearize == "auto" and xray.photometric == "MONOCHROME1"):
        transmitted = (1.0 - image).clamp_min(1e-3)
        image = -torch.log(transmitted)
    return image, intrinsics


def write_xray_dicom(
    path: Path,
    pixels: np.ndarray,
    intrinsics: Intrinsics,
    photometric: str = "MONOCHROME2",
    rescale_slope: float = 1.0,
    positioner: tuple[float, float, float] | None = None,
    description: str = "",
) -> None:
    """Write a uint16 (H, W) image as a DX DICOM carrying the geometry tags read_xray reads."""
    import datetime

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from recon.pipelines.common.outputs import atomic_file

    pixels = np.ascontiguousarray(pixels, dtype=np.uint16)
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
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "recon"
    ds.ContentDate = datetime.date.today().strftime("%Y%m%d")
    ds.SeriesDescription = description[:64]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{rescale_slope:.10g}"[:16]
    ds.RescaleIntercept = "0"
    ds.DistanceSourceToDetector = f"{intrinsics.sdd:.6f}"[:16]
    spacing = [f"{intrinsics.dely:.8g}", f"{intrinsics.delx:.8g}"]
    ds.PixelSpacing = spacing
    ds.ImagerPixelSpacing = spacing
    ds.DetectorActiveOrigin = [float(intrinsics.y0), float(-intrinsics.x0)]
    if positioner is not None:
        ds.PositionerPrimaryAngle = f"{positioner[0]:.6f}"[:16]
        ds.PositionerSecondaryAngle = f"{positioner[1]:.6f}"[:16]
        ds.DistanceSourceToPatient = f"{positioner[2]:.6f}"[:16]
    ds.PixelData = pixels.tobytes()
    with atomic_file(Path(path)) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
