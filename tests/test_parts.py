"""Task `parts`: synthetic layout, voxel targets from STL, tiny train + predict via the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def parts_root(tmp_path_factory):
    from recon.pipelines.occupancy.parts import synth_parts

    root = tmp_path_factory.mktemp("parts")
    synth_parts(root, parts_per_class=2, views_per_part=2, seed=5, size=64)
    return root


def test_synth_parts_layout(parts_root):
    from recon.pipelines.common.io import load_mesh
    from recon.pipelines.occupancy.parts import CLASSES, find_pairs

    pairs = find_pairs(parts_root)
    assert len(pairs) == 10 and {p.category for p in pairs} == set(CLASSES)
    for pair in pairs:
        assert len(pair.images) == 2
        assert load_mesh(pair.mesh).is_watertight


def test_targets_match_the_analytic_part():
    from recon.pipelines.occupancy.parts import make_part
    from recon.pipelines.shapes.solids import fitted_occupancy, solid_mesh
    from recon.pipelines.shapes.voxelize import voxelize_mesh

    solid = make_part("lprofile", np.random.default_rng(4))
    grid = voxelize_mesh(solid_mesh(solid, 96), 32)
    truth = fitted_occupancy(solid, 32)
    assert (grid & truth).sum() / (grid | truth).sum() >= 0.92


def test_edge_input_channels():
    from recon.pipelines.occupancy.parts_task import edge_input

    rgb = np.zeros((80, 100, 3), np.uint8)
    rgb[20:60, 30:70] = 200
    tensor = edge_input(rgb, 64, 50, 150)
    assert tuple(tensor.shape) == (3, 64, 64)
    assert tensor[1].max() > 0.4 and tensor[1].mean() < 0  # sparse edges in channel 1
    assert float(tensor[0].max()) == pytest.approx(200 / 255 - 0.5, abs=0.01)


def test_train_and_predict_parts(parts_root, recon, tmp_path):
    code, out, err = recon(
        "train",
        "parts",
        "--data",
        parts_root,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--set",
        "size=32",
        "--set",
        "channels=16",
        "-o",
        tmp_path / "run",
        "--device",
        "cpu",
        "-q",
        "--json",
    )
    assert code == 0, err
    assert "val/iou" in json.loads(out)["metrics"]
    assert list((parts_root / ".cache" / "voxels").glob("*.npy"))  # targets cached once
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    images = sorted((parts_root / "images").glob("*/*/view_00.png"))[:2]
    code, out, err = recon(
        "predict", "parts", *images, "-c", ckpt, "-o", tmp_path / "pred", "--json", "--render"
    )
    assert code == 0, err
    for record in json.loads(out)["results"]:
        assert np.load(record["grid"]).shape == (32, 32, 32)
        if record["mesh"]:
            assert record["render"].endswith(".png")
    code, _, err = recon("predict", "voxel", images[0], "-c", ckpt, "-o", tmp_path / "v")
    assert code == 2 and "'parts', not 'voxel'" in err


@pytest.mark.slow
def test_parts_training_beats_the_mean_shape_on_held_out_parts(tmp_path, recon):
    """Learning is real: 8 CPU epochs on 20 parts (5 classes, 3 Canny-edge views each, 64 px)
    beat the training set's mean shape on the held-out parts (the split is by part, so no view
    of a validation part is trained on): last-epoch IoU 0.24 / 0.27 / 0.28 against 0.115 /
    0.123 / 0.122 on synthetic seeds 7 / 8 / 9."""
    import csv

    from recon.pipelines.occupancy.parts import synth_parts

    synth_parts(tmp_path / "data", parts_per_class=4, views_per_part=3, seed=7, size=64)
    code, _, err = recon(
        "train", "parts", "--data", tmp_path / "data", "--epochs", "8", "--batch-size", "8",
        "--lr", "1e-3", "--set", "size=64", "--set", "channels=32", "--set", "val_fraction=0.25",
        "-o", tmp_path / "run", "--device", "cpu", "-q", "--seed", "0",
    )  # fmt: skip
    assert code == 0, err
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/iou")]
    last, baseline = float(rows[-1]["val/iou"]), float(rows[-1]["val/iou_mean_shape"])
    assert last >= baseline + 0.08, (last, baseline)


def _hand_made_parts(root, names) -> None:
    """Plates named names under root, one grey picture each (the first mesh copied for '*_copy')."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.occupancy.parts import make_part
    from recon.pipelines.shapes.solids import solid_mesh

    rng = np.random.default_rng(0)
    models = root / "models" / "plate"
    models.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        if name.endswith("_copy"):
            (models / f"{name}.stl").write_bytes((models / f"{names[0]}.stl").read_bytes())
        else:
            solid_mesh(make_part("plate", rng), 16).export(models / f"{name}.stl")
        folder = root / "images" / "plate" / name
        folder.mkdir(parents=True)
        for view in range(2):
            write_png(folder / f"v{view}.png", np.full((32, 32), 40 * index + view, np.uint8))


def test_a_set_of_one_part_is_refused(recon, tmp_path):
    """One part trained with an empty validation set: exit 0, no val/iou, Lightning's warnings."""
    _hand_made_parts(tmp_path / "p", ["a"])
    code, _, err = recon("train", "parts", "--data", tmp_path / "p", "--epochs", "1",
                         "--set", "size=32", "-o", tmp_path / "run")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "1 part" in err, err
    assert not (tmp_path / "run").exists()


def test_copies_of_one_stl_are_one_part(recon, tmp_path):
    """Two names of one STL file were two parts: one could train while the other validated."""
    from recon.pipelines.occupancy.parts_task import PartsConfig, make_sets

    _hand_made_parts(tmp_path / "p", ["a", "a_copy"])
    code, _, err = recon("train", "parts", "--data", tmp_path / "p", "--epochs", "1",
                         "--set", "size=32", "-o", tmp_path / "run")  # fmt: skip
    assert code == 2 and "1 part" in err, err
    _hand_made_parts(tmp_path / "q", ["a", "a_copy", "b", "c", "d"])
    for seed in range(8):
        train, val = make_sets(PartsConfig(data=str(tmp_path / "q"), seed=seed, resolution=8))
        sides = {
            side
            for side, dataset in (("train", train), ("val", val))
            for _, mesh in dataset.samples
            if mesh.stem in ("a", "a_copy")
        }
        assert len(sides) == 1, (seed, sides)


# ---------------------------------------------------------------- predict parts: batch records


@pytest.fixture(scope="module")
def parts_checkpoint(parts_root, tmp_path_factory):
    """A tiny one-epoch parts model (32 px, 16 channels) on parts_root."""
    from cli_runs import run_ok

    run = tmp_path_factory.mktemp("parts_run") / "run"
    args = ["train", "parts", "--data", parts_root, "--epochs", "1", "--batch-size", "4"]
    run_ok(*args, "--set", "size=32", "--set", "channels=16", "--device", "cpu", "-q", "-o", run)
    return run / "checkpoints" / "last.ckpt"


def _noise_and_blank(folder):
    from recon.pipelines.common.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    write_png(folder / "noise.png", noise)
    write_png(folder / "blank.png", np.full((48, 48, 3), 200, np.uint8))
    return folder / "noise.png", folder / "blank.png"


def test_predict_parts_warns_when_the_whole_picture_is_its_box(
    parts_root, parts_checkpoint, recon, tmp_path
):
    """`predict parts` said nothing when it took the whole picture as the object's box (voxel
    warned); a blank picture was said to have no plain background around its object."""
    noise, blank = _noise_and_blank(tmp_path / "in")
    part = sorted((parts_root / "images").glob("*/*/view_00.png"))[0]
    args = ["predict", "parts", noise, blank, part, "-c", parts_checkpoint, "--device", "cpu"]
    code, stdout, err = recon(*args, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2, err
    assert f"warning: {noise}: no plain background around the object" in warned[0]
    assert f"warning: {blank}: the picture is blank (one colour): no object to crop" in warned[1]
    results = json.loads(stdout)["results"]
    assert [r["box_from"] for r in results] == ["whole picture", "whole picture", "border colour"]
    assert [r["warning"] for r in results] == [w.removeprefix("warning: ") for w in warned] + [None]


def test_whole_picture_warning_tells_blank_from_busy_pictures():
    from recon.pipelines.occupancy.images import object_box, whole_picture_warning

    busy = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    blank = np.full((40, 40, 3), 7, np.uint8)
    faint = blank.copy()
    faint[10:20, 10:20] += 10  # within the border-colour tolerance: still one colour
    for picture in (busy, blank, faint):
        assert object_box(picture)[1] == "whole picture"
    assert "no plain background" in whole_picture_warning("a.png", busy)
    assert whole_picture_warning("b.png", blank).startswith("b.png: the picture is blank")
    assert "is blank" in whole_picture_warning("c.png", faint)


def test_predict_parts_skip_done_records_every_input(parts_checkpoint, recon, tmp_path):
    """A --skip-done rerun recorded only the inputs it remade (none: `results: []`, and the
    --render of the first run forgotten), its table was empty, and another --format or no
    --render was taken: the folder then held .stl and .glb meshes that run.json did not list."""
    noise, blank = _noise_and_blank(tmp_path / "in")
    out = tmp_path / "out"
    args = ["predict", "parts", noise, blank, "-c", parts_checkpoint, "--device", "cpu"]
    args += ["-o", out, "--skip-done", "--render"]
    code, _, err = recon(*args, "-q")
    assert code == 0, err
    first = json.loads((out / "run.json").read_text())["metrics"]["results"]
    (out / "blank.npy").unlink()  # pre-empted: blank is redone, noise kept
    code, stdout, err = recon(*args, "--json")
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["render"] is True
    results = record["metrics"]["results"]
    assert [r["image"] for r in results] == [str(noise), str(blank)]
    assert results[0] == {**first[0], "skipped": True}  # carried over from the earlier record
    assert "skipped" not in results[1] and results[1]["grid"] == str(out / "blank.npy")
    assert json.loads(stdout)["results"] == results

    code, table, err = recon(*args)  # nothing left to do
    assert code == 0, err
    results = json.loads((out / "run.json").read_text())["metrics"]["results"]
    assert [r["skipped"] for r in results] == [True, True]
    for r in results:
        assert Path(r["mesh"]).is_file() and Path(r["render"]).is_file()
    assert re.search(r"skipped \(done\)\W+2\b", table), table

    (out / "run.json").unlink()  # no earlier record: listed from the files that are there
    code, _, err = recon(*args, "-q")
    assert code == 0, err
    listed = json.loads((out / "run.json").read_text())["metrics"]["results"][1]
    assert listed["render"] == str(out / "blank.png") and listed["mesh"] == str(out / "blank.stl")
    assert listed["occupied"] == int((np.load(out / "blank.npy") >= 0.5).sum())

    before = sorted(p.name for p in out.iterdir())
    for changed, named in (
        ([*args, "--format", "glb"], "(--format glb here, stl in run.json)"),
        ([a for a in args if a != "--render"], "(--render false here, true in run.json)"),
    ):
        code, _, err = recon(*changed, "-q")
        assert code == 2 and named in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == before  # no .glb beside the .stl


def test_predict_parts_names_a_changed_checkpoint(parts_checkpoint, recon, tmp_path):
    """The checkpoint file changed under the same name: the refusal said the outputs came from
    "another file than c.ckpt" while naming c.ckpt twice."""
    import shutil

    import torch

    noise, _ = _noise_and_blank(tmp_path / "in")
    checkpoint = shutil.copy(parts_checkpoint, tmp_path / "c.ckpt")
    args = ["predict", "parts", noise, "-c", checkpoint, "--device", "cpu", "-o", tmp_path / "o"]
    assert recon(*args, "--skip-done", "-q")[0] == 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    first = next(iter(state["state_dict"]))
    state["state_dict"][first] = state["state_dict"][first] + 0.01
    torch.save(state, checkpoint)
    code, _, err = recon(*args, "--skip-done", "-q")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{checkpoint} has changed since its outputs were made (run.json)" in err
    assert "another file" not in err and "--overwrite without --skip-done" in err


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("size", -5, "the checkpoint's setting size must be in [32, 4096], not -5"),
        ("canny_low", "abc", "the checkpoint's setting canny_low takes a whole number, not 'abc'"),
    ],
)
def test_a_parts_checkpoint_with_unusable_settings_is_one_line(
    parts_checkpoint, parts_root, recon, tmp_path, setting, value, message
):
    """As for voxel checkpoints (tests/test_voxel.py): a raw ValueError or TypeError, exit 1."""
    from test_voxel import edited_checkpoint

    path = edited_checkpoint(parts_checkpoint, tmp_path / "odd.ckpt", setting, value)
    image = next(iter(sorted(parts_root.rglob("*.png"))))
    out = tmp_path / "pred"
    code, _, err = recon("predict", "parts", image, "-c", path, "-o", out, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def _edited_weights(source: Path, target: Path, edit) -> Path:
    """A copy of a checkpoint whose state_dict went through edit(state_dict) -> state_dict."""
    import torch

    checkpoint = torch.load(source, weights_only=True)
    checkpoint["state_dict"] = edit(checkpoint["state_dict"])
    torch.save(checkpoint, target)
    return target


def _nan_first(state: dict) -> dict:
    name = next(k for k, v in state.items() if v.is_floating_point())
    return {**state, name: state[name] * float("nan")}


@pytest.mark.parametrize(
    "edit, message",
    [
        (  # a diverged run's weights: a raw "RuntimeError: No surface found", exit 1
            _nan_first,
            "the checkpoint's weights hold NaN or infinite values (net.",
        ),
        (  # the message was torch's heading alone: "Error(s) in loading state_dict for ..."
            lambda state: dict(list(state.items())[:-1]),
            "weights do not fit the parts model (Missing key(s) in state_dict: ",
        ),
    ],
)
def test_a_parts_checkpoint_with_unusable_weights_is_one_line(
    parts_checkpoint, parts_root, recon, tmp_path, edit, message
):
    path = _edited_weights(parts_checkpoint, tmp_path / "odd.ckpt", edit)
    image = next(iter(sorted(parts_root.rglob("*.png"))))
    out = tmp_path / "pred"
    code, _, err = recon("predict", "parts", image, "-c", path, "-o", out, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and f"{path}: {message}" in err, err
    assert not out.exists()
