"""`recon synth skull`: procedural heads -> radiograph (or photo) + skull and face voxel grids.

Layout (read by `recon train|check-data skull`):
    skull_000.png        the image: a radiograph of the head's CT-like volume rendered with
                         diffdrr (grey, 8-bit), or with photo=True a shaded photograph of the face
    skull_000_vox.npz    `skull` and `face`: bool grids (R, R, R), the same shape
    dataset.json         voxel size (mm), axis order and orientation of the grids, the image view
    truth.json           per subject: head parameters, landmarks (mm) with their soft-tissue
                         depths and normals, the neck cut, and the render geometry
    skull_000.json       the head's record, written after its image and grids: the settings
                         and seed that made it and its truth.json entry
Head i is drawn from its own generator (seed, i), so shards of a set (`--shard K/N`) make the
same files as one run; dataset.json and truth.json are written once every head is finished.
Grids index (x, y, z) in the head's RAS+ frame (+x the subject's right, +y anterior, +z up);
voxel (i, j, k) holds the point ((i, j, k) + 0.5) * voxel_mm - FIELD_MM / 2 (mm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.skull.anatomy import FIELD_MM, HeadParams, random_params
from recon.pipelines.skull.head import Head, landmark_names

VIEWS = ("lateral", "frontal")
AIR_HU, SOFT_HU, BONE_HU = -1000.0, 40.0, 1200.0


@dataclass(frozen=True)
class RenderGeometry:
    """A cephalostat-like radiograph: point source, flat detector, head near the detector."""

    view: str = "lateral"  # lateral: the beam runs right -> left; frontal: posterior -> anterior
    sdd: float = 1500.0  # source-to-detector distance, mm
    source_mm: float = 1350.0  # source to the head's centre, mm
    size: int = 128  # detector rows and columns, px
    spacing: float = 2.2  # detector pixel spacing, mm/px
    jitter_deg: float = 2.0  # uniform +- rotation of the head about each axis per subject
    jitter_mm: float = 2.0  # uniform +- shift of the head along each axis per subject

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class PhotoView:
    """A camera for the shapes Renderer: azimuth around +z from +x towards +y, elevation above
    the xy plane, at distance (mm) from target, horizontal field of view fov_deg."""

    azimuth_deg: float
    elevation_deg: float
    distance: float
    fov_deg: float
    target: tuple[float, float, float]

    def eye(self) -> np.ndarray:
        a, e = np.radians(self.azimuth_deg), np.radians(self.elevation_deg)
        direction = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        return np.asarray(self.target) + self.distance * direction


def voxel_centres_mm(resolution: int) -> np.ndarray:
    """Centres of every voxel (R^3, 3) in mm, in the grid's (x, y, z) index order."""
    voxel = FIELD_MM / resolution
    axis = (np.arange(resolution) + 0.5) * voxel - FIELD_MM / 2
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def head_fields(head: Head, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(bone, face) signed fields (R, R, R) in mm, negative inside."""
    return sample_field(head.bone, resolution), sample_field(head.face, resolution)


def sample_field(field: Callable, resolution: int) -> np.ndarray:
    """A signed field (mm) on the voxel centres (R, R, R), coarse to fine: evaluated on every
    other voxel, interpolated (trilinear), and evaluated exactly wherever the interpolated value
    lies within 1.2 coarse spacings of zero (a distance-like field cannot change sign farther
    out), so the sign of every voxel equals the exact field's."""
    from scipy.interpolate import RegularGridInterpolator

    voxel = FIELD_MM / resolution
    axis = (np.arange(resolution) + 0.5) * voxel - FIELD_MM / 2
    if resolution < 16:
        return field(voxel_centres_mm(resolution)).reshape((resolution,) * 3)
    coarse_axis = np.append(axis[::2], axis[-1]) if resolution % 2 == 0 else axis[::2]
    coarse_points = np.stack(np.meshgrid(*[coarse_axis] * 3, indexing="ij"), -1).reshape(-1, 3)
    coarse = field(coarse_points).reshape((len(coarse_axis),) * 3)
    points = voxel_centres_mm(resolution)
    values = RegularGridInterpolator([coarse_axis] * 3, coarse)(points)
    near = np.abs(values) < 1.2 * 2 * voxel * np.sqrt(3) / 2
    values[near] = field(points[near])
    return values.reshape((resolution,) * 3)


def ct_volume(bone: np.ndarray, face: np.ndarray, voxel_mm: float) -> np.ndarray:
    """A CT-like volume in Hounsfield units from the fields: air, soft tissue (40 HU) inside
    the face, bone (1200 HU) inside the skull, partial volume across one voxel at each surface."""
    soft = np.clip(0.5 - face / voxel_mm, 0.0, 1.0)
    hard = np.clip(0.5 - bone / voxel_mm, 0.0, 1.0)
    return (AIR_HU + (SOFT_HU - AIR_HU) * soft + (BONE_HU - SOFT_HU) * hard).astype(np.float32)


def head_pose(geometry: RenderGeometry, rng: np.random.Generator):
    """Camera pose (1, 4, 4) for diffdrr (ZXY Euler, camera-to-world, mm) and its angles."""
    import torch
    from diffdrr.pose import convert

    base = {"lateral": (90.0, 0.0, 0.0), "frontal": (0.0, 0.0, 0.0)}[geometry.view]
    rot = np.asarray(base) + rng.uniform(-1, 1, 3) * geometry.jitter_deg
    xyz = np.array([0.0, geometry.source_mm, 0.0]) + rng.uniform(-1, 1, 3) * geometry.jitter_mm
    pose = convert(
        torch.tensor(rot[None], dtype=torch.float32),
        torch.tensor(xyz[None], dtype=torch.float32),
        parameterization="euler_angles",
        convention="ZXY",
        degrees=True,
    )
    return pose, rot, xyz


def radiograph(
    hu: np.ndarray, voxel_mm: float, geometry: RenderGeometry, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """A degraded radiograph (size, size) uint8 of a HU volume, and its render geometry.

    diffdrr's Siddon line integrals of density, Beer-Lambert transmission, a random gamma and
    window, Gaussian blur (0.5-1.1 px), quantum noise and a faint scatter haze.
    """
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from torchio import ScalarImage

    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -FIELD_MM / 2 + voxel_mm / 2
    subject = read(ScalarImage(tensor=torch.from_numpy(hu)[None], affine=affine), orientation="AP")
    drr = DRR(
        subject,
        sdd=geometry.sdd,
        height=geometry.size,
        delx=geometry.spacing,
        reverse_x_axis=False,
        renderer="siddon",
    )
    pose, rot, xyz = head_pose(geometry, rng)
    with torch.no_grad():
        line = drr(pose)[0, 0].numpy().astype(np.float64)
    image = degrade(line, rng)
    return image, {"rot_deg": rot.tolist(), "xyz_mm": xyz.tolist(), "pose": pose.matrix[0].tolist()}


def degrade(line_integral: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Line integrals (H, W) -> a radiograph-like uint8 image (bone bright) with random
    contrast, blur and noise (see `radiograph`)."""
    from scipy.ndimage import gaussian_filter

    attenuation = line_integral / max(float(np.percentile(line_integral, 99.5)), 1e-6)
    transmission = np.exp(-rng.uniform(2.0, 3.0) * attenuation)
    transmission = gaussian_filter(transmission, rng.uniform(0.5, 1.1))
    photons = rng.uniform(3e3, 2e4)
    transmission = transmission + np.sqrt(np.clip(transmission, 0, None) / photons) * (
        rng.standard_normal(transmission.shape)
    )
    image = 1.0 - transmission  # displayed like a film: dense bone bright
    image = image + rng.uniform(0.0, 0.06) * gaussian_filter(image, 12.0)  # scatter haze
    low, high = np.percentile(image, [rng.uniform(0.5, 3), rng.uniform(99.0, 99.9)])
    image = np.clip((image - low) / max(high - low, 1e-6), 0, 1) ** rng.uniform(0.8, 1.25)
    return (image * 255).round().astype(np.uint8)


def photograph(
    face: np.ndarray, voxel_mm: float, geometry: RenderGeometry, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """A shaded photograph-like RGB image (size, size, 3) uint8 of the face surface (marching
    cubes of the face field at 0), from the side (lateral) or the front, with skin colour,
    a soft background, blur and sensor noise."""
    import trimesh
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    from recon.pipelines.shapes import Renderer

    vertices, faces, _, _ = marching_cubes(np.pad(face, 1, constant_values=1.0), level=0.0)
    vertices = (vertices - 1 + 0.5) * voxel_mm - FIELD_MM / 2
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    # lateral: from +x, the subject's right, where the radiograph's source is, so that photo and
    # radiograph show the face pointing the same way (toward +column)
    azimuth = {"lateral": 0.0, "frontal": 90.0}[geometry.view]
    azimuth += float(rng.uniform(-1, 1) * geometry.jitter_deg * 2)
    elevation = float(rng.uniform(-1, 1) * geometry.jitter_deg * 2)
    view = PhotoView(
        azimuth, elevation, 900.0, 17.0, tuple(rng.uniform(-1, 1, 3) * geometry.jitter_mm)
    )
    skin = np.array([224.0, 172.0, 140.0]) * rng.uniform(0.75, 1.1)
    background = np.full(3, rng.uniform(150, 235))
    rgb, _ = Renderer(mesh).render(view, geometry.size, geometry.size, skin, background)
    image = gaussian_filter(rgb.astype(np.float64), (0.6, 0.6, 0))
    image += rng.normal(0, rng.uniform(2, 6), image.shape)
    geometry_record = {
        "camera": "pinhole, z up",
        "azimuth_deg": view.azimuth_deg,
        "elevation_deg": view.elevation_deg,
        "distance_mm": view.distance,
        "fov_deg": view.fov_deg,
        "target_mm": list(view.target),
    }
    return np.clip(image, 0, 255).round().astype(np.uint8), geometry_record


def synth_subject(
    params: HeadParams,
    resolution: int,
    geometry: RenderGeometry,
    photo: bool,
    rng: np.random.Generator,
) -> dict:
    """One subject: grids, image and truth record (nothing written)."""
    voxel_mm = FIELD_MM / resolution
    head = Head(params, np.exp(rng.normal(0.0, 0.08, len(landmark_names()))))
    bone, face = head_fields(head, resolution)
    if photo:
        image, render = photograph(face, voxel_mm, geometry, rng)
    else:
        image, render = radiograph(ct_volume(bone, face, voxel_mm), voxel_mm, geometry, rng)
    truth = {
        "params": params.as_dict(),
        "landmarks": {lm.name: lm.as_dict() for lm in head.landmarks},
        "neck_cut_z_mm": head.neck_cut_mm(),
        "render": render,
    }
    return {"skull": bone < 0, "face": face < 0, "image": image, "truth": truth}


def dataset_record(resolution: int, geometry: RenderGeometry, photo: bool, seed: int) -> dict:
    """The content of dataset.json."""
    voxel_mm = FIELD_MM / resolution
    return {
        "layout": "skull_NNN.png + skull_NNN_vox.npz (skull, face: bool grids)",
        "voxel_mm": voxel_mm,
        "shape": [resolution] * 3,
        "axes": ["x", "y", "z"],
        "orientation": "RAS+ (+x the subject's right, +y anterior, +z superior)",
        "origin_mm": [-FIELD_MM / 2 + voxel_mm / 2] * 3,
        "origin_note": "centre of voxel (0, 0, 0); the grid's centre is the head frame's origin",
        "image": "photo" if photo else "radiograph",
        "view": geometry.view,
        "geometry": geometry.as_dict(),
        "seed": seed,
    }


ITEM_FORMAT = "recon.synth-skull-item/1"
TRUTH_HEADER = {"units": "mm", "frame": "head RAS+, grid centre at the origin"}


def subject_name(index: int) -> str:
    return f"skull_{index:03d}"


def subject_files(root: Path, index: int) -> list[Path]:
    """Head index's files under root: image, grids, then its record (written last)."""
    stem = Path(root) / subject_name(index)
    return [
        stem.with_suffix(".png"),
        stem.with_name(f"{stem.name}_vox.npz"),
        stem.with_suffix(".json"),
    ]


@dataclass(frozen=True)
class SkullSet:
    """A synthetic head set made item by item: head i is drawn from its own generator
    (seed, i), so it is the same whichever shard makes it and however many heads the set
    holds."""

    seed: int = 0
    resolution: int = 64
    view: str = "lateral"
    photo: bool = False

    @property
    def geometry(self) -> RenderGeometry:
        return RenderGeometry(view=self.view)

    def settings(self) -> dict:
        return {
            "seed": self.seed,
            "resolution": self.resolution,
            "view": self.view,
            "photo": self.photo,
        }

    def record(self, root: Path, index: int) -> dict | None:
        """Head index's record when it is finished with these settings (image and grids there
        and not empty); else None."""
        from recon.pipelines.common.batch import is_complete, read_record

        *files, path = subject_files(root, index)
        record = read_record(path, ITEM_FORMAT, {"settings": self.settings()})
        return record if record is not None and is_complete(files) else None

    def make(self, root: Path, index: int) -> dict:
        """Write head index under root (image, grids, record last); returns its record."""
        from recon.pipelines.common.batch import item_rng
        from recon.pipelines.common.io import write_png
        from recon.pipelines.common.outputs import atomic_file, write_json

        rng = item_rng(self.seed, index)
        item = synth_subject(random_params(rng), self.resolution, self.geometry, self.photo, rng)
        image, grids, path = subject_files(root, index)
        write_png(image, item["image"])
        with atomic_file(grids) as tmp, tmp.open("wb") as handle:
            np.savez_compressed(handle, skull=item["skull"], face=item["face"])
        record = {"format": ITEM_FORMAT, "settings": self.settings(), "truth": item["truth"]}
        write_json(path, record)
        return record

    def merge(self, root: Path, count: int) -> tuple[Path | None, int]:
        """Write root/dataset.json and truth.json once all count heads are finished; returns
        (dataset.json or None, how many heads are still missing)."""
        from recon.pipelines.common.outputs import write_json

        records = [self.record(root, i) for i in range(count)]
        missing = sum(r is None for r in records)
        if missing:
            return None, missing
        subjects = {subject_name(i): r["truth"] for i, r in enumerate(records)}
        write_json(Path(root) / "truth.json", {**TRUTH_HEADER, "subjects": subjects})
        path = Path(root) / "dataset.json"
        record = dataset_record(self.resolution, self.geometry, self.photo, self.seed)
        write_json(path, record)
        return path, 0

    def summary(self, count: int) -> dict:
        return {
            "subjects": count,
            "resolution": self.resolution,
            "voxel_mm": FIELD_MM / self.resolution,
            "view": self.view,
            "image": "photo" if self.photo else "radiograph",
        }


def synth_skull_dataset(
    folder: Path,
    subjects: int,
    seed: int = 0,
    resolution: int = 64,
    view: str = "lateral",
    photo: bool = False,
    track: Callable = lambda items, _d: items,
) -> dict:
    """Write `subjects` heads into folder in the layout above (the heads `recon synth skull`
    makes, see SkullSet); returns a summary."""
    heads = SkullSet(int(seed), resolution, view, photo)
    for index in track(range(subjects), "synth skull"):
        heads.make(folder, index)
    heads.merge(folder, subjects)
    return heads.summary(subjects)
