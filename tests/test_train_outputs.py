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
    timings = result["timings_s"]  # the setup (data, model) beside the fit, which alone it gave
    assert set(timings) == {"setup", "fit"} and result["seconds"] == timings["fit"]
    assert timings["setup"] > 0 and timings["fit"] > 0
    recorded = json.loads((run / "run.json").read_text())["timings_s"]
    assert recorded == {key: round(value, 4) for key, value in timings.items()}


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


@pytest.mark.parametrize("epochs", [1, 2, 3, 40])
def test_curves_mark_whole_epochs(epochs):
    """A one-epoch run's axes were ticked -0.045, -0.030, ... 0.045 (labels run together)."""
    from recon.pipelines.common.curves import Panel, curves_figure

    points = [(float(epoch), 1.0 / (epoch + 1)) for epoch in range(epochs)]
    figure = curves_figure([Panel("loss", {"train/loss": points})])
    axis = figure.axes[0]
    low, high = axis.get_xlim()
    ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
    assert ticks and all(tick == int(tick) for tick in ticks), ticks
    assert 0 in ticks and len(ticks) <= 10


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


def test_example_grid_has_a_label_band_over_the_columns():
    import torch

    from recon.pipelines.common.examples import example_grid

    size = 32  # cells take at least 64 px, and columns under 96 px are enlarged so labels fit
    gradient = torch.linspace(0, 1, size).expand(size, size)
    cells = [(gradient * k / 3).numpy() for k in (1, 2, 3)]
    grid = example_grid([cells, cells], ("input", "prediction", "target"))
    assert grid.dtype == np.uint8 and grid.ndim == 2  # grey cells give a grey picture
    column = 64 * 2  # 32 px -> a 64 px cell (nearest), then x2 for the labels
    band = grid.shape[0] - 2 * column
    assert band >= 10 and grid.shape[1] == 3 * column
    bare = np.concatenate([np.concatenate(cells, 1)] * 2, 0)
    expected = np.round(bare * 255).repeat(4, axis=0).repeat(4, axis=1)
    assert np.abs(grid[band:].astype(float) - expected).max() <= 1  # images unchanged below
    top = grid[:band]
    for k in range(3):  # each column's label: white text on black, inside its column
        part = top[:, k * column : (k + 1) * column]
        assert part.max() > 200 and (part == 0).mean() > 0.5, k
        assert (part[:, :2] == 0).all() and (part[:, -2:] == 0).all(), k


def test_tile_views_puts_views_row_by_row():
    from recon.pipelines.common.examples import tile_views

    views = np.stack([np.full((4, 6), k / 10, dtype=np.float32) for k in range(1, 7)])
    mosaic = tile_views(views, columns=4)
    assert mosaic.shape == (8, 24)
    assert mosaic[0, 0] == np.float32(0.1) and mosaic[0, 18] == np.float32(0.4)
    assert mosaic[4, 6] == np.float32(0.6) and mosaic[4, 12:].max() == 0  # two empty places


def test_crop_together_keeps_one_frame_for_every_view():
    from recon.pipelines.common.examples import crop_together

    views = np.zeros((3, 20, 30), dtype=np.float32)
    views[0, 5:8, 10:12] = 1.0
    views[2, 9:10, 14:20] = 0.5
    cut = crop_together(views, margin=1)
    assert cut.shape == (3, 7, 12)  # rows 4..10, columns 9..20
    assert cut[0].sum() == 6 and cut[2].sum() == 3 and cut[1].max() == 0
    assert crop_together(np.zeros((2, 4, 4))).shape == (2, 4, 4)


def test_example_grid_fits_images_and_voxel_views_into_equal_cells():
    """A colour input and a grid's three projections share one cell size; the projections of a
    box show its extent along each axis, and a row with the wrong cell count is refused."""
    from recon.pipelines.common.examples import display_image, example_grid, grid_views

    grid = np.zeros((16, 16, 16), dtype=np.float32)
    grid[2:6, 4:12, 8:16] = 1.0
    views = grid_views(grid)
    assert views.shape == (32, 32) and views[16:, 16:].max() == 0  # bottom right blank
    assert views[:16, :16].sum() == 8 * 8 and views[:16, 16:].sum() == 4 * 8
    assert views[16:, :16].sum() == 4 * 8
    image = display_image(np.random.default_rng(0).normal(5, 2, (3, 100, 80)))
    assert image.shape == (100, 80, 3) and image.min() == 0 and image.max() == 1
    picture = example_grid([[image, views, views]], ("input", "prediction", "target"))
    assert picture.ndim == 3 and picture.shape[1] == 3 * 100  # the largest side: 100 px
    with pytest.raises(ValueError, match="one cell per column"):
        example_grid([[image, views]], ("input", "prediction", "target"))


@pytest.mark.parametrize(
    ("batches", "expected"), [(6, [0, 1, 2, 3]), (2, [0, 0, 1, 1]), (1, [0] * 4)]
)
def test_example_rows_are_spread_over_the_first_validation_batches(tmp_path, batches, expected):
    """Validation sets are ordered (views of one model side by side), so the grid takes as few
    rows from each batch as fill it; only the first process writes, never the sanity check."""
    from types import SimpleNamespace

    from recon.pipelines.common.examples import ExampleSpec, example_grids_callback

    def rows(module, batch, count):
        return [[np.full((8, 8), batch / 10), np.zeros((8, 8))] for _ in range(count)]

    callback = example_grids_callback(ExampleSpec(("input", "target"), rows), 4)
    trainer = SimpleNamespace(
        sanity_checking=False, is_global_zero=True, num_val_batches=[batches],
        default_root_dir=tmp_path, current_epoch=3,
    )  # fmt: skip
    callback.on_validation_epoch_start(trainer, None)
    for index in range(batches):
        callback.on_validation_batch_end(trainer, None, None, index, index)
    assert [round(r[0][0, 0] * 10) for r in callback.rows] == expected
    callback.on_validation_epoch_end(trainer, None)
    assert (tmp_path / "examples" / "epoch_003.png").is_file()

    for flag in ({"sanity_checking": True}, {"is_global_zero": False}):
        other = SimpleNamespace(**{**vars(trainer), "current_epoch": 4, **flag})
        callback.on_validation_epoch_start(other, None)
        callback.on_validation_batch_end(other, None, None, 0, 0)
        callback.on_validation_epoch_end(other, None)
        assert not (tmp_path / "examples" / "epoch_004.png").exists()


def test_every_task_that_predicts_an_image_or_grid_declares_example_columns():
    from recon.pipelines.common.tasks import load_task

    for name in ("drr", "voxel", "parts", "skull", "corset"):
        spec = load_task(name)
        assert spec.examples is not None and len(spec.examples.columns) >= 3, name
        assert spec.config().examples == 4, name
    assert load_task("corset").examples.columns == ("photos", "prior", "prediction", "target")
    assert load_task("skull").examples.columns == (
        "radiograph", "skull prediction", "skull target", "face prediction", "face target",
    )  # fmt: skip


def test_read_history_of_a_missing_file_is_empty(tmp_path):
    from recon.pipelines.common.curves import plot_curves, read_history

    assert read_history(Path(tmp_path) / "none.csv") == {}
    plot_curves(tmp_path / "none.csv", tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("where", ["new column", "append"])
def test_a_stop_in_the_middle_of_a_metrics_save_leaves_the_history_whole(tmp_path, where):
    """SIGTERM just after an epoch's checkpoint landed while metrics.csv was being rewritten
    under a new header (the epoch's first train/loss_epoch): the stock writer had truncated the
    file, the save on the way out appended rows without a header, and curves.png was not drawn.
    A stop in the middle of a save now leaves the file as it was; the next save writes it all."""
    import csv

    from recon.pipelines.common.curves import read_history
    from recon.pipelines.common.runfolder import history_writer_class

    writer = history_writer_class()(str(tmp_path))
    writer.log_metrics({"train/loss_step": 1.0, "epoch": 0}, 0)
    writer.log_metrics({"val/loss": 0.9, "epoch": 0}, 1)
    writer.save()
    late = {"train/loss_epoch": 0.8, "epoch": 0} if where == "new column" else {"val/loss": 0.7}
    writer.log_metrics({**late, "epoch": 0}, 2)

    class Stop(csv.DictWriter):
        def writerows(self, rows):
            self.writer.writerow(["0.5", "partial"])  # a row begun when the stop lands
            raise KeyboardInterrupt

    before = (tmp_path / "metrics.csv").read_bytes()
    original = csv.DictWriter
    csv.DictWriter = Stop
    try:
        with pytest.raises(KeyboardInterrupt):
            writer.save()
    finally:
        csv.DictWriter = original
    assert (tmp_path / "metrics.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary left
    writer.save()  # what Lightning's finalize does on the way out
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    history = read_history(tmp_path / "metrics.csv")
    assert history["val/loss"][0] == (0.0, 0.9)
    if where == "new column":
        assert history["train/loss"] == [(0.0, 0.8)]
    else:
        assert history["val/loss"] == [(0.0, 0.9), (0.0, 0.7)]


def test_read_history_skips_values_beyond_the_header(tmp_path):
    """A row longer than metrics.csv's header (a history another writer appended to) raised
    AttributeError on the extra values' missing name; they are left out."""
    from recon.pipelines.common.curves import read_history

    (tmp_path / "metrics.csv").write_text("epoch,step,val/loss\n0,1,0.5,0.25\n")
    assert read_history(tmp_path / "metrics.csv") == {"val/loss": [(0.0, 0.5)]}
