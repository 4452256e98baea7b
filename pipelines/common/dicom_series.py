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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.dicom import dataset_problem, looks_like_dicom, read_dataset
from recon.pipelines.common.dicom_pixels import decoded_pixels
from recon.pipelines.common.dicom_spacing import spacing_tag
from recon.pipelines.common.dicom_tags import code_string, dicom_number, sop_class
from recon.pipelines.common.errors import BadInput

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
    headers = _image_headers(folder, wanted)
    series = _one_series(folder, headers, wanted)
    enhanced = [(file, ds) for file, ds in series if _is_enhanced(file, ds)]
    if enhanced and len(enhanced) < len(series):
        raise BadInput(
            f"{enhanced[0][0]}: an enhanced (multi-frame) CT file in a series of "
            f"{len(series)} files, {len(series) - len(enhanced)} of them single slices; "
            "put them in separate folders"
        )
    if enhanced:
        return _assemble(folder, _enhanced_planes(_one_volume(folder, enhanced, wanted)))
    return _assemble(folder, [_slice_plane(file, ds) for file, ds in series])


@dataclass
class _Plane:
    """One slice of a CT: a file of a series, or a frame of an enhanced CT."""

    label: str  # where it is, for messages: the file, or "FILE frame N"
    name: str  # the same, short: the file's name, or "NAME frame N"
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: tuple[np.ndarray, np.ndarray]  # unit row and column directions, LPS
    spacing: tuple[float, float]  # [row, column] mm
    size: tuple[int, int]  # rows, columns
    hu: Callable[[], np.ndarray]  # its pixels in HU, (rows, columns) float32


def _not_ct(label: str, modalities: list[str]) -> BadInput:
    """The one line refusing a file or folder whose images are of other modalities."""
    return BadInput(
        f"{label}: Modality is {' and '.join(modalities)}, not CT; -v takes a CT (Hounsfield units)"
    )


def _ct_values(label: str, ds, rescale) -> None:
    """BadInput unless the file is a CT whose pixels map to Hounsfield units: Modality CT (when
    given) and a Rescale Slope (not 0) and Intercept, or a Modality LUT (both Type 1 in the CT
    image modules, PS3.3 C.8.2.1 and C.8.15.3.10) in `rescale` (the dataset or its Pixel Value
    Transformation item)."""
    if code_string(ds, "Modality") not in ("", "CT"):
        raise _not_ct(label, [code_string(ds, "Modality")])
    if rescale is not None and "ModalityLUTSequence" in rescale:
        return
    missing = [
        k for k in ("RescaleSlope", "RescaleIntercept") if rescale is None or k not in rescale
    ]
    if missing:
        raise BadInput(
            f"{label}: no {' or '.join(missing)} (Type 1 in a CT): its pixels cannot be read "
            "as Hounsfield units"
        )
    if dicom_number(rescale, "RescaleSlope", None, label) == 0:
        raise BadInput(f"{label}: RescaleSlope is 0, which maps every pixel to one value")


def _slice_plane(file: Path, ds) -> _Plane:
    _ct_values(str(file), ds, ds)
    spacing = spacing_tag(ds, "PixelSpacing", file)
    if spacing is None:
        raise BadInput(f"{file}: DICOM tag PixelSpacing (0028,0030) is missing")
    return _Plane(
        str(file),
        file.name,
        _position(file, ds),
        _orientation(file, ds),
        spacing,
        (int(ds.Rows), int(ds.Columns)),
        lambda: _slice_hu(file),
    )


def _assemble(folder: Path, planes: list[_Plane]) -> tuple[np.ndarray, np.ndarray]:
    """HU (I, J, K) and the RAS+ affine of the planes of one volume (in `folder`): one
    orientation and pixel grid, evenly spaced along their normal (_stacked). BadInput naming the
    plane otherwise."""
    first = planes[0]
    if len(planes) == 1:
        raise BadInput(f"{first.label}: the series has one slice; a CT needs a stack of slices")
    for plane in planes[1:]:
        if not np.allclose(plane.orientation, first.orientation, atol=1e-4):
            raise BadInput(f"{plane.label}: its orientation differs from {first.name}'s")
        if plane.spacing != first.spacing or plane.size != first.size:
            raise BadInput(f"{plane.label}: its pixel grid differs from {first.name}'s")
    (row, col), spacing = first.orientation, first.spacing
    normal = np.cross(row, col)
    ordered, gap = _stacked(folder, planes, normal)
    hu = np.stack([plane.hu().T for plane in ordered], axis=-1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[1], col * spacing[0], normal * gap
    lps[:3, 3] = ordered[0].position
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
        sop_class(ds) == ENHANCED_CT
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


def _enhanced_planes(files: list[Path]) -> list[_Plane]:
    """The frames of an enhanced CT (see the module doc) as planes: one file, or the files of a
    series (a concatenation, or one frame per file), their frames placed together."""
    planes = []
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
        planes += [
            _frame_plane(file, index, (groups, shared), stored, ds)
            for index, groups in enumerate(per_frame)
        ]
    return planes


def _frame_plane(file: Path, index: int, sources: tuple, stored: np.ndarray, ds) -> _Plane:
    """Frame `index` of an enhanced CT file, its geometry and rescale from its functional
    groups (sources: the frame's own, then the shared ones)."""
    label = f"{file} frame {index + 1}"

    def group(name: str, required: bool = True):
        for source in sources:
            items = source.get(name) if source is not None else None
            if items:
                return items[0]
        if required:
            raise BadInput(f"{label}: no {name} in its functional groups")
        return None

    spacing = spacing_tag(group("PixelMeasuresSequence"), "PixelSpacing", label)
    if spacing is None:
        raise BadInput(f"{label}: DICOM tag PixelSpacing (0028,0030) is missing")
    rescale = group("PixelValueTransformationSequence", required=False)
    _ct_values(label, ds, rescale)
    slope = dicom_number(rescale, "RescaleSlope", 1.0, label)
    intercept = dicom_number(rescale, "RescaleIntercept", 0.0, label)

    def hu() -> np.ndarray:
        if rescale is not None and "ModalityLUTSequence" in rescale:
            from pydicom.pixels import apply_modality_lut

            values = np.asarray(apply_modality_lut(stored[index], rescale), dtype=np.float32)
        else:
            values = stored[index].astype(np.float32) * slope + intercept
        if not np.isfinite(values).all():
            raise BadInput(f"{label}: pixels are not finite after the rescale")
        return values

    return _Plane(
        label,
        f"{file.name} frame {index + 1}",
        _position(label, group("PlanePositionSequence")),
        _orientation(label, group("PlaneOrientationSequence")),
        spacing,
        stored.shape[1:],
        hu,
    )


def _image_headers(folder: Path, wanted: Path | None = None) -> list[tuple[Path, object]]:
    """(file, header) of every CT image in the folder (not its subfolders), by file name;
    hidden files, DICOMDIR, DICOM objects without pixels (reports, states), images of another
    Modality (an MR, a dose grid) beside CT images and localizer (scout) images are skipped.
    A damaged file stops it (it may be a slice of the series; the line says so when the file
    given was another, `wanted`), and so do a `wanted` file or a folder of images that are not
    CT (Modality checked before anything else is read)."""
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
    for file in sorted(files, key=lambda p: p != wanted):  # the file given first
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = read_dataset(file, stop_before_pixels=True)
        except Exception as error:  # pydicom raises many types for a damaged header
            beside = ""
            if wanted is not None and file != wanted:
                beside = (
                    f"; it lies beside {wanted.name}, whose series is read from that folder "
                    "(it may be a slice of it): mend it or move it out"
                )
            raise BadInput(
                f"{file}: not a readable DICOM file ({dataset_problem(error)}){beside}"
            ) from error
        if file == wanted and code_string(ds, "Modality") not in ("", "CT"):
            raise _not_ct(str(file), [code_string(ds, "Modality")])
        if "Rows" in ds:
            headers.append((file, ds))
    if not headers:
        raise BadInput(f"{folder}: holds no DICOM images")
    headers.sort(key=lambda item: item[0])
    other = sorted({code_string(ds, "Modality") for _, ds in headers} - {"", "CT"})
    headers = [(file, ds) for file, ds in headers if code_string(ds, "Modality") in ("", "CT")]
    if not headers:
        raise _not_ct(str(folder), other)
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


def _stacked(folder: Path, planes: list[_Plane], normal: np.ndarray) -> tuple[list[_Plane], float]:
    """The planes ordered along the normal and their (even) gap in mm; BadInput (naming the
    folder and the two planes) for two planes at one place, an uneven gap (a missing slice) or
    planes off the normal (gantry tilt)."""
    placed = sorted(planes, key=lambda plane: float(plane.position @ normal))
    depth = np.array([float(plane.position @ normal) for plane in placed])
    gaps = np.diff(depth)
    gap = float(np.median(gaps))
    tolerance = GAP_TOLERANCE * gap + 0.01
    for k, step in enumerate(gaps):
        names = f"{folder}: {placed[k].name} and {placed[k + 1].name}"
        if step < 1e-3:
            raise BadInput(
                f"{names}: two slices of the series lie at one place ({depth[k]:.2f} mm)"
            )
        if abs(step - gap) > tolerance:
            raise BadInput(
                f"{names}: {step:.2f} mm apart where the series' other slices are {gap:.2f} mm "
                "apart (a missing slice?)"
            )
    origin = placed[0].position
    for d, plane in zip(depth[1:], placed[1:], strict=True):
        drift = plane.position - origin - (d - depth[0]) * normal
        if np.linalg.norm(drift) > tolerance:
            raise BadInput(
                f"{plane.label}: lies {np.linalg.norm(drift):.2f} mm off the line along the "
                "slice normal (a tilted gantry?); such series are not supported"
            )
    return placed, gap


def _with_pixels(file: Path, what: str) -> tuple[object, np.ndarray]:
    """A DICOM file's dataset and its decoded stored pixels; BadInput naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = read_dataset(file)
        except Exception as error:  # pydicom raises many types for a damaged file
            problem = dataset_problem(error)
            raise BadInput(f"{file}: not a readable DICOM file ({problem})") from error
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
