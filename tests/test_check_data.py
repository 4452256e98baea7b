"""`recon check-data voxel|parts`: each planted problem is named, exit 1; clean sets exit 0."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recon.pipelines.common.io import write_png
from recon.pipelines.occupancy.matfiles import write_voxel_mat


def make_pix3d(root, count: int = 4) -> list[dict]:
    """A clean hand-made Pix3D root: count images of two classes, one voxel file each."""
    entries = []
    for i in range(count):
        category = "chair" if i % 2 else "table"
        (root / "img" / category).mkdir(parents=True, exist_ok=True)
        (root / "model" / category / f"m{i}").mkdir(parents=True, exist_ok=True)
        image = np.full((40, 50, 3), 30 * i, dtype=np.uint8)
        write_png(root / "img" / category / f"{i}.png", image)
        grid = np.zeros((16, 16, 16), dtype=np.uint8)
        grid[4:12, 4:12, 2 + i : 10] = 1
        write_voxel_mat(
            root / "model" / category / f"m{i}" / "voxel.mat", grid, "7.3" if i == 1 else "5"
        )
        entries.append(
            {
                "img": f"img/{category}/{i}.png",
                "category": category,
                "voxel": f"model/{category}/m{i}/voxel.mat",
                "bbox": [2, 2, 40, 30],
            }
        )
    (root / "pix3d.json").write_text(json.dumps(entries))
    return entries


def test_clean_pix3d_passes(recon, tmp_path):
    make_pix3d(tmp_path)
    code, out, err = recon("check-data", "voxel", tmp_path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["problem_count"] == 0
    assert result["per_class"] == {"chair": 2, "table": 2}
    assert "no problems found" not in err  # the JSON says so; it was printed on stderr too
    code, out, err = recon("check-data", "voxel", tmp_path)
    assert code == 0 and err == "no problems found\n", err


def test_planted_pix3d_problems_are_named(recon, tmp_path):
    entries = make_pix3d(tmp_path, 6)
    (tmp_path / entries[0]["img"]).unlink()  # missing image
    (tmp_path / entries[1]["voxel"]).unlink()  # missing voxel file
    data = (tmp_path / entries[2]["voxel"]).read_bytes()
    (tmp_path / entries[2]["voxel"]).write_bytes(data[: len(data) // 2])  # truncated .mat
    write_voxel_mat(tmp_path / entries[3]["voxel"], np.zeros((16, 16, 16), np.uint8))  # empty
    entries[4]["img"] = "../outside.png"  # escapes the root
    entries.append(dict(entries[5]))  # duplicate entry
    write_voxel_mat(tmp_path / entries[5]["voxel"], np.ones((8, 8, 8), np.uint8))  # other shape
    (tmp_path / "pix3d.json").write_text(json.dumps(entries))

    code, out, err = recon("check-data", "voxel", tmp_path, "--json")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    kinds = json.loads(out)["problem_kinds"]
    for kind in (
        "missing-image",
        "missing-voxel",
        "unreadable-voxel",
        "empty-voxel",
        "path-escapes-root",
        "duplicate-entry",
        "shape-mismatch",
    ):
        assert kinds.get(kind, 0) >= 1, (kind, kinds)
    problems = json.loads(out)["problems"]
    assert any(entries[0]["img"] in p["path"] for p in problems if p["kind"] == "missing-image")

    code, out, _ = recon("check-data", "voxel", tmp_path)  # the human table names them too
    assert code == 1 and "missing-voxel" in out and "duplicate-entry" in out


@pytest.mark.parametrize(
    ("category", "kind"),
    [(None, "missing-field"), ("absent", "missing-field"), (3, "bad-field"),
     ("", "bad-field"), (["chair"], "bad-field")],
)  # fmt: skip
def test_a_null_or_non_string_category_is_flagged(recon, tmp_path, category, kind):
    """`"category": null` passed silently and was counted as a class named "None"."""
    entries = make_pix3d(tmp_path)
    if category == "absent":
        del entries[1]["category"]
    else:
        entries[1]["category"] = category
    (tmp_path / "pix3d.json").write_text(json.dumps(entries))
    code, out, err = recon("check-data", "voxel", tmp_path, "--json")
    assert code == 1, err
    result = json.loads(out)
    assert result["problem_kinds"] == {kind: 1}
    assert result["problems"][0]["path"] == "entry 1"
    assert "category" in result["problems"][0]["detail"]
    assert result["per_class"] == {"?": 1, "chair": 1, "table": 2}


@pytest.mark.parametrize(
    "bbox", [[120, 120, 20, 20], "10 10 100 100", [0, 0, float("nan"), 30], [0, 0, 60, 30], [1, 2]]
)
def test_train_voxel_refuses_the_bbox_check_data_flags(recon, tmp_path, bbox):
    """A bbox check-data flags crashed training with `ValueError: Width and height must be >= 0`
    (exit 1, no entry named), after the run folder was made."""
    entries = make_pix3d(tmp_path / "p")
    entries[1]["bbox"] = bbox
    (tmp_path / "p" / "pix3d.json").write_text(json.dumps(entries))
    code, out, err = recon("check-data", "voxel", tmp_path / "p", "--json")
    assert code == 1 and json.loads(out)["problem_count"] == 1
    assert ": 1 problem (" in err, err
    code, _, err = recon("train", "voxel", "--data", tmp_path / "p", "--epochs", "1", "--set",
                         "size=32", "-o", tmp_path / "run", "--device", "cpu")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "pix3d.json entry 1: bbox" in err and "check-data voxel" in err
    assert not (tmp_path / "run").exists()


def test_pix3d_json_with_a_bom_is_read_and_a_deeply_nested_one_is_one_line(recon, tmp_path):
    """A BOM (as Windows tools write) was `not valid JSON`; a deeply nested file ended in a
    RecursionError, exit 1, naming no file."""
    entries = make_pix3d(tmp_path / "p")
    (tmp_path / "p" / "pix3d.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(entries).encode())
    code, out, err = recon("check-data", "voxel", tmp_path / "p", "--json")
    assert code == 0 and json.loads(out)["items"] == 4, err
    (tmp_path / "p" / "pix3d.json").write_text("[" * 100_000)
    code, out, err = recon("check-data", "voxel", tmp_path / "p", "--json")
    assert code == 2 and err.count("\n") == 1 and "pix3d.json" in err, err
    assert json.loads(out)["exit_code"] == 2


def test_train_voxel_names_the_grid_the_resolution_does_not_fit(recon, tmp_path, monkeypatch):
    """A grid whose side the resolution does not divide stopped training with `grid size 16 is
    not a multiple of resolution 32`, naming no file, after the net had been allocated."""
    from recon.pipelines.occupancy import voxel_task

    make_pix3d(tmp_path / "p")
    code, _, err = recon("train", "voxel", "--data", tmp_path / "p", "--epochs", "1", "--set",
                         "size=32", "-o", tmp_path / "run", "--device", "cpu")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "voxel.mat: grid size 16 is not a multiple of resolution 32" in err
    assert not (tmp_path / "run").exists()

    def no_net(config):
        raise AssertionError("the net was built before the data was read")

    monkeypatch.setattr(voxel_task, "build_net", no_net)
    config = voxel_task.VoxelConfig(data=str(tmp_path / "p"), size=32)
    with pytest.raises(voxel_task.BadInput, match="voxel.mat: grid size 16"):
        voxel_task.build(config)


def test_copies_of_one_voxel_file_stay_on_one_side_of_the_split(tmp_path):
    """Two entries whose voxel files hold the same bytes under two names are one 3D model: the
    split by path put one copy in training and the other in validation for some seeds."""

    root = tmp_path / "p"
    entries = make_pix3d(root, count=6)
    copy = root / "model" / "table" / "m0_copy"
    shutil.copytree(root / "model" / "table" / "m0", copy)
    write_png(root / "img" / "table" / "copy.png", np.full((40, 50, 3), 7, np.uint8))
    twin = {**entries[0], "img": "img/table/copy.png", "voxel": "model/table/m0_copy/voxel.mat"}
    (root / "pix3d.json").write_text(json.dumps([*entries, twin]))
    assert_one_side(root, ("m0", "m0_copy"))


def assert_one_side(root, models: tuple[str, ...]) -> None:
    """The entries of the 3D model folders `models` fall on one side of the split, every seed."""
    from recon.pipelines.occupancy import voxel_task

    for seed in range(12):
        config = voxel_task.VoxelConfig(data=str(root), seed=seed, resolution=16, size=32)
        train, val = voxel_task.make_sets(config)
        sides = {
            side
            for side, dataset in (("train", train), ("val", val))
            for entry in dataset.entries
            if entry["voxel_path"].parent.name in models
        }
        assert len(sides) == 1, (seed, sides)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_one_grid_saved_again_is_one_model(tmp_path, version):
    """The same grid saved twice differs in the MAT header's time stamp, so the byte
    comparison took the two files for two 3D models (and a split could put them on both
    sides); arrays are compared now, and another grid of the same size is another model."""
    import time

    from recon.pipelines.common.splits import content_digest, same_content
    from recon.pipelines.occupancy.matfiles import write_voxel_mat

    grid = (np.random.default_rng(0).random((16, 16, 16)) > 0.5).astype(np.uint8)
    write_voxel_mat(tmp_path / "a.mat", grid, version)
    time.sleep(1.1)  # the header's clock counts seconds
    write_voxel_mat(tmp_path / "b.mat", grid, version)
    write_voxel_mat(tmp_path / "c.mat", 1 - grid, version)
    files = [tmp_path / name for name in ("a.mat", "b.mat", "c.mat")]
    assert files[0].read_bytes() != files[1].read_bytes()
    groups = same_content(files)
    assert groups[str(files[1])] == str(files[0]) and groups[str(files[2])] == str(files[2])
    assert content_digest(files[0]) == content_digest(files[1]) != content_digest(files[2])


def test_one_grid_saved_in_another_format_is_one_model(tmp_path):
    """One grid saved as MATLAB v7.3 and again as v5 (scipy.io.savemat, compressed or not):
    the comparison looked only at files of one size, and read v7.3 without MATLAB's
    transpose, so the split drew them as two 3D models and put them on both sides (18 of 20
    seeds). Training's reader decides: the same occupancy is one model."""
    from scipy.io import savemat

    from recon.pipelines.occupancy.checks import too_few_sources
    from recon.pipelines.occupancy.matfiles import read_voxel_mat, write_voxel_mat

    root = tmp_path / "p"
    entries = make_pix3d(root, count=6)
    source = root / entries[0]["voxel"]
    grid = read_voxel_mat(source)
    write_voxel_mat(source, grid, "7.3")
    twins = []
    for name, compressed in (("m0_v5", True), ("m0_plain", False)):
        folder = root / "model" / "table" / name
        folder.mkdir(parents=True)
        savemat(folder / "voxel.mat", {"voxel": grid}, do_compression=compressed)
        write_png(root / "img" / "table" / f"{name}.png", np.full((40, 50, 3), 7, np.uint8))
        twins.append(
            {**entries[0], "img": f"img/table/{name}.png", "voxel": f"model/table/{name}/voxel.mat"}
        )
    (root / "pix3d.json").write_text(json.dumps([*entries, *twins]))
    sizes = {(root / e["voxel"]).stat().st_size for e in [entries[0], *twins]}
    assert len(sizes) == 3  # three formats, three sizes, one grid
    assert_one_side(root, ("m0", "m0_v5", "m0_plain"))
    models = [root / e["voxel"] for e in [entries[0], *twins]]
    assert too_few_sources("voxel", models) is not None  # one model: no split


def test_two_names_of_one_voxel_file_are_one_model(recon, tmp_path):
    """A set whose two 3D models are copies of one file is a set of one model."""
    root = tmp_path / "p"
    entries = make_pix3d(root, count=2)
    shutil.copy(root / entries[0]["voxel"], root / entries[1]["voxel"])
    code, _, err = recon("train", "voxel", "--data", root, "--epochs", "1", "--set", "size=32",
                         "--set", "resolution=16", "-o", tmp_path / "run")  # fmt: skip
    assert code == 2 and "1 3D model" in err and err.count("\n") == 1, err


def test_parts_problems(recon, tmp_path):
    from recon.pipelines.occupancy.parts import make_part
    from recon.pipelines.shapes.solids import solid_mesh

    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (tmp_path / "models" / "plate").mkdir(parents=True, exist_ok=True)
        solid_mesh(make_part("plate", rng), 32).export(
            tmp_path / "models" / "plate" / f"{name}.stl"
        )
        folder = tmp_path / "images" / "plate" / name
        folder.mkdir(parents=True)
        write_png(folder / "v0.png", np.full((32, 32, 3), ord(name), np.uint8))
    code, out, err = recon("check-data", "parts", tmp_path, "--json")
    assert code == 0, err
    assert json.loads(out)["per_class"] == {"plate": 3}

    (tmp_path / "images" / "plate" / "b" / "v0.png").write_bytes(b"not an image")
    stl = tmp_path / "models" / "plate" / "c.stl"
    stl.write_bytes(stl.read_bytes()[:200])  # truncated mesh
    (tmp_path / "images" / "plate" / "orphan").mkdir()
    write_png(tmp_path / "images" / "plate" / "orphan" / "v.png", np.zeros((9, 9), np.uint8))
    write_png(tmp_path / "images" / "plate" / "a" / "v1.png", np.full((32, 32, 3), 97, np.uint8))
    code, out, _ = recon("check-data", "parts", tmp_path, "--json")
    assert code == 1
    kinds = json.loads(out)["problem_kinds"]
    for kind in ("unreadable-image", "unreadable-mesh", "missing-mesh", "duplicate-image"):
        assert kinds.get(kind, 0) >= 1, (kind, kinds)


def test_train_parts_refuses_the_parts_check_data_flags_and_reads_upper_case_stl(
    recon, tmp_path, tmp_path_factory
):
    """Training left out parts check-data flags without a word (images without a mesh, a mesh
    without images), and a mesh saved as .STL (as CAD tools write it) was missing to both."""
    from recon.pipelines.occupancy.parts import find_pairs, make_part
    from recon.pipelines.shapes.solids import solid_mesh

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "models" / "plate").mkdir(parents=True, exist_ok=True)
        suffix = ".STL" if name == "b" else ".stl"
        solid_mesh(make_part("plate", rng), 32).export(
            tmp_path / "models" / "plate" / f"{name}{suffix}", file_type="stl"
        )
        (tmp_path / "images" / "plate" / name).mkdir(parents=True)
        write_png(
            tmp_path / "images" / "plate" / name / "v0.png", np.full((32, 32), ord(name), np.uint8)
        )
    assert [p.part for p in find_pairs(tmp_path)] == ["a", "b"]
    code, _, err = recon("check-data", "parts", tmp_path)
    assert code == 0, err
    (tmp_path / "images" / "plate" / "orphan").mkdir()
    write_png(tmp_path / "images" / "plate" / "orphan" / "v.png", np.ones((32, 32), np.uint8))
    (tmp_path / "models" / "plate" / "lonely.stl").write_bytes(
        (tmp_path / "models" / "plate" / "a.stl").read_bytes()
    )
    run = tmp_path_factory.mktemp("runs") / "run"  # a run folder inside the data is refused
    for problem in ("orphan: no models/plate/orphan.stl", "lonely.stl: nothing under images"):
        code, _, err = recon("train", "parts", "--data", tmp_path, "--epochs", "1",
                             "-o", run, "--device", "cpu")  # fmt: skip
        assert code == 2 and problem in err and "check-data parts" in err, err
        assert not run.exists()
        shutil.rmtree(tmp_path / "images" / "plate" / "orphan", ignore_errors=True)


@pytest.mark.parametrize("task", ["voxel", "parts", "nope"])
def test_bad_root(recon, tmp_path, task):
    code, out, err = recon("check-data", task, tmp_path / "missing")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_train_parts_names_a_missing_root_as_check_data_does(recon, tmp_path):
    """train said `ROOT/models: no such folder` where check-data says `no such data set root`."""
    missing = tmp_path / "nothere"
    code, _, checked = recon("check-data", "parts", missing)
    assert code == 2 and checked.strip() == f"error: {missing}: no such data set root"
    code, _, err = recon("train", "parts", "--data", missing, "-o", tmp_path / "run")
    assert code == 2 and err == checked, err
    assert not (tmp_path / "run").exists()
