"""Reading a skull data set: image + voxel pairs, dataset.json, network inputs, and the checks.

Pairs: every ROOT/NAME.png (or another picture suffix, IMAGE_SUFFIXES) with ROOT/NAME_vox.npz
beside it (arrays `skull`, `face`).
dataset.json (optional) gives `voxel_mm`; without it scores are in voxels.

check-data problem kinds: missing-voxels (an image without its npz), orphan-voxels (an npz
without its image), unreadable-image, image-too-small (under MIN_SIDE pixels a side: training
refuses it), unreadable-voxels (not an npz, or corrupt), missing-array (no `skull` or no
`face`), shape-mismatch (skull and face differ, a grid is not 3D, it differs from the set's
most common shape, or the set's shape is one the model cannot predict: not cubic, or a side
other than 8, 16, 32, ..., or dataset.json states another `shape`), empty-grid (no occupied
voxel), unreadable-dataset-json, unfinished-set (heads of `recon synth skull` are there but
not yet dataset.json), no-pairs, cannot-split (one subject: training holds whole subjects out
for validation; byte-identical npz files under two names are one subject).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.datacheck import SPLIT_KIND, CheckReport, split_problem
from recon.pipelines.common.errors import BadInput, first_line
from recon.pipelines.common.io import MIN_SIDE, PICTURE_SUFFIXES, read_json
from recon.pipelines.common.splits import same_content

IMAGE_SUFFIXES = PICTURE_SUFFIXES
HEADS = ("skull", "face")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # ImageNet normalisation
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Pair:
    name: str  # file stem, e.g. skull_000
    image: Path
    voxels: Path


def image_files(root: Path) -> list[Path]:
    """Image files directly inside root, sorted (the *_vox.npz grids are not images)."""
    return sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def orphan_grids(root: Path, images: list[Path]) -> list[Path]:
    """The NAME_vox.npz files of root without their image NAME.* among images."""
    stems = {image.stem for image in images}
    return [
        p for p in sorted(Path(root).glob("*_vox.npz")) if p.name[: -len("_vox.npz")] not in stems
    ]


def voxel_path(image: Path) -> Path:
    return image.with_name(f"{image.stem}_vox.npz")


def list_pairs(root: Path) -> list[Pair]:
    """Every image of root that has its NAME_vox.npz."""
    return [Pair(p.stem, p, voxel_path(p)) for p in image_files(root) if voxel_path(p).is_file()]


def unfinished_set(root: Path) -> str:
    """Why root is a sharded `recon synth skull` set that has not finished (its heads are there,
    its dataset.json, with the voxel size every score in mm needs, is not), or ""."""
    root = Path(root)
    if (root / "dataset.json").is_file() or not any(root.glob("skull_*.json")):
        return ""
    return (
        "not written yet: the `recon synth skull` shard that finishes the set writes it "
        "(rerun one with --skip-done)"
    )


def read_voxel_mm(root: Path) -> float | None:
    """dataset.json's voxel_mm (a positive number), or None when the file or the key is absent
    (scores are then in voxels)."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:
        raise BadInput(f"{path}: not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a JSON object (keys voxel_mm, shape, ...)")
    if "voxel_mm" not in data:
        return None
    try:
        value = float(data["voxel_mm"])
    except (ValueError, TypeError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):  # JSON reads Infinity and NaN
        raise BadInput(f"{path}: voxel_mm must be a positive number, not {data['voxel_mm']!r}")
    return value


def stated_shape(root: Path) -> tuple | None:
    """The grid shape dataset.json states (its optional `shape`), or None."""
    try:
        shape = json.loads((Path(root) / "dataset.json").read_text(encoding="utf-8-sig")).get(
            "shape"
        )
    except (OSError, ValueError, AttributeError):
        return None  # absent or unreadable: read_voxel_mm names the problem
    if not isinstance(shape, list) or not all(type(side) is int for side in shape):
        return None
    return tuple(shape)


def load_grids(path: Path) -> dict[str, np.ndarray]:
    """{'skull', 'face'} bool grids (R, R, R) of one npz; BadInput names what is wrong."""
    problem = grid_problem(path)
    if problem is not None:
        raise BadInput(f"{path}: {problem[1]}")
    with np.load(path) as data:
        return {head: np.asarray(data[head]) > 0.5 for head in HEADS}


def common_shape(shapes: dict) -> tuple[tuple, int]:
    """The grid shape most of a set has, and how many have it ({name: shape}); the others are
    the odd ones, for check-data and training alike."""
    return Counter(shapes.values()).most_common(1)[0]


def grid_problem(path: Path) -> tuple[str, str] | None:
    """(kind, detail) when an npz is unreadable, lacks an array, has mismatched or empty
    grids; else None."""
    import zipfile

    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":  # numpy's advice was to load it unsafely
                return (
                    "unreadable-voxels",
                    "not an .npz file (no zip header): damaged or another format",
                )
        with np.load(path) as data:
            missing = [h for h in HEADS if h not in data.files]
            if missing:
                return "missing-array", f"no array {', '.join(missing)}"
            grids = {h: np.asarray(data[h]) for h in HEADS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        return "unreadable-voxels", first_line(error)
    shapes = {h: g.shape for h, g in grids.items()}
    if any(len(s) != 3 for s in shapes.values()):
        return "shape-mismatch", f"grids must be 3D, got {shapes}"
    if shapes["skull"] != shapes["face"]:
        return "shape-mismatch", f"skull {shapes['skull']} vs face {shapes['face']}"
    empty = [h for h, g in grids.items() if not (g > 0.5).any()]
    if empty:
        return "empty-grid", f"{', '.join(empty)} has no occupied voxel"
    return None


def subject_numbers(pairs: list[Pair]) -> dict[str, int]:
    """{npz path: its subject's number, 0, 1, ... in the pairs' order}: a subject is one
    NAME_vox.npz, and its copies under other names: the same grids as training reads them,
    saved compressed or not (splits.same_content, load_grids)."""
    subject = same_content([pair.voxels for pair in pairs], load_grids)
    first_seen = dict.fromkeys(subject[str(pair.voxels)] for pair in pairs)
    number = {name: index for index, name in enumerate(first_seen)}
    return {path: number[name] for path, name in subject.items()}


def too_few_subjects(pairs: list[Pair]) -> str | None:
    """split_problem of a skull set, its subjects (subject_numbers) counted as training's split
    (task.split_subjects) draws them; check-data and training judge it here."""
    count = len(set(subject_numbers(pairs).values()))
    return split_problem(count, "pairs (image + npz)", "subject")


def side_problem(shape: tuple) -> str | None:
    """Why the skull model cannot predict grids of this shape (it needs R^3, R = 4 * 2^k,
    k >= 1), or None; what `recon train skull` refuses."""
    from recon.models.skull_net import decoder_stages

    if len(set(shape)) != 1:
        return f"grid {shape} is not cubic; the skull model predicts R x R x R grids"
    try:
        decoder_stages(int(shape[0]))
    except ValueError as error:
        return f"grid {shape}: {error}"
    return None


def image_problem(path: Path) -> tuple[str, str] | None:
    """(kind, detail) when training could not read the image (unreadable-image) or it is too
    small (image-too-small), read as training reads it; else None."""
    from recon.pipelines.common.io import read_rgb

    try:
        rgb = read_rgb(Path(path))
    except BadInput as error:
        return "unreadable-image", str(error).removeprefix(f"{path}: ")
    small = size_problem(rgb)
    return None if small is None else ("image-too-small", small)


def size_problem(rgb: np.ndarray) -> str | None:
    """Why an image (H, W, 3) is too small for the network, or None."""
    if min(rgb.shape[:2]) >= MIN_SIDE:
        return None
    return f"image is {rgb.shape[1]} x {rgb.shape[0]} pixels, need at least {MIN_SIDE} x {MIN_SIDE}"


def read_picture(path: Path) -> np.ndarray:
    """One image file as the network reads it, (H, W, 3) uint8 (grey, alpha, palette, 16-bit
    and float images as read_rgb takes them); BadInput for a file that is no image, one with
    too many pixels, or one under MIN_SIDE pixels a side (as predict voxel and parts refuse)."""
    from recon.pipelines.common.io import read_rgb

    rgb = read_rgb(Path(path))
    small = size_problem(rgb)
    if small is not None:
        raise BadInput(f"{path}: {small}")
    return rgb


def image_tensor(path: Path, size: int):
    """The network input (3, size, size) float tensor of one image file (read_picture), resized
    (bilinear) to size x size, ImageNet-normalised."""
    import torch
    from PIL import Image

    photo = Image.fromarray(read_picture(path))
    rgb = photo.resize((size, size), Image.Resampling.BILINEAR)
    array = (np.asarray(rgb, dtype=np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


# ---------------------------------------------------------------- check-data


def check_skull(root: Path, track: Callable = lambda items, _d: items) -> CheckReport:
    """Check a skull data set (see module doc): items = images, per_class = {"pairs": n}."""
    root = Path(root)
    report = CheckReport("skull", str(root))
    images = image_files(root)
    orphans = orphan_grids(root, images)  # with no images, every grid
    for path in orphans:
        report.add("orphan-voxels", path.name, "no image NAME.png beside NAME_vox.npz")
    unfinished = unfinished_set(root)
    if unfinished:
        report.add("unfinished-set", "dataset.json", unfinished)
    if (root / "dataset.json").is_file():
        try:
            read_voxel_mm(root)
        except BadInput as error:
            report.add("unreadable-dataset-json", "dataset.json", str(error).split(": ", 1)[-1])
    shapes: dict[str, tuple] = {}
    pairs = 0
    for image in track(images, "check pairs"):
        voxels = voxel_path(image)
        problem = image_problem(image)
        if problem is not None:
            report.add(problem[0], image.name, problem[1])
        if not voxels.is_file():
            report.add("missing-voxels", image.name, f"no {voxels.name}")
            continue
        problem = grid_problem(voxels)
        if problem is not None:
            report.add(problem[0], voxels.name, problem[1])
            continue
        with np.load(voxels) as data:
            shapes[voxels.name] = tuple(data["skull"].shape)
        pairs += 1
    if shapes:
        common, _ = common_shape(shapes)
        for name, shape in shapes.items():
            if shape != common:
                report.add("shape-mismatch", name, f"grid {shape}, most of the set has {common}")
        stated = stated_shape(root)
        if stated is not None and stated != common:
            report.add(
                "shape-mismatch",
                "dataset.json",
                f"states grids of {stated}, the grids are {common}: its voxel_mm would scale "
                "every score in mm wrongly",
            )
        unusable = side_problem(common)
        if unusable is not None:
            name = next(name for name, shape in shapes.items() if shape == common)
            report.add("shape-mismatch", name, unusable)
    if not images and not orphans:
        report.add("no-pairs", str(root), "no images (.png, .jpg) and no *_vox.npz")
    found = list_pairs(root)
    split = too_few_subjects(found)
    if found and split is not None:  # none: no-pairs or missing-voxels says so
        report.add(SPLIT_KIND, str(root), split)
    report.items = len(images)
    report.per_class = {"pairs": pairs}
    return report
