"""project -> backproject round trips, scored against the source mesh; and bad input."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh

from recon.pipelines.common.io import load_mesh
from recon.pipelines.common.metrics import surface_score
from recon.pipelines.shapes.backprojection import reconstruct
from recon.pipelines.shapes.projection import project_mesh, write_projection


def project_to(folder, mesh, **kwargs):
    folder.mkdir()
    projection = project_mesh(mesh, **kwargs)
    write_projection(projection, folder, projection.views_json("m", len(mesh.faces), 0))
    return folder


@pytest.mark.parametrize("name", ["sphere", "capsule", "torso"])
def test_round_trip_meets_targets(recon, shapes, tmp_path, name):
    """8 side views + caps at 256 px: F-score@1% >= 0.95, Chamfer-L1 <= 0.5% of the diagonal."""
    code, _, err = recon("project", shapes / f"{name}.stl", "-o", tmp_path / "views", "-q")
    assert code == 0, err
    code, out, err = recon(
        "backproject",
        tmp_path / "views",
        "-o",
        tmp_path / "r.stl",
        "--reference",
        shapes / f"{name}.stl",
        "--json",
    )
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert metrics["fscore"] >= 0.95
    assert metrics["chamfer_l1_pct"] <= 0.5
    assert metrics["watertight"]
    assert load_mesh(tmp_path / "r.stl").is_watertight


def test_caps_see_what_side_views_cannot(shapes, tmp_path):
    """A torus hole and a box's flat top are invisible to horizontal views. The unseen ends are
    closed flat at the seen height range (Poisson bulged over them, cut open by its bounding
    cube: F 0.46, not watertight); the torus hole needs the caps."""
    scores = {}
    for name in ("torus", "box"):
        mesh = load_mesh(shapes / f"{name}.stl")
        for caps in (True, False):
            folder = project_to(tmp_path / f"{name}{caps}", mesh, caps=caps)
            surface = reconstruct(folder).mesh
            assert surface.is_watertight, (name, caps)
            scores[name, caps] = surface_score(surface, mesh).fscore
    assert scores["torus", True] >= 0.95 and scores["box", True] >= 0.95
    assert scores["box", False] >= 0.95  # 1.000 measured
    assert scores["torus", False] < scores["torus", True] - 0.1


def test_the_same_views_give_the_same_surface(recon, shapes, tmp_path):
    """Screened Poisson ran on several threads: two runs on the same views gave the same surface
    only to float precision, its vertices in another order. On one thread (open3d's threaded
    Poisson also crashed now and then) the same views give the same file, byte for byte."""
    code, _, err = recon("project", shapes / "torso.stl", "-o", tmp_path / "views", "-q")
    assert code == 0, err
    for name in ("a.stl", "b.stl"):
        assert recon("backproject", tmp_path / "views", "-o", tmp_path / name, "-q")[0] == 0
    assert (tmp_path / "a.stl").read_bytes() == (tmp_path / "b.stl").read_bytes()


def test_grid_mesh_is_closed_when_values_sit_at_the_level(tmp_path):
    """A float16 grid holds many values of exactly 0.5: marching cubes left holes there (20 of
    20 random grids open). Values at the level count as inside, as `>= 0.5` counts them."""
    import trimesh
    from scipy.ndimage import gaussian_filter

    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.shapes import grid_to_mesh

    for seed in range(5):
        grid = gaussian_filter(np.random.default_rng(seed).random((24, 24, 24)), 2)
        grid = np.round((grid - grid.min()) / np.ptp(grid) * 8) / 8  # many exact 0.5s
        assert (grid == 0.5).sum() > 100
        mesh = grid_to_mesh(grid.astype(np.float16).astype(np.float32), 0.5)
        assert mesh.is_watertight, seed
        # as a file keeps it (positions only): a lift of one float step left the vertices of a
        # voxel at the level on one position, and the STL read back was open (5 of 5 grids)
        reread = trimesh.load(save_mesh(mesh, tmp_path / f"{seed}.stl"), force="mesh")
        assert reread.is_watertight, seed
    cube = np.zeros((8, 8, 8), np.float32)
    cube[2:6, 2:6, 2:6] = 0.5  # every occupied value at the level
    assert grid_to_mesh(cube, 0.5).is_watertight


def test_depth_pixels_lie_on_the_surface_in_the_original_frame(tmp_path):
    """Lifting depth pixels back is exact to well under a pixel, in any frame and up axis."""
    from recon.pipelines.shapes.backprojection import lift_views, load_depth_views
    from recon.pipelines.shapes.projection import read_views

    centre = np.array([100.0, -40.0, 7.0])
    mesh = trimesh.creation.capsule(height=3.0, radius=1.0, count=[128, 128])
    mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    mesh.apply_translation(centre)  # long axis now along y, segment y in [-1.5, 1.5]
    folder = project_to(tmp_path / "v", mesh, up="y", size=128)
    doc = read_views(folder)
    points, _ = lift_views(doc, load_depth_views(folder, doc))
    back = np.linalg.inv(np.asarray(doc["frame"]["to_normalised"]))
    points = points @ back[:3, :3].T + back[:3, 3]
    local = points - centre
    along = np.clip(local[:, 1], -1.5, 1.5)
    axis_point = np.stack([np.zeros_like(along), along, np.zeros_like(along)], axis=1)
    distance = np.abs(np.linalg.norm(local - axis_point, axis=1) - 1.0)  # exact capsule distance
    pixel = 2 * doc["camera"]["extent"] / 128 / doc["frame"]["scale"]
    assert np.quantile(distance, 0.99) < 0.1 * pixel
    reconstructed = reconstruct(folder).mesh
    assert surface_score(reconstructed, mesh).fscore >= 0.95


def _figure_facing_y():
    """A z-up block with a nose on its +y face, above the middle (asymmetric every way)."""
    body = trimesh.creation.box((1.0, 0.6, 2.0))
    nose = trimesh.creation.box((0.3, 0.4, 0.3))
    nose.apply_translation((0.0, 0.45, 0.5))
    return trimesh.util.concatenate([body, nose])


def _silhouette(folder, view="view_000"):
    from recon.pipelines.common.io import read_image

    return read_image(folder / f"silhouette_{view}.png") > 0


def _iou(a, b):
    return float((a & b).sum() / (a | b).sum())


def test_front_turns_a_y_up_scan_to_face_like_a_z_up_one(recon, tmp_path):
    """The same figure, z up facing +y, and y up facing +z (a proper rotation): with --front +z
    every view matches the z-up projection; without it (the cyclic default) view 0 looks at
    the nose instead of seeing it in profile."""
    figure = _figure_facing_y()
    figure.export(tmp_path / "z_up.stl")
    turn = np.eye(4)
    turn[:3, :3] = [[-1, 0, 0], [0, 0, 1], [0, 1, 0]]  # z -> y, y -> z, x -> -x
    figure.apply_transform(turn)
    figure.export(tmp_path / "y_up.stl")
    runs = {
        "z": ("z_up.stl",),
        "front": ("y_up.stl", "--up", "y", "--front", "+z"),
        "cyclic": ("y_up.stl", "--up", "y"),
    }
    for name, (mesh, *options) in runs.items():
        args = ("project", tmp_path / mesh, "-o", tmp_path / name, "--size", "64", "-q")
        code, _, err = recon(*args, *options)
        assert code == 0, err
    for view in ("view_000", "view_002", "top"):
        expected = _silhouette(tmp_path / "z", view)
        assert _iou(expected, _silhouette(tmp_path / "front", view)) > 0.99, view
    assert _iou(_silhouette(tmp_path / "z"), _silhouette(tmp_path / "cyclic")) < 0.8
    doc = json.loads((tmp_path / "front" / "views.json").read_text())
    assert (doc["frame"]["up"], doc["frame"]["front"]) == ("y", "+z")


def _y_up_capsule_files(folder):
    """A capsule 160 tall and 60 wide standing on +y, a bump toward +z, as trimesh writes it
    to .glb and .ply (both y up in the file)."""
    capsule = trimesh.creation.capsule(height=100.0, radius=30.0)
    bump = trimesh.creation.icosphere(radius=10.0)
    bump.apply_translation((0.0, 25.0, 20.0))
    figure = trimesh.util.concatenate([capsule, bump])
    turn = np.eye(4)
    turn[:3, :3] = [[-1, 0, 0], [0, 0, 1], [0, 1, 0]]  # z -> y, y -> z, x -> -x
    figure.apply_transform(turn)
    figure.export(folder / "ycap.glb")
    figure.export(folder / "ycap.ply")
    return figure


def _views(folder):
    from recon.pipelines.common.io import read_image

    names = [f"view_{i:03d}" for i in range(8)] + ["top", "bottom"]
    return {
        (kind, name): read_image(folder / f"{kind}_{name}.png")
        for kind in ("silhouette", "depth")
        for name in names
    }


def test_up_and_front_name_the_axes_of_a_gltf_file(recon, tmp_path):
    """--up/--front name the axes the file stores, a glTF's too: a y-up capsule as .glb and
    .ply gives the same views with --up y --front +z, upright (the .glb lay on its side, 24 rows
    x 60 columns at 64 px, when --up y was applied to the mesh load_mesh had turned z up). With
    no flags a .glb keeps its views: y up, front -z in its file (recorded so); front +z is those
    turned half round."""
    _y_up_capsule_files(tmp_path)
    runs = {
        "glb": ("ycap.glb", "--up", "y", "--front", "+z"),
        "ply": ("ycap.ply", "--up", "y", "--front", "+z"),
        "plain": ("ycap.glb",),
        "back": ("ycap.glb", "--up", "y", "--front", "-z"),
    }
    for name, (mesh, *options) in runs.items():
        args = ("project", tmp_path / mesh, "-o", tmp_path / name, "--size", "64", "-q")
        code, _, err = recon(*args, *options)
        assert code == 0, err
    views = {name: _views(tmp_path / name) for name in runs}
    for key, image in views["glb"].items():
        np.testing.assert_array_equal(image, views["ply"][key], err_msg=str(key))
        np.testing.assert_array_equal(views["plain"][key], views["back"][key], err_msg=str(key))
    side = views["glb"]["silhouette", "view_000"] > 0
    rows, cols = np.flatnonzero(side.any(axis=1)), np.flatnonzero(side.any(axis=0))
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (60, 24)  # upright: 160 tall, 60 wide
    for i in range(8):  # front +z against -z: view i sees what view i + 4 saw
        turned = views["plain"]["silhouette", f"view_{(i + 4) % 8:03d}"]
        np.testing.assert_array_equal(views["glb"]["silhouette", f"view_{i:03d}"], turned)
    for name, expected in (("glb", ("y", "+z")), ("ply", ("y", "+z")), ("plain", ("y", "-z"))):
        frame = json.loads((tmp_path / name / "views.json").read_text())["frame"]
        assert (frame["up"], frame["front"]) == expected, name
        run = json.loads((tmp_path / name / "run.json").read_text())
        assert (run["config"]["up"], run["config"]["front"]) == expected, name


@pytest.mark.parametrize("suffix", [".ply", ".glb"])
def test_backproject_of_a_gltf_comes_back_in_its_file_axes(recon, tmp_path, suffix):
    """Views of a y-up .glb back-project to its own axes in any format: a .ply stands on y as
    the .glb does (it came back in load_mesh's z-up frame, lying on its z axis)."""
    figure = _y_up_capsule_files(tmp_path)
    args = ("project", tmp_path / "ycap.glb", "-o", tmp_path / "v", "--size", "64", "-q")
    code, _, err = recon(*args, "--up", "y", "--front", "+z")
    assert code == 0, err
    out = tmp_path / f"r{suffix}"
    code, _, err = recon("backproject", tmp_path / "v", "-o", out, "-q")
    assert code == 0, err
    raw = trimesh.load(out, force="mesh", process=False)  # the file's own axes
    np.testing.assert_allclose(raw.bounds, figure.bounds, atol=5.0)


def test_backproject_reference_compares_the_files_as_they_store_them(recon, tmp_path):
    """--reference scores the surface against the reference in the axes both files store: a
    .glb's views against the same figure as a y-up .ply score as against the .glb itself (F-score
    0.087 when the views' z-up loaded frame met the .ply's y-up one)."""
    _y_up_capsule_files(tmp_path)
    code, _, err = recon("project", tmp_path / "ycap.glb", "-o", tmp_path / "v", "--size", "64")
    assert code == 0, err
    scores = {}
    for reference in ("ycap.glb", "ycap.ply"):
        out = tmp_path / f"r_{reference}.stl"
        args = ("backproject", tmp_path / "v", "-o", out, "--reference", tmp_path / reference)
        code, text, err = recon(*args, "--json")
        assert code == 0, err
        scores[reference] = json.loads(text)["metrics"]
    assert scores["ycap.glb"]["fscore"] > 0.95
    for key in ("fscore", "chamfer_l1"):
        assert scores["ycap.ply"][key] == pytest.approx(scores["ycap.glb"][key], rel=1e-6)


@pytest.mark.parametrize("up", ["x", "y", "z"])
def test_default_front_keeps_the_cyclic_frame(up):
    """Without --front, --up x|y|z gives the frame earlier releases gave."""
    from recon.pipelines.shapes.projection import frame_rotation

    cyclic = np.roll(np.eye(3), 2 - "xyz".index(up), axis=0)
    assert np.array_equal(frame_rotation(up), cyclic)
    for front in ("+x", "-x", "+y", "-y", "+z", "-z"):
        if front[1] != up:
            rotation = frame_rotation(up, front)
            assert np.isclose(np.linalg.det(rotation), 1.0)
            assert rotation[2, "xyz".index(up)] == 1.0
            assert rotation[1, "xyz".index(front[1])] == (1.0 if front[0] == "+" else -1.0)


# --- bad input: one line on stderr, exit 2, nothing written -------------------------------


def assert_refused(result, out_path, fragment):
    code, out, err = result
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert "Traceback" not in err
    assert not out_path.exists()


def test_missing_mesh(recon, tmp_path):
    assert_refused(
        recon("project", tmp_path / "none.stl", "-o", tmp_path / "o"),
        tmp_path / "o",
        "no such mesh",
    )


def test_empty_and_faceless_meshes(recon, tmp_path):
    (tmp_path / "empty.stl").write_bytes(b"")
    assert_refused(
        recon("project", tmp_path / "empty.stl", "-o", tmp_path / "o"), tmp_path / "o", "empty"
    )
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    assert_refused(
        recon("project", tmp_path / "points.obj", "-o", tmp_path / "o"), tmp_path / "o", "no faces"
    )


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_vertex_that_is_no_number(recon, tmp_path, value):
    """Loading dropped the vertex and every face on it without a word: a tetrahedron with one
    NaN corner was projected as one triangle, its views all but empty."""
    corners = f"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 {value}\n"
    (tmp_path / "t.obj").write_text(corners + "f 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    assert_refused(
        recon("project", tmp_path / "t.obj", "-o", tmp_path / "o"),
        tmp_path / "o",
        "t.obj: mesh has non-finite vertex coordinates",
    )


def test_truncated_stl(recon, shapes, tmp_path):
    data = (shapes / "sphere.stl").read_bytes()
    assert struct.unpack("<I", data[80:84])[0] > 100
    (tmp_path / "cut.stl").write_bytes(data[: len(data) // 2])
    assert_refused(
        recon("project", tmp_path / "cut.stl", "-o", tmp_path / "o"),
        tmp_path / "o",
        "truncated STL",
    )


def test_a_binary_stl_whose_header_counts_no_triangles(recon, shapes, tmp_path):
    """A streaming exporter that never goes back to fill in the count leaves it 0: the file's
    4608 triangles were "mesh has no faces". Read by its length, it projects as the file with
    its count; a length that is no whole number of triangles is one line saying so."""
    from recon.pipelines.common.io import load_mesh

    data = bytearray((shapes / "sphere.stl").read_bytes())
    data[80:84] = b"\0\0\0\0"
    (tmp_path / "zero.stl").write_bytes(bytes(data))
    counted, zero = load_mesh(shapes / "sphere.stl"), load_mesh(tmp_path / "zero.stl")
    assert len(zero.faces) == len(counted.faces) > 100
    assert np.array_equal(zero.vertices, counted.vertices)
    (tmp_path / "odd.stl").write_bytes(bytes(data) + b"\0" * 7)
    assert_refused(
        recon("project", tmp_path / "odd.stl", "-o", tmp_path / "o"),
        tmp_path / "o",
        "counts 0 triangles, followed by",
    )


def test_a_mesh_of_faces_without_area(recon, tmp_path):
    """Three corners on a line: projected to ten blank views, exit 0, and backproject then
    said its views held no foreground."""
    (tmp_path / "line.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    assert_refused(
        recon("project", tmp_path / "line.obj", "-o", tmp_path / "o"),
        tmp_path / "o",
        "line.obj: mesh is degenerate (no face has any area",
    )


def test_folder_without_views_json(recon, tmp_path):
    (tmp_path / "views").mkdir()
    assert_refused(
        recon("backproject", tmp_path / "views", "-o", tmp_path / "o.stl"),
        tmp_path / "o.stl",
        "no views.json",
    )


def test_depth_maps_of_mixed_sizes(recon, shapes, tmp_path):
    from PIL import Image

    assert recon("project", shapes / "sphere.stl", "-o", tmp_path / "v", "-q")[0] == 0
    Image.fromarray(np.ones((64, 64), np.uint16)).save(tmp_path / "v" / "depth_view_003.png")
    assert_refused(
        recon("backproject", tmp_path / "v", "-o", tmp_path / "o.stl"),
        tmp_path / "o.stl",
        "mixed sizes",
    )


def test_existing_output_needs_overwrite(recon, shapes, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = recon("project", shapes / "sphere.stl", "-o", out)
    assert code == 2 and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"
    code, _, err = recon("project", shapes / "sphere.stl", "-o", out, "--overwrite", "-q")
    assert code == 2 and "holds files no recon command wrote (keep.txt)" in err, err
    assert (out / "keep.txt").read_text() == "mine"  # --overwrite replaces only our outputs
    (out / "keep.txt").unlink()
    for _ in range(2):  # an empty folder, then the earlier output
        code, _, err = recon("project", shapes / "sphere.stl", "-o", out, "--overwrite", "-q")
        assert code == 0, err
        assert (out / "views.json").is_file()


@pytest.mark.parametrize("front", ["+y", "-y"])
def test_a_front_along_the_up_axis_is_refused(recon, shapes, tmp_path, front):
    assert_refused(
        recon("project", shapes / "box.stl", "-o", tmp_path / "o", "--up", "y", "--front", front),
        tmp_path / "o",
        f"--front {front} lies along --up y",
    )


def test_synth_meshes_are_watertight(recon, tmp_path):
    code, out, err = recon("synth", "meshes", "-o", tmp_path / "s", "--json")
    assert code == 0, err
    written = json.loads(out)["shapes"]
    assert set(written) == {"sphere", "capsule", "box", "torus", "torso"}
    for entry in written.values():
        assert load_mesh(entry["path"]).is_watertight


def test_render_mesh_is_lit_from_the_upper_left():
    """The headless preview renderer: a sphere fills a disc, brighter toward the light."""
    import trimesh

    from recon.pipelines.shapes import render_mesh

    image = render_mesh(trimesh.creation.icosphere(3), size=64).astype(float)
    hit = image < 255
    assert 0.5 < hit.mean() < 0.85  # a centred disc
    half = 32
    upper_left = image[:half, :half][hit[:half, :half]].mean()
    lower_right = image[half:, half:][hit[half:, half:]].mean()
    assert upper_left > lower_right + 40


def test_backproject_render_shows_the_reconstructed_shape(recon, shapes, tmp_path):
    """--render writes OUT.png beside the mesh: the shaded picture of the reconstruction, whose
    silhouette matches the same renderer's picture of the source mesh (IoU >= 0.9); an existing
    OUT.png needs --overwrite."""
    from recon.pipelines.common.io import read_image
    from recon.pipelines.shapes import render_mesh

    source = shapes / "capsule.stl"
    code, _, err = recon("project", source, "-o", tmp_path / "v", "--size", "128", "-q")
    assert code == 0, err
    out = tmp_path / "r.stl"
    code, stdout, err = recon("backproject", tmp_path / "v", "-o", out, "--render", "--json")
    assert code == 0, err
    assert json.loads(stdout)["render"] == str(tmp_path / "r.png")
    picture = read_image(tmp_path / "r.png")
    assert picture.shape == (512, 512) and picture.dtype == np.uint8
    truth = render_mesh(load_mesh(source)) < 255
    shape = picture < 255
    iou = (shape & truth).sum() / (shape | truth).sum()
    assert iou >= 0.9, iou
    assert len(np.unique(picture[shape])) > 20  # shaded, not a flat silhouette
    (tmp_path / "r.stl").unlink()
    (tmp_path / "r.stl.run.json").unlink()
    code, _, err = recon("backproject", tmp_path / "v", "-o", out, "--render")
    assert code == 2 and "r.png: already exists" in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "r.stl.run.json").exists()


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_gltf_files_are_y_up_and_read_back_z_up(tmp_path, suffix):
    """glTF viewers take +y as up: a tall box (z up here) stands up in the file, and comes back
    to the same vertices."""
    from recon.pipelines.common.io import save_mesh

    tall = trimesh.creation.box(extents=(10.0, 20.0, 60.0))
    tall.apply_translation((1.0, 2.0, 30.0))
    path = save_mesh(tall, tmp_path / f"tall{suffix}")
    raw = trimesh.load(path, force="mesh")
    assert np.argmax(np.ptp(raw.vertices, axis=0)) == 1  # standing on y
    assert raw.vertices[:, 1].min() == pytest.approx(0.0)  # its base on the ground plane
    back = load_mesh(path)
    np.testing.assert_allclose(np.sort(back.vertices, axis=0), np.sort(tall.vertices, axis=0))


def test_mls_smoothing_keeps_stdout_for_the_json_object(capsys, monkeypatch):
    """vedo's MLS draws a progress bar on stdout (over 10000 points, after 3 s), which broke
    `backproject --mls R --json`: stdout was no longer one JSON object."""
    import vedo

    from recon.pipelines.shapes.backprojection import _mls_smooth

    def chatty(self, radius):
        print("smooth_mls_2d working ...", end="\r")
        return self

    monkeypatch.setattr(vedo.Points, "smooth_mls_2d", chatty)
    points = np.random.default_rng(0).normal(size=(50, 3))
    np.testing.assert_allclose(_mls_smooth(points, 0.1), points)
    assert capsys.readouterr().out == ""


def test_vedo_surface_log_lines_stay_off_stdout():
    """vedo logs warnings about its input (a flat cloud: "zero z-range") through a handler that
    writes to stdout, which broke `backproject --method vedo --json` and showed raw library
    lines without it."""
    import logging

    import vedo

    from recon.pipelines.shapes.backprojection import _vedo_surface

    class Recorder(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.lines: list[str] = []

        def emit(self, record) -> None:
            self.lines.append(record.getMessage())

    recorder = Recorder()
    level = vedo.logger.level
    vedo.logger.addHandler(recorder)
    try:
        grid = np.stack(np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 1, 12)), -1)
        flat = np.concatenate([grid.reshape(-1, 2), np.zeros((144, 1))], axis=1)
        _vedo_surface(flat, 0.05)
    finally:
        vedo.logger.removeHandler(recorder)
    assert recorder.lines == []
    assert vedo.logger.level == level


def test_poisson_options_with_the_vedo_method_get_a_notice(recon, shapes, tmp_path):
    """--depth and --trim set open3d's Poisson: with --method vedo they did nothing, silently."""
    from recon.pipelines.shapes.backprojection import SurfaceOptions

    assert SurfaceOptions(method="vedo", depth=10, trim=0.1).unused() == ["--depth", "--trim"]
    assert SurfaceOptions(method="vedo").unused() == []
    assert SurfaceOptions(depth=10, trim=0.1).unused() == []
    code, _, err = recon("project", shapes / "sphere.stl", "-o", tmp_path / "v", "--size", "32")
    assert code == 0, err
    args = ("backproject", tmp_path / "v", "--method", "vedo", "-q", "--overwrite")
    code, _, err = recon(*args, "-o", tmp_path / "a.stl", "--depth", "9")
    assert code == 0 and err == (
        "warning: --method vedo ignores --depth (settings of open3d's Poisson surface)\n"
    )
    code, _, err = recon(*args, "-o", tmp_path / "b.stl")
    assert code == 0 and err == "", err


def test_a_mesh_too_large_to_normalise_is_refused(recon, tmp_path):
    """Coordinates near the float64 limit made the frame's scale 0: a LinAlgError (exit 1)
    after ray casting."""
    corners = "v 0 0 0\nv 1e300 0 0\nv 0 1e300 0\nv 0 0 1e300\n"
    (tmp_path / "huge.obj").write_text(corners + "f 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    assert_refused(
        recon("project", tmp_path / "huge.obj", "-o", tmp_path / "o"),
        tmp_path / "o",
        "huge.obj: coordinates reach 1e+300, beyond the 1e+10 a mesh may span",
    )


@pytest.mark.parametrize("scale", [2e4, 1e7])
def test_a_large_mesh_projects_and_comes_back(recon, tmp_path, scale):
    """A mesh 20 000 units across projected, but backproject refused its own views.json
    ("frame.to_normalised must be an invertible 4x4 matrix": the determinant, radius^-3, was
    taken for singular)."""
    box = trimesh.creation.box()
    box.apply_scale(scale)
    box.export(tmp_path / "big.ply")
    assert recon("project", tmp_path / "big.ply", "-o", tmp_path / "v", "--size", 32)[0] == 0
    code, _, err = recon("backproject", tmp_path / "v", "-o", tmp_path / "r.ply", "-q")
    assert code == 0, err
    bounds = trimesh.load(tmp_path / "r.ply").bounds
    assert np.allclose(bounds, box.bounds, rtol=0, atol=0.05 * scale)


def test_a_tiny_mesh_comes_back_as_closed_and_as_close_as_a_unit_one(recon, tmp_path):
    """A capsule 1e-4 units across came back open ("watertight": false): trimesh welded
    vertices within its absolute 1e-8 after the turn to the source's units."""
    scores = {}
    for scale in (1.0, 1e-4):
        capsule = trimesh.creation.capsule(height=2, radius=0.5)
        capsule.apply_scale(scale)
        capsule.export(tmp_path / f"{scale}.stl")
        views, mesh = tmp_path / f"v{scale}", tmp_path / f"r{scale}.stl"
        assert recon("project", tmp_path / f"{scale}.stl", "-o", views, "--size", 128)[0] == 0
        code, out, err = recon("backproject", views, "-o", mesh, "--json", "--reference",
                               tmp_path / f"{scale}.stl")  # fmt: skip
        assert code == 0, err
        scores[scale] = json.loads(out)["metrics"]
    assert scores[1e-4]["watertight"] and scores[1.0]["watertight"]
    assert scores[1e-4]["chamfer_l1_pct"] == pytest.approx(scores[1.0]["chamfer_l1_pct"], rel=0.02)


def test_coordinates_beyond_what_merging_holds_are_refused_as_such(recon, tmp_path):
    """A box 1e12 across was refused as "degenerate (all vertices coincide)": trimesh's vertex
    merge overflowed and merged every vertex into one."""
    box = trimesh.creation.box()
    box.apply_scale(1e12)
    box.export(tmp_path / "b.ply")
    assert_refused(
        recon("project", tmp_path / "b.ply", "-o", tmp_path / "o"),
        tmp_path / "o",
        "b.ply: coordinates reach 5e+11, beyond the 1e+10 a mesh may span",
    )


def test_views_without_foreground_name_their_folder(recon, tmp_path):
    """A mesh thinner than a pixel leaves every view empty."""
    needle = trimesh.creation.cylinder(radius=1e-4, height=1.0, sections=8)
    needle.export(tmp_path / "needle.stl")
    code, _, err = recon("project", tmp_path / "needle.stl", "-o", tmp_path / "v", "--size", "16")
    assert code == 0, err
    assert_refused(
        recon("backproject", tmp_path / "v", "-o", tmp_path / "o.stl"),
        tmp_path / "o.stl",
        f"{tmp_path / 'v'}: the depth images hold no foreground pixels",
    )


def test_poisson_runs_on_one_thread(monkeypatch):
    """open3d's Poisson reconstruction on several threads crashed the process with a
    segmentation fault now and then (it took down a test worker; 1 in some hundred calls on a
    2-core machine): backproject runs it on one thread."""
    import open3d as o3d

    from recon.pipelines.shapes import backprojection

    calls = []
    real = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson

    def spy(*args, **kwargs):
        calls.append(kwargs.get("n_threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(o3d.geometry.TriangleMesh, "create_from_point_cloud_poisson", spy)
    sphere = trimesh.creation.icosphere(subdivisions=3)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.array(sphere.vertices)))
    cloud.normals = o3d.utility.Vector3dVector(np.array(sphere.vertex_normals))
    vertices, faces = backprojection._poisson(cloud, backprojection.SurfaceOptions(depth=5), 0.03)
    assert calls == [1] and len(faces) > 100


@pytest.mark.parametrize("command", [["backproject"], ["predict", "corset"]])
def test_the_help_names_every_mesh_format_written(recon, command):
    """The help offered .stl, .ply or .obj, where .glb, .gltf and .off are written too."""
    from recon.pipelines.common.io import MESH_SUFFIXES

    code, out, err = recon(*command, "--help")
    assert code == 0, err
    text = " ".join(out.split())
    assert all(suffix in text for suffix in MESH_SUFFIXES), text


def test_views_of_no_one_object_are_refused(recon, shapes, tmp_path):
    """Two views' depth pictures stored under each other's names back-projected to a torn,
    open surface with exit 0. Now each view is checked against the others: what one view sees
    lies inside every other view's silhouette and not in front of its surface."""
    code, _, err = recon("project", shapes / "torso.stl", "-o", tmp_path / "v", "-q")
    assert code == 0, err
    assert recon("backproject", tmp_path / "v", "-o", tmp_path / "ok.stl", "-q")[0] == 0
    one, two = tmp_path / "v" / "depth_view_001.png", tmp_path / "v" / "depth_view_002.png"
    first = one.read_bytes()
    one.write_bytes(two.read_bytes())
    two.write_bytes(first)
    assert_refused(
        recon("backproject", tmp_path / "v", "-o", tmp_path / "o.stl"),
        tmp_path / "o.stl",
        "the views are not of one object",
    )


def test_views_of_one_object_agree_to_within_a_pixel(tmp_path):
    """`recon project`'s own views of awkward shapes leave under 1% of the points out (two boxes
    apart left 3% beyond their corners while the silhouette grew by a cross, not a square)."""
    from recon.pipelines.shapes import load_depth_views, project_mesh, read_views, write_projection
    from recon.pipelines.shapes.backprojection import view_disagreement

    boxes = [trimesh.creation.box(extents=(10.0, 10.0, 10.0)) for _ in range(2)]
    boxes[1].apply_translation((80.0, 0.0, 0.0))
    shapes = {
        "two boxes apart": trimesh.util.concatenate(boxes),
        "rod": trimesh.creation.cylinder(radius=5.0, height=200.0),
        "plate": trimesh.creation.box(extents=(100.0, 100.0, 2.0)),
    }
    for name, mesh in shapes.items():
        for size, views in ((32, 3), (64, 8), (128, 24)):
            folder = tmp_path / f"{name}_{size}"
            folder.mkdir()
            projection = project_mesh(mesh, views=views, size=size)
            write_projection(projection, folder, projection.views_json(name, 0, 0))
            doc = read_views(folder)
            worst = max(view_disagreement(doc, load_depth_views(folder, doc)).values())
            assert worst < 0.01, (name, size, views, worst)


def test_a_backprojected_torso_does_not_cross_itself(shapes, recon, tmp_path):
    """The torso at 64 px: Poisson left two vertices 0.01 mm apart, and the sliver between
    them folded over its neighbour; trimesh called the mesh watertight, open3d (which also
    asks that no face cross another) did not."""
    import trimesh
    from test_corset import _self_crossings

    views, out = tmp_path / "views", tmp_path / "torso.stl"
    assert recon("project", shapes / "torso.stl", "-o", views, "--size", 64, "-q")[0] == 0
    assert recon("backproject", views, "-o", out, "-q")[0] == 0
    assert _self_crossings(trimesh.load(out)) == (0, True)
