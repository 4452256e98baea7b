"""Depth views + views.json -> merged point cloud -> closed surface, in the mesh's frame.

Steps: lift every foreground pixel to 3D (exact inverse of recon.pipelines.shapes.projection), merge
the views on a voxel grid, drop statistical outliers, optionally smooth by moving least squares
(vedo), estimate normals and orient each toward the camera that saw the point, then build a
surface: open3d screened Poisson (default, depth 8) or vedo's reconstruct_surface.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput, JobFailed

METHODS = ("poisson", "vedo")
MIN_POINTS = 20  # fewer points cannot describe a surface (one point crashes open3d)
# A surface must pass within NEAR_PIXELS of at least this share of the merged points: the test
# shapes (a sphere to a 4 mm rod, both methods) reach 0.88 and more, while a flat object seen
# edge-on by most views leaves poisson a 45-triangle scrap near 1% of them.
MIN_NEAR_SHARE = 0.5
NEAR_PIXELS = 2.0
# Views of one object agree: a point one view sees lies, in every other view, inside the
# silhouette and not in front of the surface that view sees (within AGREE_PIXELS). A view samples
# the surface at its pixel centres only, so a part under a pixel thin there (a fin or wing seen
# edge-on, an open mesh's sheet) can fall between them and leave the other views' points of it
# out; such a part covers, in that view, a band under a pixel wide, whose pixels never hold a
# TORN_BLOCK square, so only the disagreeing points in pixels that a TORN_BLOCK square of
# disagreeing pixels covers count. `recon project` views of the test shapes, synthetic torsos
# and corsets, plates with thin fins and pyvista's airplane (16 to 256 px) leave none of the
# points out, where counting every one leaves the airplane 22% at 16 px and 8% at 64 px; a
# torso's views 1 and 2 stored under each other's names leave 13.5% at 32 px, 18% at 64 px and
# 30% at 128 px (15% and 25% at 32 and 64 px counting every one), but nothing at 16 px.
AGREE_PIXELS = 1
TORN_BLOCK = 3
MAX_DISAGREEING = 0.05
# Views smaller than this are too coarse to judge: at 8 px an open bowl's views leave up to 26%
# out, where at 16 px and more every shape of the sweep (rods, plates, a torus, two boxes apart,
# an open bowl, 1 to 24 views, with and without caps) leaves under 1%.
AGREE_MIN_SIZE = 16
# Valid ranges of SurfaceOptions, checked before any work: (low, high); open3d crashes in native
# code outside them (depth 0 aborts, depth 30 exhausts memory, a huge merge grid leaves a point).
RANGES = {"depth": (4, 11), "voxel": (0.25, 16.0), "trim": (0.0, 0.5), "mls": (1.0, 32.0)}


@dataclass
class SurfaceOptions:
    method: str = "poisson"  # poisson | vedo
    depth: int = 8  # Poisson octree depth: 9 costs 3-5x the time for no gain at 256 px
    voxel: float = 2.0  # merge grid in pixels (1 px = 2*extent/size normalised units)
    trim: float = 0.0  # drop this quantile of lowest-density Poisson vertices (0 keeps it closed)
    mls: float = 0.0  # moving-least-squares radius in pixels (0 = off)
    outlier_std: float = 2.5  # statistical outlier removal threshold (0 = off)
    # close the ends no view saw flat, at the seen height range (False: leave Poisson's surface,
    # for a caller that trims and closes it itself, as a corset's open shell is)
    close_unseen: bool = True

    def check(self) -> None:
        """BadInput naming the first option outside its range (RANGES; mls may also be 0)."""
        if self.method not in METHODS:
            raise BadInput(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if name == "mls" and value == 0:
                continue
            if not (math.isfinite(value) and low <= value <= high):
                off = " or 0 (off)" if name == "mls" else ""
                raise BadInput(f"--{name} must be in [{low:g}, {high:g}]{off}, not {value:g}")

    def unused(self) -> list[str]:
        """The flags set away from their defaults that the chosen method does not read
        (--depth and --trim are Poisson's)."""
        if self.method == "poisson":
            return []
        default = SurfaceOptions()
        return [f"--{n}" for n in ("depth", "trim") if getattr(self, n) != getattr(default, n)]


@dataclass
class Reconstruction:
    mesh: object  # trimesh.Trimesh in the source mesh frame
    points: int  # points fed to the surface step
    timings: dict[str, float] = field(default_factory=dict)


def load_depth_views(folder: Path, doc: dict) -> np.ndarray:
    """Read every depth PNG named in views.json, (V, H, W) uint16; sizes must agree."""
    from recon.pipelines.common.io import read_image

    size = int(doc["camera"]["size"])
    depths = []
    for view in doc["views"]:
        path = Path(folder) / view["depth"]
        if not path.is_file():
            raise BadInput(f"{path}: depth image named in views.json is missing")
        depth = read_image(path)
        if depth.ndim != 2 or depth.dtype != np.uint16:
            raise BadInput(f"{path}: expected a 16-bit single-channel depth PNG")
        if depth.shape != (size, size):
            raise BadInput(
                f"{path}: depth image is {depth.shape[1]}x{depth.shape[0]}, "
                f"views.json says {size}x{size} (mixed sizes)"
            )
        depths.append(depth)
    return np.stack(depths)


def lift_views(doc: dict, depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground pixels -> points (N, 3) in the normalised frame, and their camera directions."""
    from recon.pipelines.shapes.projection import pixel_grid

    camera = doc["camera"]
    size, distance = int(camera["size"]), float(camera["distance"])
    unit = float(doc["depth"]["unit"])
    u, v = pixel_grid(size)
    u = u * float(camera["extent"]) / _default_extent()
    v = v * float(camera["extent"]) / _default_extent()
    points, directions = [], []
    for view, depth in zip(doc["views"], depths, strict=True):
        d, r, w = (np.asarray(view[k], dtype=np.float64) for k in ("direction", "right", "up"))
        mask = depth > 0
        t = depth[mask].astype(np.float64) * unit
        lifted = (distance - t)[:, None] * d + u[mask][:, None] * r + v[mask][:, None] * w
        points.append(lifted)
        directions.append(np.broadcast_to(d, lifted.shape))
    if not points or sum(len(p) for p in points) == 0:
        raise BadInput("the depth images hold no foreground pixels")
    points, directions = np.concatenate(points), np.concatenate(directions)
    if not np.isfinite(points).all():
        raise BadInput("views.json and the depth images give non-finite points")
    return points, directions


def view_disagreement(
    doc: dict, depths: np.ndarray, points: np.ndarray | None = None
) -> dict[str, float]:
    """Per view (by name): the share of the points the other views see that lie outside its
    silhouette or in front of the surface it sees (within AGREE_PIXELS), in pixels a
    TORN_BLOCK square of such points covers; 0 for views of one object. points: lift_views's
    (N, 3) for these depths, lifted here when not given."""
    from scipy.ndimage import binary_dilation, binary_opening, grey_erosion

    if points is None:
        points, _ = lift_views(doc, depths)
    ends = np.cumsum((depths > 0).reshape(len(depths), -1).sum(axis=1))
    camera = doc["camera"]
    size, extent = int(camera["size"]), float(camera["extent"])
    distance, unit = float(camera["distance"]), float(doc["depth"]["unit"])
    reach = AGREE_PIXELS * 2 * extent / size
    block = np.ones((TORN_BLOCK, TORN_BLOCK), dtype=bool)
    shares = {}
    for index, (view, depth) in enumerate(zip(doc["views"], depths, strict=True)):
        seen = depth > 0
        start, end = (ends[index - 1] if index else 0), ends[index]  # view index's own rows
        others = np.concatenate([points[:start], points[end:]])
        if not len(others):
            continue
        d, r, w = (np.asarray(view[k], dtype=np.float64) for k in ("direction", "right", "up"))
        col = np.rint((others @ r / extent + 1) * size / 2 - 0.5).astype(np.int64)
        row = np.rint((-(others @ w) / extent + 1) * size / 2 - 0.5).astype(np.int64)
        inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        square = np.ones((3, 3), dtype=bool)  # a point diagonally past a corner pixel too
        silhouette = binary_dilation(seen, structure=square, iterations=AGREE_PIXELS)
        # the nearest surface this view sees within AGREE_PIXELS of each pixel
        nearest = grey_erosion(np.where(seen, depth * unit, np.inf), size=2 * AGREE_PIXELS + 1)
        rows, cols = row[inside], col[inside]
        behind = distance - others[inside] @ d >= nearest[rows, cols] - reach
        wrong = ~(silhouette[rows, cols] & behind)
        torn = np.zeros((size, size), dtype=bool)
        torn[rows[wrong], cols[wrong]] = True
        torn = binary_opening(torn, structure=block)  # drop bands a pixel grid can miss
        disagree = np.ones(len(others), dtype=bool)
        disagree[inside] = wrong & torn[rows, cols]
        shares[str(view.get("name", index))] = float(disagree.mean())
    return shares


def check_views_agree(
    folder: Path, doc: dict, depths: np.ndarray, points: np.ndarray | None = None
) -> None:
    """BadInput when the views are not of one object (MAX_DISAGREEING of view_disagreement):
    views stored under each other's names, or of different objects, which back-project to a
    torn surface. points: lift_views's for these depths, where the caller has them."""
    if int(doc["camera"]["size"]) < AGREE_MIN_SIZE:
        return
    shares = view_disagreement(doc, depths, points)
    name = max(shares, key=shares.get, default=None)
    if name is not None and shares[name] > MAX_DISAGREEING:
        raise BadInput(
            f"{folder}: the views are not of one object: {shares[name]:.0%} of the points the "
            f"other views see lie outside {name}'s silhouette or in front of its surface (at "
            f"most {MAX_DISAGREEING:.0%}); are views stored under each other's names?"
        )


def _default_extent() -> float:
    from recon.pipelines.shapes.projection import EXTENT

    return EXTENT


def reconstruct(folder: Path, options: SurfaceOptions | None = None) -> Reconstruction:
    """Back-project a `recon project` folder into a mesh in the source mesh's frame. Views
    that a network predicted (views.json's "predicted": true, each view its own guess) are not
    held to check_views_agree."""
    from recon.pipelines.shapes.projection import read_views

    options = options or SurfaceOptions()
    options.check()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    doc = read_views(folder)
    depths = load_depth_views(folder, doc)
    if not depths.any():
        raise BadInput(f"{folder}: the depth images hold no foreground pixels")
    points, directions = lift_views(doc, depths)
    if doc.get("predicted") is not True:
        check_views_agree(folder, doc, depths, points)
    timings["lift"] = time.perf_counter() - clock

    clock = time.perf_counter()
    pixel = 2 * float(doc["camera"]["extent"]) / int(doc["camera"]["size"])
    _check_point_count(len(points), f"{folder}: the depth images hold")
    cloud = _clean_cloud(points, directions, pixel, options)
    _check_point_count(len(cloud.points), f"{folder}: after merging, the views leave")
    timings["points"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if options.method == "poisson":
        vertices, faces = _poisson(cloud, options, pixel)
    else:
        vertices, faces = _vedo_surface(np.asarray(cloud.points), pixel)
    timings["surface"] = time.perf_counter() - clock

    clock = time.perf_counter()
    _check_surface(folder, options.method, vertices, faces, np.asarray(cloud.points), pixel)
    mesh = _to_source_frame(vertices, faces, np.asarray(doc["frame"]["to_normalised"]))
    if options.method == "vedo":
        mesh.fill_holes()  # the contouring leaves a few small holes
    timings["clean"] = time.perf_counter() - clock
    return Reconstruction(mesh, len(cloud.points), timings)


def _check_surface(folder, method, vertices, faces, points, pixel: float) -> None:
    """JobFailed when the surface misses the points it was built from (MIN_NEAR_SHARE)."""
    from types import SimpleNamespace

    from recon.pipelines.common.metrics import distance_to_surface

    hint = "a flat or very thin object? (nothing written)"
    if len(faces) == 0:
        raise JobFailed(f"{folder}: {method} surface reconstruction produced no triangles; {hint}")
    mesh = SimpleNamespace(vertices=vertices, faces=faces)
    near = float((distance_to_surface(points, mesh) <= NEAR_PIXELS * pixel).mean())
    if near < MIN_NEAR_SHARE:
        raise JobFailed(
            f"{folder}: the {method} surface passes within {NEAR_PIXELS:g} pixels of only "
            f"{near:.0%} of the points the views see (at least {MIN_NEAR_SHARE:.0%} expected); "
            + hint
        )


def _check_point_count(count: int, what: str) -> None:
    if count < MIN_POINTS:
        raise BadInput(f"{what} {count} foreground points; a surface needs at least {MIN_POINTS}")


def _clean_cloud(points: np.ndarray, directions: np.ndarray, pixel: float, options):
    """Merge on a voxel grid, drop outliers, smooth (optional), normals toward their cameras."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(directions)  # averaged by the voxel merge
    if options.voxel > 0:
        cloud = cloud.voxel_down_sample(options.voxel * pixel)
    if options.outlier_std > 0 and len(cloud.points) > 50:
        cloud, _ = cloud.remove_statistical_outlier(nb_neighbors=20, std_ratio=options.outlier_std)
    if options.mls > 0:
        cloud.points = o3d.utility.Vector3dVector(
            _mls_smooth(np.asarray(cloud.points), options.mls * pixel)
        )
    seen_from = np.asarray(cloud.normals).copy()
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=24))
    normals = np.asarray(cloud.normals)
    flip = np.einsum("ij,ij->i", normals, seen_from) < 0
    normals[flip] *= -1
    cloud.normals = o3d.utility.Vector3dVector(normals)
    return cloud


@contextlib.contextmanager
def _quiet_vedo():
    """vedo, with its progress bar (over 10000 points) and its log lines dropped while it works:
    both write to stdout, which --json keeps for one object (the log through a handler made when
    vedo is imported, so only its level silences it)."""
    import io
    import logging

    import vedo

    level = vedo.logger.level
    vedo.logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield vedo
    finally:
        vedo.logger.setLevel(level)


def _mls_smooth(points: np.ndarray, radius: float) -> np.ndarray:
    """Project points onto local planes fitted by moving least squares (vedo)."""
    with _quiet_vedo() as vedo:
        smoothed = vedo.Points(points).smooth_mls_2d(radius=radius)
        return np.asarray(smoothed.coordinates, dtype=np.float64)


# open3d's Poisson reconstruction crashes the process now and then (a segmentation fault in
# CreateFromPointCloudPoisson, open3d issue 6828) when it runs on several threads; one thread
# measured no slower on 2 cores (1.32 s against 1.58 s at depth 8, 20 000 points)
POISSON_THREADS = 1
MERGE_PIXELS = 0.01  # Poisson vertices closer than this many pixels are one


def _poisson(cloud, options: SurfaceOptions, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud, depth=options.depth, scale=1.1, linear_fit=False, n_threads=POISSON_THREADS
    )
    if options.trim > 0:
        densities = np.asarray(densities)
        mesh.remove_vertices_by_mask(densities < np.quantile(densities, options.trim))
    # Poisson leaves a few vertices a ten-thousandth of a pixel apart, and the sliver between
    # them folds over its neighbour: the surface then crosses itself
    mesh = mesh.merge_close_vertices(MERGE_PIXELS * pixel)
    mesh.remove_duplicated_vertices()
    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_triangles()
    clusters, cluster_sizes, _ = mesh.cluster_connected_triangles()
    cluster_sizes = np.asarray(cluster_sizes)
    if len(cluster_sizes) > 1:  # drop fragments under 5% of the main part's size
        small = cluster_sizes < 0.05 * cluster_sizes.max()
        mesh.remove_triangles_by_mask(small[np.asarray(clusters)])
    mesh.remove_unreferenced_vertices()
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    if options.trim == 0 and options.close_unseen and len(_boundary(faces)):
        vertices, faces = _closed_where_seen(vertices, faces, np.asarray(cloud.points))
    return vertices, faces


def _boundary(faces: np.ndarray) -> np.ndarray:
    """The half-edges (a -> b, as their face runs) that only one face uses."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return edges[counts[inverse.ravel()] == 1]


def _closed_where_seen(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray):
    """An open Poisson surface cut to the height range the views saw (normalised z, the up axis
    of `recon project`) and closed flat there. Screened Poisson leaves its surface open where it
    meets its bounding cube, which it does past ends no view saw (the top and bottom of side
    views alone), after bulging beyond them."""
    low, high = float(points[:, 2].min()), float(points[:, 2].max())
    height = vertices[faces, 2]
    kept = faces[(height.min(axis=1) >= low) & (height.max(axis=1) <= high)]
    used = np.unique(kept)
    index = np.full(len(vertices), -1)
    index[used] = np.arange(len(used))
    return close_openings(vertices[used], index[kept])


def close_openings(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Close each boundary loop of a triangle mesh with a fan from the loop's centroid, wound
    like the faces beside it; a mesh whose boundary is not simple loops is returned as it is."""
    boundary = _boundary(faces)
    if len(boundary) == 0:
        return vertices, faces
    following = dict(zip(boundary[:, 0].tolist(), boundary[:, 1].tolist(), strict=True))
    if len(following) != len(boundary):  # a vertex starts two boundary edges: not simple loops
        return vertices, faces
    new_vertices, new_faces = [vertices], [faces]
    count = len(vertices)
    while following:
        start = next(iter(following))
        loop = [start]
        while True:
            step = following.pop(loop[-1], None)
            if step is None:  # an open chain: leave the mesh as Poisson made it
                return vertices, faces
            if step == start:
                break
            loop.append(step)
        loop = np.asarray(loop)
        new_vertices.append(vertices[loop].mean(axis=0, keepdims=True))
        # the face beside a -> b runs a -> b, so the cap runs b -> a -> centre
        new_faces.append(np.stack([np.roll(loop, -1), loop, np.full(len(loop), count)], axis=1))
        count += 1
    return np.concatenate(new_vertices), np.concatenate(new_faces)


def _vedo_surface(points: np.ndarray, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    with _quiet_vedo() as vedo:
        surface = vedo.Points(points).reconstruct_surface(dims=100, radius=4 * pixel, padding=0.1)
        return np.asarray(surface.coordinates), np.asarray(surface.cells)


def in_file_axes(mesh, doc: dict, suffix: str = ""):
    """The reconstructed mesh in the axes of the file its views were made from: views of a mesh
    that loading turned (views.json's frame.to_file: a glTF, y up, loads z up) are turned back;
    not for a `suffix` save_mesh turns itself (.glb/.gltf); else mesh itself."""
    from recon.pipelines.common.io import GLTF_SUFFIXES

    turn = doc["frame"].get("to_file")
    if turn is None or suffix.lower() in GLTF_SUFFIXES:
        return mesh
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(turn, dtype=np.float64)
    mesh = mesh.copy()
    mesh.apply_transform(matrix)
    return mesh


def _to_source_frame(vertices: np.ndarray, faces: np.ndarray, to_normalised: np.ndarray):
    """Normalised-frame surface -> trimesh in the source frame.

    Faces that repeat a vertex were removed already; zero-area faces with three distinct
    vertices stay, because deleting them would open holes in a closed surface. Vertices are
    merged in the normalised frame, before the turn to the source's units: trimesh merges
    within an absolute distance (1e-8), which in a mesh 1e-4 units across welded neighbours
    and opened the surface.
    """
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=True)
    cancelling = cancelling_faces(mesh.vertices, mesh.faces)
    if cancelling.any():
        mesh.update_faces(~cancelling)
    mesh.remove_unreferenced_vertices()
    mesh.apply_transform(np.linalg.inv(to_normalised))
    return mesh


def cancelling_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mask of the faces that close on themselves around no volume: a face and its reverse (the
    same corners), and four coplanar faces over four corners (a quad triangulated both ways,
    wound opposite). Screened Poisson leaves such flaps where a thin part's two sides meet (an
    airplane's wing at 128 px and more); their edges carry four faces, so the mesh is not
    watertight until they go, and it encloses the same volume without them."""
    from itertools import combinations

    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    key = edges[:, 0].astype(np.int64) * (int(faces.max()) + 1) + edges[:, 1]  # one number each
    _, on_edge, uses = np.unique(key, return_inverse=True, return_counts=True)
    crowded = np.flatnonzero(uses > 2)
    if not len(crowded):  # a flap's edges carry more than two faces
        return np.zeros(len(faces), dtype=bool)
    corners = np.sort(faces, axis=1)
    _, inverse = np.unique(corners, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    # +1 for a face wound as its sorted corners run (up to rotation), -1 for the reverse
    first = np.argmin(faces, axis=1)
    following = faces[np.arange(len(faces)), (first + 1) % 3]
    winding = np.where(following == corners[:, 1], 1, -1)
    balance = np.bincount(inverse, weights=winding)
    repeats = np.bincount(inverse)
    drop = (repeats[inverse] > 1) & (balance[inverse] == 0)  # as many of each way round
    order = np.argsort(on_edge.ravel(), kind="stable")  # the half-edges, grouped by edge
    first_use = np.concatenate([[0], np.cumsum(uses)])
    owner = np.tile(np.arange(len(faces)), 3)[order]
    face_of = {tuple(c): k for k, c in enumerate(corners.tolist())}
    for edge in crowded:
        near = sorted(set(faces[owner[first_use[edge] : first_use[edge + 1]]].ravel().tolist()))
        for quad in combinations(near, 4):
            found = [face_of.get(three) for three in combinations(quad, 3)]
            points = vertices[list(quad)]
            size = float(np.ptp(points, axis=0).max())
            flat = abs(np.linalg.det(points[1:] - points[0])) <= 1e-6 * size**3
            if None not in found and flat:
                drop[found] = True
    return drop
