"""Mesh -> orthographic depth and silhouette images around the vertical axis, and views.json.

Frames. The mesh is moved into a normalised frame: p_n = R @ (p - offset) * scale, where offset
is the bounding-box centre, scale makes the farthest vertex sit at radius 1, and R turns the
chosen up axis onto +z and the chosen front onto +y (so +x is the right of a figure facing the
front). View 0 (azimuth 0) looks from +x, the front towards its image's right. Cameras are
orthographic, outside the unit sphere at `distance`, each with a unit `direction` (object ->
camera), `right` and `up` vector. Pixel (row r, column c) of a size x size image looks along
-direction from
    origin = distance * direction + u * right + v * up,
    u = extent * ((2c + 1) / size - 1),  v = extent * (1 - (2r + 1) / size).
Depth images are uint16: 0 = background, otherwise the distance from the camera plane along the
ray is value * depth_unit (normalised units). Silhouettes are uint8, 255 inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput

VIEWS_FORMAT = "recon.views/1"
EXTENT = 1.05  # half-width of every image, normalised units (the object fits in radius 1)
DISTANCE = 1.5  # camera plane distance from the origin, normalised units
DEPTH_UNIT = (DISTANCE + 1.0) / 65000  # normalised units per uint16 count
UP_AXES = {"x": 0, "y": 1, "z": 2}
FRONTS = ("+x", "-x", "+y", "-y", "+z", "-z")
# the front when none is given: the axis the cyclic permutation of earlier releases took onto +y
DEFAULT_FRONT = {"z": "+y", "y": "+x", "x": "+z"}


@dataclass(frozen=True)
class Camera:
    """One orthographic view; vectors are in the normalised frame."""

    name: str
    direction: tuple[float, float, float]  # unit, from the object towards the camera
    right: tuple[float, float, float]
    up: tuple[float, float, float]
    azimuth_deg: float | None  # around +z, from +x towards +y; None for caps
    elevation_deg: float  # +90 looks down from the top, -90 up from the bottom


def ring_cameras(views: int, caps: bool) -> list[Camera]:
    """`views` horizontal cameras 360/views degrees apart, plus a top and a bottom one with caps."""
    if views < 1:
        raise BadInput(f"--views must be at least 1, not {views}")
    z = np.array([0.0, 0.0, 1.0])
    cameras = []
    for i in range(views):
        azimuth = 360.0 * i / views
        a = math.radians(azimuth)
        direction = np.array([math.cos(a), math.sin(a), 0.0])
        right = np.cross(z, direction)
        cameras.append(Camera(f"view_{i:03d}", _t(direction), _t(right), _t(z), azimuth, 0.0))
    if caps:
        y = np.array([0.0, 1.0, 0.0])
        for name, sign in (("top", 1.0), ("bottom", -1.0)):
            direction = np.array([0.0, 0.0, sign])
            cameras.append(
                Camera(name, _t(direction), _t(np.cross(y, direction)), _t(y), None, 90.0 * sign)
            )
    return cameras


def _t(vector: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(round(x, 12)) + 0.0 for x in vector)


def normalising_transform(
    vertices: np.ndarray,
    up: str = "z",
    front: str | None = None,
    file_axes: np.ndarray | None = None,
) -> np.ndarray:
    """4x4 matrix taking mesh coordinates into the normalised frame (see module doc); front
    defaults to DEFAULT_FRONT[up]. `up` and `front` name the axes of the mesh's file:
    file_axes (3x3, io.mesh_file_axes) takes the mesh's coordinates to them where loading
    turned them (a glTF's y up; None: not turned)."""
    rotation = frame_rotation(up, front)
    if file_axes is not None:
        rotation = rotation @ np.asarray(file_axes, dtype=np.float64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    offset = (low + high) / 2
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        radius = float(np.linalg.norm(vertices - offset, axis=1).max())
        usable = np.isfinite(radius) and radius > 0 and np.isfinite(1 / radius)
    if not usable:
        raise BadInput(f"coordinates too large or too small to normalise (radius {radius:g})")
    matrix = np.eye(4)
    matrix[:3, :3] = rotation / radius
    matrix[:3, 3] = -(rotation @ offset) / radius
    return matrix


def default_axes(
    up: str | None, front: str | None, file_axes: np.ndarray | None = None
) -> tuple[str, str | None]:
    """--up and --front with up filled in: z, or for a file load_mesh turns (file_axes) the
    file axis that comes in as z; with neither given, the front the mesh's +y came from too, so
    a glTF's default views stay those of its z-up loaded mesh (y up, front -z in its file)."""
    if up is not None:
        return up, front
    if file_axes is None:
        return "z", front
    turn = np.asarray(file_axes, dtype=np.float64)
    up = "xyz"[int(np.argmax(np.abs(turn[:, 2])))]
    if front is None:
        axis = int(np.argmax(np.abs(turn[:, 1])))
        front = ("+" if turn[axis, 1] > 0 else "-") + "xyz"[axis]
    return up, front


def resolve_front(up: str = "z", front: str | None = None) -> str:
    """The front for axis `up` (DEFAULT_FRONT[up] when None); BadInput when up is not an axis,
    front not one of FRONTS, or front lies along up."""
    if up not in UP_AXES:
        raise BadInput(f"--up must be one of x, y, z, not {up!r}")
    front = DEFAULT_FRONT[up] if front is None else front
    if front not in FRONTS:
        raise BadInput(f"--front must be one of {', '.join(FRONTS)}, not {front!r}")
    if front[1] == up:
        raise BadInput(f"--front {front} lies along --up {up}; the front must be horizontal")
    return front


def frame_rotation(up: str = "z", front: str | None = None) -> np.ndarray:
    """The proper rotation taking mesh axis `up` onto +z and direction `front` (+x, -y, ...;
    resolve_front) onto +y."""
    front = resolve_front(up, front)
    up_vector, front_vector = np.zeros(3), np.zeros(3)
    up_vector[UP_AXES[up]] = 1.0
    front_vector[UP_AXES[front[1]]] = 1.0 if front[0] == "+" else -1.0
    return np.stack([np.cross(front_vector, up_vector), front_vector, up_vector])


def pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) image-plane coordinates of the pixel columns and rows, each (size,); row 0 is the
    top."""
    centres = (2 * np.arange(size) + 1) / size - 1
    return EXTENT * centres, -EXTENT * centres


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) image-plane coordinates of pixel centres, each (size, size); row 0 is the top."""
    u, v = pixel_centres(size)
    return np.meshgrid(u, v, indexing="xy")


def camera_rays(camera: Camera, size: int, rows: slice = slice(None)) -> np.ndarray:
    """Ray origins and directions for the pixels of one camera in `rows` (all by default),
    (rows, size, 6) float32; each computed in float64 and rounded once."""
    u, v = pixel_centres(size)
    v = v[rows]
    d, r, w = (np.asarray(x, dtype=np.float64) for x in (camera.direction, camera.right, camera.up))
    rays = np.empty((len(v), size, 6), dtype=np.float32)
    for axis in range(3):
        rays[..., axis] = (DISTANCE * d[axis] + u * r[axis])[None, :] + (v * w[axis])[:, None]
    rays[..., 3:] = -d
    return rays


# rays per open3d cast: a ray and its results take about 56 bytes (10 views and caps at 2048 px
# cast at once peaked at 4.3 GB, a chunk of rows at a time 0.6 GB)
RAY_CHUNK = 1 << 20


def cast_depths(vertices: np.ndarray, faces: np.ndarray, cameras: list[Camera], size: int):
    """Ray-cast every camera, RAY_CHUNK rays at a time; hit distances (V, size, size) float32,
    inf where empty."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    distances = np.empty((len(cameras), size, size), dtype=np.float32)
    step = max(1, RAY_CHUNK // size)
    for index, camera in enumerate(cameras):
        for start in range(0, size, step):
            rows = slice(start, start + step)
            hits = scene.cast_rays(o3d.core.Tensor(camera_rays(camera, size, rows)))
            distances[index, rows] = hits["t_hit"].numpy()
    return distances


def encode_depth(distances: np.ndarray) -> np.ndarray:
    """Hit distances (inf = miss) -> uint16 depth image (0 = background)."""
    depth = np.zeros(distances.shape, dtype=np.uint16)
    hit = np.isfinite(distances)
    depth[hit] = np.clip(np.rint(distances[hit] / DEPTH_UNIT), 1, 65535).astype(np.uint16)
    return depth


@dataclass
class Projection:
    """The result of projecting one mesh: images per camera and what views.json records."""

    cameras: list[Camera]
    depths: np.ndarray  # (V, size, size) uint16
    to_normalised: np.ndarray  # 4x4
    size: int
    up: str
    front: str = "+y"  # the mesh direction turned onto +y
    file_axes: np.ndarray | None = None  # mesh -> its file's axes, where up and front are named

    def views_json(self, source: str, faces: int, vertices: int) -> dict:
        """The views.json document that makes back-projection exact."""
        return {
            "format": VIEWS_FORMAT,
            "camera": {
                "model": "orthographic",
                "size": self.size,
                "extent": EXTENT,
                "distance": DISTANCE,
                "pixel": "u = extent*((2c+1)/size-1), v = extent*(1-(2r+1)/size); "
                "ray origin = distance*direction + u*right + v*up, along -direction",
            },
            "depth": {
                "unit": DEPTH_UNIT,
                "encoding": "uint16 PNG, 0 = background, distance from camera plane = value*unit",
            },
            "frame": {
                "up": self.up,
                "front": self.front,
                "to_normalised": self.to_normalised.tolist(),
                "scale": float(np.linalg.norm(self.to_normalised[:3, 0])),
                "offset": self.offset().tolist(),
                "note": "normalised = R @ (mesh - offset) * scale; mesh units otherwise",
                **self._file_axes_json(),
            },
            "source": {"mesh": source, "faces": faces, "vertices": vertices},
            "views": [
                {
                    "name": c.name,
                    "depth": f"depth_{c.name}.png",
                    "silhouette": f"silhouette_{c.name}.png",
                    "azimuth_deg": c.azimuth_deg,
                    "elevation_deg": c.elevation_deg,
                    "direction": list(c.direction),
                    "right": list(c.right),
                    "up": list(c.up),
                }
                for c in self.cameras
            ],
        }

    def _file_axes_json(self) -> dict:
        """views.json's frame.to_file where loading turned the file's axes: up and front name
        the file's axes, the mesh (to_normalised's) is the loaded one."""
        if self.file_axes is None:
            return {}
        return {
            "to_file": np.asarray(self.file_axes, dtype=np.float64).tolist(),
            "file_note": "up and front name the file's axes, file = to_file @ mesh (a glTF is "
            "y up; the mesh is turned z up)",
        }

    def offset(self) -> np.ndarray:
        """The mesh-frame point that maps to the normalised origin."""
        return np.linalg.solve(self.to_normalised[:3, :3], -self.to_normalised[:3, 3])


def project_mesh(
    mesh,
    views: int = 8,
    caps: bool = True,
    size: int = 256,
    up: str = "z",
    front: str | None = None,
    file_axes: np.ndarray | None = None,
) -> Projection:
    """Project a trimesh mesh into depth images; front defaults to DEFAULT_FRONT[up]; up and
    front name the file's axes where file_axes says how loading turned them
    (normalising_transform)."""
    if size < 8 or size > 4096:
        raise BadInput(f"--size must be between 8 and 4096, not {size}")
    front = resolve_front(up, front)
    to_normalised = normalising_transform(np.asarray(mesh.vertices), up, front, file_axes)
    vertices = mesh.vertices @ to_normalised[:3, :3].T + to_normalised[:3, 3]
    cameras = ring_cameras(views, caps)
    distances = cast_depths(vertices, np.asarray(mesh.faces), cameras, size)
    depths = np.empty(distances.shape, dtype=np.uint16)
    for index, view in enumerate(distances):
        depths[index] = encode_depth(view)
    return Projection(cameras, depths, to_normalised, size, up, front, file_axes)


def write_projection(projection: Projection, folder: Path, views_doc: dict) -> list[Path]:
    """Write depth and silhouette PNGs and views.json into folder (which must exist)."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.common.outputs import write_json

    written = []
    for view, depth in zip(views_doc["views"], projection.depths, strict=True):
        written.append(write_png(folder / view["depth"], depth))
        silhouette = np.where(depth > 0, 255, 0).astype(np.uint8)
        written.append(write_png(folder / view["silhouette"], silhouette))
    write_json(folder / "views.json", views_doc)
    written.append(folder / "views.json")
    return written


def read_views(folder: Path) -> dict:
    """Read and validate folder/views.json."""
    from recon.pipelines.common.io import read_json

    path = Path(folder) / "views.json"
    if not Path(folder).is_dir():
        raise BadInput(f"{folder}: no such folder")
    if not path.is_file():
        raise BadInput(f"{folder}: no views.json (make one with `recon project`)")
    try:
        doc = read_json(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: not valid JSON ({error})") from error
    if not isinstance(doc, dict) or doc.get("format") != VIEWS_FORMAT:
        raise BadInput(f"{path}: not a {VIEWS_FORMAT} file")
    if not doc.get("views"):
        raise BadInput(f"{path}: lists no views")
    _check_views_doc(path, doc)
    return doc


def _check_views_doc(path: Path, doc: dict) -> None:
    """BadInput naming the first field of views.json that back-projection cannot use."""
    camera, depth, frame = (doc.get(k) for k in ("camera", "depth", "frame"))
    for key, value in (("camera", camera), ("depth", depth), ("frame", frame)):
        if not isinstance(value, dict):
            raise BadInput(f"{path}: no '{key}' section")
    size = camera.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096:
        raise BadInput(f"{path}: camera.size must be a whole number in [8, 4096], not {size!r}")
    for section, key, value in (
        ("camera", "extent", camera.get("extent")),
        ("camera", "distance", camera.get("distance")),
        ("depth", "unit", depth.get("unit")),
    ):
        if not _positive_number(value):
            raise BadInput(f"{path}: {section}.{key} must be a positive number, not {value!r}")
    matrix = _finite_array(frame.get("to_normalised"), (4, 4))
    # invertible whatever the mesh's size: a rotation over the radius, whose determinant is
    # radius^-3 (1e-13 for a 20 000-unit mesh), so the singular values are compared
    spread = None if matrix is None else np.linalg.svd(matrix[:3, :3], compute_uv=False)
    if spread is None or not spread[-1] > 1e-9 * spread[0]:
        raise BadInput(f"{path}: frame.to_normalised must be an invertible 4x4 matrix")
    if "to_file" in frame:
        turn = _finite_array(frame["to_file"], (3, 3))
        if turn is None or not np.allclose(turn @ turn.T, np.eye(3), atol=1e-6):
            raise BadInput(f"{path}: frame.to_file must be a 3x3 rotation matrix")
    if not isinstance(doc["views"], list):
        raise BadInput(f"{path}: 'views' must be a list")
    for index, view in enumerate(doc["views"]):
        where = f"{path}: views[{index}]"
        if not isinstance(view, dict):
            raise BadInput(f"{where} is not an object")
        for key in ("direction", "right", "up"):
            vector = _finite_array(view.get(key), (3,))
            if vector is None or abs(np.linalg.norm(vector) - 1) > 1e-3:
                raise BadInput(f"{where}.{key} must be a unit 3-vector, not {view.get(key)!r}")
        name = view.get("depth")
        if not isinstance(name, str) or not name or Path(name).name != name:
            raise BadInput(f"{where}.depth must be a file name in the folder, not {name!r}")


def _positive_number(value) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def _finite_array(value, shape: tuple[int, ...]) -> np.ndarray | None:
    """value as a float array of the given shape with finite entries, else None."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == shape and np.isfinite(array).all() else None
