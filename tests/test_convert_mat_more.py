"""convert-mat --overwrite into a folder of another --resolution, a .npy named as a Pix3D voxel
file, and check-data skull's table adding up."""

from __future__ import annotations

import json

import numpy as np
from test_check_data import make_pix3d
from test_convert_mat import random_grid

from recon.pipelines.common.io import write_png
from recon.pipelines.occupancy.matfiles import write_voxel_mat


def test_overwrite_into_a_folder_of_another_resolution_is_refused(recon, tmp_path):
    """`--overwrite --resolution 16` into a folder of 32^3 grids mixed both sizes, exit 0, and
    run.json said 16."""
    own, pix3d, out = tmp_path / "own", tmp_path / "pix3d", tmp_path / "mix"
    own.mkdir()
    pix3d.mkdir()
    write_voxel_mat(own / "a.mat", random_grid(32, 1), "5")
    write_voxel_mat(pix3d / "b.mat", random_grid(32, 2), "5")
    code, _, err = recon("convert-mat", own, "-o", out, "--resolution", "32", "-q")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = recon("convert-mat", pix3d, "-o", out, "--resolution", "16", "--overwrite")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--resolution 16 here, 32 in run.json" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads((out / "run.json").read_text())["config"]["resolution"] == 32
    # the same resolution still writes into the folder
    code, _, err = recon("convert-mat", pix3d, "-o", out, "--resolution", "32", "--overwrite")
    assert code == 0, err
    assert {np.load(p).shape for p in out.glob("*.npy")} == {(32, 32, 32)}
    assert sorted(p.name for p in out.glob("*.npy")) == ["a.npy", "b.npy"]


def test_a_npy_voxel_file_is_named_as_not_a_mat(recon, tmp_path):
    """A pix3d.json `voxel` naming convert-mat's .npy gave scipy's `Unknown mat file type,
    version 32, 32`."""
    root = tmp_path / "p"
    entries = make_pix3d(root)
    for index, entry in enumerate(entries):  # two models, as training needs
        grid = np.zeros((16, 16, 16), np.uint8)
        grid[4:12, 4:12, 4 : 8 + index % 2] = 1
        np.save(root / "model" / f"g{index % 2}.npy", grid)
        entry["voxel"] = f"model/g{index % 2}.npy"
    (root / "pix3d.json").write_text(json.dumps(entries))
    code, out, err = recon("check-data", "voxel", root, "--json")
    assert code == 1, err
    problems = json.loads(out)["problems"]
    assert [p["kind"] for p in problems] == ["unreadable-voxel"] * 2
    assert problems[0]["path"].endswith("g0.npy")
    assert problems[0]["detail"].startswith("a voxel file must be a Pix3D .mat (got a NumPy .npy")
    code, _, err = recon("train", "voxel", "--data", root, "--epochs", "1", "--set", "size=32",
                         "-o", tmp_path / "run", "--device", "cpu")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert ".npy: a voxel file must be a Pix3D .mat" in err and "Unknown mat" not in err
    assert not (tmp_path / "run").exists()


def test_check_data_skull_rows_add_up(recon, tmp_path):
    """2 pairs and one image without its .npz showed `pairs 2` and `total 3`."""
    grid = np.zeros((16, 16, 16), bool)
    grid[4:12, 4:12, 4:12] = True
    for index in range(3):
        write_png(tmp_path / f"s{index}.png", np.full((64, 64, 3), 40 * index, np.uint8))
        if index < 2:
            np.savez(tmp_path / f"s{index}_vox.npz", skull=grid, face=grid)
    code, out, _ = recon("check-data", "skull", tmp_path, "--limit", "0")
    assert code == 1
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").replace("┃", "│").split("│")]
        if len(cells) == 2 and cells[1].isdigit():
            rows[cells[0]] = int(cells[1])
    assert rows == {"pairs": 2, "no usable grid": 1, "total": 3}, out
