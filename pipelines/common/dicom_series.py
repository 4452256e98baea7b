"""DICOM CT series: a folder of slices, or one slice naming its series, or one enhanced
(multi-frame) CT file -> Hounsfield units on a voxel grid and its RAS+ affine, read with pydicom
and the checks a folder exported from PACS needs: one series, one orientation, slices evenly
spaced along their normal and every slice's pixel data readable (compressed or not, see
recon.pipelines.common.dicom).

An enhanced CT (Enhanced CT Image Storage, and any CT whose file holds several frames) keeps
each frame's geometry in its functional groups: Plane Position, Plane Orientation, Pixel Measures
and Pixel Value Transformation (the rescale to HU), per frame or shared; its frames are placed
and checked as the files of a series are.

Geometry, in DICOM's patient frame (LPS, mm): the voxel (i, j, k) = (column, row, slice) lies at
ImagePositionPatient_k + i * PixelSpacing[1] * r + j * PixelSpacing[0] * c, where
ImageOrientationPatient = (r, c) and the slices are ordered along n = r x c. RAS+ is
diag(-1, -1, 1) of LPS.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from recon.pipelines.common.dicom import (
    decoded_pixels,
    dicom_number,
    looks_like_dicom,
    spacing_tag,
)
from recon.pipelines.common.errors import BadInput, first_line

# A gap between neighbouring slices may differ from the median gap by this share (plus 0.01 mm);
# slices must lie within it of the line along their normal (no gantry tilt).
GAP_TOLERANCE = 0.01
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage


def is_ct_series(path: Path) -> bool:
    """True for a folder, or a file that looks like DICOM (a slice naming its series)."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and looks_like_dicom(path))


def read_ct_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Hounsfield units (I, J, K) float32 = (column, row, slice) and the 4x4 RAS+ affine (mm) of
    the CT series in a folder, or of the series one slice file belongs to (within its folder).
    BadInput naming the file or folder for anything that is not one evenly spaced series."""
    path = Path(path)
    folder, wanted = (path, None) if path.is_dir() else (path.parent, path)
    headers = _image_headers(folder)
    series = _one_series(folder, headers, wanted)
    first, rest = series[0], series[1:]
    enhanced = [(file, ds) for file, ds in series if _is_enhanced(file, ds)]
    if enhanced and len(enhanced) < len(series):
        raise BadInput(
            f"{enhanced[0][0]}: an enhanced (multi-frame) CT file in a series of "
            f"{len(series)} files, {len(series) - len(enhanced)} of them single slices; "
            "put them in separate folders"
        )
    if enhanced:
        return _enhanced(_one_volume(folder, enhanced, wanted))
    if not rest:
        raise BadInput(f"{first[0]}: the series has one slice; a CT needs a stack of slices")
    row, col = _orientation(*first)
    spacing = spacing_tag(first[1], "PixelSpacing", first[0])
    if spacing is None:
        raise BadInput(f"{first[0]}: DICOM tag PixelSpacing (0028,0030) is missing")
    size = (int(first[1].Rows), int(first[1].Columns))
    for file, ds in rest:
        if not np.allclose(_orientation(file, ds), (row, col), atol=1e-4):
            raise BadInput(f"{file}: its orientation differs from {first[0].name}'s")
        if spacing_tag(ds, "PixelSpacing", file) != spacing or (ds.Rows, ds.Columns) != size:
            raise BadInput(f"{file}: its pixel grid differs from {first[0].name}'s")
    normal = np.cross(row, col)
    ordered, gap = _stacked(series, normal)
    hu = np.stack([_slice_hu(file).T for file, _ in ordered], axis=-1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[1], col * spacing[0], normal * gap
    lps[:3, 3] = _position(*ordered[0])
    return hu, LPS_TO_RAS @ lps


def _frames(file: Path, ds) -> int:
    try:
        return int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as error:
        raise BadInput(f"{file}: DICOM tag NumberOfFrames is not a number") from error


def _is_enhanced(file: Path, ds) -> bool:
    """A CT file whose frames carry their geometry in functional groups: Enhanced CT Image
    Storage, or any file of several frames or with per-frame functional groups."""
    return (
        str(ds.get("SOPClassUID", "")) == ENHANCED_CT
        or _frames(file, ds) > 1
        or "PerFrameFunctionalGroupsSequence" in ds
    )


def _one_volume(folder: Path, enhanced: list, wanted: Path | None) -> list[Path]:
    """The files of one enhanced CT volume among a series' enhanced instances: those of one
    Concatenation UID, or every single-frame instance together, or one multi-frame file alone
    (another phase of the same series is another volume). `wanted` picks the volume it is in;
    BadInput listing them when a folder holds several."""
    volumes: dict[str, list[Path]] = {}
    for file, ds in enhanced:
        concatenation = str(ds.get("ConcatenationUID", "") or "")
        key = concatenation or ("single frames" if _frames(file, ds) == 1 else str(file))
        volumes.setdefault(key, []).append(file)
    if wanted is not None:
        return next(files for files in volumes.values() if wanted in files)
    if len(volumes) == 1:
        return next(iter(volumes.values()))
    names = ", ".join(files[0].name for files in list(volumes.values())[:4])
    raise BadInput(
        f"{folder}: holds {len(volumes)} enhanced CT volumes of one series ({names}"
        f"{', ...' if len(volumes) > 4 else ''}); pass one file of the volume to use"
    )


def _enhanced(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """HU (I, J, K) and the RAS+ affine of an enhanced CT (see the module doc): one file, or the
    files of a series (a concatenation, or one frame per file), their frames placed together."""
    frames, pixels = [], {}
    for file in files:
        ds, stored = _with_pixels(file, "CT")
        count = _frames(file, ds)
        stored = stored[None] if stored.ndim == 2 and count == 1 else stored
        if stored.ndim != 3 or stored.shape[0] != count:
            raise BadInput(f"{file}: pixel data of shape {stored.shape} is not {count} frames")
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        if len(per_frame) != count:
            raise BadInput(
                f"{file}: Per-frame Functional Groups Sequence has {len(per_frame)} items for "
                f"{count} frames"
            )
        shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
        if pixels and stored.shape[1:] != next(iter(pixels.values())).shape[1:]:
            raise BadInput(f"{file}: its frames differ in size from {files[0].name}'s")
        pixels[file] = stored
        frames += [
            _Frame(f"{file} frame {i + 1}", file, i, groups, shared)
            for i, groups in enumerate(per_frame)
        ]
    first = frames[0]
    for frame in frames[1:]:
        if not np.allclose(frame.orientation, first.orientation, atol=1e-4):
            raise BadInput(f"{frame.label}: its orientation differs from {first.name}'s")
        if frame.spacing != first.spacing:
            raise BadInput(f"{frame.label}: its pixel spacing differs from {first.name}'s")
    (row, col), spacing = first.orientation, first.spacing
    normal = np.cross(row, col)
    ordered, gap = _stacked([(frame.label, frame.position) for frame in frames], normal)
    by_label = {frame.label: frame for frame in frames}
    planes = [by_label[label] for label, _ in ordered]
    hu = np.stack([f.hu(pixels[f.file]).T for f in planes], axis=-1, dtype=np.float32)
    if not np.isfinite(hu).all():
        raise BadInput(f"{files[0]}: pixels are not finite after the rescale")
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[1], col * spacing[0], normal * gap
    lps[:3, 3] = _position(*ordered[0])
    return hu, LPS_TO_RAS @ lps


class _Frame:
    """One frame of a multi-frame CT: its geometry and rescale from its functional groups, per
    frame or shared."""

    def __init__(self, label: str, file: Path, index: int, groups, shared) -> None:
        self.label, self.file, self.index, self.sources = label, file, index, (groups, shared)
        self.name = f"{file.name} frame {index + 1}"
        self.position = self.group("PlanePositionSequence")
        self.orientation = _orientation(label, self.group("PlaneOrientationSequence"))
        self.spacing = spacing_tag(self.group("PixelMeasuresSequence"), "PixelSpacing", label)
        if self.spacing is None:
            raise BadInput(f"{label}: DICOM tag PixelSpacing (0028,0030) is missing")
        rescale = self.group("PixelValueTransformationSequence", required=False)
        self.slope = dicom_number(rescale, "RescaleSlope", 1.0, label) if rescale else 1.0
        self.intercept = dicom_number(rescale, "RescaleIntercept", 0.0, label) if rescale else 0.0

    def group(self, name: str, required: bool = True):
        """The first item of a functional group macro, per frame, else shared."""
        for source in self.sources:
            items = source.get(name) if source is not None else None
            if items:
                return items[0]
        if required:
            raise BadInput(f"{self.label}: no {name} in its functional groups")
        return None

    def hu(self, stored: np.ndarray) -> np.ndarray:
        return stored[self.index].astype(np.float32) * self.slope + self.intercept


def _image_headers(folder: Path) -> list[tuple[Path, object]]:
    """(file, header) of every DICOM image in the folder (not its subfolders), by file name;
    hidden files, DICOMDIR, DICOM objects without pixels (reports, states) and localizer
    (scout) images are skipped."""
    import pydicom

    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.name.upper() != "DICOMDIR"
        and looks_like_dicom(p)
    )
    if not files:
        raise BadInput(f"{folder}: holds no DICOM files")
    headers = []
    for file in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception as error:  # pydicom raises many types for a damaged header
            raise BadInput(f"{file}: not a readable DICOM file ({first_line(error)})") from error
        if "Rows" in ds:
            headers.append((file, ds))
    if not headers:
        raise BadInput(f"{folder}: holds no DICOM images")
    slices = [(file, ds) for file, ds in headers if not _localizer(ds)]
    if not slices:
        raise BadInput(f"{folder}: holds only localizer (scout) images, no CT slices")
    return slices


def _localizer(ds) -> bool:
    """A scout image (Image Type LOCALIZER), which exports often put beside, or inside, the
    series it planned; it is no slice of the volume."""
    image_type = ds.get("ImageType", None) or []
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return any(str(value).strip().upper() == "LOCALIZER" for value in values)


def _one_series(folder: Path, headers: list, wanted: Path | None) -> list:
    """The headers of one series: the one `wanted` (a file) belongs to, else the folder's only
    one. BadInput listing the series when the folder holds several."""
    groups: dict[str, list] = {}
    for file, ds in headers:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "") or ""), []).append((file, ds))
    if wanted is not None:
        chosen = [uid for uid, items in groups.items() if any(f == wanted for f, _ in items)]
        if not chosen:
            raise BadInput(f"{wanted}: not a CT slice (no image, or a localizer)")
        return groups[chosen[0]]
    if len(groups) == 1:
        return next(iter(groups.values()))
    listed = sorted(groups.values(), key=len, reverse=True)
    names = "; ".join(
        f"{str(getattr(items[0][1], 'SeriesDescription', '') or 'no description')} "
        f"({len(items)} file{'s' * (len(items) != 1)}, e.g. {items[0][0].name})"
        for items in listed[:4]
    )
    more = f"; and {len(listed) - 4} more" if len(listed) > 4 else ""
    raise BadInput(
        f"{folder}: holds {len(groups)} DICOM series ({names}{more}); "
        "pass one file of the series to use instead of the folder"
    )


def _orientation(file: Path, ds) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column directions (LPS) from ImageOrientationPatient."""
    values = _numbers(file, ds, "ImageOrientationPatient", 6)
    row, col = np.array(values[:3]), np.array(values[3:])
    if not (abs(np.linalg.norm(row) - 1) < 1e-3 and abs(np.linalg.norm(col) - 1) < 1e-3):
        raise BadInput(f"{file}: ImageOrientationPatient holds no unit vectors ({values})")
    if abs(float(row @ col)) > 1e-3:
        raise BadInput(f"{file}: ImageOrientationPatient's directions are not perpendicular")
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _position(file: Path, ds) -> np.ndarray:
    return np.array(_numbers(file, ds, "ImagePositionPatient", 3))


def _numbers(file: Path, ds, keyword: str, count: int) -> list[float]:
    try:
        raw = getattr(ds, keyword, None)
        values = [float(v) for v in raw] if raw is not None else []
    except (TypeError, ValueError) as error:
        raise BadInput(f"{file}: DICOM tag {keyword} is not {count} numbers") from error
    if len(values) != count or not all(math.isfinite(v) for v in values):
        what = "missing" if raw is None else f"not {count} finite numbers ({list(raw)})"
        raise BadInput(f"{file}: DICOM tag {keyword} is {what}; cannot place the slice")
    return values


def _stacked(series: list, normal: np.ndarray) -> tuple[list, float]:
    """The slices ordered along the normal and their (even) gap in mm; BadInput for two slices
    at one place, an uneven gap (a missing slice) or slices off the normal (gantry tilt)."""
    placed = sorted(
        ((float(_position(f, ds) @ normal), f, ds) for f, ds in series), key=lambda t: t[0]
    )
    depth = np.array([d for d, _, _ in placed])
    gaps = np.diff(depth)
    gap = float(np.median(gaps))
    tolerance = GAP_TOLERANCE * gap + 0.01
    for k, step in enumerate(gaps):
        names = f"{_name(placed[k][1])} and {_name(placed[k + 1][1])}"
        if step < 1e-3:
            raise BadInput(
                f"{names}: two slices of the series lie at one place ({depth[k]:.2f} mm)"
            )
        if abs(step - gap) > tolerance:
            raise BadInput(
                f"{names}: {step:.2f} mm apart where the series' other slices are {gap:.2f} mm "
                "apart (a missing slice?)"
            )
    origin = _position(placed[0][1], placed[0][2])
    for d, file, ds in placed[1:]:
        drift = _position(file, ds) - origin - (d - depth[0]) * normal
        if np.linalg.norm(drift) > tolerance:
            raise BadInput(
                f"{file}: lies {np.linalg.norm(drift):.2f} mm off the line along the slice normal "
                "(a tilted gantry?); such series are not supported"
            )
    return [(f, ds) for _, f, ds in placed], gap


def _name(item) -> str:
    """A slice file's name, or a frame's label."""
    return item.name if isinstance(item, Path) else str(item)


def _with_pixels(file: Path, what: str) -> tuple[object, np.ndarray]:
    """A DICOM file's dataset and its decoded stored pixels; BadInput naming the file."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(file)
        except Exception as error:  # pydicom raises many types for a damaged file
            raise BadInput(f"{file}: not a readable DICOM file ({first_line(error)})") from error
        return ds, decoded_pixels(ds, file, what)


def _slice_hu(file: Path) -> np.ndarray:
    """One slice's pixels through its modality LUT (Rescale Slope/Intercept: HU), float32."""
    from pydicom.pixels import apply_modality_lut

    ds, stored = _with_pixels(file, "CT slice")
    if stored.ndim != 2:
        raise BadInput(f"{file}: pixel data of shape {stored.shape} is not one slice")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hu = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    if not np.isfinite(hu).all():
        raise BadInput(f"{file}: pixels are not finite after the rescale")
    return hu
