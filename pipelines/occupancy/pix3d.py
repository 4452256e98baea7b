"""The Pix3D layout: pix3d.json + img/ + mask/ + model/ (model.obj, voxel.mat), and a synthetic
generator that writes it.

pix3d.json is a list of entries; the fields read here are `img`, `category`, `voxel` and `bbox`
([x_min, y_min, x_max, y_max] pixels), paths relative to the data root. The synthetic set adds
`mask`, `model`, `img_size` [w, h], `cam_position`, `focal_length` (px) and the occlusion flags
as Pix3D does. Voxel grids are (128, 128, 128) uint8 indexed (x, y, z), z up, the object's
bounding box centred in the cube with its longest side 0.9 of the cube's side; model.obj is in
the same normalised frame (the cube is [-0.5, 0.5]^3).

Each synthetic model folder also holds entries.json: its pix3d.json entries and the seed and
view count that made it. A model is drawn from its own generator, so shards of `recon synth
pix3d` make the same models as one run; pix3d.json, the entries of every model in order, is
written by whichever run finds the last model finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.shapes import Box, Cylinder, Solid, occupancy

CATEGORIES = ("bed", "bookcase", "chair", "sofa", "table")
GRID = 128
FILL = 0.9  # longest side of an object / side of the voxel cube


def load_entries(root: Path) -> list[dict]:
    """The entries of ROOT/pix3d.json; BadInput when it is missing or not a list of objects."""
    from recon.pipelines.common.io import read_json

    path = Path(root) / "pix3d.json"
    if not Path(root).is_dir():
        raise BadInput(f"{root}: no such data set root (a Pix3D root holds pix3d.json)")
    if not path.is_file():
        if any(Path(root).glob(f"model/*/*/{MODEL_RECORD}")):
            raise BadInput(
                f"{path}: not written yet: a sharded `recon synth pix3d` has not finished (run "
                "the remaining shards, or rerun any shard with --skip-done to write it)"
            )
        raise BadInput(f"{path}: no such file (a Pix3D root holds pix3d.json)")
    try:
        entries = read_json(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: not valid JSON ({error})") from error
    except RecursionError as error:
        raise BadInput(f"{path}: not a Pix3D index (nested too deeply to read)") from error
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BadInput(f"{path}: expected a list of entries")
    return entries


class EntryProblem(BadInput):
    """A pix3d.json entry whose path field is missing, not a path, or leads outside ROOT."""

    def __init__(self, kind: str, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.kind, self.where, self.detail = kind, where, detail


def entry_path(root: Path, entry: dict, key: str, index: int) -> Path:
    """ROOT/entry[key] with links resolved, confined to ROOT; EntryProblem (kind missing-field,
    bad-field or path-escapes-root) otherwise. Training and check-data both read paths here."""
    where = f"{Path(root) / 'pix3d.json'} entry {index}"
    if key not in entry or entry[key] is None:
        raise EntryProblem("missing-field", where, f"no {key}")
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        raise EntryProblem("bad-field", where, f"{key} is {value!r}, not a path under ROOT")
    base = Path(root).resolve()
    try:
        target = (base / value).resolve()
    except (OSError, ValueError) as error:  # a NUL byte, a link loop
        raise EntryProblem("bad-field", where, f"{key} {value!r} is not a usable path") from error
    if not target.is_relative_to(base):
        raise EntryProblem("path-escapes-root", f"{where}: {value}", f"{key} points outside ROOT")
    return target


def entry_category(entry: dict, index: int) -> str:
    """entry["category"], a non-empty string; EntryProblem (kind missing-field when absent or
    null, as entry_path treats a null path, bad-field otherwise) when it is not one."""
    where = f"entry {index}"
    value = entry.get("category")
    if value is None:
        raise EntryProblem("missing-field", where, "no category")
    if not isinstance(value, str) or not value.strip():
        raise EntryProblem("bad-field", where, f"category is {value!r}, not a class name")
    return value


def resolved_entries(root: Path) -> list[dict]:
    """pix3d.json entries with img_path and voxel_path added (see entry_path); BadInput on the
    first entry that has no usable img or voxel, naming it."""
    entries = []
    for index, entry in enumerate(load_entries(root)):
        try:
            paths = {f"{k}_path": entry_path(root, entry, k, index) for k in ("img", "voxel")}
        except EntryProblem as problem:
            raise BadInput(f"{problem} (`recon check-data voxel` lists every problem)") from None
        entries.append({**entry, **paths})
    return entries


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _legs(x: float, y: float, height: float, thick: float, z0: float) -> list[Box]:
    h = height / 2
    return [Box((sx * x, sy * y, z0 + h), (thick, thick, h)) for sx in (-1, 1) for sy in (-1, 1)]


def make_furniture(category: str, rng: np.random.Generator) -> Solid:
    """A random object of a category, roughly in a unit cube, z up (units are arbitrary)."""
    if category == "table":
        w, d, h, t = _u(rng, 0.85, 1.0), _u(rng, 0.6, 0.75), _u(rng, 0.55, 0.7), _u(rng, 0.09, 0.12)
        leg = _u(rng, 0.06, 0.08)
        top = Box((0, 0, h - t / 2), (w / 2, d / 2, t / 2))
        return Solid([top, *_legs(w / 2 - leg, d / 2 - leg, h - t, leg, 0.0)])
    if category == "chair":
        w, seat, t = _u(rng, 0.5, 0.6), _u(rng, 0.42, 0.5), _u(rng, 0.09, 0.12)
        back, leg = _u(rng, 0.5, 0.6), _u(rng, 0.05, 0.07)
        parts = [
            Box((0, 0, seat - t / 2), (w / 2, w / 2, t / 2)),
            Box((0, -w / 2 + t / 2, seat + back / 2), (w / 2, t / 2, back / 2)),
            *_legs(w / 2 - leg, w / 2 - leg, seat - t, leg, 0.0),
        ]
        return Solid(parts)
    if category == "sofa":
        w, d, h = _u(rng, 0.9, 1.0), _u(rng, 0.45, 0.55), _u(rng, 0.22, 0.3)
        back, arm = _u(rng, 0.25, 0.35), _u(rng, 0.1, 0.14)
        parts = [
            Box((0, 0, h / 2), (w / 2, d / 2, h / 2)),
            Box((0, -d / 2 + arm / 2, h + back / 2), (w / 2, arm / 2, back / 2)),
            Box(
                (-w / 2 + arm / 2, 0, (h + back * 0.5) / 2), (arm / 2, d / 2, (h + back * 0.5) / 2)
            ),
            Box((w / 2 - arm / 2, 0, (h + back * 0.5) / 2), (arm / 2, d / 2, (h + back * 0.5) / 2)),
        ]
        return Solid(parts)
    if category == "bed":
        w, d, h = _u(rng, 0.65, 0.8), _u(rng, 0.9, 1.0), _u(rng, 0.18, 0.25)
        head = _u(rng, 0.25, 0.4)
        parts = [
            Box((0, 0, h / 2), (w / 2, d / 2, h / 2)),
            Box((0, d / 2 - 0.04, (h + head) / 2), (w / 2, 0.04, (h + head) / 2)),
            Cylinder((0, -d / 2 + 0.15, h + 0.04), 0, _u(rng, 0.05, 0.08), w / 2 - 0.05),
        ]
        return Solid(parts)
    if category == "bookcase":
        w, d, h, t = _u(rng, 0.5, 0.65), _u(rng, 0.3, 0.4), _u(rng, 0.85, 1.0), 0.06
        shelves = int(rng.integers(2, 4))
        gap = (h - t) / shelves
        holes = [
            Box((0, t, t + gap * (i + 0.5)), (w / 2 - t, d / 2, gap / 2 - t / 2))
            for i in range(shelves)
        ]
        return Solid([Box((0, 0, h / 2), (w / 2, d / 2, h / 2))], holes)
    raise BadInput(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")


def normalised_grid(solid: Solid, resolution: int = GRID) -> tuple[np.ndarray, float, np.ndarray]:
    """(grid, scale, centre): the solid sampled with its bounding box centred in the cube and the
    longest side FILL of it; world point p maps to (p - centre) * scale in [-0.5, 0.5]^3."""
    low, high = solid.bounds()
    centre = (low + high) / 2
    side = float((high - low).max()) / FILL
    grid = occupancy(solid, resolution, tuple(centre), side)
    return grid, 1.0 / side, centre


MODEL_RECORD = "entries.json"  # in each model folder: its pix3d.json entries + the settings
RECORD_FORMAT = "recon.pix3d-model/1"


def model_jobs(count: int, categories: tuple[str, ...] = CATEGORIES) -> list[tuple[str, int]]:
    """The models of a synthetic set, in pix3d.json order: (category, number), category-major."""
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown or not categories:
        raise BadInput(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
    return [(c, i) for c in categories for i in range(count)]


def model_dir(category: str, number: int) -> Path:
    """A synthetic model's folder, relative to the data root."""
    return Path("model") / category / f"synth_{number:04d}"


def _image_id(number: int, view: int, views: int) -> str:
    return f"{number * views + view:04d}"


def model_files(root: Path, category: str, number: int, views: int) -> list[Path]:
    """Every file a synthetic model may write under root (its images, masks and model folder)."""
    folder = Path(root) / model_dir(category, number)
    files = [folder / MODEL_RECORD, folder / "model.obj", folder / "voxel.mat"]
    for view in range(views):
        image_id = _image_id(number, view, views)
        files += [Path(root) / kind / category / f"{image_id}.png" for kind in ("img", "mask")]
    return files


def model_entries(
    root: Path, category: str, number: int, seed: int, views: int
) -> list[dict] | None:
    """The pix3d.json entries of a finished model made with these settings; None when its record
    is missing, was made with another seed or view count, or names a missing or empty file."""
    from recon.pipelines.common.batch import read_record

    path = Path(root) / model_dir(category, number) / MODEL_RECORD
    record = read_record(path, RECORD_FORMAT, {"seed": seed, "views": views})
    if record is None:
        return None
    try:
        files = [Path(root) / e[k] for e in record["entries"] for k in ("img", "mask", "voxel")]
    except (KeyError, TypeError):
        return None
    files.append(Path(root) / model_dir(category, number) / "model.obj")
    if not all(file.is_file() and file.stat().st_size > 0 for file in files):
        return None
    return record["entries"]


def write_model(
    root: Path, category: str, number: int, views: int, seed: int, v73_every: int = 3
) -> list[dict]:
    """Make one synthetic model and its renders under root; returns its pix3d.json entries.

    Everything is drawn from the model's own generator (seed, category, number), so a model is
    the same whichever shard makes it. Images and masks are written first, then the model folder
    (model.obj, voxel.mat and the record entries.json) appears whole: a model with a record is
    complete. Every v73_every-th model (counted over the whole set, category-minor) has a
    MATLAB v7.3 (HDF5) voxel file, the rest v5.
    """
    from recon.pipelines.common.batch import item_rng
    from recon.pipelines.common.io import write_png
    from recon.pipelines.common.outputs import atomic_dir
    from recon.pipelines.occupancy.matfiles import write_voxel_mat
    from recon.pipelines.shapes import Renderer, grid_to_mesh, mask_bbox, random_view

    root = Path(root)
    key = number * len(CATEGORIES) + CATEGORIES.index(category)
    rng = item_rng(seed, CATEGORIES.index(category), number)
    solid = make_furniture(category, rng)
    grid, _, _ = normalised_grid(solid)
    folder = model_dir(category, number)
    mesh = grid_to_mesh(grid, smooth=0.6)
    mesh.apply_scale(1.0 / GRID)
    mesh.apply_translation([-0.5, -0.5, -0.5])
    renderer = Renderer(mesh)
    colour = rng.uniform(60, 230, 3)
    entries = []
    for view_index in range(views):
        image_id = _image_id(number, view_index, views)
        width, height = int(rng.integers(160, 257)), int(rng.integers(160, 257))
        background = rng.uniform(0, 255, 3) if rng.random() < 0.7 else np.full(3, 255.0)
        view = random_view(rng, radius=0.5 * FILL * 1.2)
        image, mask = renderer.render(view, width, height, colour, background)
        if not mask.any():
            continue
        for kind, array in (("img", image), ("mask", (mask * 255).astype(np.uint8))):
            (root / kind / category).mkdir(parents=True, exist_ok=True)
            write_png(root / kind / category / f"{image_id}.png", array)
        entries.append(
            {
                "img": f"img/{category}/{image_id}.png",
                "category": category,
                "img_size": [width, height],
                "mask": f"mask/{category}/{image_id}.png",
                "model": f"{folder.as_posix()}/model.obj",
                "voxel": f"{folder.as_posix()}/voxel.mat",
                "bbox": mask_bbox(mask),
                "cam_position": [round(float(x), 5) for x in view.eye()],
                "focal_length": round(width / 2 / np.tan(np.radians(view.fov_deg / 2)), 3),
                "inplane_rotation": 0.0,
                "truncated": False,
                "occluded": False,
                "slightly_occluded": False,
            }
        )
    version = "7.3" if v73_every and key % v73_every == v73_every - 1 else "5"
    record = {"format": RECORD_FORMAT, "seed": seed, "views": views, "entries": entries}
    with atomic_dir(root / folder) as made:
        write_voxel_mat(made / "voxel.mat", grid.astype(np.uint8), version)
        mesh.export(made / "model.obj")
        (made / MODEL_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return entries


def write_index(
    root: Path, jobs: list[tuple[str, int]], seed: int, views: int
) -> tuple[Path | None, int]:
    """Write root/pix3d.json, the models' entries in job order, once every model is finished;
    returns (its path or None, how many models are still missing)."""
    from recon.pipelines.common.outputs import atomic_file

    entries, missing = [], 0
    for category, number in jobs:
        found = model_entries(root, category, number, seed, views)
        if found is None:
            missing += 1
        else:
            entries.extend(found)
    if missing:
        return None, missing
    path = Path(root) / "pix3d.json"
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
    return path, 0


def synth_pix3d(
    out: Path,
    models_per_class: int = 6,
    views_per_model: int = 8,
    seed: int = 0,
    v73_every: int = 3,
    track: Callable = lambda items, _desc: items,
    categories: tuple[str, ...] = CATEGORIES,
) -> dict:
    """Write a whole Pix3D-layout data set into the folder out; returns a summary (see
    write_model; `recon synth pix3d` makes the same models in shards)."""
    jobs = model_jobs(models_per_class, categories)
    entries = []
    for category, number in track(jobs, "synth pix3d"):
        entries += write_model(out, category, number, views_per_model, seed, v73_every)
    write_index(out, jobs, seed, views_per_model)
    return pix3d_summary(jobs, entries)


def pix3d_summary(jobs: list[tuple[str, int]], entries: list[dict]) -> dict:
    """Counts of models and images (per category) for a command's result."""
    counts = dict.fromkeys(dict.fromkeys(c for c, _ in jobs), 0)
    for entry in entries:
        counts[entry["category"]] += 1
    return {"images": len(entries), "models": len(jobs), "per_class": counts}


DEMO_MARGIN = 0.1  # IoU the demo's model must gain over the mean shape to pass


def demo_voxel(workdir: Path, seed: int, track: Callable) -> list:
    """Demo step: a tiny synthetic Pix3D set, a short CPU training of task `voxel`, a prediction
    on a held-out image; scored by held-out IoU@0.5 against the mean-shape baseline."""
    import time

    from recon.pipelines.common.demo import DemoRow
    from recon.pipelines.common.engine import RunOptions, fit
    from recon.pipelines.occupancy.predict import predict_images
    from recon.pipelines.occupancy.voxel_task import TASK, VoxelConfig

    clock = time.perf_counter()
    data = Path(workdir) / "pix3d"
    data.mkdir(parents=True, exist_ok=True)
    synth_pix3d(data, 8, 3, seed, track=track, categories=("bed", "bookcase", "table"))
    cfg = VoxelConfig(
        data=str(data),
        epochs=12,
        batch_size=8,
        lr=1e-3,
        size=32,
        hidden=128,
        seed=seed,
        val_fraction=0.25,
    )
    result = fit(
        TASK,
        cfg,
        RunOptions(out=Path(workdir) / "voxel_run", device="cpu", quiet=True, overwrite=True),
    )
    best = result["best_checkpoint"] or result["last_checkpoint"]
    image = data / json.loads((data / "pix3d.json").read_text(encoding="utf-8-sig"))[0]["img"]
    predicted = Path(workdir) / "voxel_predicted"
    predicted.mkdir(exist_ok=True)
    predict_images("voxel", Path(best), [image], [image.stem], predicted, device="cpu")
    seconds = time.perf_counter() - clock
    score = float(result["best_score"] or 0.0)
    baseline = float(result["metrics"].get("val/iou_mean_shape", 0.0))
    return [
        DemoRow(
            "voxel (3 classes, CPU)",
            "held-out IoU@0.5",
            score,
            f">= mean shape {baseline:.2f} + {DEMO_MARGIN}",
            score >= baseline + DEMO_MARGIN,
            seconds,
        ),
    ]
