"""`recon convert-mat`: exact v5 and v7.3 round trips, max-pooling, trees, failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon.pipelines.occupancy.matfiles import is_v73, read_voxel_mat, write_voxel_mat
from recon.pipelines.shapes.voxelize import max_pool


def random_grid(size: int = 16, seed: int = 0) -> np.ndarray:
    """A grid with no symmetry, so any axis swap or flip would show."""
    rng = np.random.default_rng(seed)
    return (rng.random((size, size, size)) < 0.3).astype(np.uint8)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_round_trip_is_exact(tmp_path, version):
    grid = random_grid()
    grid[0, 1, 2] = 1
    grid[2, 1, 0] = 0
    path = tmp_path / "voxel.mat"
    write_voxel_mat(path, grid, version)
    assert is_v73(path) == (version == "7.3")
    back = read_voxel_mat(path)
    assert back.shape == grid.shape
    assert np.array_equal(back, grid)


def test_v73_file_is_matlab_hdf5_with_transposed_storage(tmp_path):
    import h5py

    grid = random_grid(8)
    path = tmp_path / "voxel.mat"
    write_voxel_mat(path, grid, "7.3")
    assert path.read_bytes()[:10] == b"MATLAB 7.3"
    with h5py.File(path, "r") as handle:
        stored = handle["voxel"][()]
        assert handle["voxel"].attrs["MATLAB_class"] == b"uint8"
    assert np.array_equal(stored, grid.transpose())


def test_plain_hdf5_is_read_as_stored_and_matlab_hdf5_transposed(tmp_path):
    """h5py's own files are C-ordered: no column-major order to undo (the old reader swapped
    x and z); a variable marked MATLAB_class is MATLAB's, header or not."""
    import h5py

    grid = random_grid(8)
    plain = tmp_path / "plain.mat"
    with h5py.File(plain, "w") as handle:
        handle.create_dataset("voxel", data=grid)
    assert np.array_equal(read_voxel_mat(plain), grid)
    marked = tmp_path / "marked.mat"
    with h5py.File(marked, "w") as handle:
        handle.create_dataset("voxel", data=grid.transpose()).attrs["MATLAB_class"] = b"uint8"
    assert np.array_equal(read_voxel_mat(marked), grid)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((4, 4, 8)), "shape (4, 4, 8), expected a cubic 3D grid"),
        (np.zeros((4, 4, 4), dtype=complex), "holds complex values"),
        (np.zeros((4, 4, 4), dtype=[("real", "f8"), ("imag", "f8")]), "holds complex values"),
        (np.zeros((4, 4, 4), dtype=[("a", "f8"), ("b", "u1")]), "holds struct values"),
        (np.zeros((0, 0, 0), dtype=np.uint8), "shape (0, 0, 0): it holds no voxels"),
        (np.full((4, 4, 4), np.nan), "holds NaN or Inf values"),
        (np.full((4, 4, 4), -np.inf), "holds NaN or Inf values"),
    ],
)
def test_grids_that_are_no_occupancy_are_refused(tmp_path, value, message):
    import h5py

    from recon.pipelines.occupancy.matfiles import MatError

    path = tmp_path / "odd.mat"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("voxel", data=value)
    with pytest.raises(MatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_voxel_mat(path)


def test_a_v73_file_cut_short_is_named_so(tmp_path):
    """Cut to its MATLAB header, it went to scipy, whose message told the user to use an HDF
    reader, which recon already does for a whole v7.3 file."""
    from recon.pipelines.occupancy.matfiles import MatError

    path = tmp_path / "voxel.mat"
    write_voxel_mat(path, np.ones((4, 4, 4), np.uint8), "7.3")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MatError, match="a MATLAB v7.3 header without its HDF5 data: the file"):
        read_voxel_mat(path)


def test_a_sparse_v5_variable_is_named_as_such(tmp_path):
    """scipy reads a MATLAB sparse matrix as an object the shape check saw as `shape ()`."""
    from scipy.io import savemat
    from scipy.sparse import csr_matrix

    from recon.pipelines.occupancy.matfiles import MatError

    path = tmp_path / "sparse.mat"
    savemat(path, {"voxel": csr_matrix(np.eye(4))})
    with pytest.raises(MatError, match="sparse matrix"):
        read_voxel_mat(path)


@pytest.mark.parametrize("value", [np.zeros((0, 0, 0)), np.where(random_grid(8), np.nan, 0.0)])
def test_cli_refuses_an_empty_or_nan_grid_and_writes_nothing(recon, tmp_path, value):
    """An empty grid was written as a (0, 0, 0) .npy and NaN voxels as occupied, exit 0."""
    from scipy.io import savemat

    savemat(tmp_path / "odd.mat", {"voxel": value})
    code, out, err = recon("convert-mat", tmp_path / "odd.mat", "-o", tmp_path / "o.npy", "--json")
    assert code == 2 and err.count("\n") == 1, err
    assert "odd.mat" in json.loads(out)["error"]
    assert not (tmp_path / "o.npy").exists()


def test_max_pool_keeps_any_occupied_voxel():
    grid = np.zeros((128, 128, 128), dtype=np.uint8)
    grid[5, 70, 127] = 1
    pooled = max_pool(grid, 32)
    assert pooled.shape == (32, 32, 32)
    assert pooled.sum() == 1 and pooled[1, 17, 31] == 1


def test_cli_converts_tree_with_layout_and_resolution(recon, tmp_path):
    src = tmp_path / "model"
    grids = {}
    for i, version in enumerate(["5", "7.3", "5"]):
        folder = src / f"cat{i % 2}" / f"m{i}"
        folder.mkdir(parents=True)
        grids[folder / "voxel.mat"] = random_grid(64, i)
        write_voxel_mat(folder / "voxel.mat", grids[folder / "voxel.mat"], version)
    code, out, err = recon(
        "convert-mat", src, "-o", tmp_path / "npy", "--resolution", "32", "--json", "--workers", "2"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["converted"] == 3 and result["failed"] == 0
    for path, grid in grids.items():
        target = tmp_path / "npy" / path.relative_to(src).with_suffix(".npy")
        assert np.array_equal(np.load(target), max_pool(grid, 32))


def test_cli_single_file_exact(recon, tmp_path):
    grid = random_grid(16, 3)
    write_voxel_mat(tmp_path / "a.mat", grid, "7.3")
    code, _, err = recon("convert-mat", tmp_path / "a.mat", "-o", tmp_path / "a.npy", "-q")
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "a.npy"), grid)


def test_a_soft_voxel_grid_becomes_uint8_occupancy(recon, tmp_path):
    """A double `voxel` (0.6 where occupied) was written as float64 though --help says uint8;
    it is the occupancy training reads (not 0)."""
    from scipy.io import savemat

    grid = random_grid(16, 4)
    savemat(tmp_path / "soft.mat", {"voxel": grid * 0.6})
    code, _, err = recon("convert-mat", tmp_path / "soft.mat", "-o", tmp_path / "s.npy", "-q")
    assert code == 0, err
    written = np.load(tmp_path / "s.npy")
    assert written.dtype == np.uint8 and np.array_equal(written, grid != 0)


def _tree_with_failures(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    write_voxel_mat(src / "good.mat", random_grid(16), "5")
    write_voxel_mat(src / "bad.mat", random_grid(16), "7.3")
    data = (src / "bad.mat").read_bytes()
    (src / "bad.mat").write_bytes(data[: len(data) // 2])  # truncated
    (src / "empty.mat").write_bytes(b"")
    return src


def test_cli_failure_writes_nothing_and_exits_1(recon, tmp_path):
    src = _tree_with_failures(tmp_path)
    before = sorted(tmp_path.iterdir())
    code, out, err = recon("convert-mat", src, "-o", tmp_path / "npy", "--json", "--workers", "2")
    assert code == 1
    assert "2 of 3 files failed" in err and len(err.strip().splitlines()) == 1
    assert json.loads(out) == {"error": err.strip().removeprefix("error: "), "exit_code": 1}
    assert sorted(tmp_path.iterdir()) == before  # no tree, no hidden temporary folder


def test_cli_single_file_failure_is_bad_input(recon, tmp_path):
    """One unreadable file given said "1 of 1 files failed (first: ...)", exit 1, where every
    other command calls an unreadable input bad input, exit 2."""
    (tmp_path / "bad.mat").write_bytes(b"junk")
    for keep_going in ([], ["--keep-going"]):
        args = ("convert-mat", tmp_path / "bad.mat", "-o", tmp_path / "bad.npy", *keep_going)
        code, out, err = recon(*args, "--json")
        assert code == 2
        assert err.startswith(f"error: {tmp_path / 'bad.mat'}: ") and err.count("\n") == 1, err
        assert "files failed" not in err
        assert json.loads(out) == {"error": err.strip().removeprefix("error: "), "exit_code": 2}
        code, out, err = recon(*args)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert "--keep-going" not in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mat"]


def test_cli_keep_going_logs_failures_and_exits_1(recon, tmp_path):
    src = _tree_with_failures(tmp_path)
    code, out, err = recon("convert-mat", src, "-o", tmp_path / "npy", "--json", "--keep-going")
    assert code == 1
    assert "2 of 3 files failed" in err and len(err.strip().splitlines()) == 1
    log = (tmp_path / "npy" / "convert-failures.log").read_text()
    assert "bad.mat" in log and "empty.mat" in log and "good.mat" not in log
    assert (tmp_path / "npy" / "good.npy").is_file()
    assert json.loads(out)["failed"] == 2
    for bad in ("bad.mat", "empty.mat"):  # mended: a clean run leaves no stale failure list
        next(src.rglob(bad)).unlink()
    code, _, err = recon("convert-mat", src, "-o", tmp_path / "npy", "--overwrite", "-q")
    assert code == 0, err
    assert not (tmp_path / "npy" / "convert-failures.log").exists()


def test_cli_overwrite_writes_into_a_folder_and_keeps_other_files(recon, tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    write_voxel_mat(src / "a.mat", random_grid(16, 1), "5")
    out = tmp_path / "npy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = recon("convert-mat", src, "-o", out, "--overwrite", "-q")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "keep me"
    assert np.array_equal(np.load(out / "a.npy"), random_grid(16, 1))


def test_cli_bad_input(recon, tmp_path):
    code, _, err = recon("convert-mat", tmp_path / "nothing", "-o", tmp_path / "out")
    assert code == 2 and "no such file or folder" in err
    (tmp_path / "x.txt").write_text("x")
    code, _, err = recon("convert-mat", tmp_path / "x.txt", "-o", tmp_path / "x.npy")
    assert code == 2 and "not a .mat file" in err
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "out").exists()


def test_two_sources_of_one_target_are_refused(recon, tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    write_voxel_mat(src / "a.mat", random_grid(8, 1), "5")
    write_voxel_mat(src / "a.MAT", random_grid(8, 2), "5")
    code, _, err = recon("convert-mat", src, "-o", tmp_path / "npy")
    assert code == 2 and "would both be written to one .npy file" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "npy").exists()


def test_an_output_inside_the_source_folder_is_refused(recon, tmp_path):
    """`convert-mat pix3d/model -o pix3d/model/out` wrote its .npy tree into the data set."""
    src = tmp_path / "model"
    (src / "chair").mkdir(parents=True)
    write_voxel_mat(src / "chair" / "a.mat", random_grid(8, 1), "5")
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    for out in (src / "out", src / "chair" / "npy"):
        for overwrite in ([], ["--overwrite"]):
            code, _, err = recon("convert-mat", src, "-o", out, "--resolution", "4", *overwrite)
            assert code == 2 and len(err.strip().splitlines()) == 1, err
            assert f"{out}: the output folder is, or is inside, the input folder {src}" in err
            assert sorted(p.relative_to(src) for p in src.rglob("*")) == before


def test_a_worker_that_dies_ends_the_conversion_with_one_line(tmp_path, monkeypatch):
    """A worker killed (the out-of-memory killer) used to leave the pool waiting forever."""
    import os

    from recon.pipelines.common.errors import JobFailed
    from recon.pipelines.occupancy import matfiles

    src = tmp_path / "model"
    src.mkdir()
    for index in range(6):
        write_voxel_mat(src / f"m{index}.mat", random_grid(8, index), "5")
    original = matfiles.convert_one

    def dies_on_m3(source, target, resolution):
        if source.endswith("m3.mat"):
            os._exit(9)
        return original(source, target, resolution)

    monkeypatch.setattr(matfiles, "convert_one", dies_on_m3)  # workers fork with it
    sources = sorted(src.iterdir())
    with pytest.raises(JobFailed, match="a worker process ended unexpectedly"):
        matfiles.convert_tree(sources, src, tmp_path / "npy", None, 2)


SLOW_CONVERT = """
import sys, time
from recon.pipelines.occupancy import matfiles
original = matfiles.convert_one
def slow(source, target, resolution):
    time.sleep(0.3)
    return original(source, target, resolution)
matfiles.convert_one = slow
from recon.cli.app import main
main(sys.argv[1:])
"""


def test_sigterm_stops_the_workers_and_leaves_nothing(tmp_path):
    """SIGTERM to the main process: exit 143, the workers stop, and no partial tree is left
    (a surviving worker would go on writing and recreate it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "model"
    src.mkdir()
    for index in range(40):
        write_voxel_mat(src / f"m{index:02d}.mat", random_grid(8, index), "5")
    out = tmp_path / "npy"
    args = [sys.executable, "-c", SLOW_CONVERT, "convert-mat", str(src), "-o", str(out)]
    process = subprocess.Popen(
        [*args, "--workers", "2", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".npy.*/*.npy")):  # conversion under way
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and err.decode() == "terminated\n"
    time.sleep(1.0)  # what a surviving worker would write in that time
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_subtree_converted_into_its_place_in_an_earlier_tree_is_accepted(recon, tmp_path):
    """`convert-mat model/cat0 -o npy/cat0` after `convert-mat model -o npy` was refused as an
    output inside another run ("its --overwrite would delete it"), but convert-mat's
    --overwrite writes into its folder and keeps what it does not write."""
    src = tmp_path / "model"
    for i in range(2):
        (src / f"cat{i}" / "m").mkdir(parents=True)
        write_voxel_mat(src / f"cat{i}" / "m" / "voxel.mat", random_grid(32, i), "5")
    npy = tmp_path / "npy"
    assert recon("convert-mat", src, "-o", npy, "-q")[0] == 0
    code, _, err = recon("convert-mat", src / "cat0", "-o", npy / "cat0", "--overwrite", "-q")
    assert code == 0, err
    assert np.array_equal(np.load(npy / "cat0" / "m" / "voxel.npy"), random_grid(32, 0))
    code, _, err = recon("convert-mat", src, "-o", npy, "--overwrite", "-q")  # keeps cat0's record
    assert code == 0 and (npy / "cat0" / "run.json").exists(), err
