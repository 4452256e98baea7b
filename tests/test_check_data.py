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


def test_train_parts_refuses_the_parts_check_data_flags_and_reads_upper_case_stl(recon, tmp_path):
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
    for problem in ("orphan: no models/plate/orphan.stl", "lonely.stl: nothing under images"):
        code, _, err = recon("train", "parts", "--data", tmp_path, "--epochs", "1",
                             "-o", tmp_path / "run", "--device", "cpu")  # fmt: skip
        assert code == 2 and problem in err and "check-data parts" in err, err
        assert not (tmp_path / "run").exists()
        shutil.rmtree(tmp_path / "images" / "plate" / "orphan", ignore_errors=True)


@pytest.mark.parametrize("task", ["voxel", "parts", "nope"])
def test_bad_root(recon, tmp_path, task):
    code, out, err = recon("check-data", task, tmp_path / "missing")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
