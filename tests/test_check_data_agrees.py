"""`recon check-data` and `recon train` judge a data set by the same checks: a set one refuses,
the other refuses too, naming the same problem (train before it writes anything)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bad_input import refused
from test_check_data import make_pix3d

from recon.pipelines.common.io import write_png
from recon.pipelines.occupancy.matfiles import write_voxel_mat


def one_voxel_model(root):
    """Two Pix3D entries whose images show one 3D model (one voxel file)."""
    entries = make_pix3d(root, 2)
    entries[1]["voxel"] = entries[0]["voxel"]
    (root / "pix3d.json").write_text(json.dumps(entries))


def one_part(root):
    """A parts set of one STL with two images."""
    from recon.pipelines.occupancy.parts import make_part
    from recon.pipelines.shapes.solids import solid_mesh

    (root / "models" / "plate").mkdir(parents=True)
    solid_mesh(make_part("plate", np.random.default_rng(0)), 32).export(
        root / "models" / "plate" / "a.stl"
    )
    (root / "images" / "plate" / "a").mkdir(parents=True)
    for view in range(2):
        image = np.full((32, 32, 3), 40 + 100 * view, np.uint8)
        write_png(root / "images" / "plate" / "a" / f"v{view}.png", image)


def no_part(root):
    """A parts set whose models/ and images/ hold nothing."""
    (root / "models").mkdir(parents=True)
    (root / "images").mkdir()


def one_skull_pair(root):
    """A skull set of one image + NAME_vox.npz pair."""
    root.mkdir(parents=True)
    write_png(root / "h0.png", np.full((32, 32), 60, np.uint8))
    grid = np.zeros((16, 16, 16), bool)
    grid[2:8, 2:8, 2:8] = True
    np.savez(root / "h0_vox.npz", skull=grid, face=grid)


def one_skull_copied(root):
    """A skull set of one subject under two names: h1_vox.npz is a copy of h0_vox.npz."""
    import shutil

    one_skull_pair(root)
    write_png(root / "h1.png", np.full((32, 32), 120, np.uint8))
    shutil.copy(root / "h0_vox.npz", root / "h1_vox.npz")


def empty_voxel(root):
    """Three Pix3D models, the last one's grid all zero."""
    entries = make_pix3d(root, 3)
    write_voxel_mat(root / entries[2]["voxel"], np.zeros((16, 16, 16), np.uint8))


def odd_voxel_shape(root):
    """Three Pix3D models, the last one's grid 8^3 where the others are 16^3."""
    entries = make_pix3d(root, 3)
    write_voxel_mat(root / entries[2]["voxel"], np.ones((8, 8, 8), np.uint8))


def inverted_bbox(root):
    """Four Pix3D entries, one with x0 > x1 in its bbox."""
    entries = make_pix3d(root, 4)
    entries[1]["bbox"] = [40, 2, 10, 30]
    (root / "pix3d.json").write_text(json.dumps(entries))


@pytest.mark.parametrize(
    ("task", "make", "kind", "named"),
    [
        ("voxel", one_voxel_model, "cannot-split", "its entries show 1 3D model"),
        ("parts", one_part, "cannot-split", "its images show 1 part"),
        ("parts", no_part, "cannot-split", "its images show 0 parts"),
        ("skull", one_skull_pair, "cannot-split", "npz) show 1 subject"),
        ("skull", one_skull_copied, "cannot-split", "npz) show 1 subject"),
        ("voxel", empty_voxel, "empty-voxel", "all voxels are zero"),
        ("voxel", odd_voxel_shape, "shape-mismatch", "grid (8, 8, 8), most files are (16,"),
        ("voxel", inverted_bbox, "bbox-outside-image", "x0 40 > x1 10"),
    ],
)
def test_check_data_and_train_refuse_the_same_set(recon, tmp_path, task, make, kind, named):
    """check-data passed the sets of one source item that train refused (it cannot split
    them), and train trained on an all-zero or odd-sized voxel grid that check-data flagged."""
    root = tmp_path / "data"
    make(root)
    code, out, err = recon("check-data", task, root, "--json")
    assert code == 1, err
    [problem] = json.loads(out)["problems"]
    assert problem["kind"] == kind and named in problem["detail"], problem
    args = ("--epochs", "1", "--set", "size=32", "--set", "resolution=8", "--device", "cpu")
    if task == "skull":
        args = ("--epochs", "1", "--set", "size=32", "--device", "cpu")
    err = refused(recon, tmp_path, "train", task, "--data", root, *args, "-o", tmp_path / "run")
    assert problem["detail"] in err and f"check-data {task}" in err, err


@pytest.mark.parametrize(
    ("bbox", "named"), [([40, 2, 10, 30], "x0 40 > x1 10"), ([2, 30, 40, 30], "y0 30 = y1 30")]
)
def test_an_empty_bbox_names_the_bound_that_is_wrong(tmp_path, bbox, named):
    """An empty box was `bbox [...] in a W x H image`, which did not say which bound was wrong
    (and said nothing when the image could not be read)."""
    from recon.pipelines.occupancy.checks import bbox_problem

    image = tmp_path / "a.png"
    write_png(image, np.zeros((40, 50, 3), np.uint8))
    assert named in bbox_problem(image, bbox)
    assert named in bbox_problem(tmp_path / "missing.png", bbox)
