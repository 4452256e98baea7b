"""Corsets (scoliosis braces): procedural patients, view encoding, baseline, views -> shell.

A patient is a torso tube following a scoliotic spine (recon.pipelines.shapes.meshes), a spine
X-ray of the same curve (recon.pipelines.corset.spine) and a corset: a shell offset outward from the
torso by a clearance `gap`, `thickness` thick, trimmed at TRIM_BOTTOM and TRIM_TOP of the torso
height, with a pressure pad pushing in on the convex side of the curve (posterolateral, at the
apex) and a relief area bulging out opposite it; pad depth and relief grow with the Cobb angle.

Data set layout (`recon synth corset -o DIR`):
    DIR/dataset.json               format, size, patients (names), settings
    DIR/<name>/photos/             the torso projected by `recon project` (8 side views + top +
                                   bottom, depth + silhouette PNGs, views.json): the "photos"
    DIR/<name>/corset_views/       the corset's 8 side views in the SAME frame (views.json)
    DIR/<name>/spine.png           16-bit AP X-ray;  DIR/<name>/spine.json  its embed-spine output
    DIR/<name>/torso.stl, corset.stl, truth.json (signed Cobb, sizes, gap, thickness, spacing)

Each patient is drawn from its own generator (seed, patient number) and its folder appears
whole, so shards of `recon synth corset` make the same patients as one run; dataset.json is
written by whichever run finds the last patient finished.

Prediction with a trained model is in recon.pipelines.corset.predict; the network's view
encoding, the prior and views -> shell in recon.pipelines.corset.views.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.corset.views import CORSET_VIEWS, PHOTO_VIEWS, SIDE_VIEWS

# /2: spine films shown as radiographs (the patient's right at the image's left); /1 sets had
# them mirrored, so their spine embeddings carry the other sign
DATA_FORMAT = "recon.corset-data/2"
TRIM_BOTTOM, TRIM_TOP = 0.12, 0.80  # fractions of the torso height
RINGS, AROUND = 96, 96


@dataclass
class PatientParams:
    height: float  # mm
    width: float
    depth: float
    cobb_deg: float  # signed: > 0 convex toward +x
    gap: float  # clearance between skin and corset, mm
    thickness: float  # corset wall, mm


def sample_patient(rng: np.random.Generator, cobb_range=(0.0, 50.0)) -> PatientParams:
    """Random body size and curve: Cobb uniform in cobb_range, random side."""
    height = rng.uniform(420, 560)
    return PatientParams(
        height=float(height),
        width=float(rng.uniform(0.55, 0.7) * height),
        depth=float(rng.uniform(0.38, 0.46) * height),
        cobb_deg=float(rng.uniform(*cobb_range) * rng.choice([-1.0, 1.0])),
        gap=float(rng.uniform(4.0, 8.0)),
        thickness=float(rng.uniform(3.0, 5.0)),
    )


def make_torso(p: PatientParams):
    """The patient's torso tube (mm, z up), RINGS x AROUND vertices first."""
    from recon.pipelines.shapes import torso_tube

    return torso_tube(p.height, p.cobb_deg, p.width, p.depth, rings=RINGS, around=AROUND)


def corset_offsets(p: PatientParams, pads: bool = True) -> np.ndarray:
    """Inner-surface offset from the skin along the normal, (RINGS, AROUND) mm."""
    z = np.linspace(0.0, p.height, RINGS)[:, None]
    theta = np.linspace(0, 2 * math.pi, AROUND, endpoint=False)[None]
    offsets = np.full((RINGS, AROUND), p.gap)
    if not pads:
        return offsets
    convex = -0.35 if p.cobb_deg >= 0 else math.pi + 0.35  # posterolateral, convex side
    along = np.exp(-(((z - 0.5 * p.height) / (0.14 * p.height)) ** 2))
    pad = np.exp(-((_angle_diff(theta, convex) / 0.55) ** 2))
    relief = np.exp(-((_angle_diff(theta, convex + math.pi) / 0.7) ** 2))
    strength = abs(p.cobb_deg)
    return offsets + along * (-0.6 * strength * pad + 0.45 * strength * relief)


def _angle_diff(a, b):
    return (a - b + math.pi) % (2 * math.pi) - math.pi


def make_corset(p: PatientParams, torso=None, pads: bool = True):
    """The corset shell: outer and inner walls between the trim heights, closed by rims."""
    import trimesh

    torso = torso if torso is not None else make_torso(p)
    count = RINGS * AROUND
    skin = np.asarray(torso.vertices[:count]).reshape(RINGS, AROUND, 3)
    normals = np.asarray(torso.vertex_normals[:count]).reshape(RINGS, AROUND, 3)
    z = skin[:, 0, 2]
    keep = np.flatnonzero((z >= TRIM_BOTTOM * p.height) & (z <= TRIM_TOP * p.height))
    inner = skin + normals * corset_offsets(p, pads)[..., None]
    outer = inner + normals * p.thickness
    inner, outer = inner[keep], outer[keep]
    rings = len(keep)
    vertices = np.concatenate([outer.reshape(-1, 3), inner.reshape(-1, 3)])
    faces = _shell_faces(rings, AROUND)
    return trimesh.Trimesh(vertices, faces, process=True)


def _shell_faces(rings: int, around: int) -> np.ndarray:
    ring = np.arange(around)
    nxt = (ring + 1) % around
    base = rings * around
    faces = []
    for k in range(rings - 1):
        a, b = k * around + ring, k * around + nxt
        c, d = (k + 1) * around + nxt, (k + 1) * around + ring
        faces += [np.stack([a, b, c], 1), np.stack([a, c, d], 1)]  # outer, facing out
        faces += [
            np.stack([base + a, base + c, base + b], 1),
            np.stack([base + a, base + d, base + c], 1),
        ]  # inner, facing in
    top = (rings - 1) * around
    faces += [np.stack([ring, base + ring, base + nxt], 1), np.stack([ring, base + nxt, nxt], 1)]
    faces += [
        np.stack([top + ring, top + nxt, base + top + nxt], 1),
        np.stack([top + ring, base + top + nxt, base + top + ring], 1),
    ]
    return np.concatenate(faces)


def project_corset(corset, photos_projection, size: int):
    """The corset's side views in the torso projection's frame: a Projection."""
    from recon.pipelines.shapes import Projection, cast_depths, encode_depth, ring_cameras

    to_normalised = photos_projection.to_normalised
    vertices = corset.vertices @ to_normalised[:3, :3].T + to_normalised[:3, 3]
    cameras = ring_cameras(SIDE_VIEWS, caps=False)
    distances = cast_depths(vertices, np.asarray(corset.faces), cameras, size)
    return Projection(cameras, encode_depth(distances), to_normalised, size, "z")


def write_patient(
    folder: Path, p: PatientParams, size: int, seed: int, made_by: dict | None = None
) -> dict:
    """Write one patient (see module doc) into folder, which must exist; returns truth.json,
    which also holds made_by (the set's seed and view size, which --skip-done compares)."""
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.common.outputs import write_json
    from recon.pipelines.corset.spine import measure_spine
    from recon.pipelines.corset.spine_xray import synth_spine_xray, write_spine_png
    from recon.pipelines.shapes import project_mesh, write_projection

    torso = make_torso(p)
    corset = make_corset(p, torso)
    save_mesh(torso, folder / "torso.stl")
    save_mesh(corset, folder / "corset.stl")
    photos = project_mesh(torso, views=SIDE_VIEWS, caps=True, size=size)
    (folder / "photos").mkdir()
    write_projection(
        photos,
        folder / "photos",
        photos.views_json("torso.stl", len(torso.faces), len(torso.vertices)),
    )
    target = project_corset(corset, photos, size)
    (folder / "corset_views").mkdir()
    write_projection(
        target,
        folder / "corset_views",
        target.views_json("corset.stl", len(corset.faces), len(corset.vertices)),
    )
    xray = synth_spine_xray(p.cobb_deg, p.height, p.width, seed=seed)
    write_spine_png(folder / "spine.png", xray)
    measure = measure_spine(xray.image / 65535.0, (xray.spacing_mm, xray.spacing_mm))
    write_json(folder / "spine.json", {**measure.as_dict(), "spacing_from": "recon synth corset"})
    truth = {
        **asdict(p),
        "xray_cobb_deg": xray.cobb_deg,
        "xray_tilts_deg": xray.tilts_deg.tolist(),
        "xray_spacing_mm": xray.spacing_mm,
        "trim": [TRIM_BOTTOM, TRIM_TOP],
        **({"made_by": made_by} if made_by else {}),
    }
    write_json(folder / "truth.json", truth)
    return truth


PATIENT_FILES = (
    "torso.stl",
    "corset.stl",
    "spine.png",
    "spine.json",
    "photos/views.json",
    "corset_views/views.json",
    "truth.json",
)


def patient_name(index: int) -> str:
    return f"p{index:04d}"


def patient_files(root: Path, index: int) -> list[Path]:
    """The fixed files of a synthetic patient (besides the PNGs its views.json files name)."""
    folder = Path(root) / patient_name(index)
    return [folder / part for part in PATIENT_FILES]


def patient_complete(root: Path, index: int, size: int, seed: int) -> bool:
    """Whether a synthetic patient is whole and of this set: every file there and not empty,
    the views as many pixels as size, and its truth.json made with this seed and size."""
    from recon.pipelines.common.batch import is_complete

    folder = Path(root) / patient_name(index)
    if not is_complete(patient_files(root, index)):
        return False
    try:
        made_by = json.loads((folder / "truth.json").read_text(encoding="utf-8-sig")).get("made_by")
        if made_by != {"seed": seed, "size": size, "format": DATA_FORMAT}:
            return False
        docs = {
            sub: json.loads((folder / sub / "views.json").read_text(encoding="utf-8-sig"))
            for sub in ("photos", "corset_views")
        }
        if int(docs["photos"]["camera"]["size"]) != size:
            return False
        pngs = [
            folder / sub / view[key]
            for sub, doc in docs.items()
            for view in doc["views"]
            for key in ("depth", "silhouette")
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return is_complete(pngs)


def write_patient_item(root: Path, index: int, size: int, seed: int) -> dict:
    """Make patient number index of a set under root/<name>/, which appears whole; returns its
    dataset.json record. Drawn from the patient's own generator (seed, index), so a patient is
    the same whichever shard makes it."""
    from recon.pipelines.common.batch import item_rng
    from recon.pipelines.common.outputs import atomic_dir

    rng = item_rng(seed, index)
    params = sample_patient(rng)
    xray_seed = int(rng.integers(2**31))
    with atomic_dir(Path(root) / patient_name(index)) as folder:
        made_by = {"seed": seed, "size": size, "format": DATA_FORMAT}
        truth = write_patient(folder, params, size, xray_seed, made_by)
    return {"name": patient_name(index), "cobb_deg": truth["cobb_deg"]}


def dataset_doc(size: int, seed: int, records: list[dict]) -> dict:
    return {
        "format": DATA_FORMAT,
        "size": size,
        "photo_views": PHOTO_VIEWS,
        "corset_views": CORSET_VIEWS,
        "trim": [TRIM_BOTTOM, TRIM_TOP],
        "seed": seed,
        "patients": records,
    }


def write_dataset_index(root: Path, patients: int, size: int, seed: int) -> tuple[Path | None, int]:
    """Write root/dataset.json once every patient is whole; returns (its path or None, how many
    patients are still missing)."""
    from recon.pipelines.common.outputs import write_json

    records, missing = [], 0
    for index in range(patients):
        if not patient_complete(root, index, size, seed):
            missing += 1
            continue
        truth = json.loads(
            (Path(root) / patient_name(index) / "truth.json").read_text(encoding="utf-8-sig")
        )
        records.append({"name": patient_name(index), "cobb_deg": truth["cobb_deg"]})
    if missing:
        return None, missing
    path = Path(root) / "dataset.json"
    write_json(path, dataset_doc(size, seed, records))
    return path, 0


def synth_corset_dataset(out: Path, patients: int, size: int, seed: int, track=None) -> dict:
    """Write a whole corset data set into out (an existing empty folder); returns dataset.json.
    `recon synth corset` makes the same patients in shards."""
    indices = range(patients)
    records = [
        write_patient_item(out, i, size, seed) for i in (track or _plain)(indices, "patients")
    ]
    write_dataset_index(out, patients, size, seed)
    return dataset_doc(size, seed, records)


def _plain(items, _description):
    return items


def read_dataset(root: Path) -> dict:
    """Read and check DIR/dataset.json; BadInput names what is wrong."""
    from recon.pipelines.common.io import read_json

    root = Path(root)
    path = root / "dataset.json"
    if not path.is_file():
        if any(root.glob("p*/truth.json")):
            raise BadInput(
                f"{path}: not written yet: a sharded `recon synth corset` has not finished (run "
                "the remaining shards, or rerun any shard with --skip-done to write it)"
            )
        raise BadInput(f"{root}: no dataset.json (make one with `recon synth corset`)")
    try:
        doc = read_json(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: not valid JSON ({error})") from error
    if doc.get("format") == "recon.corset-data/1":
        raise BadInput(
            f"{path}: a set made before the spine films were shown as radiographs (their "
            "embeddings carry the other sign); remake it with `recon synth corset --overwrite`"
        )
    if not isinstance(doc, dict) or doc.get("format") != DATA_FORMAT or not doc.get("patients"):
        raise BadInput(f"{path}: not a {DATA_FORMAT} file with patients")
    _check_patient_names(path, doc["patients"])
    for record in doc["patients"]:
        for part in ("photos/views.json", "corset_views/views.json", "spine.json"):
            if not (root / record["name"] / part).is_file():
                raise BadInput(f"{root / record['name']}: missing {part}")
    return doc


def _check_patient_names(path: Path, records) -> None:
    """BadInput unless records is a list of {"name": a folder beside dataset.json}, each patient
    once: a patient listed twice would land in both the training and the validation split."""
    if not isinstance(records, list):
        raise BadInput(f"{path}: 'patients' must be a list of {{\"name\": FOLDER}} records")
    seen = set()
    for index, record in enumerate(records):
        name = record.get("name") if isinstance(record, dict) else None
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise BadInput(
                f"{path}: patients[{index}] needs a 'name', a folder beside dataset.json, not "
                f"{name!r}"
            )
        if name in seen:
            raise BadInput(
                f"{path}: patient {name} is listed twice (it would be in both the training and "
                "the validation split)"
            )
        seen.add(name)


def baseline_corset(torso, gap: float, thickness: float, height: float):
    """Baseline: the torso offset by the mean clearance and thickness, trimmed like a corset."""
    p = PatientParams(height, 0.0, 0.0, 0.0, gap, thickness)
    return make_corset(p, torso, pads=False)
