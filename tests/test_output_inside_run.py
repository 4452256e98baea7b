"""An output inside the output folder of a recon run is refused (exit 2, one line, nothing
written): that run's --overwrite replaces its folder whole and would delete it without a word.
A training run's --overwrite deletes only its own entries, so a path beside them is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under folder (hidden ones too) with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def views(recon, tmp_path, shapes) -> Path:
    """tmp_path/phx: a `recon project` output folder (its run.json names `project`)."""
    code, _, err = recon(
        "project", shapes / "box.stl", "-o", tmp_path / "phx", "--size", "32", "-q"
    )
    assert code == 0, err
    return tmp_path / "phx"


def refused_inside(recon, views: Path, out: Path, *args) -> None:
    """recon ARGS is refused in one line naming out and the run in views; nothing written."""
    before = snapshot(views.parent)
    code, stdout, err = recon(*args)
    assert code == 2 and stdout == "", (code, err)
    assert err == (
        f"error: {out}: is part of the output of `recon project` in {views}; its --overwrite "
        "would delete it: choose another path\n"
    )
    assert snapshot(views.parent) == before, "something was written or changed"


def test_file_output_inside_another_commands_folder_is_refused(recon, views, tmp_path):
    """The reviewer's sequence: backproject into the views folder was accepted, and the next
    `project --overwrite` deleted mine.stl and mine.stl.run.json without a word."""
    mine = views / "mine.stl"
    refused_inside(recon, views, mine, "backproject", views, "-o", mine, "-q")
    spine, checkpoint = tmp_path / "spine.png", tmp_path / "corset.ckpt"
    spine.write_bytes(b"not read: refused before")
    checkpoint.write_bytes(b"not read: refused before")
    corset = ["predict", "corset", "--photos", views, "--spine", spine, "-c", checkpoint]
    refused_inside(recon, views, views / "c.stl", *corset, "-o", views / "c.stl")
    refused_inside(
        recon, views, views / "v", *corset, "-o", tmp_path / "c.stl", "--views-out", views / "v"
    )


def test_folder_output_inside_a_run_is_refused_in_every_mode(recon, views, shapes):
    """A batch run (--skip-done, --shard), a training run and a deeper path go the same way."""
    for args in ([], ["--skip-done"], ["--shard", "1/2"]):
        out = views / "more"
        refused_inside(recon, views, out, "synth", "meshes", "-o", out, *args)
    out = views / "a" / "b"
    refused_inside(recon, views, out, "project", shapes / "box.stl", "-o", out)
    refused_inside(recon, views, views / "run", "train", "voxel", "--out", views / "run")


def test_outputs_beside_a_training_runs_own_entries_are_accepted(recon, views, tmp_path):
    """`train --overwrite` clears only config.yaml, checkpoints/, metrics.csv ...: a prediction
    kept in the run folder stays, so it is accepted; one in checkpoints/ is not."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps({"command": "train voxel", "version": "0", "config": {}})
    )
    code, _, err = recon("backproject", views, "-o", run / "pred.stl", "-q")
    assert code == 0 and (run / "pred.stl").is_file(), err
    assert (run / "pred.stl.run.json").is_file()
    before = snapshot(tmp_path)
    code, _, err = recon("backproject", views, "-o", run / "checkpoints" / "p.stl", "-q")
    assert code == 2 and "is part of the output of `recon train voxel` in" in err, err
    assert snapshot(tmp_path) == before
    # the project run's own folder is still replaced by its --overwrite
    code, _, err = recon(
        "project", run / "pred.stl", "-o", views, "--size", "32", "--overwrite", "-q"
    )
    assert code == 0 and json.loads((views / "run.json").read_text())["command"] == "project"


def test_another_tools_run_json_above_is_no_recon_run(recon, tmp_path, shapes):
    """Outputs are refused inside a recon run's folder, found by its run.json in every folder
    above them: a run.json of another tool (Sacred's names a command too) does not count."""
    project = tmp_path / "experiments"
    project.mkdir()
    (project / "run.json").write_text(json.dumps({"command": "my_main", "status": "COMPLETED"}))
    code, _, err = recon("project", shapes / "box.stl", "-o", project / "v", "--size", "32", "-q")
    assert code == 0, err


def test_a_default_run_folder_inside_a_run_is_refused(recon, views, pix3d, monkeypatch):
    """`recon train` without --out makes runs/TASK-TIME in the working folder: started inside a
    `project` output, the run landed in it, where the project run's --overwrite deletes it."""
    monkeypatch.chdir(views)
    before = snapshot(views.parent)
    code, _, err = recon("train", "voxel", "--data", pix3d, "--device", "cpu", "--epochs", "1")
    assert code == 2, err
    assert err.startswith(f"error: {views}/runs/voxel-") and err.count("\n") == 1, err
    assert f"is part of the output of `recon project` in {views}; its --overwrite" in err
    assert snapshot(views.parent) == before


def test_a_serve_data_folder_inside_a_run_is_refused(recon, views, tmp_path):
    """The server keeps its jobs in --data across restarts: inside a `project` output, that
    run's --overwrite deleted them."""
    before = snapshot(views.parent)
    code, _, err = recon("serve", "-c", f"voxel={tmp_path / 'v.ckpt'}", "--store", views / "jobs")
    assert code == 2, err
    assert err == (
        f"error: {views / 'jobs'}: is part of the output of `recon project` in {views}; its "
        "--overwrite would delete it: choose another path\n"
    )
    assert snapshot(views.parent) == before
