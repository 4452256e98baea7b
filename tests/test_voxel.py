"""Task `voxel` pieces and CLI: voxelisation against analytic truth, metrics, synth layout,
train + predict as a user runs them, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.io import write_png


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def trained(pix3d_root, tmp_path_factory):
    """A tiny `recon train voxel` run (32 px input, 2 epochs)."""
    from recon.cli.app import main

    run = tmp_path_factory.mktemp("run") / "voxel"
    args = [
        "train",
        "voxel",
        "--data",
        str(pix3d_root),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--set",
        "size=32",
        "--set",
        "hidden=64",
        "-o",
        str(run),
        "--device",
        "cpu",
        "-q",
    ]
    try:
        main(args)
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    return run


@pytest.mark.parametrize(
    ("method", "category"),
    [("raycast", "plate"), ("raycast", "flange"), ("raycast", "shaft"), ("winding", "shaft")],
)
def test_voxelize_matches_analytic_solid(method, category):
    from recon.pipelines.occupancy.parts import make_part
    from recon.pipelines.shapes.solids import fitted_occupancy, solid_mesh
    from recon.pipelines.shapes.voxelize import voxelize_mesh

    solid = make_part(category, np.random.default_rng(1))
    grid = voxelize_mesh(solid_mesh(solid, 96), 32, method)
    assert grid.shape == (32, 32, 32)
    assert iou(grid, fitted_occupancy(solid, 32)) >= 0.92


def test_winding_number_survives_holes_in_the_mesh():
    from recon.pipelines.occupancy.parts import make_part
    from recon.pipelines.shapes.solids import fitted_occupancy, solid_mesh
    from recon.pipelines.shapes.voxelize import voxelize_mesh

    solid = make_part("shaft", np.random.default_rng(2))
    mesh = solid_mesh(solid, 96)
    keep = np.ones(len(mesh.faces), dtype=bool)
    keep[np.random.default_rng(0).choice(len(keep), 20, replace=False)] = False
    mesh.update_faces(keep)
    assert not mesh.is_watertight
    grid = voxelize_mesh(mesh, 32, "auto")
    assert iou(grid, fitted_occupancy(solid, 32)) >= 0.9


def test_voxelize_file_is_cached(tmp_path):
    import trimesh

    from recon.pipelines.shapes.voxelize import voxelize_file

    trimesh.creation.box((1, 2, 3)).export(tmp_path / "box.stl")
    first = voxelize_file(tmp_path / "box.stl", 16, "raycast", tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.zeros((16, 16, 16), bool))  # the cache is what is read back
    assert not voxelize_file(tmp_path / "box.stl", 16, "raycast", tmp_path / "cache").any()
    assert first[8, 8, :].all() and not first[0, 8, 8]  # z spans the grid, x does not


def test_grid_to_mesh_is_closed():
    from recon.pipelines.shapes.voxelize import grid_to_mesh

    grid = np.zeros((16, 16, 16))
    grid[0:8, 3:16, 5:9] = 1  # touches the grid border: padding still closes it
    mesh = grid_to_mesh(grid)
    assert mesh.is_watertight and mesh.volume > 0
    assert abs(mesh.volume - grid.sum()) / grid.sum() < 0.2


def test_voxel_metrics_definitions():
    import torch

    from recon.pipelines.common.metrics import voxel_dice, voxel_iou, voxel_regression

    target = torch.zeros(2, 4, 4, 4)
    target[:, :2] = 1  # 32 occupied voxels
    prob = torch.zeros(2, 4, 4, 4)
    prob[0, :1] = 0.9  # 16 voxels, all inside the target
    prob[1] = 0.6  # everything
    assert voxel_iou(prob, target).tolist() == pytest.approx([0.5, 0.5])
    assert voxel_dice(prob, target).tolist() == pytest.approx([2 * 16 / 48, 2 * 32 / 96])
    assert voxel_iou(prob, target, 0.95).tolist() == pytest.approx([0.0, 0.0])
    empty = torch.zeros(1, 4, 4, 4)
    assert voxel_iou(empty, empty).item() == 1.0
    scores = voxel_regression(target, target)
    assert scores["mae"].max() == 0 and scores["r2"].min() == pytest.approx(1.0)
    # an empty target has no variance: R^2 was -8e8 for a prediction of 0.01, enough to sink a
    # validation mean; it is 1 when matched exactly, else 0 (as scikit-learn)
    assert voxel_regression(empty + 0.01, empty)["r2"].item() == 0.0
    assert voxel_regression(empty, empty)["r2"].item() == 1.0


def test_the_surface_score_diagonal_is_of_the_reference_surface():
    """A vertex no face uses stretched the reference's diagonal, and with it tau and the
    Chamfer percentage (F 0.646 -> 1.000 for a cube and a stray vertex at (10, 10, 10))."""
    import trimesh

    from recon.pipelines.common.metrics import surface_score

    box = trimesh.creation.box((1, 1, 1))
    moved = box.copy()
    moved.apply_translation([0.1, 0, 0])
    stray = trimesh.Trimesh(np.vstack([box.vertices, [[10, 10, 10]]]), box.faces, process=False)
    plain, strayed = surface_score(moved, box, 0.02, 5000), surface_score(moved, stray, 0.02, 5000)
    assert plain.diagonal == strayed.diagonal == pytest.approx(3**0.5)
    assert plain.fscore == strayed.fscore < 0.8


def test_synth_pix3d_layout(pix3d_root):
    from recon.pipelines.occupancy.matfiles import is_v73, read_voxel_mat

    entries = json.loads((pix3d_root / "pix3d.json").read_text())
    assert len(entries) == 20 and len({e["category"] for e in entries}) == 5
    versions = set()
    for entry in entries:
        assert (pix3d_root / entry["img"]).is_file()
        grid = read_voxel_mat(pix3d_root / entry["voxel"])
        assert grid.shape == (128, 128, 128) and grid.any()
        versions.add(is_v73(pix3d_root / entry["voxel"]))
        x0, y0, x1, y1 = entry["bbox"]
        assert 0 <= x0 < x1 < entry["img_size"][0] and 0 <= y0 < y1 < entry["img_size"][1]
    assert versions == {True, False}


def test_train_writes_run_and_predict_writes_meshes(trained, pix3d_root, recon, tmp_path):
    assert (trained / "checkpoints" / "best.ckpt").is_file()
    header = (trained / "metrics.csv").read_text().splitlines()[0]
    for name in ("val/iou", "val/iou_mean_shape", "val/dice", "val/mae", "val/r2", "val/iou@0.3"):
        assert name in header
    images = sorted((pix3d_root / "img" / "chair").glob("*.png"))[:2]
    code, out, err = recon(
        "predict",
        "voxel",
        *images,
        "-c",
        trained / "checkpoints" / "best.ckpt",
        "-o",
        tmp_path / "pred",
        "--format",
        "ply",
        "--json",
        "--device",
        "cpu",
    )
    assert code == 0, err
    result = json.loads(out)
    assert len(result["results"]) == 2
    for record in result["results"]:
        grid = np.load(record["grid"])
        assert grid.shape == (32, 32, 32)
        if record["mesh"]:
            assert record["mesh"].endswith(".ply") and record["watertight"]


def test_predict_handles_grey_and_rgba(trained, recon, tmp_path):
    write_png(tmp_path / "grey.png", np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    rgba = np.zeros((48, 40, 4), np.uint8)
    rgba[10:30, 10:30] = (200, 50, 50, 255)
    write_png(tmp_path / "rgba.png", rgba)
    write_png(tmp_path / "deep.png", (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    ckpt = trained / "checkpoints" / "last.ckpt"
    code, out, err = recon(
        "predict",
        "voxel",
        tmp_path / "grey.png",
        tmp_path / "rgba.png",
        tmp_path / "deep.png",
        "-c",
        ckpt,
        "-o",
        tmp_path / "o",
        "--json",
    )
    assert code == 0, err
    results = json.loads(out)["results"]
    assert len(results) == 3
    for record in results:  # the count is the file's (float16), not the unrounded grid's
        assert record["occupied"] == int((np.load(record["grid"]) >= 0.5).sum())
    # the red square on black is found; a gradient has no plain background: the whole picture
    by_name = {Path(r["image"]).name: r for r in results}
    assert by_name["rgba.png"]["box"] == [10, 10, 29, 29]
    assert by_name["rgba.png"]["box_from"] == "border colour"
    assert by_name["grey.png"]["box"] == [0, 0, 63, 63]
    assert by_name["grey.png"]["box_from"] == "whole picture"
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("grey.png: no plain background" in line for line in warned)
    assert not any("rgba.png" in line for line in warned)


def test_predict_crops_to_the_boxes_given(trained, recon, tmp_path):
    """--boxes gives the object's box as pix3d.json gives training's; a box that fits no image,
    or lies outside its image, is one line before any work."""
    write_png(tmp_path / "grey.png", np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    write_png(tmp_path / "other.png", np.full((48, 40, 3), 255, np.uint8))
    ckpt = trained / "checkpoints" / "last.ckpt"
    images = [tmp_path / "grey.png", tmp_path / "other.png", "-c", ckpt]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"grey.png": [8, 8, 40, 40]}))
    code, out, err = recon("predict", "voxel", *images, "-o", tmp_path / "o", "--boxes", boxes,
                           "--json")  # fmt: skip
    assert code == 0, err
    by_name = {Path(r["image"]).name: r for r in json.loads(out)["results"]}
    assert by_name["grey.png"]["box"] == [8, 8, 40, 40]
    assert by_name["grey.png"]["box_from"] == "given"
    assert "grey.png: no plain background" not in err
    for doc, message in [
        ({"gery.png": [8, 8, 40, 40]}, "--boxes names 'gery.png', which is none of the images"),
        ({"grey.png": [8, 8, 400, 40]}, "grey.png: --boxes: bbox [8, 8, 400, 40] in a 64 x 64"),
        ({"grey.png": [8, 8, 40]}, "the box of 'grey.png' is not [x0, y0, x1, y1]"),
        # two boxes for one picture: the later one was used unsaid
        (
            {"grey.png": [8, 8, 40, 40], str(tmp_path / "grey.png"): [0, 0, 9, 9]},
            f"--boxes names {tmp_path / 'grey.png'} twice (as 'grey.png' and",
        ),
        (
            '{"grey.png": [8, 8, 40, 40], "grey.png": [0, 0, 9, 9]}',
            "not valid JSON (the key 'grey.png' is given twice in one object)",
        ),
    ]:
        boxes.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        code, _, err = recon("predict", "voxel", *images, "-o", tmp_path / "x", "--boxes", boxes)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x").exists()


def test_predict_bad_inputs(trained, recon, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    (tmp_path / "text.png").write_text("this is not an image")
    write_png(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8))
    write_png(tmp_path / "ok.png", np.zeros((32, 32, 3), np.uint8))
    cases = [
        ((tmp_path / "text.png",), ckpt, "not a readable image"),
        ((tmp_path / "dot.png",), ckpt, "1 x 1 pixels"),
        ((tmp_path / "ok.png", tmp_path / "missing.png"), ckpt, "no such file"),
        ((tmp_path / "ok.png",), tmp_path / "ok.png", "checkpoint"),
    ]
    for index, (images, checkpoint, message) in enumerate(cases):
        out_dir = tmp_path / f"out{index}"
        code, out, err = recon("predict", "voxel", *images, "-c", checkpoint, "-o", out_dir)
        assert code == 2, (message, err)
        assert message in err and len(err.strip().splitlines()) == 1
        assert not out_dir.exists()
    # a checkpoint of another task
    code, _, err = recon("predict", "parts", tmp_path / "ok.png", "-c", ckpt, "-o", tmp_path / "p")
    assert code == 2 and "'voxel', not 'parts'" in err
    assert not (tmp_path / "p").exists()


def test_missing_pretrained_weights_is_one_clear_line(pix3d_root, recon, tmp_path):
    code, _, err = recon(
        "train",
        "voxel",
        "--data",
        pix3d_root,
        "--set",
        f"pretrained_weights={tmp_path / 'resnet18.pth'}",
        "-o",
        tmp_path / "r",
        "-q",
    )
    assert code == 2 and "no such weights file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_pretrained_weights_file_is_loaded(tmp_path):
    import torch
    from torchvision.models import resnet18

    from recon.models.voxel_net import VoxelNet
    from recon.pipelines.occupancy.voxel_task import load_pretrained_encoder

    source = resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    net = VoxelNet(8, 16)
    load_pretrained_encoder(net.encoder, str(tmp_path / "resnet18.pth"))
    assert torch.equal(net.encoder.conv1.weight, source.conv1.weight)


def test_parts_takes_pretrained_resnet50_weights(tmp_path):
    import torch
    from torchvision.models import resnet50

    from recon.models.parts_net import PartsNet
    from recon.pipelines.occupancy.voxel_task import load_pretrained_encoder

    source = resnet50(weights=None)
    torch.save(source.state_dict(), tmp_path / "resnet50.pth")
    net = PartsNet(8, 8)
    load_pretrained_encoder(net.encoder, str(tmp_path / "resnet50.pth"))
    assert torch.equal(net.encoder.layer4[2].conv3.weight, source.layer4[2].conv3.weight)


def test_wrong_pretrained_weights_are_one_line(pix3d_root, recon, tmp_path):
    """A ResNet-50's weights for the ResNet-18 encoder ended in a raw `RuntimeError: Error(s) in
    loading state_dict for ResNet:` (exit 1); a JPEG in a six-line torch message."""
    import torch
    from torchvision.models import resnet50

    torch.save(resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    (tmp_path / "chair.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    for weights, message in (
        ("r50.pth", "does not match the ResNet encoder (23 of another shape"),
        # torch's own text said "re-running torch.load with weights_only set to False ..."
        ("chair.jpg", "chair.jpg: not a PyTorch weights file (give a state_dict saved with"),
    ):
        code, _, err = recon("train", "voxel", "--data", pix3d_root, "--set",
                             f"pretrained_weights={tmp_path / weights}", "--set", "size=32",
                             "-o", tmp_path / "r", "--device", "cpu", "-q")  # fmt: skip
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists()


def test_synth_cli(recon, tmp_path):
    code, out, err = recon(
        "synth", "pix3d", "-o", tmp_path / "p", "-n", "1", "--views", "1", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["per_class"] == dict.fromkeys(
        ("bed", "bookcase", "chair", "sofa", "table"), 1
    )
    code, _, err = recon("synth", "pix3d", "-o", tmp_path / "p", "-n", "1")
    assert code == 2 and "already exists" in err
    code, _, err = recon("synth", "parts", "-o", tmp_path / "q", "-n", "0")
    assert code == 2 and not (tmp_path / "q").exists()


def test_interrupted_and_resumed_run_equals_uninterrupted(trained, pix3d_root, recon, tmp_path):
    """1 epoch + resume to 2 ends with the same weights and metrics as the 2-epoch run above."""
    import torch

    from recon.pipelines.common.engine import load_checkpoint

    common = [
        "--data",
        pix3d_root,
        "--batch-size",
        "8",
        "--set",
        "size=32",
        "--set",
        "hidden=64",
        "-o",
        tmp_path / "run",
        "--device",
        "cpu",
        "-q",
    ]
    assert recon("train", "voxel", "--epochs", "1", *common)[0] == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    code, _, err = recon("train", "voxel", "--epochs", "2", "--resume", last, *common)
    assert code == 0, err
    _, straight = load_checkpoint(trained / "checkpoints" / "last.ckpt", "voxel")
    _, resumed = load_checkpoint(last, "voxel")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key])
    metrics = [
        (trained / "metrics.csv").read_text().splitlines()[-1],
        (tmp_path / "run" / "metrics.csv").read_text().splitlines()[-1],
    ]
    assert metrics[0].split(",")[2:] == metrics[1].split(",")[2:]


def test_a_set_of_one_3d_model_is_refused(pix3d_root, recon, tmp_path):
    """Validation holds whole models out: with one model it had nothing and the run ended
    without a best.ckpt, exit 0."""
    import shutil

    root = tmp_path / "one"
    shutil.copytree(pix3d_root, root)
    entries = json.loads((root / "pix3d.json").read_text())
    first = entries[0]["voxel"]
    (root / "pix3d.json").write_text(json.dumps([e for e in entries if e["voxel"] == first]))
    code, _, err = recon("train", "voxel", "--data", root, "-o", tmp_path / "r", "-q")
    assert code == 2 and "its entries show 1 3D model" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_overwrite_refuses_a_run_folder_that_holds_an_input(pix3d_root, recon, tmp_path):
    """--overwrite clears a run folder's checkpoints/ and run files: weights or a settings file
    kept there and given as inputs were deleted with them, exit 0."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("epochs: 1\n")  # marks an earlier run folder
    settings = run / "checkpoints" / "settings.yaml"
    settings.write_text("epochs: 1\n")
    common = ["train", "voxel", "--data", pix3d_root, "-o", run, "--overwrite", "-q"]
    code, _, err = recon(*common, "--config", settings)
    assert code == 2 and "output would replace the input" in err, err
    weights = run / "checkpoints" / "r18.pt"
    weights.write_bytes(b"x")
    code, _, err = recon(*common, "--set", f"pretrained_weights={weights}")
    assert code == 2 and "output would replace the input" in err, err
    assert settings.is_file() and weights.is_file()
    # what clearing keeps (a data set beside checkpoints/), or the folder's own config.yaml
    # read back as --config, is no reason to refuse
    (run / "config.yaml").write_text("task: voxel\nsize: 32\nhidden: 16\nepochs: 1\n")
    code, _, err = recon(*common, "--config", run / "config.yaml", "--device", "cpu")
    assert code == 0, err


def edited_checkpoint(source: Path, target: Path, setting: str, value) -> Path:
    """A copy of a checkpoint with one recorded setting changed (`config` itself for setting
    None)."""
    import torch

    checkpoint = torch.load(source, weights_only=True)
    if setting is None:
        checkpoint["hyper_parameters"]["config"] = value
    else:
        checkpoint["hyper_parameters"]["config"][setting] = value
    torch.save(checkpoint, target)
    return target


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("size", "abc", "the checkpoint's setting size takes a whole number, not 'abc'"),
        ("size", -5, "the checkpoint's setting size must be in [32, 4096], not -5"),
        ("size", 100000, "the checkpoint's setting size must be in [32, 4096], not 100000"),
        ("resolution", 0, "the checkpoint's setting resolution must be in [4, 256], not 0"),
        (None, "abc", "the checkpoint's settings are a str, not a mapping"),
    ],
)
def test_a_checkpoint_with_unusable_settings_is_one_line(
    trained, pix3d_root, recon, tmp_path, setting, value, message
):
    """An edited or damaged checkpoint: a raw TypeError or ValueError (exit 1), torch's own
    warning on stderr (resolution 0), or, for size 100000, the machine run out of memory
    (killed, no message). The settings prediction reads are checked as training checks them."""
    path = edited_checkpoint(trained / "checkpoints" / "best.ckpt", tmp_path / "odd.ckpt",
                             setting, value)  # fmt: skip
    image = sorted((pix3d_root / "img" / "chair").glob("*.png"))[0]
    out = tmp_path / "pred"
    code, _, err = recon("predict", "voxel", image, "-c", path, "-o", out, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and f"{path}: " in err and message in err, err
    assert not out.exists()
