"""Batch jobs for the occupancy and corset pipelines: `synth pix3d|parts|corset` in shards equal
one run (same files, same index) and --skip-done redoes only what is missing; the sharded sets
train and pass check-data; `predict voxel|parts` take folders and never let outputs collide or
land among their inputs; the renamed flags and their ranges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.io import write_png


def files(folder: Path) -> dict[str, Path]:
    """Every file under folder by relative path, without the shards' results files and the
    training cache (.cache/)."""
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("run.") and ".cache" not in p.parts
    }


def assert_same_sets(whole: Path, sharded: Path) -> None:
    """Same files; same bytes, except .mat voxel files (their header holds the time of writing),
    which must hold the same grid."""
    from recon.pipelines.occupancy.matfiles import read_voxel_mat

    a, b = files(whole), files(sharded)
    assert a.keys() == b.keys()
    for name, path in a.items():
        if name.endswith(".mat"):
            assert np.array_equal(read_voxel_mat(path), read_voxel_mat(b[name])), name
        else:
            assert path.read_bytes() == b[name].read_bytes(), name


def run_shards(recon, args: list, out: Path, count: int = 3) -> list[dict]:
    results = []
    for k in range(1, count + 1):
        code, stdout, err = recon(*args, "-o", out, "--shard", f"{k}/{count}", "--json", "-q")
        assert code == 0, err
        results.append(json.loads(stdout))
    return results


def refused(recon, out: Path, *args) -> str:
    """The command exits 2 with one line on stderr and writes nothing at out."""
    code, _, err = recon(*args)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, err
    assert not Path(out).exists()
    return lines[0]


def mtimes(folder: Path) -> dict[str, int]:
    return {name: path.stat().st_mtime_ns for name, path in files(folder).items()}


# ---------------------------------------------------------------- synth pix3d

PIX3D = ["synth", "pix3d", "-n", "2", "--views", "2", "--seed", "4"]


@pytest.fixture(scope="module")
def pix3d_sets(tmp_path_factory):
    """The same 10-model set made by one run and by 3 shards into a shared folder."""
    from cli_runs import run_ok

    root = tmp_path_factory.mktemp("pix3d_sets")
    run_ok(*PIX3D, "-o", root / "whole", "-q")
    for k in (1, 2, 3):
        run_ok(*PIX3D, "-o", root / "shards", "--shard", f"{k}/3", "-q")
    return root / "whole", root / "shards"


def test_pix3d_shards_equal_one_run(pix3d_sets):
    whole, shards = pix3d_sets
    assert_same_sets(whole, shards)
    entries = json.loads((shards / "pix3d.json").read_text())
    assert entries == json.loads((whole / "pix3d.json").read_text())
    assert len({e["voxel"] for e in entries}) == 10  # every model, once
    records = [json.loads((shards / f"run.shard-{k}-of-3.json").read_text()) for k in (1, 2, 3)]
    assert [r["metrics"]["done"] for r in records] == [3, 3, 4]  # no overlap, no gap
    assert [r["metrics"]["index"] is not None for r in records] == [False, False, True]


def test_pix3d_index_waits_for_the_last_shard(recon, tmp_path):
    out = tmp_path / "p"
    code, stdout, err = recon(*PIX3D, "-o", out, "--shard", "2/3", "--json")
    assert code == 0, err
    assert json.loads(stdout)["missing_items"] == 7 and "pix3d.json is not written yet" in err
    assert not (out / "pix3d.json").exists()
    code, _, err = recon("check-data", "voxel", out)
    assert code == 2 and "not written yet" in err and "--skip-done" in err, err
    code, _, err = recon("train", "voxel", "--data", out, "-o", tmp_path / "run", "-q")
    assert code == 2 and "not written yet" in err, err
    assert not (tmp_path / "run").exists()


def test_pix3d_shards_pass_check_data_and_train(pix3d_sets, voxel_checkpoint, recon):
    _, shards = pix3d_sets
    assert voxel_checkpoint.is_file()  # `train voxel` took the sharded set
    code, stdout, err = recon("check-data", "voxel", shards, "--json")
    assert code == 0, err
    assert json.loads(stdout)["items"] == 20


def test_pix3d_skip_done_redoes_only_the_deleted_model(pix3d_sets, recon, tmp_path):
    import shutil

    whole, shards = pix3d_sets
    out = tmp_path / "copy"
    shutil.copytree(shards, out)
    # model 4 (bookcase 1) belongs to shard 2 of 3 (models 3, 4, 5); one of its images is gone
    victim = json.loads((out / "model/bookcase/synth_0001/entries.json").read_text())["entries"]
    (out / victim[1]["img"]).unlink()
    before = mtimes(out)
    code, _, err = recon(*PIX3D, "-o", out, "--shard", "2/3", "-q")
    assert code == 2 and "--skip-done" in err  # a rerun without it is refused
    code, stdout, err = recon(*PIX3D, "-o", out, "--shard", "2/3", "--skip-done", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert (result["done"], result["skipped"], result["models"]) == (1, 2, 1)
    assert_same_sets(whole, out)
    redone = {e[k] for e in victim for k in ("img", "mask")} | {
        "model/bookcase/synth_0001/" + n for n in ("entries.json", "model.obj", "voxel.mat")
    }
    changed = {name for name, stamp in mtimes(out).items() if before.get(name) != stamp}
    assert changed - {"pix3d.json"} <= redone and victim[1]["img"] in changed


# ---------------------------------------------------------------- synth parts

PARTS = ["synth", "parts", "-n", "2", "--views", "2", "--size", "64", "--seed", "6"]


def test_parts_shards_equal_one_run_train_and_skip_done(recon, tmp_path):
    assert recon(*PARTS, "-o", tmp_path / "whole", "-q")[0] == 0
    shards = tmp_path / "shards"
    results = run_shards(recon, PARTS, shards)
    assert [r["done"] for r in results] == [3, 3, 4]
    assert_same_sets(tmp_path / "whole", shards)

    code, stdout, err = recon("check-data", "parts", shards, "--json")
    assert code == 0 and json.loads(stdout)["items"] == 20, err
    train = ["train", "parts", "--data", shards, "--epochs", "1", "--batch-size", "4"]
    train += ["--set", "size=32", "--set", "channels=8", "--device", "cpu", "-q"]
    code, _, err = recon(*train, "-o", tmp_path / "run")
    assert code == 0, err
    examples = sorted((tmp_path / "run" / "examples").iterdir())  # input | prediction | target
    assert [p.name for p in examples] == ["epoch_000.png"]

    (shards / "models/flange/flange_0000.stl").unlink()  # part 2, shard 1 of 3
    before = mtimes(shards)
    code, stdout, err = recon(*PARTS, "-o", shards, "--shard", "1/3", "--skip-done", "--json")
    assert code == 0, err
    assert (json.loads(stdout)["done"], json.loads(stdout)["skipped"]) == (1, 2)
    assert_same_sets(tmp_path / "whole", shards)
    changed = {n for n, stamp in mtimes(shards).items() if before.get(n) != stamp}
    assert changed <= {
        "models/flange/flange_0000.stl",
        "models/flange/flange_0000.json",
        "images/flange/flange_0000/view_00.png",
        "images/flange/flange_0000/view_01.png",
    }


def test_parts_made_with_other_settings_are_not_done(recon, tmp_path):
    out = tmp_path / "p"
    assert recon(*PARTS, "-o", out, "-q")[0] == 0
    args = ["synth", "parts", "-n", "2", "--views", "2", "--size", "64", "--seed", "7"]
    before = mtimes(out)
    code, _, err = recon(*args, "-o", out, "--skip-done", "-q")  # remade the set: refused
    assert code == 2 and "made with other settings (--seed 7 here, 6 in run.json);" in err, err
    assert mtimes(out) == before
    (out / "run.json").unlink()  # the parts alone: their own records name another seed
    code, stdout, err = recon(*args, "-o", out, "--skip-done", "--json", "-q")
    assert code == 0, err
    assert json.loads(stdout)["skipped"] == 0  # another seed: every part is made again


SMALL_PARTS = ["synth", "parts", "-n", "2", "--views", "1", "--size", "32"]


def train_parts(data: Path, run: Path) -> list:
    """A one-epoch `train parts` of a small set into run."""
    small = ["--set", "size=32", "--set", "channels=8", "--device", "cpu", "-q", "-o", run]
    return ["train", "parts", "--data", data, "--epochs", "1", "--batch-size", "2", *small]


def test_an_unfinished_parts_set_fails_check_data_and_train_until_finished(recon, tmp_path):
    """One shard of three passed check-data (no problems, exit 0) and trained on 3 of the 10
    parts; an unfinished pix3d set is refused (its pix3d.json is not written yet)."""
    out = tmp_path / "p"
    assert recon(*SMALL_PARTS, "-o", out, "--shard", "1/3", "-q")[0] == 0
    code, stdout, err = recon("check-data", "parts", out, "--json")
    assert code == 1, err
    problems = json.loads(stdout)["problems"]
    assert [p["kind"] for p in problems] == ["unfinished-set"], problems
    assert problems[0]["path"] == str(out / "run.shard-1-of-3.json")
    assert problems[0]["detail"].startswith("unfinished `recon synth parts` set: 3 of 10 parts")
    line = refused(recon, tmp_path / "run", *train_parts(out, tmp_path / "run"))
    assert "3 of 10 parts made (2 per class, from run.shard-1-of-3.json)" in line, line
    assert "run the remaining shards, or rerun the command with --skip-done" in line, line
    assert recon(*SMALL_PARTS, "-o", out, "--skip-done", "-q")[0] == 0  # finishes the set
    code, stdout, err = recon("check-data", "parts", out, "--json")
    assert code == 0 and json.loads(stdout)["items"] == 10, err


def test_a_parts_run_stopped_before_its_run_record_is_unfinished(recon, tmp_path):
    """A run stopped (Ctrl-C, pre-empted) writes no run record: the part records say how many
    parts the set holds (2 of 20 here), and a part folder made by hand is not affected."""
    out = tmp_path / "p"
    args = ["synth", "parts", "-n", "4", "--views", "2", "--size", "32", "-o", out]
    assert recon(*args, "--shard", "1/10", "-q")[0] == 0  # bracket_0000 and bracket_0001
    (out / "run.shard-1-of-10.json").unlink()
    code, stdout, err = recon("check-data", "parts", out, "--json")
    assert code == 1 and json.loads(stdout)["problem_kinds"] == {"unfinished-set": 1}, err
    line = refused(recon, tmp_path / "run", *train_parts(out, tmp_path / "run"))
    assert "2 of 20 parts made (4 per class, from its part records)" in line, line

    for record in (out / "models").glob("*/*.json"):  # the same files, made by hand
        record.unlink()
    assert recon("check-data", "parts", out, "-q")[0] == 0
    assert recon(*train_parts(out, tmp_path / "run"))[0] == 0


# ---------------------------------------------------------------- synth corset

CORSET = ["synth", "corset", "-n", "9", "--size", "64", "--seed", "2"]


def test_corset_shards_equal_one_run_train_and_skip_done(recon, tmp_path):
    assert recon(*CORSET, "-o", tmp_path / "whole", "-q")[0] == 0
    shards = tmp_path / "shards"
    results = run_shards(recon, CORSET, shards)
    assert [r["done"] for r in results] == [3, 3, 3]
    assert_same_sets(tmp_path / "whole", shards)
    doc = json.loads((shards / "dataset.json").read_text())
    assert [p["name"] for p in doc["patients"]] == [f"p{i:04d}" for i in range(9)]

    train = ["train", "corset", "--data", shards, "--epochs", "1", "--batch-size", "4"]
    train += ["--set", "size=64", "--set", "features=8", "--set", "critic_features=8"]
    code, _, err = recon(*train, "--device", "cpu", "-q", "-o", tmp_path / "run")
    assert code == 0, err
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / "run" / "examples" / "epoch_000.png"))
    assert grid.ndim == 2 and grid.shape[1] % 4 == 0  # photos | prior | prediction | target

    (shards / "p0004" / "spine.png").unlink()  # shard 2 of 3 (p0003-p0005)
    before = mtimes(shards)
    code, stdout, err = recon(*CORSET, "-o", shards, "--shard", "2/3", "--skip-done", "--json")
    assert code == 0, err
    assert (json.loads(stdout)["done"], json.loads(stdout)["skipped"]) == (1, 2)
    assert_same_sets(tmp_path / "whole", shards)
    changed = {n for n, stamp in mtimes(shards).items() if before.get(n) != stamp}
    assert {n.split("/")[0] for n in changed} <= {"p0004", "dataset.json"}


def test_corset_patients_do_not_depend_on_the_set_size(tmp_path):
    """Patient i is drawn from (seed, i) alone: a set of 2 is the start of a set of 3."""
    from recon.pipelines.corset.patients import synth_corset_dataset

    for name, count in (("two", 2), ("three", 3)):
        (tmp_path / name).mkdir()
        synth_corset_dataset(tmp_path / name, count, 64, seed=5)
    for patient in ("p0000", "p0001"):
        for part in ("truth.json", "spine.png", "corset.stl"):
            first = (tmp_path / "two" / patient / part).read_bytes()
            assert first == (tmp_path / "three" / patient / part).read_bytes()


def test_corset_skip_done_redoes_patients_of_another_seed(recon, tmp_path):
    """A set made with another --seed or --size is not completed but refused (every patient
    was remade, deleting the others without --overwrite); patients whose own records name
    another seed are made again (they were kept, and dataset.json named the new seed)."""
    small = ["synth", "corset", "-n", "2", "--size", "64"]
    assert recon(*small, "--seed", "1", "-o", tmp_path / "one", "-q")[0] == 0
    assert recon(*small, "--seed", "0", "-o", tmp_path / "mixed", "-q")[0] == 0
    before = mtimes(tmp_path / "mixed")
    for other in (["--seed", "1", "--size", "64"], ["--seed", "0", "--size", "128"]):
        code, _, err = recon("synth", "corset", "-n", "2", *other, "-o", tmp_path / "mixed",
                             "--skip-done")  # fmt: skip
        assert code == 2 and "were made with other settings (" in err, err
        assert mtimes(tmp_path / "mixed") == before
    (tmp_path / "mixed" / "run.json").unlink()
    code, stdout, err = recon(*small, "--seed", "1", "-o", tmp_path / "mixed", "--skip-done",
                              "--json")  # fmt: skip
    assert code == 0, err
    assert (json.loads(stdout)["done"], json.loads(stdout)["skipped"]) == (2, 0)
    assert_same_sets(tmp_path / "one", tmp_path / "mixed")


def test_unfinished_corset_set_is_named(recon, tmp_path):
    out = tmp_path / "c"
    assert recon(*CORSET, "-o", out, "--shard", "1/3", "-q")[0] == 0
    code, _, err = recon("train", "corset", "--data", out, "-o", tmp_path / "run", "-q")
    assert code == 2 and "not written yet" in err and "--skip-done" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- names and ranges


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "pix3d", "-n", "0"], "--count must be in [1, 20000], not 0"),
        (["synth", "pix3d", "--models", "0"], "--models must be in [1, 20000], not 0"),
        (["synth", "pix3d", "--views", "0"], "--views must be in [1, 100], not 0"),
        (["synth", "pix3d", "--views", "1000"], "--views must be in [1, 100]"),
        (["synth", "pix3d", "--seed", "-1"], "--seed"),
        (["synth", "parts", "-n", "100000"], "--count must be in [1, 20000]"),
        (["synth", "parts", "--parts", "0"], "--parts must be in [1, 20000]"),
        (["synth", "parts", "--views", "-2"], "--views must be in [1, 100]"),
        (["synth", "parts", "--size", "16"], "--size must be in [32, 1024], not 16"),
        (["synth", "corset", "-n", "0"], "--count must be in [1, 100000]"),
        (["synth", "corset", "--patients", "0"], "--patients must be in [1, 100000]"),
        (["synth", "corset", "--size", "96"], "--size must be a multiple of 64"),
        (["synth", "pix3d", "--shard", "4/3"], "--shard takes K/N"),
        (["synth", "corset", "--shard", "0/2"], "--shard takes K/N"),
    ],
)
def test_synth_numbers_out_of_range(recon, tmp_path, args, message):
    assert message in refused(recon, tmp_path / "d", *args, "-o", tmp_path / "d")


@pytest.mark.parametrize(
    ("args", "old"),
    [
        (["synth", "pix3d", "--models", "1", "--views", "1"], "--models"),
        (["synth", "parts", "--parts", "1", "--views", "1", "--size", "32"], "--parts"),
        (["synth", "corset", "--patients", "1", "--size", "64"], "--patients"),
    ],
)
def test_old_count_spellings_still_work_with_a_notice(recon, tmp_path, args, old):
    code, stdout, err = recon(*args, "-o", tmp_path / "d", "--json", "-q")
    assert code == 0, err
    assert f"warning: {old} is deprecated" in err and "use --count" in err
    result = json.loads(stdout)
    assert result.get("models", result.get("parts", result.get("patients"))) in (1, 5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "corset", "--count", 3, "--patients", 1], "--count 3 and --patients 1"),
        (["synth", "corset", "--patients", 1, "-n", 20], "--count 20 and --patients 1"),
        (["synth", "pix3d", "--count", 2, "--models", 1], "--count 2 and --models 1"),
        (["synth", "parts", "--parts", 1, "--count", 2], "--count 2 and --parts 1"),
    ],
)
def test_new_and_old_count_spellings_that_disagree_are_refused(recon, tmp_path, args, message):
    """--count 3 --patients 1 made 1 patient: the old spelling won without a word. Typing the
    default value (-n 20) counts as giving it."""
    line = refused(recon, tmp_path / "d", *args, "-o", tmp_path / "d")
    assert line == f"error: {message} (its old name) disagree: give --count only"


def test_new_and_old_count_spellings_that_agree_pass_with_the_notice(recon, tmp_path):
    args = ["synth", "corset", "--count", 1, "--patients", 1, "--size", 64]
    code, stdout, err = recon(*args, "-o", tmp_path / "d", "--json", "-q")
    assert code == 0, err
    assert err == (
        "warning: --patients is deprecated and goes away in the next release; use --count\n"
    )
    assert json.loads(stdout)["patients"] == 1


def test_new_names_in_help(recon):
    for kind in ("pix3d", "parts", "corset"):
        code, out, _ = recon("synth", kind, "--help")
        assert code == 0 and "--count" in out and "--shard" in out and "--skip-done" in out
        assert "--models" not in out and "--patients" not in out and "--parts " not in out
    code, out, _ = recon("predict", "voxel", "--help")
    assert "stl|ply|obj|glb" in out


# ---------------------------------------------------------------- predict: folders in


@pytest.fixture(scope="module")
def voxel_checkpoint(pix3d_sets, tmp_path_factory):
    """A tiny voxel model trained on the sharded set (which shows `train` takes it)."""
    from cli_runs import run_ok

    _, shards = pix3d_sets
    run = tmp_path_factory.mktemp("voxel_run") / "run"
    args = ["train", "voxel", "--data", shards, "--epochs", "1", "--batch-size", "8"]
    run_ok(*args, "--set", "size=32", "--set", "hidden=32", "--device", "cpu", "-q", "-o", run)
    return run / "checkpoints" / "best.ckpt"


def photo(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((40, 40, 3), 255, np.uint8)
    image[10:30, 8 + shade % 5 : 28 + shade % 5] = (shade * 37 % 200, 90, 40)
    if path.suffix == ".png":
        write_png(path, image)
    else:
        from PIL import Image

        Image.fromarray(image).save(path)
    return path


def test_predict_folder_equals_its_files_listed(voxel_checkpoint, recon, tmp_path):
    photos = tmp_path / "photos"
    listed = [photo(photos / f"{name}.png", i) for i, name in enumerate(("c", "a", "b"))]
    photo(photos / "sub" / "deeper.png", 9)  # subfolders are not searched
    (photos / "notes.txt").write_text("not an image")
    (photos / ".hidden.png").write_bytes(b"")
    common = ["-c", voxel_checkpoint, "--device", "cpu", "--json", "-q"]
    code, stdout, err = recon("predict", "voxel", photos, *common, "-o", tmp_path / "f")
    assert code == 0, err
    from_folder = json.loads(stdout)["results"]
    assert [Path(r["image"]).name for r in from_folder] == ["a.png", "b.png", "c.png"]
    code, stdout, err = recon("predict", "voxel", *sorted(listed), *common, "-o", tmp_path / "l")
    assert code == 0, err
    for a, b in zip(from_folder, json.loads(stdout)["results"], strict=True):
        assert Path(a["grid"]).name == Path(b["grid"]).name
        assert np.array_equal(np.load(a["grid"]), np.load(b["grid"]))
    assert sorted(p.name for p in (tmp_path / "f").glob("*.npy")) == ["a.npy", "b.npy", "c.npy"]


def test_skip_done_keeps_the_outputs_of_one_checkpoint_only(voxel_checkpoint, recon, tmp_path):
    """--skip-done with another model's checkpoint kept the first model's outputs and recorded
    the second as the folder's; the same file under another path is the same model."""
    import shutil

    import torch

    a, b = photo(tmp_path / "a.png", 1), photo(tmp_path / "b.png", 2)
    same = shutil.copy(voxel_checkpoint, tmp_path / "same.ckpt")
    state = torch.load(voxel_checkpoint, map_location="cpu", weights_only=True)
    first = next(iter(state["state_dict"]))
    state["state_dict"][first] = state["state_dict"][first] + 0.01
    torch.save(state, tmp_path / "other.ckpt")
    out = tmp_path / "out"
    common = ["--device", "cpu", "-o", out, "--skip-done", "-q"]
    code, _, err = recon("predict", "voxel", a, "-c", voxel_checkpoint, *common)
    assert code == 0, err
    before = mtimes(out)
    code, _, err = recon("predict", "voxel", a, b, "-c", tmp_path / "other.ckpt", *common)
    assert code == 2 and "another file than" in err and len(err.strip().splitlines()) == 1
    assert mtimes(out) == before
    code, _, err = recon("predict", "voxel", a, b, "-c", same, *common)
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["metrics"]["skipped_inputs"] == [str(a)]


def test_a_failed_batch_run_leaves_no_empty_folder(voxel_checkpoint, recon, tmp_path):
    """--skip-done made the output folder before reading the inputs: a run that failed left it
    empty, and a plain rerun was then refused ("already exists")."""
    good = photo(tmp_path / "in" / "a.png", 1)
    broken = tmp_path / "in" / "b.png"
    broken.write_bytes(good.read_bytes()[:60])  # a truncated PNG
    args = ["predict", "voxel", tmp_path / "in", "-c", voxel_checkpoint, "--device", "cpu"]
    code, _, err = recon(*args, "-o", tmp_path / "out", "--skip-done", "-q")
    assert code == 2 and "b.png" in err
    assert not (tmp_path / "out").exists()


def test_predict_names_that_would_collide_are_made_unique(voxel_checkpoint, recon, tmp_path):
    inputs = [
        photo(tmp_path / "left" / "x.png", 1),
        photo(tmp_path / "right" / "x.png", 2),
        photo(tmp_path / "right" / "y.png", 3),
    ]
    args = ["predict", "voxel", *inputs, "-c", voxel_checkpoint, "--device", "cpu", "--json"]
    code, stdout, err = recon(*args, "-o", tmp_path / "o")
    assert code == 0, err
    grids = [Path(r["grid"]).name for r in json.loads(stdout)["results"]]
    assert grids == ["left_x.npy", "right_x.npy", "right_y.npy"]
    assert len(list((tmp_path / "o").glob("*.npy"))) == 3  # nothing overwritten

    photo(tmp_path / "d" / "a.png", 4)
    photo(tmp_path / "d" / "a.jpg", 5)
    args = ["predict", "voxel", tmp_path / "d", "-c", voxel_checkpoint, "--device", "cpu"]
    code, stdout, err = recon(*args, "--json", "-o", tmp_path / "o2")
    assert code == 0, err
    results = json.loads(stdout)["results"]
    assert [Path(r["image"]).name for r in results] == ["a.jpg", "a.png"]
    assert [Path(r["grid"]).name for r in results] == ["d_a_jpg.npy", "d_a_png.npy"]


def test_output_names_are_deterministic_and_unique():
    from recon.pipelines.common.inputs import output_names

    assert output_names([Path("p/a.png"), Path("p/b.png")]) == ["a", "b"]
    assert output_names([Path("p/A.png"), Path("q/a.png")]) == ["p_A", "q_a"]  # case-blind
    assert output_names([Path("p/a.png"), Path("p/a.jpg"), Path("q/b.png")]) == [
        "p_a_png",
        "p_a_jpg",
        "q_b_png",
    ]
    tangled = [Path("x/a.png"), Path("y/x/a.png")]
    assert output_names(tangled) == ["000_a", "001_a"]


@pytest.mark.parametrize("task", ["voxel", "parts"])
def test_predict_folder_bad_inputs(recon, tmp_path, task):
    photos = tmp_path / "photos"
    photo(photos / "a.png", 1)
    (tmp_path / "empty").mkdir()
    checkpoint = tmp_path / "m.ckpt"
    checkpoint.write_bytes(b"\0" * 16)
    (photos / "old").mkdir()
    base = ["predict", task, "-c", checkpoint]
    cases = [
        ([photos, "-o", photos, "--overwrite"], photos / "x", "is, or is inside, the input folder"),
        ([photos, "-o", photos / "out", "--overwrite"], photos / "out", "the input folder"),
        ([photos / "a.png", "-o", photos, "--overwrite"], photos / "x", "would replace the input"),
        ([photos / "a.png", "-o", tmp_path, "--overwrite"], tmp_path / "x", "replace the input"),
        ([photos, photos / "a.png", "-o", tmp_path / "o"], tmp_path / "o", "given twice"),
        ([tmp_path / "empty", "-o", tmp_path / "o"], tmp_path / "o", "folder holds no images"),
        ([tmp_path / "nothing", "-o", tmp_path / "o"], tmp_path / "o", "no such file or folder"),
        ([photos, "--format", "xyz", "-o", tmp_path / "o"], tmp_path / "o", "--format"),
    ]
    kept = sorted(p.name for p in photos.iterdir())
    for args, out, message in cases:
        code, _, err = recon(*base, *args)
        assert code == 2 and message in err, (args, err)
        assert not out.exists(), args
        assert sorted(p.name for p in photos.iterdir()) == kept


# ---------------------------------------------------------------- predict corset


def test_predict_corset_render_flag_device_auto_and_old_size_key(recon, tmp_path):
    """--render is a flag writing OUT.png beside the mesh; --device defaults to auto; a
    checkpoint whose config names the view size `image_size` (before the rename) still loads."""
    import torch

    from recon.pipelines.corset.patients import synth_corset_dataset
    from recon.pipelines.corset.predict import train_tiny

    data = tmp_path / "data"
    data.mkdir()
    synth_corset_dataset(data, 3, 64, seed=1)
    checkpoint = train_tiny(data, tmp_path / "run", epochs=1, features=8, critic_features=8)
    patient = ["--photos", data / "p0000" / "photos", "--spine", data / "p0000" / "spine.png"]
    code, stdout, err = recon(
        "predict",
        "corset",
        *patient,
        "-c",
        checkpoint,
        "-o",
        tmp_path / "c.stl",
        "--render",
        "--views-out",
        tmp_path / "views_new",
        "--json",
    )
    assert code == 0, err
    assert "spine.png carries no pixel spacing, so its millimetres are pixels" in err
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "c.stl").is_file()
    result = json.loads(stdout)
    assert result["render"] == str(tmp_path / "c.png")
    record = json.loads((tmp_path / "c.stl.run.json").read_text())  # the run record beside OUT
    assert record["command"] == "predict corset" and record["config"]["render"] is True
    assert record["metrics"] == {k: result[k] for k in ("cobb_deg", "faces", "watertight")}
    assert {"network", "surface", "total"} <= record["timings_s"].keys()
    assert json.loads((tmp_path / "views_new" / "run.json").read_text()) == record

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = state["hyper_parameters"]["config"]
    config["image_size"] = config.pop("size")
    torch.save(state, tmp_path / "old.ckpt")
    code, stdout, err = recon(
        "predict",
        "corset",
        *patient,
        "-c",
        tmp_path / "old.ckpt",
        "-o",
        tmp_path / "o.stl",
        "--views-out",
        tmp_path / "views_old",
        "--json",
    )
    assert code == 0, err
    assert not (tmp_path / "o.png").exists()  # no --render, no picture
    views = sorted((tmp_path / "views_new").glob("depth_*.png"))
    assert len(views) == 8
    for view in views:  # the same network output
        assert view.read_bytes() == (tmp_path / "views_old" / view.name).read_bytes()

    # the render beside the output is refused when it exists, before any work
    (tmp_path / "d.png").write_bytes(b"keep")
    code, _, err = recon(
        "predict", "corset", *patient, "-c", checkpoint, "-o", tmp_path / "d.stl", "--render"
    )
    assert code == 2 and "d.png: already exists" in err
    assert not (tmp_path / "d.stl").exists() and (tmp_path / "d.png").read_bytes() == b"keep"
    assert not (tmp_path / "d.stl.run.json").exists()


def test_predict_corset_device_defaults_to_auto():
    import inspect

    from recon.cli.corset import predict_corset

    assert inspect.signature(predict_corset).parameters["device"].default == "auto"
