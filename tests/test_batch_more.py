"""Batch jobs for `synth xray`, `synth skull` and `predict skull`: 3 shards write the files of
one run (same names, same bytes; DICOMs the same pixels and geometry, as their header carries
fresh UIDs and the date), the index files appear when the set is finished, and --skip-done after
an item's output was deleted redoes that item only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def files(folder: Path) -> dict[str, Path]:
    """Every file directly in folder by name, without the runs' results files."""
    return {p.name: p for p in sorted(folder.iterdir()) if not p.name.startswith("run.")}


def assert_same_sets(whole: Path, sharded: Path) -> None:
    """Same files; same bytes, except DICOMs, which must hold the same pixels and geometry."""
    import pydicom

    a, b = files(whole), files(sharded)
    assert a.keys() == b.keys()
    for name, path in a.items():
        if name.endswith(".dcm"):
            x, y = pydicom.dcmread(path), pydicom.dcmread(b[name])
            assert np.array_equal(x.pixel_array, y.pixel_array), name
            for tag in ("PixelSpacing", "DistanceSourceToDetector", "PatientOrientation"):
                assert x.get(tag) == y.get(tag), (name, tag)
        else:
            assert path.read_bytes() == b[name].read_bytes(), name


def run(recon, *args) -> dict:
    code, stdout, err = recon(*args, "--json", "-q")
    assert code == 0, err
    return json.loads(stdout)


def shards(recon, args: list, out: Path, count: int = 3) -> list[dict]:
    return [run(recon, *args, "-o", out, "--shard", f"{k}/{count}") for k in range(1, count + 1)]


def test_synth_xray_shards_equal_one_run_and_skip_done_redoes_one(tmp_path, recon):
    from recon.pipelines.xray.synth_xray import read_truth

    args = ["synth", "xray", "-n", "6", "--size", "32", "--seed", "3"]
    whole = run(recon, *args, "-o", tmp_path / "whole")
    assert whole["done"] == 6 and whole["index"] == str(tmp_path / "whole" / "truth.json")
    out = tmp_path / "sharded"
    results = shards(recon, args, out)
    assert [r["done"] for r in results] == [2, 2, 2]
    assert [r["index"] is None for r in results] == [True, True, False]
    assert_same_sets(tmp_path / "whole", out)
    truth = read_truth(out / "truth.json")
    assert sorted(truth) == [f"xray_{i:03d}.dcm" for i in range(6)]
    # the six poses differ: every X-ray has its own draw
    assert len({tuple(p.flatten().tolist()) for p in truth.values()}) == 6

    before = (out / "xray_001.dcm").stat().st_mtime_ns
    (out / "xray_003.dcm").unlink()
    (out / "truth.json").unlink()
    again = run(recon, *args, "-o", out, "--shard", "2/3", "--skip-done")
    assert again["done"] == 1 and again["skipped"] == 1
    assert (out / "xray_001.dcm").stat().st_mtime_ns == before
    assert_same_sets(tmp_path / "whole", out)
    # another setting is named by the flag the user types, not the record's key ("height")
    for flag, value, shown in (
        ("--size", "24", "--size 24"),
        ("--rot-range", "3", "--rot-range 3.0"),
    ):
        changed = [*args, flag, value]
        code, _, err = recon(*changed, "-o", out, "--skip-done", "-q")
        assert code == 2 and f"made with other settings ({shown} here, " in err, err


def test_synth_xray_unfinished_set_says_truth_is_not_written(tmp_path, recon):
    out = tmp_path / "part"
    result = run(recon, "synth", "xray", "-n", "3", "--size", "16", "-o", out, "--shard", "1/3")
    assert result["index"] is None and result["missing_items"] == 2
    assert not (out / "truth.json").exists()
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.synth_xray import read_truth

    with pytest.raises(BadInput, match="not written yet"):
        read_truth(out / "truth.json")


def test_synth_skull_shards_equal_one_run_and_skip_done_redoes_one(tmp_path, recon):
    args = ["synth", "skull", "-n", "6", "--resolution", "16", "--seed", "5"]
    whole = run(recon, *args, "-o", tmp_path / "whole")
    assert whole["done"] == 6 and whole["index"] == str(tmp_path / "whole" / "dataset.json")
    out = tmp_path / "sharded"
    results = shards(recon, args, out)
    assert [r["done"] for r in results] == [2, 2, 2]
    assert_same_sets(tmp_path / "whole", out)
    truth = json.loads((out / "truth.json").read_text())
    assert sorted(truth["subjects"]) == [f"skull_{i:03d}" for i in range(6)]

    (out / "skull_004_vox.npz").unlink()
    (out / "dataset.json").unlink()
    code, stdout, _ = recon("check-data", "skull", out, "--json")
    assert code == 1 and "unfinished-set" in stdout
    # train took it without a word: no voxel size, so its meshes came out in voxels, not mm
    code, _, err = recon("train", "skull", "--data", out, "-o", tmp_path / "run", "-q")
    assert code == 2 and "dataset.json: not written yet" in err and "--skip-done" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    again = run(recon, *args, "-o", out, "--shard", "3/3", "--skip-done")
    assert again["done"] == 1 and again["skipped"] == 1
    assert_same_sets(tmp_path / "whole", out)
    code, _, err = recon("check-data", "skull", out)
    assert code == 0, err


def _checkpoint(path: Path) -> Path:
    """A skull checkpoint (untrained net at 16^3, its output a fixed prior)."""
    import torch

    from recon.pipelines.common.engine import config_dict
    from recon.pipelines.skull.task import SkullConfig, build_net

    config = config_dict(SkullConfig(resolution=16, size=32, channels=8, voxel_mm=15.0))
    net = build_net(config)
    radius = np.linalg.norm(np.indices((16, 16, 16)) - 7.5, axis=0)
    ball = torch.as_tensor(np.where(radius < 6, 4.0, -4.0), dtype=torch.float32)
    shell = torch.as_tensor(np.where(np.abs(radius - 4.5) < 1, 4.0, -4.0), dtype=torch.float32)
    net.set_output_prior(shell, ball)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"task": "skull", "config": config}}, path)
    return path


def test_predict_skull_shards_equal_one_run_and_skip_done_redoes_one(tmp_path, recon):
    heads = tmp_path / "heads"
    run(recon, "synth", "skull", "-n", "6", "--resolution", "16", "-o", heads)
    checkpoint = _checkpoint(tmp_path / "skull.ckpt")
    args = ["predict", "skull", heads, "-c", checkpoint, "--render"]
    whole = run(recon, *args, "-o", tmp_path / "whole")
    assert len(whole["results"]) == 6
    out = tmp_path / "sharded"
    results = shards(recon, args, out)
    assert [len(r["results"]) for r in results] == [2, 2, 2]
    assert sorted(p.name for p in out.glob("run.*")) == [
        f"run.shard-{k}-of-3.json" for k in (1, 2, 3)
    ]
    assert_same_sets(tmp_path / "whole", out)
    assert len(files(out)) == 6 * 4

    (out / "skull_002_face.ply").unlink()
    (out / "skull_002_vox.npz").unlink()  # written last: its absence marks the image unfinished
    (out / "skull_005_render.png").unlink()  # a face mesh without its picture is unfinished too
    kept = (out / "skull_003_vox.npz").stat().st_mtime_ns
    again = run(recon, *args, "-o", out, "--shard", "2/3", "--skip-done")
    assert again["done"] == 1 and again["skipped"] == 1
    assert again["results"][0]["image"] == str(heads / "skull_002.png")
    last = run(recon, *args, "-o", out, "--shard", "3/3", "--skip-done")
    assert last["done"] == 1 and last["skipped"] == 1
    assert (out / "skull_003_vox.npz").stat().st_mtime_ns == kept
    assert_same_sets(tmp_path / "whole", out)


def test_predict_skull_batch_refuses_existing_outputs_without_skip_done(tmp_path, recon):
    heads = tmp_path / "heads"
    run(recon, "synth", "skull", "-n", "2", "--resolution", "8", "-o", heads)
    checkpoint = _checkpoint(tmp_path / "skull.ckpt")
    out = tmp_path / "out"
    run(recon, "predict", "skull", heads, "-c", checkpoint, "-o", out, "--shard", "1/2")
    code, _, err = recon("predict", "skull", heads, "-c", checkpoint, "-o", out, "--shard", "1/2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "already exists" in err, err


def test_a_shard_made_another_way_is_refused(tmp_path, recon):
    """Shard 2/3 with another --seed (or --resolution, or count) was added to shard 1/3's
    folder with exit 0: the set mixed two draws (or grids), its index was never written and
    --skip-done, as check-data advised, then refused the folder."""
    out = tmp_path / "heads"

    def args(count="3", resolution="8", *more):
        return ["synth", "skull", "-n", count, "--resolution", resolution, "-o", out, *more]

    run(recon, *args(), "--shard", "1/3")
    for changed, named in (
        (args("3", "8", "--seed", "5"), "made with other settings (--seed 5 here, 0 in run."),
        (args("3", "16"), "made with other settings (--resolution 16 here, 8 in run."),
        (args("4"), "its shards must all ask for 3"),
    ):
        before = sorted(p.name for p in out.iterdir())
        code, _, err = recon(*changed, "--shard", "2/3", "-q")
        assert code == 2 and named in err and err.count("\n") == 1, err
        assert sorted(p.name for p in out.iterdir()) == before
    for k in (2, 3):
        run(recon, *args(), "--shard", f"{k}/3")
    assert (out / "dataset.json").is_file()


def test_predict_skull_skip_done_records_every_head(tmp_path, recon):
    """A --skip-done rerun with nothing left to do recorded `results: []`, printed an empty
    table, and took another --render as the same settings."""
    import re

    heads = tmp_path / "heads"
    run(recon, "synth", "skull", "-n", "2", "--resolution", "8", "-o", heads)
    checkpoint = _checkpoint(tmp_path / "skull.ckpt")
    out = tmp_path / "out"
    args = ["predict", "skull", heads, "-c", checkpoint, "-o", out, "--render", "--skip-done"]
    first = run(recon, *args)["results"]
    code, table, err = recon(*args)
    assert code == 0, err
    assert re.search(r"skipped \(done\)\W+2\b", table), table
    recorded = json.loads((out / "run.json").read_text())["metrics"]["results"]
    assert recorded == [{**result, "skipped": True} for result in first]
    code, _, err = recon(*[a for a in args if a != "--render"], "-q")
    assert code == 2 and "(--render false here, true in run.json)" in err, err
    assert err.count("\n") == 1
