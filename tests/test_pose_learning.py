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


def test_a_resume_from_a_replaced_finetune_checkpoint_says_what_a_resume_can_do(tmp_path, recon):
    """A resume whose `finetune` checkpoint was replaced by one of other settings was told to
    `set them as the checkpoint has them`, which a resume cannot: its settings are fixed."""
    import torch

    from recon.pipelines.common.engine import config_dict
    from recon.pipelines.xray.pose_task import PoseConfig

    start, last = tmp_path / "start.ckpt", tmp_path / "last.ckpt"
    saved = {"task": "pose", "config": config_dict(PoseConfig(size=32, base_filters=4))}
    torch.save({"state_dict": {}, "hyper_parameters": saved}, start)
    config = config_dict(PoseConfig(size=48, base_filters=8, finetune=str(start)))
    saved = {"task": "pose", "config": config}
    torch.save(
        {"state_dict": {}, "hyper_parameters": saved, "optimizer_states": [], "loops": {}}, last
    )
    code, out, err = recon("train", "pose", "--resume", last, "--epochs", 5, "--device", "cpu",
                           "--out", tmp_path / "run")  # fmt: skip
    assert code == 2, err
    assert err.strip() == (
        f"error: {start}: not the checkpoint {last} started from (its network was built with "
        "other settings: base_filters 4 (here 8), size 32 (here 48)); put that one back, or "
        "start a new run"
    )
    assert not (tmp_path / "run").exists()
