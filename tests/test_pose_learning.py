"""Task `pose` learns: a short CPU training beats the nominal pose as the answer on its fixed
validation poses (DRRs of the bundled CT rendered on the fly)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_pose_training_beats_the_nominal_pose(tmp_path, recon):
    """8 epochs of 256 random poses at 32 px (8 mm CT): mTRE 26.8 / 31.8 / 23.7 mm against the
    nominal pose's 56.6 / 57.6 / 57.3 on seeds 0 / 1 / 2, rotation error 6.7 / 9.1 / 6.0 deg
    against 17.6 / 19.7 / 20.0."""
    code, out, err = recon(
        "train", "pose", "--epochs", "8", "--batch-size", "16", "--lr", "1e-3",
        "--set", "samples_per_epoch=256", "--set", "val_samples=32", "--set", "size=32",
        "--set", "ct_spacing_mm=8", "--set", "n_points=32",
        "--out", tmp_path / "run", "--device", "cpu", "-q", "--seed", "0", "--json",
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    for name in ("val/mtre_mm", "val/rotation_error_deg", "val/translation_error_mm"):
        assert metrics[name] <= 0.75 * metrics[f"{name}_nominal"], (name, metrics)


@pytest.mark.parametrize(
    "setting,message",
    [
        ("nominal_xyz_mm=[0, .nan, 0]", "--set nominal_xyz_mm must be in [-10000, 10000], not nan"),
        ("nominal_rot_deg=[0, 0, 1000]", "--set nominal_rot_deg must be in [-360, 360], not 1000"),
    ],
)
def test_nominal_pose_settings_have_a_stated_range(tmp_path, recon, setting, message):
    """The nominal pose took any angle and said `must be , not nan` for a NaN translation."""
    code, out, err = recon("train", "pose", "--set", setting, "--epochs", 1, "--device", "cpu",
                           "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and err.strip().splitlines()[-1] == f"error: {message}", err
    assert not (tmp_path / "run").exists()
