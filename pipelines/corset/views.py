"""Corset views for the network, and the way back to a corset shell.

Network encoding of a depth view (both sides): foreground pixel -> DISTANCE - t, the position
along the camera direction in the normalised frame (in [-1, 1]); background -> -1. A predicted
pixel is foreground when its value exceeds FOREGROUND (-0.6; the visible side of a torso
centred in the normalised frame lies in front of it).
Also: the photos of a torso in PHOTO_VIEWS order, the prior (the torso's side views pushed out
by a clearance, within a height band) and predicted side views -> a trimmed, thickened shell.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput

SIDE_VIEWS = 8
PHOTO_VIEWS = [f"view_{i:03d}" for i in range(SIDE_VIEWS)] + ["top", "bottom"]
CORSET_VIEWS = [f"view_{i:03d}" for i in range(SIDE_VIEWS)]
FOREGROUND = -0.6  # visible surfaces of a centred torso lie well in front of this


def encode_views(depths: np.ndarray) -> np.ndarray:
    """uint16 depth views (V, H, W) -> network values (V, H, W) float32 (see module doc)."""
    from recon.pipelines.shapes import DEPTH_UNIT, DISTANCE

    values = np.full(depths.shape, -1.0, dtype=np.float32)
    hit = depths > 0
    values[hit] = DISTANCE - depths[hit].astype(np.float64) * DEPTH_UNIT
    return values


def decode_views(values: np.ndarray) -> np.ndarray:
    """Network values (V, H, W) -> uint16 depth views; background where value <= FOREGROUND."""
    from recon.pipelines.shapes import DEPTH_UNIT, DISTANCE

    depths = np.zeros(values.shape, dtype=np.uint16)
    hit = values > FOREGROUND
    depths[hit] = np.clip(np.rint((DISTANCE - values[hit]) / DEPTH_UNIT), 1, 65535)
    return depths


def silhouette_iou(values, targets):
    """Per-sample IoU, tensor (B,), of the foreground (value > FOREGROUND) of network views
    (B, V, H, W) against target views, over all V views of each sample; 1 where both are empty
    (metrics.voxel_iou of the two masks). Torch or numpy arrays alike. Per sample, so that a
    validation mean does not depend on the batch size (pooling a batch's pixels weights a big
    torso over a small one)."""
    from recon.pipelines.common.metrics import voxel_iou

    return voxel_iou(values > FOREGROUND, targets > FOREGROUND)


# How far a torso scan in mm reaches from its centre (half its bounding diagonal, about): a
# child's torso reaches some 150 mm, an adult's 250-450 mm. A scan in cm or m falls far outside.
TORSO_REACH_MM = (80.0, 2000.0)


def load_photos(folder: Path, size: int | None = None) -> tuple[np.ndarray, dict]:
    """A torso projection folder -> depth views in PHOTO_VIEWS order (10, H, W) and views.json.

    BadInput when views are missing, extra, not those `recon project --views 8 --caps` makes
    (cameras, depth encoding), or of another size than `size` (when given), or when the torso
    is not of a size in mm (TORSO_REACH_MM: a scan in cm or m).
    """
    from recon.pipelines.shapes import check_views_agree, load_depth_views, read_views

    doc = read_views(folder)
    order = _view_order(folder, doc, PHOTO_VIEWS, caps=True)
    if size is not None and int(doc["camera"]["size"]) != size:
        raise BadInput(f"{folder}: views are {doc['camera']['size']} px, the model takes {size} px")
    reach = 1 / frame_scale(doc)  # mesh units from the centre to the farthest point
    if not TORSO_REACH_MM[0] <= reach <= TORSO_REACH_MM[1]:
        raise BadInput(
            f"{folder}: the torso reaches {reach:.3g} units from its centre, where a torso in mm "
            f"reaches {TORSO_REACH_MM[0]:g}-{TORSO_REACH_MM[1]:g}; corsets are made in mm: scale "
            "the scan to mm (was it in cm or m?) and project it again"
        )
    depths = load_depth_views(folder, doc)
    check_views_agree(folder, doc, depths)
    _refuse_a_lying_torso(folder, depths[order][:SIDE_VIEWS] > 0)
    return depths[order], doc


# A standing torso is about as tall as its widest view or taller (an adult's 450-600 mm
# against 300-450 across and 200-400 deep); one projected with its long axis across the views
# (the wrong --up) is far wider than tall from some side (0.4-0.7).
STANDING_RATIO = 0.85


def _refuse_a_lying_torso(folder: Path, silhouettes: np.ndarray) -> None:
    """BadInput when the torso's height in the side views (SIDE_VIEWS, H, W) is under
    STANDING_RATIO of its widest silhouette: it lies across the views, so the corset would be
    made lying down."""
    heights, widths = [], []
    for view in silhouettes:
        rows, cols = np.flatnonzero(view.any(axis=1)), np.flatnonzero(view.any(axis=0))
        if len(rows) and len(cols):
            heights.append(rows[-1] - rows[0] + 1)
            widths.append(cols[-1] - cols[0] + 1)
    if not widths:
        return
    ratio = float(np.median(heights)) / max(widths)
    if ratio < STANDING_RATIO:
        raise BadInput(
            f"{folder}: the torso lies across the views (its height is {ratio:.2f} of its widest "
            "side): project the scan again with --up naming its head-to-feet axis (--up y for a "
            "y-up scan)"
        )


def load_corset_views(folder: Path, photos_doc: dict) -> np.ndarray:
    """A patient's true corset views -> depth views in CORSET_VIEWS order (8, H, W); BadInput
    when views are missing or extra, or not in the frame of the patient's photos (photos_doc)."""
    from recon.pipelines.shapes import check_views_agree, load_depth_views, read_views

    doc = read_views(folder)
    order = _view_order(folder, doc, CORSET_VIEWS, caps=False)
    frame = np.asarray(doc["frame"]["to_normalised"], dtype=np.float64)
    if not np.allclose(frame, photos_doc["frame"]["to_normalised"], rtol=1e-6, atol=1e-9):
        raise BadInput(
            f"{folder}: its frame (to_normalised) is not the one of the patient's photos; the "
            "corset views must be projected in the torso's frame (`recon synth corset`)"
        )
    depths = load_depth_views(folder, doc)
    check_views_agree(folder, doc, depths)
    return depths[order]


def frame_scale(doc: dict) -> float:
    """Normalised units per mesh unit of a views.json (checked by read_views): the scale of its
    to_normalised matrix, a rotation times that scale."""
    matrix = np.asarray(doc["frame"]["to_normalised"], dtype=np.float64)[:3, :3]
    return float(abs(np.linalg.det(matrix)) ** (1 / 3))


def _view_order(folder: Path, doc: dict, wanted: list[str], caps: bool) -> list[int]:
    """Indices of the `wanted` views in views.json; BadInput unless it holds exactly those
    views, each with the camera `recon project --views SIDE_VIEWS` gives it (and its camera
    model), since the network reads every view by its place and encodes depth with them."""
    from recon.pipelines.shapes import DEPTH_UNIT, DISTANCE, EXTENT, ring_cameras

    layout = f"`recon project --views {SIDE_VIEWS}{' --caps' if caps else ' --no-caps'}`"
    names = [str(v.get("name")) for v in doc["views"]]
    missing = [n for n in wanted if n not in names]
    if missing or len(names) != len(wanted) or len(set(names)) != len(names):
        raise BadInput(
            f"{folder}: needs exactly the {len(wanted)} views of {layout} (found {len(names)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + ")"
        )
    stated = (doc["camera"]["extent"], doc["camera"]["distance"], doc["depth"]["unit"])
    if not np.allclose(stated, (EXTENT, DISTANCE, DEPTH_UNIT), rtol=1e-9, atol=0):
        raise BadInput(
            f"{folder}: views.json's camera (extent {stated[0]:g}, distance {stated[1]:g}, depth "
            f"unit {stated[2]:g}) is not the one {layout} writes; project the scan again"
        )
    cameras = {c.name: c for c in ring_cameras(SIDE_VIEWS, caps=caps)}
    order = [names.index(n) for n in wanted]
    for name, index in zip(wanted, order, strict=True):
        view, camera = doc["views"][index], cameras[name]
        axes = [(key, getattr(camera, key)) for key in ("direction", "right", "up")]
        if any(not np.allclose(view[key], axis, atol=1e-6) for key, axis in axes):
            raise BadInput(
                f"{folder}: view {name} does not look the way {layout} names it (direction "
                f"{view['direction']}, not {list(camera.direction)}); project the scan again"
            )
    return order


def prior_views(
    photos: np.ndarray, scale: float, offset_mm: float, trim: tuple[float, float]
) -> np.ndarray:
    """Torso views in network values (10, S, S) -> the offset-torso corset's side views (8, S, S).

    Each side view's visible surface moves offset_mm toward its camera: the front envelope of
    the offset surface, a grey dilation with a hemisphere of that radius (exact for orthographic
    views). Rows outside the trim band (fractions of the torso's seen height) become background.
    `scale` is the views' frame scale (normalised units per mm).
    """
    from scipy import ndimage

    from recon.pipelines.shapes import EXTENT

    size = photos.shape[-1]
    pixel = 2 * EXTENT / size
    radius = max(float(offset_mm) * float(scale), 0.0)
    reach = int(radius / pixel)
    steps = np.arange(-reach, reach + 1) * pixel
    squared = steps[:, None] ** 2 + steps[None] ** 2
    footprint = squared <= radius**2 + 1e-12
    bump = np.sqrt(np.clip(radius**2 - squared, 0.0, None))
    side = photos[:SIDE_VIEWS]
    raised = np.stack(
        [
            ndimage.grey_dilation(np.where(v > -1, v, -10.0), footprint=footprint, structure=bump)
            for v in side
        ]
    )
    out = np.where(raised > -5, raised, -1.0).astype(np.float32)
    rows = np.flatnonzero((side > -1).any(axis=(0, 2)))
    if len(rows):
        z = EXTENT * (1 - (2 * np.arange(size) + 1) / size)
        top, bottom = z[rows[0]] + pixel / 2, z[rows[-1]] - pixel / 2
        low, high = bottom + trim[0] * (top - bottom), bottom + trim[1] * (top - bottom)
        out[:, (z < low) | (z > high)] = -1.0
    return out


def measure_prior(photos: np.ndarray, corsets: np.ndarray, scales: np.ndarray) -> dict:
    """The offset and trim band that turn torsos into corsets on average, from training pairs.

    photos (N, 10, S, S) and corsets (N, 8, S, S) in network values, scales (N,) the frames'
    normalised units per mm. Offset: half the silhouette-width difference per row of each side
    view (20%-trimmed mean over rows, views and patients, so pads and rims barely count); trim:
    the median corset height band as fractions of the torso's seen height.
    """
    from scipy.stats import trim_mean

    from recon.pipelines.shapes import EXTENT

    size = photos.shape[-1]
    pixel = 2 * EXTENT / size
    offsets, bands = [], []
    for torso, corset, scale in zip(photos[:, :SIDE_VIEWS] > -1, corsets > -1, scales, strict=True):
        both = corset.any(axis=2) & torso.any(axis=2)  # (8, S) rows seen in both
        widths = corset.sum(axis=2) - torso.sum(axis=2)
        offsets.append(widths[both] * pixel / 2 / scale)
        seen, kept = np.flatnonzero(torso.any(axis=(0, 2))), np.flatnonzero(corset.any(axis=(0, 2)))
        if len(seen) and len(kept):
            height = seen[-1] - seen[0] + 1
            bands.append(((seen[-1] - kept[-1]) / height, (seen[-1] + 1 - kept[0]) / height))
    if not bands:
        raise BadInput("the training pairs show no corset next to a torso")
    return {
        "offset_mm": float(trim_mean(np.concatenate(offsets), 0.2)),
        "trim": [float(np.median([b[0] for b in bands])), float(np.median([b[1] for b in bands]))],
    }


def corset_views_doc(photos_doc: dict) -> dict:
    """views.json for predicted corset side views: the photos' frame, the side cameras only."""
    doc = json.loads(json.dumps(photos_doc))
    doc["views"] = [v for v in doc["views"] if v["name"] in CORSET_VIEWS]
    doc["views"].sort(key=lambda v: CORSET_VIEWS.index(v["name"]))
    doc["source"] = {"mesh": "predicted corset", "faces": 0, "vertices": 0}
    doc["predicted"] = True  # each view the network's own guess: they need not agree exactly
    return doc


def corset_from_views(folder: Path, thickness: float = 4.0):
    """Corset side views + views.json -> trimmed outer surface -> shell `thickness` mm thick.

    Side views cannot see where the corset ends; the surface is cut one pixel inside the
    height range of the seen points, which removes Poisson's closing caps. Heights are taken in
    the views' normalised frame (z up there whatever axis `project --up` named), not on the
    mesh's own z.
    """
    from recon.pipelines.common.errors import JobFailed
    from recon.pipelines.shapes import (
        SurfaceOptions,
        lift_views,
        load_depth_views,
        read_views,
        reconstruct,
    )

    doc = read_views(folder)
    points, _ = lift_views(doc, load_depth_views(folder, doc))  # normalised, z up
    to_normalised = np.asarray(doc["frame"]["to_normalised"])
    pixel = 2 * float(doc["camera"]["extent"]) / int(doc["camera"]["size"])  # normalised units
    low, high = float(points[:, 2].min()) + pixel, float(points[:, 2].max()) - pixel
    if high - low < 4 * pixel:
        raise JobFailed("the predicted corset views hold almost nothing")
    surface = reconstruct(folder, SurfaceOptions(close_unseen=False)).mesh  # trimmed below
    height = np.asarray(surface.vertices) @ to_normalised[2, :3] + to_normalised[2, 3]
    face_z = height[np.asarray(surface.faces)]
    inside = (face_z.min(axis=1) >= low) & (face_z.max(axis=1) <= high)
    surface.update_faces(inside)
    surface.remove_unreferenced_vertices()
    if len(surface.faces) == 0:
        raise JobFailed("the predicted corset surface is empty after trimming")
    return thicken(surface, thickness)


def thicken(surface, thickness: float):
    """An open outward-facing surface -> a closed shell: an inner copy moved in along the
    vertex normals averaged over the wall's thickness (wall_directions; unfolded where it still
    folds over), and rim faces along every boundary edge."""
    import trimesh

    vertices = np.asarray(surface.vertices)
    n = len(vertices)
    edges = np.sort(surface.edges, axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = {tuple(e) for e in unique[counts == 1]}
    rim = [k for k, (a, b) in enumerate(surface.edges) if (min(a, b), max(a, b)) in boundary]
    a, b = np.asarray(surface.edges)[rim].T  # directed as in their faces
    rims = np.stack([np.stack([b, a, a + n], 1), np.stack([b, a + n, b + n], 1)], 1).reshape(-1, 3)
    # a rim face faces away from its face, across its edge
    away = np.cross(vertices[b] - vertices[a], surface.face_normals[surface.edges_face[rim]])
    faces = np.concatenate([surface.faces, surface.faces[:, ::-1] + n, rims])
    facing = np.concatenate([surface.face_normals, -surface.face_normals, np.repeat(away, 2, 0)])
    adjacency = vertex_adjacency(surface)
    inner = vertices - wall_directions(surface, adjacency, thickness) * thickness
    inner = unfold(
        vertices, inner, faces[len(surface.faces) :], facing[len(surface.faces) :], adjacency
    )
    return trimesh.Trimesh(np.concatenate([vertices, inner]), faces)


UNFOLD_ROUNDS = 20


def vertex_adjacency(surface):
    """The (V, V) sparse matrix of the surface's edges, 1 between the two ends of each."""
    from scipy.sparse import coo_matrix

    edges = np.asarray(surface.edges_unique)
    count = len(surface.vertices)
    ends = (edges.ravel(), edges[:, ::-1].ravel())
    return coo_matrix((np.ones(2 * len(edges)), ends), shape=(count, count)).tocsr()


def wall_directions(surface, adjacency, thickness: float) -> np.ndarray:
    """Unit vertex normals (V, 3) averaged over neighbours about `thickness` mm around: the
    wall moved in along the raw normals of a bump narrower than the wall crossed itself."""
    steps = max(1, int(np.ceil(thickness / max(float(np.mean(surface.edges_unique_length)), 1e-9))))
    normals = np.asarray(surface.vertex_normals, dtype=np.float64)
    for _ in range(steps):
        normals = normals + adjacency @ normals
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return normals


def unfold(outer: np.ndarray, inner: np.ndarray, faces, facing, adjacency) -> np.ndarray:
    """The inner wall (V, 3) with its folds smoothed out. faces (F, 3) index [outer; inner]
    (the inner wall's and the rims'), each to face along facing (F, 3). Moving in can turn a
    face over (a sliver whose corners' normals differ, a rim beside a narrow bump), and the
    wall then crosses itself there. Each round, the inner vertices of the faces turned over
    and their neighbours move to their neighbours' mean, until none is turned over."""
    count = len(inner)
    degree = np.maximum(np.asarray(adjacency.sum(axis=1)).ravel(), 1)[:, None]
    inner = inner.copy()
    for _ in range(UNFOLD_ROUNDS):
        corners = np.concatenate([outer, inner])[faces]
        turned = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        over = np.einsum("ij,ij->i", turned, facing) <= 0
        if not over.any():
            break
        region = np.zeros(count, bool)
        moved = faces[over].ravel()
        region[moved[moved >= count] - count] = True
        region |= adjacency @ region > 0
        inner[region] = (adjacency @ inner)[region] / degree[region]
    return inner
