"""What `recon train` leaves for people to read: --json with progress on stderr, curves.png with
the losses and each metric's baseline on its axes, run.json's baselines, labelled example grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.tasks import TASKS


@pytest.fixture(scope="module")
def voxel_run(tmp_path_factory):
    """A tiny `recon train voxel --json` run (not quiet): (run folder, stdout, stderr)."""
    import contextlib
    import io

    from recon.cli.app import main
    from recon.pipelines.occupancy.pix3d import synth_pix3d

    root = tmp_path_factory.mktemp("voxel_run")
    synth_pix3d(root / "p3", models_per_class=1, views_per_model=2, seed=1)
    out, err = io.StringIO(), io.StringIO()
    args = ["train", "voxel", "--data", str(root / "p3"), "--set", "size=32", "--set", "hidden=32"]
    args += ["--batch-size", "4", "--epochs", "2", "--device", "cpu", "-o", str(root / "run")]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([*args, "--json"])
        except SystemExit as exit_:
            assert exit_.code in (0, None), err.getvalue()
    return root / "run", out.getvalue(), err.getvalue()


def test_json_stdout_is_one_object_and_progress_goes_to_stderr(voxel_run):
    run, stdout, stderr = voxel_run
    decoder = json.JSONDecoder()
    result, end = decoder.raw_decode(stdout.strip())
    assert end == len(stdout.strip())  # exactly one JSON object, nothing else
    assert result["out"] == str(run) and result["epochs_run"] == 2
    assert "training voxel" in stderr and "Epoch" in stderr  # human text and progress
    assert "Params" in stderr  # the model summary too, not on stdout


def test_curves_draw_the_losses_and_the_baseline_on_the_metric_axes(voxel_run):
    from recon.pipelines.common.curves import curve_panels, read_history
    from recon.pipelines.occupancy.voxel_task import TASK

    run, stdout, _ = voxel_run
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = read_history(run / "metrics.csv")
    panels = {p.title: p for p in curve_panels(history, TASK.baselines)}
    assert list(panels)[0] == "loss"
    assert set(panels["loss"].series) == {"train/loss", "val/loss"}
    assert [x for x, _ in panels["loss"].series["train/loss"]] == [0.0, 1.0]
    iou = panels["val/iou"]
    assert len(iou.baselines) == 1, "the voxel task's mean-shape baseline is missing"
    label, value = iou.baselines[0]
    assert label == "mean shape"
    assert value == pytest.approx(history["val/iou_mean_shape"][-1][1])
    assert "val/iou_mean_shape" not in panels  # drawn on the IoU axes, not a panel of its own
    record = json.loads((run / "run.json").read_text())
    line = record["metrics"]["baselines"]["val/iou"]
    assert line["baseline"] == "val/iou_mean_shape"
    assert line["baseline_value"] == pytest.approx(value, abs=1e-6)
    assert line["beats_baseline"] == (line["value"] > line["baseline_value"])
    assert json.loads(stdout)["baselines"] == record["metrics"]["baselines"]


def test_curve_panels_of_a_history(tmp_path):
    from recon.pipelines.common.curves import curve_panels, plot_curves, read_history
    from recon.pipelines.common.settings import Baseline

    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "epoch,step,train/loss,train/loss_step,val/loss,val/ssim,val/ssim_identity,val/mae\n"
        "0,1,,0.9,,,,\n"
        "0,3,0.8,,,,,\n"
        "0,3,,,0.7,0.40,0.30,0.2\n"
        "1,7,0.6,,,,,\n"
        "1,7,,,0.5,0.50,0.30,0.1\n"
    )
    baselines = (Baseline("val/ssim", "val/ssim_identity", "identity"),)
    panels = curve_panels(read_history(csv), baselines)
    assert [p.title for p in panels] == ["loss", "val/ssim", "val/mae"]
    assert panels[0].series == {
        "train/loss": [(0.0, 0.8), (1.0, 0.6)],
        "val/loss": [(0.0, 0.7), (1.0, 0.5)],
    }
    assert panels[1].baselines == [("identity", 0.30)]
    with_loss = (*baselines, Baseline("val/loss", "val/loss_nominal", "nominal", "min"))
    history = read_history(csv)
    history["val/loss_nominal"] = [(0.0, 0.9), (1.0, 0.9)]
    assert curve_panels(history, with_loss)[0].baselines == [("nominal", 0.9)]
    assert curve_panels(read_history(csv))[1].baselines == []  # undeclared: no line
    plot_curves(csv, tmp_path / "curves.png", baselines)
    assert (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_declares_a_baseline_for_its_monitor(task):
    from recon.pipelines.common.tasks import load_task

    spec = load_task(task)
    declared = {b.metric: b for b in spec.baselines}
    assert spec.monitor in declared, f"{task}: no baseline for {spec.monitor}"
    for baseline in spec.baselines:
        assert baseline.mode in ("max", "min") and baseline.label
        assert baseline.baseline != baseline.metric
    assert declared[spec.monitor].mode == spec.mode


def test_example_grid_has_a_label_band_over_the_columns(tmp_path):
    import torch
    from PIL import Image

    from recon.pipelines.xray.drr_task import write_grid

    size = 32  # columns under 96 px are enlarged 3x so that the labels fit
    gradient = torch.linspace(0, 1, size).expand(size, size)
    images = [torch.stack([gradient * k / 3])[None].expand(2, 1, size, size) for k in (1, 2, 3)]
    write_grid(tmp_path / "grid.png", *images)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    band = grid.shape[0] - 2 * 3 * size
    assert band >= 10 and grid.shape[1] == 3 * 3 * size
    bare = np.concatenate([np.concatenate([np.asarray(i[0, 0]) for i in images], 1)] * 2, 0)
    expected = np.round(bare * 255).repeat(3, axis=0).repeat(3, axis=1)
    assert np.abs(grid[band:].astype(float) - expected).max() <= 1  # images unchanged below
    top = grid[:band]
    for k in range(3):  # each column's label: white text on black, inside its column
        column = top[:, k * 3 * size : (k + 1) * 3 * size]
        assert column.max() > 200 and (column == 0).mean() > 0.5, k
        assert (column[:, :2] == 0).all() and (column[:, -2:] == 0).all(), k


def test_drr_validation_writes_labelled_examples_folder_name():
    from recon.pipelines.common.runfolder import RUN_FOLDERS
    from recon.pipelines.xray.drr_task import GRID_COLUMNS

    assert GRID_COLUMNS == ("input", "prediction", "target") and "examples" in RUN_FOLDERS


def test_read_history_of_a_missing_file_is_empty(tmp_path):
    from recon.pipelines.common.curves import plot_curves, read_history

    assert read_history(Path(tmp_path) / "none.csv") == {}
    plot_curves(tmp_path / "none.csv", tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()
