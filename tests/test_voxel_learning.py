"""Learning is real: a short CPU training of task `voxel` beats the mean-shape baseline on
shapes it has never seen (the split is by 3D model)."""

from __future__ import annotations

import csv

import pytest


@pytest.mark.slow
def test_voxel_training_beats_mean_shape(tmp_path, recon):
    from recon.pipelines.occupancy.pix3d import synth_pix3d

    categories = ("bed", "bookcase", "table")
    synth_pix3d(
        tmp_path / "data", models_per_class=5, views_per_model=4, seed=11, categories=categories
    )
    code, _, err = recon(
        "train",
        "voxel",
        "--data",
        tmp_path / "data",
        "--epochs",
        "8",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--set",
        "size=32",
        "--set",
        "hidden=256",
        "--set",
        "val_fraction=0.25",
        "-o",
        tmp_path / "run",
        "--device",
        "cpu",
        "-q",
        "--seed",
        "0",
    )
    assert code == 0, err
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/iou")]
    best = max(float(r["val/iou"]) for r in rows)
    baseline = float(rows[-1]["val/iou_mean_shape"])
    assert best >= baseline + 0.1, (best, baseline)
