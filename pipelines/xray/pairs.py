"""Paired X-ray / DRR images on disk: discovery, checks, reading, and the square-fit rule.

Layout: ROOT/xray/NAME.(png|dcm) and ROOT/drr/NAME.(png|dcm); a pair is the two files with the
same stem. Both images of a pair have the same size. Images are read as float32 (H, W) in [0, 1]:
8-bit PNG / 255, 16-bit PNG / 65535, DICOM through the one DICOM reader, over the range its
modality LUT gives the stored bit depth (stored / (2^BitsStored - 1) without a rescale), inverted
where lower values are denser (Pixel Intensity Relationship Sign, else MONOCHROME1), 0 outside
its padding and shutters, so bright is dense everywhere (as in a DRR). RGB(A) PNG becomes the
mean of its colour channels.

Square fit (training and prediction use the same rule): an H x W image is zero-padded equally on
both sides of its shorter axis to a square of side max(H, W), then resized (antialiased bilinear)
to size x size. `unfit` undoes it: resize back to the square side, crop the padding away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.dicom import looks_like_dicom
from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.io import PICTURE_SUFFIXES

XRAY_DIR = "xray"
DRR_DIR = "drr"
IMAGE_SUFFIXES = (*PICTURE_SUFFIXES, ".dcm", ".dicom")


@dataclass(frozen=True)
class Pair:
    name: str  # the shared file stem
    xray: Path
    drr: Path


@dataclass(frozen=True)
class Placement:
    """Where an H x W image sits in its padded square: rows/cols of padding before it."""

    height: int
    width: int
    top: int
    left: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)


def image_files(folder: Path) -> list[Path]:
    """Picture and DICOM files of a folder (is_image_file), sorted by name (hidden files
    skipped)."""
    return sorted(
        p for p in Path(folder).iterdir() if not p.name.startswith(".") and is_image_file(p)
    )


def is_image_file(path: Path) -> bool:
    """A picture or DICOM by its suffix (IMAGE_SUFFIXES), or a DICOM by its 'DICM' preamble (a
    scanner's files named IM0001 or by UID)."""
    path = Path(path)
    return path.is_file() and (path.suffix.lower() in IMAGE_SUFFIXES or looks_like_dicom(path))


def find_pairs(root: Path, check_sizes: bool = True) -> list[Pair]:
    """The pairs of ROOT/xray and ROOT/drr, sorted by name; BadInput on any layout problem."""
    root = Path(root)
    folders = [root / XRAY_DIR, root / DRR_DIR]
    for folder in [root, *folders]:
        if not folder.is_dir():
            what = "a file, not a folder" if folder.exists() else "no such folder"
            raise BadInput(f"{folder}: {what} (a pair set has {XRAY_DIR}/ and {DRR_DIR}/)")
    xrays, drrs = (_by_stem(f) for f in folders)
    if not xrays and not drrs:
        raise BadInput(f"{root}: no picture or DICOM images in {XRAY_DIR}/ or {DRR_DIR}/")
    for have, other, label in ((xrays, drrs, DRR_DIR), (drrs, xrays, XRAY_DIR)):
        missing = sorted(set(have) - set(other))
        if missing:
            shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise BadInput(f"{root / label}: no image named like {shown} ({len(missing)} unpaired)")
    pairs = [Pair(name, xrays[name], drrs[name]) for name in sorted(xrays)]
    if check_sizes:
        for pair in pairs:
            xray_size, drr_size = image_size(pair.xray), image_size(pair.drr)
            if xray_size != drr_size:
                raise BadInput(
                    f"{pair.drr}: size {drr_size[1]}x{drr_size[0]} differs from its X-ray "
                    f"{pair.xray.name} ({xray_size[1]}x{xray_size[0]})"
                )
    return pairs


def _by_stem(folder: Path) -> dict[str, Path]:
    """The folder's images by name less a known suffix (xray_name: IM0001 and 1.2.840.5 stay
    whole); BadInput when two share one (a.png and a.dcm): which of them pairs would be a
    guess."""
    from recon.pipelines.common.inputs import xray_name

    found: dict[str, Path] = {}
    for path in image_files(folder):
        name = xray_name(path)
        if name in found:
            raise BadInput(
                f"{path}: has the name of {found[name].name} (a pair is the two files of one "
                "name); keep one of them"
            )
        found[name] = path
    return found


def image_size(path: Path) -> tuple[int, int]:
    """(rows, columns) of a picture or DICOM image, without decoding its pixels."""
    from recon.pipelines.common.io import picture_size, require_file

    path = require_file(path, "image")
    if looks_like_dicom(path):
        dataset = _read_dicom(path, pixels=False)
        try:
            return int(dataset.Rows), int(dataset.Columns)
        except (AttributeError, TypeError, ValueError) as error:
            raise BadInput(f"{path}: a DICOM file without usable Rows and Columns") from error
    width, height = picture_size(path)
    return height, width


def read_gray(path: Path) -> tuple[np.ndarray, int]:
    """A PNG or DICOM image as float32 (H, W) in [0, 1], and its bit depth (8 or 16)."""
    from recon.pipelines.common.io import (
        SampleFormat,
        float_intensities,
        grey_pixels,
        integer_range,
        read_image,
        require_file,
    )

    path = require_file(path, "image")
    if looks_like_dicom(path):
        return _dicom_gray(path)
    stored = read_image(path, one_frame=True)
    array = grey_pixels(stored)
    if array.dtype != stored.dtype:  # a colour mean: back to the file's levels and bit depth
        array = np.rint(array).astype(stored.dtype)
    if array.dtype.kind == "f":
        return float_intensities(array.astype(np.float32), path), 16
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0, 8
    if array.dtype == np.bool_:
        return array.astype(np.float32), 8
    if array.dtype in (np.uint16, np.int32, np.int16):
        if array.min() < 0 or array.max() > 65535:
            raise BadInput(
                f"{path}: {array.dtype} values span [{array.min()}, {array.max()}], beyond the "
                "16-bit range [0, 65535] images are read in"
            )
        # a 32-bit file states no scale: its white as the photo reader takes it (255 when the
        # values fit 8 bits)
        white = integer_range(array, SampleFormat())[1] if array.dtype.itemsize > 2 else 65535
        return array.astype(np.float32) / white, 8 if white == 255 else 16
    raise BadInput(f"{path}: unsupported pixel type {array.dtype}")


def _read_dicom(path: Path, pixels: bool = True):
    from recon.pipelines.common.dicom import dataset_problem, read_dataset

    try:
        return read_dataset(path, stop_before_pixels=not pixels)
    except Exception as error:  # pydicom raises many types for corrupt files
        raise BadInput(f"{path}: not a readable DICOM file ({dataset_problem(error)})") from error


def _dicom_gray(path: Path) -> tuple[np.ndarray, int]:
    """A DICOM image through the one DICOM reader (recon.pipelines.common.dicom): its values
    after the modality LUT, scaled by the range that LUT gives the stored bit depth (so an
    unsigned file with no rescale reads stored / (2^BitsStored - 1), as a PNG reads / 65535),
    inverted where lower values are denser (Pixel Intensity Relationship Sign, else
    MONOCHROME1), and 0 outside the image region (padding, shutters)."""
    from recon.pipelines.common.dicom import read_dicom_image

    image = read_dicom_image(path, what="image", invert=False)
    low, high = _modality_range(image.dataset, path)
    gray = ((image.pixels - low) / (high - low)).clip(0, 1)
    if image.beam.invert:
        gray = 1.0 - gray
    if image.region is not None:
        gray = np.where(image.region, gray, 0.0)
    bits = int(getattr(image.dataset, "BitsStored", 16) or 16)
    return gray.astype(np.float32), 8 if bits <= 8 else 16


def _modality_range(dataset, path: Path) -> tuple[float, float]:
    """The lowest and highest value the modality LUT gives over every value the stored bit
    depth can hold (Rescale Slope/Intercept, or a Modality LUT Sequence)."""
    from recon.pipelines.common.dicom_values import modality_values

    bits = int(getattr(dataset, "BitsStored", 16) or 16)
    if not 1 <= bits <= 32:
        raise BadInput(f"{path}: Bits Stored (0028,0101) is {bits}, not 1 to 32")
    signed = getattr(dataset, "PixelRepresentation", 0) == 1
    first = -(2 ** (bits - 1)) if signed else 0
    last = first + 2**bits - 1
    stored = np.arange(first, last + 1) if bits <= 16 else np.array([first, last])
    values = modality_values(stored, dataset, path)
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite([low, high]).all() and high > low):
        raise BadInput(f"{path}: its modality LUT maps every stored value to one level")
    return low, high


def fit_square(image: np.ndarray, size: int):
    """(H, W) float image -> ((1, size, size) float tensor, Placement); see the module doc."""
    import torch
    import torch.nn.functional as F

    height, width = image.shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = np.zeros((side, side), np.float32)
    square[top : top + height, left : left + width] = image
    tensor = torch.from_numpy(square)[None, None]
    if side != size:
        tensor = F.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
        )
    return tensor[0], Placement(height, width, top, left)


def unfit(image, placement: Placement) -> np.ndarray:
    """Undo fit_square: (1, size, size) or (size, size) tensor -> float32 (H, W) numpy."""
    import torch.nn.functional as F

    tensor = image.detach().float().reshape(1, 1, *image.shape[-2:]).cpu()
    side = placement.side
    if tensor.shape[-1] != side:
        tensor = F.interpolate(
            tensor,
            size=(side, side),
            mode="bilinear",
            align_corners=False,
            antialias=tensor.shape[-1] > side,
        )
    square = tensor[0, 0].numpy()
    top, left = placement.top, placement.left
    return square[top : top + placement.height, left : left + placement.width].copy()


def to_uint(image: np.ndarray, bits: int) -> np.ndarray:
    """Float [0, 1] image -> uint8 (bits 8) or uint16 (bits 16), rounded and clipped."""
    top = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.rint(np.clip(image, 0, 1) * top).astype(dtype)


class PairDataset:
    """torch Dataset of pairs: item -> (xray, drr) float tensors (1, size, size) in [-1, 1]."""

    def __init__(self, pairs: list[Pair], size: int) -> None:
        self.pairs = list(pairs)
        self.size = size

    def __len__(self) -> int:
        return len(self.pairs)

    def sources(self) -> list[str]:
        """Each item's X-ray, in order (see sampling.split_record)."""
        return [str(pair.xray) for pair in self.pairs]

    def __getitem__(self, index: int):
        pair = self.pairs[index]
        xray, _ = read_gray(pair.xray)
        drr, _ = read_gray(pair.drr)
        if xray.shape != drr.shape:
            raise BadInput(f"{pair.drr}: size differs from its X-ray {pair.xray.name}")
        xray_t, _ = fit_square(xray, self.size)
        drr_t, _ = fit_square(drr, self.size)
        return xray_t * 2 - 1, drr_t * 2 - 1
