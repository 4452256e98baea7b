"""The machine-parts layout (image + STL pairs) and a synthetic generator that writes it.

Layout under a root:
    models/<class>/<part>.stl           one mesh per part, millimetres
    images/<class>/<part>/<view>.png    any number of photos/renders of that part
An image belongs to the STL whose class and part name match its folder. The training target is
the STL voxelised to a filled 32^3 grid (`recon.pipelines.shapes.voxelize`, cached under
ROOT/.cache/voxels).

The synthetic set adds models/<class>/<part>.json beside each STL: the files of that part, the
seed, view count and image size that made it and the set's parts per class. A part is drawn from
its own generator, so shards of `recon synth parts` make the same parts as one run. Check-data
and training read these records and the run records only to tell an unfinished set
(synth_progress); a folder made by hand has neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.io import PICTURE_SUFFIXES, require_dir
from recon.pipelines.shapes import Box, Cylinder, Solid

CLASSES = ("bracket", "flange", "lprofile", "plate", "shaft")
IMAGE_SUFFIXES = PICTURE_SUFFIXES


@dataclass(frozen=True)
class PartPair:
    category: str
    part: str
    mesh: Path
    images: tuple[Path, ...]


def parts_layout(root: Path) -> tuple[dict, dict]:
    """The parts layout as found: {(class, part): STL} (the suffix in any case, as CAD tools
    write it) and {(class, part): its image folder}; BadInput without ROOT/models."""
    root = require_dir(root, "data set root")
    models = root / "models"
    if not models.is_dir():
        raise BadInput(f"{models}: no such folder (a parts root holds models/ and images/)")
    meshes = {
        (p.parent.name, p.stem): p
        for p in sorted(models.glob("*/*"))
        if p.is_file() and p.suffix.lower() == ".stl"
    }
    folders = {
        (p.parent.name, p.name): p for p in sorted((root / "images").glob("*/*")) if p.is_dir()
    }
    return meshes, folders


def part_images(folder: Path | None) -> list[Path]:
    """The pictures of one part's image folder, by name."""
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def find_pairs(root: Path) -> list[PartPair]:
    """Every STL under ROOT/models with its images under ROOT/images/<class>/<part>/; BadInput
    for an unfinished synthetic set and for a part that check-data flags as missing-mesh or
    no-images (training would leave it out without a word)."""
    meshes, folders = parts_layout(root)
    unfinished = unfinished_set(root)
    if unfinished is not None:
        raise BadInput(f"{Path(root)}: {unfinished[1]}")
    for key, folder in folders.items():
        if key not in meshes:
            raise BadInput(
                f"{folder}: no models/{key[0]}/{key[1]}.stl for these images (`recon check-data "
                "parts` lists every problem)"
            )
    pairs = []
    for (category, part), mesh in meshes.items():
        images = part_images(folders.get((category, part)))
        if not images:
            raise BadInput(
                f"{mesh}: nothing under images/{category}/{part}/ (`recon check-data parts` "
                "lists every problem)"
            )
        pairs.append(PartPair(category, part, mesh, tuple(images)))
    return pairs


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def make_part(category: str, rng: np.random.Generator) -> Solid:
    """A random part of a class, in millimetres."""
    if category == "plate":
        w, d, t = _u(rng, 90, 120), _u(rng, 60, 80), _u(rng, 10, 14)
        r = _u(rng, 5, 9)
        holes = [
            Cylinder((sx * (w / 2 - 2 * r), sy * (d / 2 - 2 * r), 0), 2, r, t)
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]
        if rng.random() < 0.5:
            holes.append(Cylinder((0, 0, 0), 2, _u(rng, 8, 14), t))
        return Solid([Box((0, 0, 0), (w / 2, d / 2, t / 2))], holes)
    if category == "lprofile":
        length, a, b, t = _u(rng, 100, 120), _u(rng, 35, 50), _u(rng, 35, 50), _u(rng, 9, 12)
        parts = [
            Box((0, a / 2, t / 2), (length / 2, a / 2, t / 2)),
            Box((0, t / 2, b / 2), (length / 2, t / 2, b / 2)),
        ]
        return Solid(parts)
    if category == "bracket":
        w, d, h, t = _u(rng, 55, 70), _u(rng, 45, 60), _u(rng, 50, 70), _u(rng, 8, 10)
        r = _u(rng, 5, 9)
        parts = [
            Box((0, 0, t / 2), (w / 2, d / 2, t / 2)),
            Box((-w / 2 + t / 2, 0, h / 2), (t / 2, d / 2, h / 2)),
            Box((w / 2 - t / 2, 0, h / 2), (t / 2, d / 2, h / 2)),
        ]
        holes = [Cylinder((0, 0, h * 0.65), 0, r, w), Cylinder((0, 0, 0), 2, r, t)]
        return Solid(parts, holes)
    if category == "flange":
        radius, t = _u(rng, 45, 60), _u(rng, 10, 14)
        hub, hub_h, bore = _u(rng, 18, 26), _u(rng, 15, 30), _u(rng, 8, 14)
        parts = [
            Cylinder((0, 0, t / 2), 2, radius, t / 2),
            Cylinder((0, 0, hub_h / 2 + t / 2), 2, hub, hub_h / 2 + t / 2),
        ]
        count, ring, r = int(rng.integers(4, 9)), radius * 0.75, _u(rng, 3, 6)
        holes = [Cylinder((0, 0, 0), 2, bore, 4 * (hub_h + t))] + [
            Cylinder(
                (
                    ring * math.cos(2 * math.pi * i / count),
                    ring * math.sin(2 * math.pi * i / count),
                    0,
                ),
                2,
                r,
                4 * t,
            )
            for i in range(count)
        ]
        return Solid(parts, holes)
    if category == "shaft":
        length, steps = _u(rng, 130, 160), int(rng.integers(2, 4))
        radii = np.sort(rng.uniform(11, 18, steps))[::-1]
        cuts = np.sort(rng.uniform(0.2, 0.8, steps - 1)) * length
        edges = np.concatenate([[0], cuts, [length]]) - length / 2
        parts = [
            Cylinder(((lo + hi) / 2, 0, 0), 0, float(rad), (hi - lo) / 2)
            for lo, hi, rad in zip(edges[:-1], edges[1:], radii, strict=True)
        ]
        return Solid(parts)
    raise BadInput(f"unknown part class {category!r}; choose from {', '.join(CLASSES)}")


PART_RECORD_FORMAT = "recon.parts-part/1"  # models/<class>/<part>.json: files + settings


def part_jobs(count: int) -> list[tuple[str, int]]:
    """The parts of a synthetic set: (class, number), class-major."""
    return [(c, i) for c in CLASSES for i in range(count)]


def part_name(category: str, number: int) -> str:
    return f"{category}_{number:04d}"


def part_files(root: Path, category: str, number: int, views: int) -> list[Path]:
    """Every file a synthetic part may write under root."""
    name = part_name(category, number)
    folder = Path(root) / "images" / category / name
    mesh = Path(root) / "models" / category / f"{name}.stl"
    images = [folder / f"view_{i:02d}.png" for i in range(views)]
    return [mesh.with_suffix(".json"), mesh, *images]


def part_record(
    root: Path, category: str, number: int, seed: int, views: int, size: int
) -> dict | None:
    """The record of a finished part made with these settings; None when the record is missing,
    was made with other settings, or names a missing or empty file."""
    from recon.pipelines.common.batch import read_record

    path = Path(root) / "models" / category / f"{part_name(category, number)}.json"
    record = read_record(path, PART_RECORD_FORMAT, {"seed": seed, "views": views, "size": size})
    if record is None:
        return None
    try:
        files = [Path(root) / relative for relative in [record["mesh"], *record["images"]]]
    except (KeyError, TypeError):
        return None
    if not all(file.is_file() and file.stat().st_size > 0 for file in files):
        return None
    return record


def write_part(
    root: Path,
    category: str,
    number: int,
    views: int,
    seed: int,
    size: int = 160,
    *,
    per_class: int,
) -> dict:
    """Make one part (STL, mm) and its shaded renders under root; returns its record.

    Drawn from the part's own generator (seed, class, number), so a part is the same whichever
    shard makes it. The image folder appears whole, then the STL, then the record
    models/<class>/<part>.json: a part with a record is complete. per_class is the parts per
    class of the set the part belongs to (the record keeps it, see synth_progress).
    """
    from recon.pipelines.common.batch import item_rng
    from recon.pipelines.common.io import save_mesh, write_png
    from recon.pipelines.common.outputs import atomic_dir, write_json
    from recon.pipelines.shapes import Renderer, random_view, solid_mesh

    root = Path(root)
    rng = item_rng(seed, CLASSES.index(category), number)
    solid = make_part(category, rng)
    mesh = solid_mesh(solid, resolution=96)
    name = part_name(category, number)
    shaded = mesh.copy()
    shaded.apply_translation(-shaded.bounds.mean(axis=0))
    renderer = Renderer(shaded)
    radius = float(np.linalg.norm(shaded.extents) / 2)
    grey = _u(rng, 120, 220)
    colour = np.array([grey, grey, grey]) * rng.uniform(0.9, 1.1, 3)
    images = []
    with atomic_dir(root / "images" / category / name) as folder:
        for view_index in range(views):
            background = (
                np.full(3, _u(rng, 0, 80)) if rng.random() < 0.5 else rng.uniform(0, 255, 3)
            )
            view = random_view(rng, radius, jitter=0.05)
            image, mask = renderer.render(view, size, size, colour, background)
            if mask.any():
                write_png(folder / f"view_{view_index:02d}.png", image)
                images.append(f"images/{category}/{name}/view_{view_index:02d}.png")
    (root / "models" / category).mkdir(parents=True, exist_ok=True)
    mesh_path = root / "models" / category / f"{name}.stl"
    save_mesh(mesh, mesh_path)
    record = {
        "format": PART_RECORD_FORMAT,
        "class": category,
        "part": name,
        "seed": seed,
        "views": views,
        "size": size,
        "parts_per_class": per_class,
        "mesh": f"models/{category}/{name}.stl",
        "images": images,
    }
    write_json(mesh_path.with_suffix(".json"), record)
    return record


def synth_parts(
    out: Path,
    parts_per_class: int = 6,
    views_per_part: int = 8,
    seed: int = 0,
    size: int = 160,
    track: Callable = lambda items, _desc: items,
) -> dict:
    """Write a whole parts set (STL models and shaded renders) into the folder out; returns a
    summary (see write_part; `recon synth parts` makes the same parts in shards)."""
    jobs = part_jobs(parts_per_class)
    records = [
        write_part(out, c, n, views_per_part, seed, size, per_class=parts_per_class)
        for c, n in track(jobs, "parts")
    ]
    return parts_summary(records)


def parts_summary(records: list[dict]) -> dict:
    """Counts of parts and images (per class) for a command's result."""
    counts = dict.fromkeys(dict.fromkeys(r["class"] for r in records), 0)
    for record in records:
        counts[record["class"]] += 1
    return {
        "parts": len(records),
        "images": sum(len(r["images"]) for r in records),
        "per_class": counts,
    }


@dataclass(frozen=True)
class SetProgress:
    """How far the `recon synth parts` set in a folder is."""

    made: int  # parts whose record (written last) is there
    per_class: int  # parts per class the set holds
    source: Path  # what says so: a run record, or ROOT/models for the part records

    @property
    def total(self) -> int:
        return self.per_class * len(CLASSES)


def synth_progress(root: Path) -> SetProgress | None:
    """The progress of the `recon synth parts` set in root; None when no synth parts run wrote
    into it (neither a run record nor a part record: made by hand). The set holds the largest
    parts-per-class count that its run records (run.json, run.shard-K-of-N.json) or its part
    records state (a part record also implies its own number + 1), so a run stopped before it
    wrote its run record still counts."""
    from recon.pipelines.common.outputs import run_records

    root = Path(root)
    per_class, source = 0, None
    for path, doc in run_records(root, "synth parts"):
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        count = config.get("count")
        if type(count) is int and count > per_class:
            per_class, source = count, path
    made = 0
    for number, record in _part_records(root):
        made += 1
        stated = record.get("parts_per_class")
        least = max(number + 1, stated if type(stated) is int else 0)
        if least > per_class:
            per_class, source = least, root / "models"
    return None if source is None else SetProgress(made, per_class, source)


def _part_records(root: Path):
    """(part number, record) of each readable part record under ROOT/models."""
    from recon.pipelines.common.batch import read_record

    for path in sorted(Path(root).glob("models/*/*.json")):
        category, _, number = path.stem.rpartition("_")
        if category != path.parent.name or category not in CLASSES:
            continue
        if not (number.isascii() and number.isdigit()):
            continue
        record = read_record(path, PART_RECORD_FORMAT, {"class": category})
        if record is not None:
            yield int(number), record


def unfinished_set(root: Path) -> tuple[Path, str] | None:
    """(the file that states the set's size, what is unfinished) when the `recon synth parts`
    set in root has fewer parts made than it holds; None when it is whole or not synthetic.
    check-data reports it and training refuses it, both from here."""
    progress = synth_progress(root)
    if progress is None or progress.made >= progress.total:
        return None
    said = progress.source.name if progress.source.suffix == ".json" else "its part records"
    return progress.source, (
        f"unfinished `recon synth parts` set: {progress.made} of {progress.total} parts made "
        f"({progress.per_class} per class, from {said}); run the remaining shards, or rerun "
        "the command with --skip-done to finish it"
    )
