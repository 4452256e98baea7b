"""Every command that writes files records its run: OUT/run.json in an output folder, OUT.run.json
beside a single output file (command, version, seed, config, timings, and as metrics what its
--json result reports). The record is an output like the others: while it alone is left, a rerun
without --overwrite is refused with one line and writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest


def sphere(work: Path) -> Path:
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.shapes.meshes import make_shape

    save_mesh(make_shape("sphere"), work / "sphere.stl")
    return work / "sphere.stl"


def voxel_mat(work: Path) -> Path:
    from recon.pipelines.occupancy.matfiles import write_voxel_mat

    grid = np.zeros((8, 8, 8), np.uint8)
    grid[2:5, 3:7, 1:4] = 1
    (work / "mats").mkdir()
    write_voxel_mat(work / "mats" / "a.mat", grid, "5")
    return work / "mats" / "a.mat"


def small_ct(work: Path) -> Path:
    """A 16^3 CT in HU (a bone cube in soft tissue), 4 mm voxels: renders in well under 1 s."""
    import nibabel as nib

    hu = np.full((16, 16, 16), 40.0, np.float32)
    hu[5:11, 6:10, 4:12] = 900.0
    nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), work / "ct.nii.gz")
    return work / "ct.nii.gz"


FOLDER_COMMANDS = {  # command -> its arguments (given a work folder) before -o OUT
    "synth meshes": lambda work: ["synth", "meshes", "--shapes", "sphere"],
    "synth pix3d": lambda work: ["synth", "pix3d", "-n", "1", "--views", "1"],
    "synth parts": lambda work: ["synth", "parts", "-n", "1", "--views", "1", "--size", "32"],
    "synth corset": lambda work: ["synth", "corset", "-n", "1", "--size", "64"],
    "project": lambda work: ["project", sphere(work), "--views", "2", "--size", "16"],
    "convert-mat": lambda work: ["convert-mat", voxel_mat(work).parent],
}
DRR = ["--rot", "0", "0", "0", "--xyz", "0", "300", "0", "--sdd", "600", "--size", "8"]
FILE_COMMANDS = {  # command -> (its arguments before -o OUT, OUT's name)
    "convert-mat": (lambda work: ["convert-mat", voxel_mat(work)], "a.npy"),
    "make-drr": (
        lambda work: ["make-drr", "-v", small_ct(work), *DRR, "--delx", "8", "--device", "cpu"],
        "d.png",
    ),
}


def check_record(path: Path, command: str, result: dict) -> dict:
    """path holds a run record of command whose metrics agree with the --json result."""
    from recon import __version__

    record = json.loads(path.read_text())
    assert record["command"] == command and record["version"] == __version__
    assert isinstance(record["config"], dict) and record["config"]
    assert record["timings_s"] and all(t >= 0 for t in record["timings_s"].values())
    shared = record["metrics"].keys() & result.keys()
    assert shared, (record["metrics"], result)
    assert {k: record["metrics"][k] for k in shared} == {k: result[k] for k in shared}
    return record


def refused(recon, *args) -> str:
    """recon ARGS exits 2 with one error line; the line."""
    code, stdout, err = recon(*args)
    assert code == 2 and stdout == "", err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_output_folder_holds_run_json(recon, tmp_path, command):
    args = FOLDER_COMMANDS[command](tmp_path)
    out = tmp_path / "out"
    code, stdout, err = recon(*args, "-o", out, "--json", "-q")
    assert code == 0, err
    check_record(out / "run.json", command, json.loads(stdout))

    for path in out.iterdir():  # only the record is left
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != "run.json":
            path.unlink()
    record = (out / "run.json").read_bytes()
    refused(recon, *args, "-o", out)
    assert [p.name for p in out.iterdir()] == ["run.json"]
    assert (out / "run.json").read_bytes() == record


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_single_output_file_has_its_record_beside_it(recon, tmp_path, command):
    make_args, name = FILE_COMMANDS[command]
    args = make_args(tmp_path)
    out = tmp_path / name
    sidecar = tmp_path / f"{out.name}.run.json"
    code, stdout, err = recon(*args, "-o", out, "--json", "-q")
    assert code == 0, err
    check_record(sidecar, command, json.loads(stdout))

    record = sidecar.read_bytes()
    assert f"{out}: already exists" in refused(recon, *args, "-o", out)
    assert sidecar.read_bytes() == record
    out.unlink()  # a record left without its output does not block the rerun
    sidecar.write_text("{}")
    code, stdout, err = recon(*args, "-o", out, "--json", "-q")
    assert code == 0 and out.is_file(), err
    check_record(sidecar, command, json.loads(stdout))  # replaced by the new run's record


def test_predict_corset_refuses_an_existing_output_and_record_before_any_work(recon, tmp_path):
    """Checked before the inputs are read, so these stand-ins are never opened."""
    photos, spine, checkpoint = tmp_path / "photos", tmp_path / "spine.png", tmp_path / "m.ckpt"
    photos.mkdir()
    spine.write_bytes(b"x")
    checkpoint.write_bytes(b"x")
    (tmp_path / "c.stl").write_text("mesh")
    (tmp_path / "c.stl.run.json").write_text("{}")
    args = ["predict", "corset", "--photos", photos, "--spine", spine, "-c", checkpoint]
    err = refused(recon, *args, "-o", tmp_path / "c.stl")
    assert f"{tmp_path / 'c.stl'}: already exists" in err
    assert (tmp_path / "c.stl.run.json").read_text() == "{}"


def test_two_outputs_of_one_stem_keep_a_record_each(recon, tmp_path):
    """d.png and d.dcm side by side: d.png.run.json and d.dcm.run.json."""
    make_args, _ = FILE_COMMANDS["make-drr"]
    args = make_args(tmp_path)
    for name in ("d.png", "d.dcm"):
        code, _, err = recon(*args, "-o", tmp_path / name, "-q")
        assert code == 0, err
    records = [json.loads((tmp_path / f"{n}.run.json").read_text()) for n in ("d.png", "d.dcm")]
    assert [r["config"]["format"] for r in records] == ["png", "dcm"]


def test_shards_and_skip_done_write_their_own_records(recon, tmp_path):
    """A shard writes run.shard-K-of-N.json, not run.json; --skip-done over a whole run's folder
    keeps its items and records itself in run.json."""
    meshes = ["synth", "meshes", "--shapes", "sphere,box", "-q"]
    shared = tmp_path / "shared"
    assert recon(*meshes, "-o", shared, "--shard", "2/2")[0] == 0
    assert sorted(p.name for p in shared.iterdir()) == ["box.stl", "run.shard-2-of-2.json"]

    whole = tmp_path / "whole"
    assert recon(*meshes, "-o", whole)[0] == 0
    stamp = (whole / "box.stl").stat().st_mtime_ns
    code, stdout, err = recon(*meshes, "-o", whole, "--skip-done", "--json")
    assert code == 0, err
    assert json.loads(stdout)["skipped"] == 2 and (whole / "box.stl").stat().st_mtime_ns == stamp
    assert json.loads((whole / "run.json").read_text())["metrics"]["skipped_inputs"] == [
        "sphere",
        "box",
    ]
