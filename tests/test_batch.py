"""Batch jobs: shards cover the inputs with no overlap and no gap; --skip-done resumes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.batch import Shard, parse_shard, shard_from_slurm
from recon.pipelines.common.errors import BadInput


@pytest.mark.parametrize(("total", "count"), [(9, 3), (10, 3), (2, 3), (1000, 7)])
def test_shards_cover_every_index_once(total, count):
    blocks = [list(Shard(k, count).indices(total)) for k in range(1, count + 1)]
    flat = [i for block in blocks for i in block]
    assert flat == list(range(total))  # no gap, no overlap, in order
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_shard_flag_and_slurm_array_variables():
    assert parse_shard("2/3", env={}) == Shard(2, 3)
    assert parse_shard(None, env={}) == Shard(1, 1)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(BadInput, match="--shard"):
            parse_shard(bad, env={})
    array = {
        "SLURM_ARRAY_TASK_COUNT": "3",
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_MAX": "2",
    }
    assert [shard_from_slurm({**array, "SLURM_ARRAY_TASK_ID": str(i)}) for i in range(3)] == [
        Shard(1, 3),
        Shard(2, 3),
        Shard(3, 3),
    ]
    from_one = {**array, "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3"}
    assert shard_from_slurm({**from_one, "SLURM_ARRAY_TASK_ID": "1"}) == Shard(1, 3)
    stepped = {**array, "SLURM_ARRAY_TASK_MAX": "4", "SLURM_ARRAY_TASK_STEP": "2"}
    assert shard_from_slurm({**stepped, "SLURM_ARRAY_TASK_ID": "4"}) == Shard(3, 3)
    assert parse_shard(None, env={**array, "SLURM_ARRAY_TASK_ID": "1"}) == Shard(2, 3)
    assert parse_shard("1/1", env={**array, "SLURM_ARRAY_TASK_ID": "1"}) == Shard(1, 1)
    listed = {**array, "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_ID": "7"}  # --array=0,3,7
    with pytest.raises(BadInput, match="pass --shard"):
        shard_from_slurm(listed)
    assert shard_from_slurm({}) is None
    # older SLURM sets no _COUNT: it follows from _MIN, _MAX and _STEP; an id alone is refused
    # (it ran the whole set in every array task)
    uncounted = {k: v for k, v in stepped.items() if k != "SLURM_ARRAY_TASK_COUNT"}
    assert shard_from_slurm({**uncounted, "SLURM_ARRAY_TASK_ID": "2"}) == Shard(2, 3)
    with pytest.raises(BadInput, match=r"number of shards is unknown; pass --shard K/N"):
        parse_shard(None, env={"SLURM_ARRAY_TASK_ID": "5"})
    assert parse_shard("2/4", env={"SLURM_ARRAY_TASK_ID": "5"}) == Shard(2, 4)


@pytest.fixture(scope="module")
def voxel_model(tmp_path_factory):
    """A tiny voxel checkpoint and 9 input images."""
    from cli_runs import run_ok

    from recon.pipelines.occupancy.pix3d import synth_pix3d

    root = tmp_path_factory.mktemp("batch")
    synth_pix3d(root / "p3", models_per_class=1, views_per_model=2, seed=2)
    args = ["train", "voxel", "--data", root / "p3", "--epochs", "1", "--batch-size", "4"]
    args += ["--set", "size=32", "--set", "hidden=32", "--device", "cpu", "-q", "-o", root / "run"]
    run_ok(*args)
    images = sorted((root / "p3" / "img").rglob("*.png"))[:9]
    assert len(images) == 9
    return root / "run" / "checkpoints" / "best.ckpt", images


def outputs(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith("run")
    }


def test_three_shards_make_the_whole_run(voxel_model, recon, tmp_path):
    checkpoint, images = voxel_model
    predict = ["predict", "voxel", *images, "-c", checkpoint, "--device", "cpu", "-q"]
    assert recon(*predict, "-o", tmp_path / "whole")[0] == 0
    shared = tmp_path / "shards"
    for k in (1, 2, 3):
        code, _, err = recon(*predict, "-o", shared, "--shard", f"{k}/3")
        assert code == 0, err
    assert outputs(shared) == outputs(tmp_path / "whole")  # union: the same files, same bytes
    records = [json.loads((shared / f"run.shard-{k}-of-3.json").read_text()) for k in (1, 2, 3)]
    seen = [r["image"] for record in records for r in record["metrics"]["results"]]
    assert sorted(seen) == sorted(map(str, images)) and len(seen) == len(set(seen)) == 9

    # a rerun of a shard without --skip-done is refused before anything is written
    code, _, err = recon(*predict, "-o", shared, "--shard", "2/3")
    assert code == 2 and "--skip-done" in err


def test_skip_done_redoes_only_the_missing_output(voxel_model, recon, tmp_path, monkeypatch):
    checkpoint, images = voxel_model
    predict = ["predict", "voxel", *images, "-c", checkpoint, "--device", "cpu", "-q", "--json"]
    out = tmp_path / "out"
    # shard 2 of 3 from a SLURM array counted from 1 (--array=1-3, this task's id is 2)
    array = {"ARRAY_TASK_ID": "2", "ARRAY_TASK_MIN": "1", "ARRAY_TASK_MAX": "3"}
    for key, value in {**array, "ARRAY_TASK_COUNT": "3"}.items():
        monkeypatch.setenv(f"SLURM_{key}", value)
    code, stdout, err = recon(*predict, "-o", out)
    assert code == 0, err
    first = json.loads(stdout)
    assert first["shard"] == "2/3" and first["done"] == 3
    assert [r["image"] for r in first["results"]] == [str(p) for p in images[3:6]]
    mine = [Path(r["grid"]).stem for r in first["results"]]

    # pre-empted: one input's grid is gone; the rerun redoes that input alone
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / f"{mine[1]}.npy").unlink()
    code, stdout, err = recon(*predict, "-o", out, "--skip-done")
    assert code == 0, err
    second = json.loads(stdout)
    assert (second["done"], second["skipped"]) == (1, 2)
    made = [Path(r["grid"]).stem for r in second["results"] if not r.get("skipped")]
    assert made == [mine[1]] and [Path(r["grid"]).stem for r in second["results"]] == mine
    assert np.load(out / f"{mine[1]}.npy").shape == (32, 32, 32)
    for name, stamp in stamps.items():
        if not name.startswith((mine[1], "run")):
            assert (out / name).stat().st_mtime_ns == stamp, name


def test_predict_voxel_keeps_one_input_at_a_time(voxel_model, tmp_path, monkeypatch):
    """Every image's input tensor (0.6 MB at 224 px) was made before the first prediction and
    kept to the end: memory grew with the number of images. Each is now made when predicted,
    after every image was checked."""
    import gc
    import weakref

    import recon.pipelines.occupancy.predict as predict
    from recon.pipelines.occupancy.voxel_task import build_net, voxel_input

    checkpoint, images = voxel_model
    made, alive = [], []

    def watched(path, config, box):
        result = voxel_input(path, config, box)
        gc.collect()
        alive.append(sum(ref() is not None for ref in made))
        made.append(weakref.ref(result[0]))
        return result

    from recon.pipelines.occupancy.voxel_task import PREDICTION_SETTINGS, VoxelConfig

    functions = (build_net, watched, VoxelConfig, PREDICTION_SETTINGS)
    monkeypatch.setattr(predict, "task_functions", lambda task: functions)
    names = [f"i{k}" for k in range(len(images))]
    records = predict.predict_images("voxel", checkpoint, images, names, tmp_path, device="cpu")
    assert len(records) == len(images) and len(made) == 2 * len(images)  # checked, predicted
    assert max(alive) <= 1, alive


def test_synth_meshes_shards(recon, tmp_path):
    shapes = "sphere,box,capsule"
    assert recon("synth", "meshes", "-o", tmp_path / "whole", "--shapes", shapes, "-q")[0] == 0
    for k in (1, 2):
        args = ["synth", "meshes", "-o", tmp_path / "parts", "--shapes", shapes, "-q"]
        assert recon(*args, "--shard", f"{k}/2")[0] == 0
    assert outputs(tmp_path / "parts") == outputs(tmp_path / "whole")


def test_synth_meshes_skip_done_reports_the_shapes_kept(recon, tmp_path, monkeypatch):
    """With every shape already made, --skip-done printed an empty table; it now shows the row
    `skipped (done) N`, as the other --skip-done commands do."""
    monkeypatch.setenv("COLUMNS", "120")
    args = ["synth", "meshes", "-o", tmp_path / "m", "--shapes"]
    assert recon(*args, "sphere,box", "-q")[0] == 0
    code, stdout, err = recon(*args, "sphere,box", "--skip-done")
    assert code == 0, err
    assert re.search(r"skipped \(done\)\W+2\b", stdout), stdout
    code, stdout, err = recon(*args, "sphere,box,torus", "--skip-done")
    assert code == 0, err
    assert re.search(r"torus\W+\d+", stdout) and re.search(r"skipped \(done\)\W+2\b", stdout)


def test_predict_drr_shards_and_skip_done(recon, tmp_path):
    """3 shards over 9 X-rays == the unsharded run; --skip-done redoes a deleted output only."""
    from test_drr_batch import tiny_drr_model

    checkpoint = tiny_drr_model(tmp_path, pairs=9)
    xrays = sorted((tmp_path / "set" / "xray").glob("*.png"))
    predict = ["predict", "drr", *xrays, "-c", checkpoint, "-q"]
    predict += ["--device", "cpu"]
    assert recon(*predict, "-o", tmp_path / "whole")[0] == 0
    for k in (1, 2, 3):
        code, _, err = recon(*predict, "-o", tmp_path / "shards", "--shard", f"{k}/3")
        assert code == 0, err
    assert outputs(tmp_path / "shards") == outputs(tmp_path / "whole")
    (tmp_path / "shards" / "x4.png").unlink()  # x4 is in shard 2 (x3, x4, x5)
    code, stdout, err = recon(
        *predict, "-o", tmp_path / "shards", "--shard", "2/3", "--skip-done", "--json"
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["outputs"] == [str(tmp_path / "shards" / f"x{i}.png") for i in (3, 4, 5)]
    assert result["skipped_inputs"] == [str(xrays[3]), str(xrays[5])] and result["skipped"] == 2
    assert outputs(tmp_path / "shards") == outputs(tmp_path / "whole")


def test_register_shards_and_skip_done(recon, tmp_path):
    """Two shards over three X-rays register each once, each shard writes its own results; with
    one output deleted, --skip-done registers only that X-ray again."""
    xrays = tmp_path / "xrays"
    code, _, err = recon(
        "synth", "xray", "-o", xrays, "--count", "3", "--size", "48", "--seed", "4",
        "--device", "cpu", "-q",
    )  # fmt: skip
    assert code == 0, err
    out = tmp_path / "reg"
    fast = ["--heights", "32", "--iterations", "3", "--patience", "2", "--ct-spacing", "6",
            "--min-similarity", "0", "--mirror-check-below", "0", "--threads", "1",
            "--device", "cpu", "--json", "-q"]  # fmt: skip
    rows = {}
    for shard in ("1/2", "2/2"):
        code, stdout, err = recon("register", xrays, "-o", out, "--shard", shard, *fast)
        assert code == 0, err
        rows.update({row["name"]: row for row in json.loads(stdout)["results"]})
    assert sorted(rows) == ["xray_000", "xray_001", "xray_002"]
    row = json.loads((out / "xray_001" / "result.json").read_text())
    assert row.pop("settings")["ct_spacing_mm"] == 6.0  # what --skip-done compares it on
    assert row == rows["xray_001"]
    assert (out / "results.shard-1-of-2.json").is_file()
    assert (out / "results.shard-2-of-2.json").is_file()
    (out / "xray_002" / "overlay.png").unlink()
    kept = (out / "xray_001" / "parameters.pt").stat().st_mtime_ns
    code, stdout, err = recon("register", xrays, "-o", out, "--shard", "2/2", "--skip-done", *fast)
    assert code == 0, err
    document = json.loads(stdout)
    # the resumed shard's results cover its whole list: the kept X-ray's row from its folder
    assert [row["name"] for row in document["results"]] == ["xray_001", "xray_002"]
    assert document["results"][0] == {**rows["xray_001"], "from_earlier_run": True}
    assert "from_earlier_run" not in document["results"][1]
    assert document["summary"]["count"] == 2
    assert json.loads((out / "results.shard-2-of-2.json").read_text()) == document
    assert document["skipped_inputs"] == [str(xrays / "xray_001.dcm")] and document["skipped"] == 1
    assert (out / "xray_002" / "overlay.png").is_file()
    assert (out / "xray_001" / "parameters.pt").stat().st_mtime_ns == kept
    # an X-ray changed since its outputs were made (they are a minute older) is registered again
    for made in (out / "xray_001").iterdir():
        stamp = made.stat().st_mtime_ns - 60 * 10**9
        os.utime(made, ns=(stamp, stamp))
    code, stdout, err = recon("register", xrays, "-o", out, "--shard", "2/2", "--skip-done", *fast)
    assert code == 0, err
    document = json.loads(stdout)
    assert (document["changed"], document["skipped"]) == (1, 1)
    assert document["skipped_inputs"] == [str(xrays / "xray_002.dcm")]
    assert (out / "xray_001" / "parameters.pt").stat().st_mtime_ns > kept
    # a kept X-ray whose row cannot be read: one line, before any work
    (out / "xray_001" / "result.json").write_text("{broken")
    (out / "xray_002" / "overlay.png").unlink()
    code, _, err = recon("register", xrays, "-o", out, "--shard", "2/2", "--skip-done", *fast)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "xray_001/result.json: not a readable results row" in err
    assert not (out / "xray_002" / "overlay.png").exists()


def test_a_changed_checkpoint_is_named_as_changed(tmp_path, monkeypatch):
    """Every predict command's --skip-done check: the same checkpoint file with other contents
    was called "another file than c.ckpt"; another file is still named as one."""
    from recon.pipelines.common.batch import check_same_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.ckpt").write_bytes(b"new contents")
    (tmp_path / "other.ckpt").write_bytes(b"another model")
    out = tmp_path / "out"
    out.mkdir()
    config = {"checkpoint": "c.ckpt", "checkpoint_sha256": "0" * 64}
    (out / "run.json").write_text(
        json.dumps({"command": "predict drr", "version": "0", "config": config})
    )
    with pytest.raises(BadInput, match=r"c\.ckpt has changed since its outputs were made \(run"):
        check_same_checkpoint(out, "predict drr", "1" * 64, Path("c.ckpt"))
    with pytest.raises(BadInput, match="has changed since"):  # the same file by its full path
        check_same_checkpoint(out, "predict drr", "1" * 64, tmp_path / "c.ckpt")
    with pytest.raises(BadInput, match=r"from checkpoint c\.ckpt \(run\.json\), another file than"):
        check_same_checkpoint(out, "predict drr", "1" * 64, Path("other.ckpt"))
    check_same_checkpoint(out, "predict drr", "0" * 64, Path("other.ckpt"))  # same digest


def test_skip_done_and_shards_refuse_a_folder_of_the_users_files(recon, tmp_path):
    """`-o . --skip-done` in a folder of one's own files wrote a run.json among them; a later
    `--overwrite` then took the folder for an earlier output and replaced it whole (the files
    were gone). A folder that holds an output this batch names (a shard beside this one has
    begun) is still shared."""
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    for flags in (["--skip-done"], ["--shard", "1/2"]):
        code, _, err = recon("synth", "meshes", "-o", mine, "--shapes", "box", *flags, "-q")
        assert code == 2, err
        assert "holds files no recon command wrote (notes.txt, sub/)" in err
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "sub"]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "box.stl").write_bytes(b"begun by another shard")
    code, _, err = recon("synth", "meshes", "-o", shared, "--shapes", "box,torus", "--shard", "2/2")
    assert code == 0, err
    assert (shared / "torus.stl").is_file()


def test_an_input_dated_in_the_future_is_made_again_with_a_warning(tmp_path, capsys):
    """make's rule remakes an input newer than its outputs; one dated past the clock (a file
    server's clock ahead) stays newer on every run, so the plan says so once, in one line."""
    from recon.pipelines.common.batch import Shard, plan_batch

    source, made = tmp_path / "a.png", tmp_path / "a.json"
    source.write_bytes(b"x")
    made.write_text("{}")
    ahead = made.stat().st_mtime + 3 * 3600
    os.utime(source, (ahead, ahead))

    def plan():
        return plan_batch(1, lambda i: [made], Shard(1, 1), True, False, sources=lambda i: [source])

    assert plan().changed == [0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.png is dated 3.0 h in the future (clock skew?)" in err
    now = made.stat().st_mtime - 60  # an input older than its output: kept, nothing said
    os.utime(source, (now, now))
    assert plan().done == [0] and capsys.readouterr().err == ""
