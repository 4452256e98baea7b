"""The bad-input corpus: every case is one line on stderr, the right exit code, and nothing new or
changed on disk. Also: inputs protected from --overwrite, SIGTERM and Ctrl-C clean up, outputs
honour the umask, --json failures print a JSON error object."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_runs import SLOW_WRITE

from recon.pipelines.common.io import write_png

# ---------------------------------------------------------------- helpers


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under folder (hidden ones too) with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def refused(recon, watch: Path, *args, code: int = 2) -> str:
    """Run recon ARGS; assert one error line, the exit code, and watch/ untouched; the line."""
    before = snapshot(watch)
    rc, out, err = recon(*args)
    assert rc == code, (args, rc, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert out == "", out
    assert snapshot(watch) == before, "something was written or changed"
    return err


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels, with no real pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.shapes.meshes import make_shape

    folder = tmp_path_factory.mktemp("box")
    return save_mesh(make_shape("box"), folder / "box.stl")


@pytest.fixture(scope="module")
def views(tmp_path_factory, box):
    """A `recon project` folder of the box at 64 px."""
    from recon.cli.app import main

    out = tmp_path_factory.mktemp("views") / "box_views"
    with pytest.raises(SystemExit) as exit_info:
        main(["project", str(box), "-o", str(out), "--size", "64", "-q"])
    assert exit_info.value.code in (0, None)
    return out


@pytest.fixture
def work(tmp_path, views, box):
    """tmp_path with a copy of the views folder and the mesh."""
    shutil.copytree(views, tmp_path / "views")
    shutil.copy(box, tmp_path / "box.stl")
    return tmp_path


# ---------------------------------------------------------------- project


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--views", "0"], "--views must be in [1, 360], not 0"),
        (["--views", "100000"], "--views must be in [1, 360], not 100000"),
        (["--size", "4"], "--size must be in [8, 4096], not 4"),
        (["--up", "w"], "invalid value for '--up': 'w' is not one of 'x', 'y', 'z'"),
        (["--views", "nan"], "invalid value for '--views'"),
        (["--size", "-8"], "--size must be in [8, 4096], not -8"),
        (["--views", "360", "--size", "4096"], "more than the"),
        # the two cap views count: the line named "--views 8" for ten views' pixels
        (["--size", "2591"], "--views 8 + 2 caps at --size 2591 is 67132810 pixels, more than"),
    ],
)
def test_project_numbers_out_of_range(recon, work, flags, message):
    err = refused(recon, work, "project", work / "box.stl", "-o", work / "out", *flags)
    assert message in err


def test_project_onto_its_own_mesh_is_refused_even_with_overwrite(recon, work):
    mesh = work / "box.stl"
    err = refused(recon, work, "project", mesh, "-o", mesh, "--overwrite")
    assert "would replace the input" in err


def test_project_into_the_folder_holding_its_mesh_is_refused_even_with_overwrite(recon, work):
    err = refused(recon, work, "project", work / "box.stl", "-o", work, "--overwrite")
    assert "would replace the input" in err


def test_a_folder_of_single_file_outputs_is_not_called_files_no_command_wrote(recon, work):
    """A folder holding make-drr's d.png and its d.png.run.json was said to hold "files no recon
    command wrote"; they are named as single-file outputs, and the folder is still kept."""
    mine = work / "singles"
    mine.mkdir()
    code, _, err = recon("make-drr", "--rot", 0, 0, 0, "--xyz", 0, 850, 0, "--size", 8,
                         "--delx", 50, "-o", mine / "d.png", "-q")  # fmt: skip
    assert code == 0, err
    before = sorted(p.name for p in mine.iterdir())
    for extra in (["--overwrite"], ["--skip-done"]):
        err = refused(recon, work, "synth", "corset", "-n", 1, "-o", mine, *extra)
        assert "holds files (d.png, d.png.run.json; among them single-file outputs of " in err
        assert "`recon make-drr`) but is no command's output folder" in err
    assert sorted(p.name for p in mine.iterdir()) == before


def test_overwrite_never_deletes_a_folder_of_other_files(recon, work, tmp_path, monkeypatch):
    """`-o . --overwrite` replaced the working folder whole: the user's files were deleted (exit
    0). A folder that is neither empty nor an earlier output (no run.json) is refused."""
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    err = refused(recon, work, "project", work / "box.stl", "-o", mine, "--overwrite")
    assert "holds files no recon command wrote (notes.txt, sub/)" in err
    # without --overwrite it said "already exists (pass --overwrite to replace it)", which
    # the next try then refused
    err = refused(recon, work, "project", work / "box.stl", "-o", mine)
    assert "holds files no recon command wrote (notes.txt, sub/)" in err and "pass" not in err
    monkeypatch.chdir(mine)
    code, _, err = recon("project", work / "box.stl", "-o", ".", "--size", "16", "--overwrite")
    assert code == 2 and "holds files no recon command wrote" in err, err
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "sub").is_dir()
    # an earlier output (it has its run.json) and an empty folder are still replaced
    (tmp_path / "empty").mkdir()
    for out in (work / "views", tmp_path / "empty"):
        code, _, err = recon("project", work / "box.stl", "-o", out, "--size", "16", "--overwrite")
        assert code == 0 and (out / "run.json").is_file(), err


def test_overwrite_never_replaces_a_file_or_another_commands_output(recon, work, tmp_path):
    """`-o results.csv --overwrite` turned the user's file into a folder of outputs; a predict
    or project run given a training run's folder with --overwrite deleted its checkpoints."""
    (tmp_path / "results.csv").write_text("a,b\n")
    err = refused(recon, work, "synth", "meshes", "-o", tmp_path / "results.csv", "--overwrite")
    assert "results.csv: exists and is not a folder" in err
    # without --overwrite it said "already exists (pass --overwrite ...)", which then failed;
    # a path under the file was "output folder is not writable"
    err = refused(recon, work, "synth", "meshes", "-o", tmp_path / "results.csv")
    assert "results.csv: exists and is not a folder" in err
    err = refused(recon, work, "synth", "meshes", "-o", tmp_path / "results.csv" / "sub")
    assert "results.csv: is a file, not a folder" in err
    # a folder holding an input is not the input it would replace
    err = refused(recon, work, "project", work / "box.stl", "-o", work, "--overwrite")
    assert f"would replace the input {work / 'box.stl'} (the output folder holds it)" in err
    film = tmp_path / "films" / "a.png"
    film.parent.mkdir()
    film.write_bytes(b"not read: refused before")
    err = refused(recon, tmp_path, "embed-spine", film, "-o", tmp_path, "--overwrite")
    assert f"would replace the input {film} (the output folder holds it)" in err
    # one X-ray's folder of a register run: it said "holds files no recon command wrote"
    part = tmp_path / "reg" / "xray_000"
    part.mkdir(parents=True)
    (part / "result.json").write_text("{}")
    (tmp_path / "reg" / "run.json").write_text(
        json.dumps({"command": "register", "version": "0", "config": {}})
    )
    err = refused(recon, tmp_path, "synth", "meshes", "-o", part, "--overwrite")
    assert f"xray_000: is part of the output of `recon register` in {part.parent};" in err
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (run / "run.json").write_text(
        json.dumps({"command": "train voxel", "version": "0", "config": {}})
    )
    err = refused(recon, work, "project", work / "box.stl", "-o", run, "--overwrite")
    assert "holds the output of `recon train voxel`" in err
    assert "only an earlier output of `recon project` is replaced" in err
    # training into a folder of the user's files would leave a run.json among them
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    data = work / "views"  # any folder apart from the run folders: the data is read later
    err = refused(recon, work, "train", "voxel", "--data", data, "--out", mine, "--overwrite")
    assert "holds files no recon command wrote (notes.txt)" in err
    err = refused(recon, work, "train", "parts", "--data", data, "--out", run, "--overwrite")
    assert "holds the output of `recon train voxel`" in err
    # without --overwrite: "run folder is not empty (pass --overwrite, ...)", then refused;
    # another command's output was "a run without checkpoints/last.ckpt (pass --overwrite)"
    err = refused(recon, work, "train", "voxel", "--data", data, "--out", mine)
    assert "holds files no recon command wrote (notes.txt)" in err and "pass" not in err
    err = refused(recon, work, "train", "parts", "--data", data, "--out", run)
    assert "holds the output of `recon train voxel`" in err and "pass" not in err
    shutil.copytree(work / "views", tmp_path / "copied")
    err = refused(recon, work, "train", "voxel", "--data", data, "--out", tmp_path / "copied")
    assert "holds the output of `recon project`" in err and "pass" not in err
    # commands that write into a folder (shards, --skip-done, convert-mat) replaced the run's
    # run.json with theirs
    for args in (["--shard", "1/2"], ["--skip-done"], ["--shard", "2/2", "--overwrite"]):
        err = refused(recon, work, "synth", "meshes", "-o", run, *args)
        assert "holds the output of `recon train voxel`" in err, args
    from recon.pipelines.occupancy.matfiles import write_voxel_mat

    mats = tmp_path / "mats"
    mats.mkdir()
    write_voxel_mat(mats / "a.mat", np.ones((8, 8, 8), np.uint8))
    err = refused(recon, work, "convert-mat", mats, "-o", run, "--overwrite")
    assert "holds the output of `recon train voxel`" in err


# ---------------------------------------------------------------- backproject


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--voxel", "1e9"], "--voxel must be in [0.25, 16]"),
        (["--voxel", "0"], "--voxel must be in [0.25, 16]"),
        (["--voxel", "-1"], "--voxel must be in [0.25, 16]"),
        (["--voxel", "nan"], "not nan"),
        (["--depth", "0"], "--depth must be in [4, 11]"),
        (["--depth", "30"], "--depth must be in [4, 11]"),
        (["--mls", "-1"], "--mls must be in [1, 32] or 0 (off)"),
        (["--mls", "nan"], "--mls"),
        (["--trim", "1"], "--trim must be in [0, 0.5]"),
        (["--trim", "nan"], "--trim"),
        (["--method", "marching"], "'marching' is not one of 'poisson', 'vedo'"),
        (["--depth", "8.5"], "invalid value for '--depth'"),
        (["--mls", "inf"], "--mls"),
        (["--voxel", "-inf"], "--voxel must be in [0.25, 16]"),
    ],
)
def test_backproject_options_out_of_range(recon, work, flags, message):
    err = refused(recon, work, "backproject", work / "views", "-o", work / "m.stl", *flags)
    assert message in err


def _edit_views(folder: Path, edit) -> None:
    doc = json.loads((folder / "views.json").read_text())
    edit(doc)
    (folder / "views.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.pop("camera"), "no 'camera' section"),
        (lambda d: d["depth"].update(unit=float("nan")), "depth.unit must be a positive number"),
        (lambda d: d["camera"].update(size="64"), "camera.size must be a whole number"),
        (lambda d: d["frame"].update(to_normalised=[[0] * 4] * 4), "invertible 4x4"),
        (lambda d: d["views"][0].update(direction=[0, 0, 0]), "unit 3-vector"),
        (lambda d: d["views"][0].update(depth="../box.stl"), "file name in the folder"),
    ],
)
def test_backproject_broken_views_json(recon, work, edit, message):
    _edit_views(work / "views", edit)
    err = refused(recon, work, "backproject", work / "views", "-o", work / "m.stl")
    assert message in err


def test_backproject_views_json_naming_a_key_twice(recon, work):
    """A second "camera" in views.json replaced the first unsaid."""
    path = work / "views" / "views.json"
    path.write_text('{"camera": {"size": 8},' + path.read_text().lstrip()[1:])
    err = refused(recon, work, "backproject", work / "views", "-o", work / "m.stl")
    assert err == f"error: {path}: not valid JSON (the key 'camera' is given twice in one object)\n"


def test_backproject_one_foreground_pixel_is_refused_before_open3d(recon, work):
    """Used to crash open3d in native code; now one line naming the point count."""
    folder = work / "views"
    for index, path in enumerate(sorted(folder.glob("depth_*.png"))):
        depth = np.zeros((64, 64), np.uint16)
        if index == 0:
            depth[32, 32] = 30000
        write_png(path, depth)
    err = refused(recon, work, "backproject", folder, "-o", work / "m.stl")
    assert "1 foreground points; a surface needs at least 20" in err


@pytest.mark.parametrize("method", ["poisson", "vedo"])
def test_backproject_of_a_flat_object_fails_naming_its_folder(recon, tmp_path, method):
    """A 0.01 mm sheet: poisson wrote a 45-triangle scrap with exit 0, vedo failed without
    naming the folder; both now fail in one line that names it, and write nothing."""
    import trimesh

    trimesh.creation.box((100, 100, 0.01)).export(tmp_path / "sheet.stl")
    code, _, err = recon("project", tmp_path / "sheet.stl", "-o", tmp_path / "views", "-q")
    assert code == 0, err
    err = refused(recon, tmp_path, "backproject", tmp_path / "views", "-o", tmp_path / "m.stl",
                  "--method", method, code=1)  # fmt: skip
    assert f"{tmp_path / 'views'}: " in err and "flat or very thin object" in err


def test_backproject_record_left_without_its_mesh_is_replaced(recon, work):
    (work / "m.stl.run.json").write_text("{}")
    code, _, err = recon("backproject", work / "views", "-o", work / "m.stl", "-q")
    assert code == 0, err
    assert json.loads((work / "m.stl.run.json").read_text())["command"] == "backproject"


def test_backproject_onto_its_reference_is_refused_even_with_overwrite(recon, work):
    mesh = work / "box.stl"
    args = ("backproject", work / "views", "-o", mesh, "--reference", mesh, "--overwrite")
    assert "would replace the input" in refused(recon, work, *args)


# ---------------------------------------------------------------- augment


@pytest.fixture
def pairs(tmp_path):
    root = tmp_path / "parent" / "src"
    for sub in ("xray", "drr"):
        (root / sub).mkdir(parents=True)
        for index in range(2):
            image = np.full((32, 32), 40 * (index + 1), np.uint8)
            write_png(root / sub / f"p{index}.png", image)
    return root


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--copies", "1000000000"], "--copies must be in [1, 1000]"),
        (["--copies", "0"], "--copies must be in [1, 1000]"),
        (["--rotate", "-5"], "--rotate must be in [0, 180]"),
        (["--rotate", "nan"], "--rotate must be in [0, 180], not nan"),
        (["--noise", "inf"], "--noise must be in [0, 1], not inf"),
        (["--flip", "2"], "--flip must be in [0, 1]"),
        (["--seed", "-1"], "--seed must be in [0, 4294967295], not -1"),
    ],
)
def test_augment_numbers_out_of_range(recon, pairs, flags, message):
    root = pairs.parent.parent
    err = refused(recon, root, "augment", pairs, "-o", root / "aug", *flags)
    assert message in err


def test_augment_into_the_parent_of_its_input_is_refused_even_with_overwrite(recon, pairs):
    root = pairs.parent.parent
    err = refused(recon, root, "augment", pairs, "-o", pairs.parent, "--overwrite")
    assert "would replace the input" in err


def test_augment_of_a_file_says_it_is_a_file(recon, tmp_path):
    """`augment notes.txt` said "no such folder" of a file that exists."""
    (tmp_path / "notes.txt").write_text("not a pair set")
    err = refused(recon, tmp_path, "augment", tmp_path / "notes.txt", "-o", tmp_path / "aug")
    assert "notes.txt: a file, not a folder (a pair set has xray/ and drr/)" in err


# ---------------------------------------------------------------- convert-mat


@pytest.fixture
def mats(tmp_path):
    from recon.pipelines.occupancy.matfiles import write_voxel_mat

    src = tmp_path / "parent" / "model"
    src.mkdir(parents=True)
    write_voxel_mat(src / "a.mat", np.ones((8, 8, 8), np.uint8))
    return src


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--workers", "-1"], "--workers must be in [0, 256], not -1"),
        (["--resolution", "0"], "--resolution must be in [1, 1024], not 0"),
    ],
)
def test_convert_mat_numbers_out_of_range(recon, mats, flags, message):
    root = mats.parent.parent
    assert message in refused(recon, root, "convert-mat", mats, "-o", root / "npy", *flags)


def test_convert_mat_into_the_parent_of_its_input_is_refused(recon, mats):
    root = mats.parent.parent
    err = refused(recon, root, "convert-mat", mats, "-o", mats.parent, "--overwrite")
    assert "would replace the input" in err


# ---------------------------------------------------------------- embed-spine


@pytest.fixture
def spine(tmp_path):
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    xray = synth_spine_xray(20.0, rows=192, seed=1)
    return write_png(tmp_path / "spine.png", xray.image)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "1e9"])
def test_embed_spine_spacing_out_of_range(recon, spine, value):
    err = refused(
        recon, spine.parent, "embed-spine", spine, "-o", spine.parent / "e.json", "--spacing", value
    )
    assert "--spacing must be in [0.01, 10]" in err


@pytest.mark.parametrize("span", ["L1-T1", "T1-T1", "T13-L1", "T1", "T1-L5-S1", ""])
def test_embed_spine_span_that_is_not_two_vertebrae_top_first(recon, spine, span):
    err = refused(
        recon, spine.parent, "embed-spine", spine, "-o", spine.parent / "e.json", "--span", span
    )
    assert "--span" in err


def test_embed_spine_debug_image_over_its_input_is_refused(recon, spine):
    args = ("embed-spine", spine, "-o", spine.parent / "e.json", "--debug-image", spine)
    assert "would replace the input" in refused(recon, spine.parent, *args, "--overwrite")


def test_embed_spine_debug_image_that_is_a_folder(recon, spine):
    (spine.parent / "d.png").mkdir()
    args = ("embed-spine", spine, "-o", spine.parent / "e.json", "--debug-image")
    assert "is a folder" in refused(
        recon, spine.parent, *args, spine.parent / "d.png", "--overwrite"
    )


def test_embed_spine_leaves_no_json_when_the_debug_image_fails(recon, spine, monkeypatch):
    import recon.pipelines.common.io as io

    def full_disk(path, array, **_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "write_png", full_disk)
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    mm = f"{synth_spine_xray(20.0, rows=192, seed=1).spacing_mm:.4f}"  # the fixture's spacing
    args = ("embed-spine", spine, "-o", spine.parent / "e.json", "--pixel-spacing", mm, mm)
    err = refused(recon, spine.parent, *args, "--debug-image", spine.parent / "d.png", code=1)
    # written through a file object, the error names no file: the output's folder is named
    assert f"error: no space left on the disk of {spine.parent}: free some space" in err


@pytest.mark.parametrize("pixels", [(100_000, 100_000), (10_000, 10_000)])
def test_png_claiming_huge_size_is_one_line(recon, tmp_path, pixels):
    """10^10 pixels used to raise PIL's DecompressionBombError raw; 10^8 pixels warned."""
    image = png_claiming(tmp_path / "bomb.png", *pixels)
    err = refused(recon, tmp_path, "embed-spine", image, "-o", tmp_path / "e.json")
    assert "bomb.png" in err


# ---------------------------------------------------------------- corset


@pytest.fixture
def corset_inputs(tmp_path, views, spine):
    checkpoint = tmp_path / "m.ckpt"
    checkpoint.write_bytes(b"\0" * 16)
    shutil.copytree(views, tmp_path / "photos")
    return tmp_path / "photos", spine, checkpoint


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--thickness", "0"], "--thickness must be in (0, 30]"),
        (["--thickness", "1e6"], "--thickness must be in (0, 30], not 1e+06"),
        (["--thickness", "nan"], "--thickness"),
        (["--spacing", "0"], "--spacing must be in [0.01, 10]"),
        (["--pixel-spacing", "0.2", "0"], "--pixel-spacing must be in [0.01, 10]"),
        (["--pixel-spacing", "nan", "0.2"], "--pixel-spacing"),
        (["--seed", "-3"], "--seed must be in"),
    ],
)
def test_predict_corset_numbers_out_of_range(recon, tmp_path, corset_inputs, flags, message):
    photos, spine, checkpoint = corset_inputs
    args = ["predict", "corset", "--photos", photos, "--spine", spine, "-c", checkpoint]
    assert message in refused(recon, tmp_path, *args, "-o", tmp_path / "c.stl", *flags)


def test_predict_corset_views_out_over_the_photos_is_refused(recon, tmp_path, corset_inputs):
    photos, spine, checkpoint = corset_inputs
    args = ["predict", "corset", "--photos", photos, "--spine", spine, "-c", checkpoint]
    args += ["-o", tmp_path / "c.stl", "--views-out", photos, "--overwrite"]
    assert "would replace the input" in refused(recon, tmp_path, *args)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--count", "0"], "--count must be in [1, 100000]"),
        (["-n", "1000000"], "--count must be in [1, 100000]"),
        (["--size", "100"], "--size must be a multiple of 64"),
        (["--size", "1000000"], "--size must be in [64, 1024]"),
        (["--seed", "-1"], "--seed must be in"),
    ],
)
def test_synth_corset_numbers_out_of_range(recon, tmp_path, flags, message):
    err = refused(recon, tmp_path, "synth", "corset", "-o", tmp_path / "data", *flags)
    assert message in err


# ---------------------------------------------------------------- check-data and train voxel


def _pix3d(root: Path, entries: list) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pix3d.json").write_text(json.dumps(entries))
    return root


@pytest.mark.parametrize(
    "entries,kind",
    [
        ([], "no-entries"),
        ([{"img": None, "category": "chair", "voxel": "v.mat"}], "missing-field"),
        ([{"img": 5, "category": "chair", "voxel": "v.mat"}], "bad-field"),
        ([{"img": ["a.png"], "category": "chair", "voxel": "v.mat"}], "bad-field"),
        ([{"img": "a\u0000.png", "category": "chair", "voxel": "v.mat"}], "bad-field"),
    ],
)
def test_check_data_blind_spots_are_problems(recon, tmp_path, entries, kind):
    root = _pix3d(tmp_path / "data", entries)
    code, out, err = recon("check-data", "voxel", root, "--json")
    assert code == 1, err
    assert kind in json.loads(out)["problem_kinds"]


def test_train_voxel_refuses_images_outside_the_data_root(recon, tmp_path):
    """The same confinement as check-data: ../ and absolute paths stop training (exit 2)."""
    from test_check_data import make_pix3d

    root = tmp_path / "data"
    root.mkdir()
    entries = make_pix3d(root, 4)
    shutil.copy(root / entries[0]["img"], tmp_path / "outside.png")
    for bad in ("../outside.png", str(tmp_path / "outside.png")):
        entries[0]["img"] = bad
        (root / "pix3d.json").write_text(json.dumps(entries))
        args = ("train", "voxel", "--data", root, "--epochs", "1", "-o", tmp_path / "run")
        err = refused(recon, tmp_path, *args)
        assert "img points outside ROOT" in err and "entry 0" in err
        code, out, _ = recon("check-data", "voxel", root, "--json")
        assert code == 1 and "path-escapes-root" in json.loads(out)["problem_kinds"]


# ---------------------------------------------------------------- --json, umask, signals


def test_json_failure_prints_an_error_object(recon, tmp_path):
    code, out, err = recon("project", tmp_path / "missing.stl", "-o", tmp_path / "v", "--json")
    assert code == 2 and err.count("\n") == 1
    assert json.loads(out) == {"error": err.strip().removeprefix("error: "), "exit_code": 2}


def test_json_usage_error_prints_an_error_object(recon, tmp_path):
    code, out, err = recon(
        "project", tmp_path / "m.stl", "-o", tmp_path / "v", "--views", "x", "--json"
    )
    message = "invalid value for '--views': input should be a valid integer"
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1
    error = json.loads(out)
    assert error["exit_code"] == 2 and error["error"].startswith(message)
    assert err == f"error: {error['error']}; see 'recon project --help'\n"


def test_outputs_honour_the_umask(recon, tmp_path, box):
    previous = os.umask(0o022)
    try:
        code, _, err = recon("project", box, "-o", tmp_path / "v", "--size", "32", "-q")
        assert code == 0, err
        code, _, err = recon("backproject", tmp_path / "v", "-o", tmp_path / "m.stl", "-q")
        assert code == 0, err
    finally:
        os.umask(previous)
    assert (tmp_path / "v").stat().st_mode & 0o777 == 0o755
    files = [*(tmp_path / "v").iterdir(), tmp_path / "m.stl", tmp_path / "m.stl.run.json"]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files)


@pytest.mark.parametrize(
    "signum,code,line", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_signal_removes_the_temporary_folder(tmp_path, box, signum, code, line):
    """SIGTERM (a scheduler's stop) and Ctrl-C while `project` writes: exit 143 / 130, one
    line, and neither the output nor the hidden temporary folder is left."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", SLOW_WRITE, "project", str(box), "-o", str(work / "v")]
    args += ["--size", "16", "-q"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not (work / "started").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [p.name for p in work.iterdir() if p.name.startswith(".v.")]  # the temporary
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert err.decode() == f"{line}\n" and out == b""
    assert sorted(p.name for p in work.iterdir()) == ["started"]


# ------------------------------------------------ --seed and --device, every command


def _commands_with(option: str) -> list[str]:
    """Every `recon` command (as its words) that takes option."""
    import typer.main

    from recon.cli.app import app

    def walk(group, prefix):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, f"{prefix}{name} ")
            elif any(option in p.opts for p in command.params if hasattr(p, "opts")):
                yield f"{prefix}{name}"

    return sorted(walk(typer.main.get_command(app), ""))


# TASK arguments some commands need before their options are read
LEADING = {"train": ["voxel"], "check-data": ["voxel", "."]}


@pytest.mark.parametrize("value", ["-1", "4294967296"])
@pytest.mark.parametrize("command", _commands_with("--seed"))
def test_every_seed_is_range_checked(recon, tmp_path, monkeypatch, command, value):
    monkeypatch.chdir(tmp_path)
    words = command.split() + LEADING.get(command, [])
    err = refused(recon, tmp_path, *words, "--seed", value)
    assert f"--seed must be in [0, 4294967295], not {value}" in err


@pytest.mark.parametrize("command", _commands_with("--device"))
def test_every_device_is_checked(recon, tmp_path, monkeypatch, command):
    import torch

    monkeypatch.chdir(tmp_path)
    words = command.split() + LEADING.get(command, [])
    err = refused(recon, tmp_path, *words, "--device", "gpu")
    assert "--device must be auto, cpu, cuda or cuda:N, not 'gpu'" in err
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last device, or none at all
    err = refused(recon, tmp_path, *words, "--device", missing)
    assert f"--device {missing}: " in err


def test_seed_and_device_lists_are_not_empty():
    assert {"synth pix3d", "demo", "synth skull"} <= set(_commands_with("--seed"))
    assert {"serve", "predict skull", "train"} <= set(_commands_with("--device"))


# ---------------------------------------------------------------- check-data, serve, synth, demo


@pytest.mark.parametrize(
    "args,message",
    [
        (["check-data", "nosuch", "."], "invalid value for 'task': 'nosuch' is not one of"),
        (["check-data", "voxel", ".", "--limit", "-1"], "--limit must be in [0, 100000], not -1"),
        (["serve", "-c", "voxel=m.ckpt", "--workers", "0"], "--workers must be in [1, 64], not 0"),
        (["serve", "-c", "voxel=m.ckpt", "--workers", "1000"], "--workers must be in [1, 64], not"),
        (["serve", "-c", "voxel=m.ckpt", "--queue-limit", "0"], "--queue-limit must be in [1, "),
        (["serve", "-c", "voxel=m.ckpt", "--client-limit", "-1"], "--client-limit must be in [0,"),
        (["serve", "-c", "voxel=m.ckpt", "--port", "0"], "--port must be in [1, 65535], not 0"),
        (["synth", "meshes", "-o", "s", "--shapes", "cube"], "--shapes: unknown cube"),
        (["demo", "--only", "nosuch"], "--only: unknown step nosuch"),
        (["demo", "--only", ","], "--only: no step named"),
        (["synth", "skull", "-o", "s", "-n", "0"], "--count must be in [1, 100000], not 0"),
        (["predict", "skull", "a.png", "-c", "m.ckpt", "-o", "o", "--device", "tpu"], "--device"),
        (["project", "--nope", "m.stl", "-o", "v"], "no such option: --nope"),
        (["project", "-o", "v"], "missing argument 'mesh'"),
    ],
)
def test_more_options_out_of_range(recon, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert message in refused(recon, tmp_path, *args)


def test_backproject_render_over_an_existing_picture_needs_overwrite(recon, work):
    (work / "m.png").write_bytes(b"mine")
    err = refused(recon, work, "backproject", work / "views", "-o", work / "m.stl", "--render")
    assert "m.png: already exists" in err


def test_synth_xray_into_the_folder_holding_its_ct_is_refused_even_with_overwrite(recon, tmp_path):
    """It deleted the CT (exit 0)."""
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    err = refused(recon, tmp_path, "synth", "xray", "-v", ct, "-o", tmp_path, "--overwrite")
    assert "would replace the input" in err


STOP_WHILE_IMPORTING = """
import builtins, os, signal, sys
real_import, stop, importer = builtins.__import__, getattr(signal, sys.argv[1]), sys.argv[2]
def importing(name, globals=None, *args, **kwargs):
    if name == "typer" and (globals or {}).get("__name__") == importer:
        os.kill(os.getpid(), stop)
    return real_import(name, globals, *args, **kwargs)
builtins.__import__ = importing
sys.argv = ["recon", "project", "x.stl", "-o", "y", "--json"]
from recon.cli.app import main
main()
"""
# where the stop comes: app.py's imports (before main), or the command's module (inside main)
IMPORTERS = ["recon.cli.app", "recon.cli.project"]


@pytest.mark.parametrize("importer", IMPORTERS)
@pytest.mark.parametrize(
    ("signal_name", "code", "line"),
    [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")],
)
def test_a_stop_while_the_command_starts_is_its_one_line(signal_name, code, line, importer):
    """Ctrl-C while `recon` imported its commands was a KeyboardInterrupt traceback and no
    JSON; SIGTERM there ended it without a word."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", STOP_WHILE_IMPORTING, signal_name, importer],
        capture_output=True,
        text=True,
    )
    assert done.returncode == code and done.stderr == f"{line}\n", done.stderr
    assert json.loads(done.stdout)["exit_code"] == code


@pytest.mark.parametrize("importer", ["recon.cli.app", "recon.cli.train"])
def test_a_stop_while_starting_prints_json_on_rank_zero_only(importer):
    """A multi-process training run prints one JSON object, from rank 0: its other ranks print
    none (another command's process under srun is a run of its own: test_cli)."""
    import os
    import subprocess
    import sys

    script = STOP_WHILE_IMPORTING.replace('"project", "x.stl"', '"train", "voxel"')
    done = subprocess.run(
        [sys.executable, "-c", script, "SIGTERM", importer],
        capture_output=True,
        text=True,
        env={**os.environ, "RANK": "1"},
    )
    assert done.returncode == 143 and done.stderr == "terminated\n" and done.stdout == ""


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("task", ["voxel", "parts", "skull", "drr", "corset"])
def test_a_run_folder_given_as_checkpoint_names_its_checkpoints(recon, tmp_path, spine, task):
    """-c RUN (the training run's folder, not its checkpoint file) is one line that names the
    checkpoint files inside it, for every predict command, before any output is made."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (tmp_path / "in").mkdir()
    picture = write_png(tmp_path / "in" / "a.png", np.full((64, 64), 128, np.uint8))
    inputs = {"corset": ["--photos", tmp_path / "in", "--spine", spine]}.get(task, [picture])
    out = tmp_path / ("c.stl" if task == "corset" else "out")
    error = refused(recon, tmp_path, "predict", task, *inputs, "-c", run, "-o", out)
    assert f"{run}: is a folder, not a checkpoint file" in error
    assert str(run / "checkpoints" / "best.ckpt") in error


def test_a_checkpoint_cut_short_is_one_plain_line(tmp_path):
    """A checkpoint cut short in a copy gave PyTorch's own paragraph ("PytorchStreamReader failed
    reading zip archive: ... This is an internal miniz error. If you are seeing this error ...")."""
    import torch

    from recon.pipelines.common.checkpoints import load_checkpoint_file
    from recon.pipelines.common.errors import BadInput

    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(4096)}}, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert set(load_checkpoint_file(whole)) == {"state_dict"}
    with pytest.raises(BadInput) as caught:
        load_checkpoint_file(cut)
    assert str(caught.value) == (
        f"{cut}: the checkpoint is cut short or damaged (its zip archive does not end); "
        "copy it again"
    )


@pytest.mark.parametrize(
    "command", [["synth", "pairs"], ["synth", "xray"], ["synth", "skull"], ["synth", "meshes"]]
)
def test_skip_done_with_overwrite_is_refused(recon, tmp_path, command):
    """--overwrite beside --skip-done did nothing (finished outputs were kept all the same)."""
    err = refused(recon, tmp_path, *command, "-o", tmp_path / "out", "--skip-done", "--overwrite")
    assert "--skip-done keeps finished outputs and --overwrite remakes them: give one" in err


def test_json_inputs_saved_with_a_byte_order_mark_read_as_without(recon, work):
    """Windows Notepad and PowerShell 5's `Out-File -Encoding utf8` start a UTF-8 file with a
    BOM: backproject's views.json and make-drr's JSON pose file were refused for it ("Unexpected
    UTF-8 BOM"), where check-data read pix3d.json so. Each gives what the plain file gives."""
    from test_xray_io import small_ct

    from recon.pipelines.xray.pose import pose_from_degrees

    views_json = work / "views" / "views.json"
    views_json.write_bytes(b"\xef\xbb\xbf" + views_json.read_bytes())
    rc, _, err = recon("backproject", work / "views", "-o", work / "box.ply")
    assert rc == 0, err
    ct = small_ct(work / "ct.nii.gz")
    pose = pose_from_degrees([0.0, 0.0, 0.0], [0.0, 300.0, 0.0]).tolist()
    (work / "plain.json").write_text(json.dumps({"pose": pose}), encoding="utf-8")
    (work / "bom.json").write_text(json.dumps({"pose": pose}), encoding="utf-8-sig")
    drrs = []
    for name in ("plain", "bom"):
        rc, _, err = recon("make-drr", "-v", ct, "--pose", work / f"{name}.json", "--sdd", 600,
                           "--size", 16, "-o", work / f"{name}.png")  # fmt: skip
        assert rc == 0, err
        drrs.append((work / f"{name}.png").read_bytes())
    assert drrs[0] == drrs[1]


@pytest.fixture
def locked(tmp_path):
    """A folder no one may write in, root included (chattr +i; chmod 555 for other users)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", folder], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available on this file system")
        undo = lambda: subprocess.run(["chattr", "-i", folder], check=True)  # noqa: E731
    else:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("a read-only folder is writable here")
        yield folder
    finally:
        undo()


def test_train_into_an_unwritable_folder_is_one_line_before_any_work(recon, work, locked):
    """Every other command refused it at once; train set up the data and Lightning first (about
    10 s), then exited 1 with a raw PermissionError."""
    for out in (locked / "run", locked / "a" / "b", locked):
        err = refused(recon, work, "train", "voxel", "--data", work / "views", "--out", out)
        assert f"{locked}: output folder is not writable" in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here")
@pytest.mark.parametrize(
    "args",
    [
        ["make-drr", "--rot", 0, 0, 0, "--xyz", 0, 850, 0, "--size", 16, "-o", "/proc/d.png"],
        ["synth", "corset", "-n", 1, "-o", "/proc/set"],
        ["train", "voxel", "--data", "views", "--out", "/proc/run"],
    ],
)
def test_an_output_on_a_pseudo_file_system_is_refused_before_any_work(recon, work, args):
    """/proc passes the permission bits as root; the file itself is refused, which came after
    the work, exit 1 with a raw FileNotFoundError naming the hidden temporary."""
    err = refused(recon, work, *args)
    assert err.startswith("error: /proc: output folder is not writable (a proc file system"), err


@pytest.mark.parametrize(
    "code, how", [("ENOSPC", "named"), ("EDQUOT", "named"), ("ENOSPC", "copied"), ("ENOSPC", "")]
)
def test_a_full_disk_is_one_plain_line_and_leaves_no_unfinished_output(
    recon, tmp_path, monkeypatch, code, how
):
    """A full disk or a cluster quota said "OSError: [Errno 28] No space left on device:
    '/data/.set.host.123.x1y2/run.json'", naming a hidden temporary the user never sees. A copy
    (shutil, as Lightning's checkpoints are moved from a temporary file) names its source
    first: "the disk of /tmp" for a checkpoint written to another disk. A write through a file
    object (torch.save, PIL) names no file: "the disk" of nowhere."""
    import errno
    import json

    from recon.pipelines.common import outputs

    def full(path, *args, **kwargs):
        number = getattr(errno, code)
        if how == "copied":
            raise OSError(number, os.strerror(number), "/tmp/tmpx1y2z3", None, str(path))
        if how == "named":
            raise OSError(number, os.strerror(number), str(path))
        with outputs.atomic_file(Path(path)):
            raise OSError(number, os.strerror(number))

    monkeypatch.setattr(outputs, "write_json", full)
    out = tmp_path / "shapes"
    rc, stdout, err = recon("synth", "meshes", "--shapes", "box", "-o", out, "--json")
    what = "disk quota exceeded in" if code == "EDQUOT" else "no space left on the disk of"
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: {what} {tmp_path}: "), err  # not the hidden temporary
    assert err.endswith(": free some space, or write elsewhere (unfinished files are removed)\n")
    assert json.loads(stdout)["exit_code"] == 1
    assert list(tmp_path.iterdir()) == []  # the unfinished folder went with its temporary


def test_the_file_system_of_a_folder_is_its_innermost_mount():
    from recon.pipelines.common.outputs import file_system

    table = "\n".join(
        [
            "/dev/sda1 / ext4 rw 0 0",
            "proc /proc proc rw 0 0",
            "tmpfs /mnt/my\\040disk tmpfs rw 0 0",  # a space in a mount point is \040
            "sysfs /mnt/stack sysfs rw 0 0",
            "tmpfs /mnt/stack tmpfs rw 0 0",  # mounted over the one before
        ]
    )
    assert file_system(Path("/proc/1/x"), table) == "proc"
    assert file_system(Path("/processes"), table) == "ext4"  # not under /proc
    assert file_system(Path("/mnt/my disk/out"), table) == "tmpfs"
    assert file_system(Path("/mnt/stack/out"), table) == "tmpfs"
    assert file_system(Path("/home/me"), table) == "ext4"


def test_every_output_folder_named_as_a_file_is_refused_alike(recon, tmp_path):
    """The check was written three times with three suffix sets: embed-spine let `-o x.npz`
    through and `predict corset --views-out v.npz` too, while predict refused both."""
    from PIL import Image

    (tmp_path / "films").mkdir()
    Image.new("L", (64, 64), 90).save(tmp_path / "films" / "a.png")
    Image.new("L", (64, 64), 90).save(tmp_path / "photo.png")
    (tmp_path / "m.ckpt").write_bytes(b"refused before it is read")
    for name in ("x.npz", "x.NPY", "x.dcm", "x.obj", "x.csv"):
        suffix = Path(name).suffix
        err = refused(recon, tmp_path, "embed-spine", tmp_path / "films", "-o", tmp_path / name)
        assert f"names a {suffix} file, but -o is EMB.json for one X-ray" in err
        err = refused(recon, tmp_path, "predict", "corset", "--photos", tmp_path / "films", "-c",
                      tmp_path / "m.ckpt", "-o", tmp_path / "c.stl", "--views-out",
                      tmp_path / name)  # fmt: skip
        assert f"names a {suffix} file, but --views-out is a folder of views" in err
        err = refused(recon, tmp_path, "predict", "voxel", tmp_path / "photo.png", "-c",
                      tmp_path / "m.ckpt", "-o", tmp_path / name)  # fmt: skip
        assert f"names a {suffix} file, but -o is an output folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["films", "m.ckpt", "photo.png"]


@pytest.mark.parametrize("task", ["voxel", "parts", "skull", "drr"])
def test_a_predict_output_folder_named_as_a_file_is_refused(recon, tmp_path, task):
    """`predict voxel chair.png -o chair.stl` made a folder named chair.stl holding 0000.stl;
    `embed-spine` and `predict corset --views-out` already refused such a name."""
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "a.png")
    (tmp_path / "m.ckpt").write_bytes(b"refused before it is read")
    for name in ("chair.stl", "chair.PLY", "grid.npy", "d.png"):
        given = [tmp_path / "a.png", "-c", tmp_path / "m.ckpt", "-o", tmp_path / name]
        err = refused(recon, tmp_path, "predict", task, *given)
        assert f"names a {Path(name).suffix} file, but -o is an output folder" in err
