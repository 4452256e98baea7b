"""`recon synth xray`, `recon register` and `recon train pose` on the bundled chest CT."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from recon.pipelines.xray.figures import figure_size

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """One synthetic 128 px X-ray of the bundled CT (module-wide: rendering takes seconds)."""
    from recon.cli.app import main

    xrays = tmp_path_factory.mktemp("synthetic") / "xrays"
    args = ["synth", "xray", "-o", xrays, "--count", 1, "--size", 128, "--seed", 2]
    try:
        main([str(a) for a in [*args, "--device", "cpu", "-q"]])
    except SystemExit as exit_:
        assert not exit_.code
    return xrays


def test_synth_then_register_reaches_sub_millimetre_mtre(synthetic, tmp_path, recon):
    xrays, out = synthetic, tmp_path / "reg"
    truth = json.loads((xrays / "truth.json").read_text())
    assert list(truth["xrays"]) == ["xray_000.dcm"]
    assert len(json.loads((xrays / "fiducials.json").read_text())["points"]) >= 10

    code, stdout, err = recon(
        "register",
        xrays,
        "-o",
        out,
        "--init",
        "dicom",
        "--truth",
        xrays / "truth.json",
        "--crop",
        8,
        "--threads",
        1,
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, err
    row = json.loads(stdout)["results"][0]
    assert row["init_mtre_mm"] > 5.0
    assert row["final_mtre_mm"] < 1.0, row
    assert row["final_rotation_error_deg"] < 0.5 and row["final_translation_error_mm"] < 1.0
    parameters = torch.load(out / "xray_000" / "parameters.pt", weights_only=True)
    for key in ("detector", "runtime", "init_pose", "final_pose", "trajectory", "log"):
        assert key in parameters
    assert parameters["final_pose"].shape == (1, 4, 4)
    # the found pose, in degrees and mm, next to the true one; the QC figure at its stated size
    true = truth["xrays"]["xray_000.dcm"]
    assert max(abs(a - b) for a, b in zip(row["rot_deg"], true["rot_deg"], strict=True)) < 1.0
    assert max(abs(a - b) for a, b in zip(row["xyz_mm"], true["xyz_mm"], strict=True)) < 5.0
    assert row["edge_agreement"] > row["init_edge_agreement"] + 0.2
    with Image.open(out / "xray_000" / "overlay.png") as figure:
        assert figure.size == figure_size(120, 120, 4)  # 128 px less the 8 px crop

    # restart from the previous result: it starts where the first run ended
    code, stdout, err = recon(
        "register",
        xrays / "xray_000.dcm",
        "-o",
        tmp_path / "again",
        "--init",
        "restart",
        "--from",
        out,
        "--truth",
        xrays / "truth.json",
        "--crop",
        8,
        "--heights",
        32,
        "--iterations",
        2,
        "--patience",
        2,
        "--mirror-check-below",
        0,
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, err
    again = json.loads(stdout)["results"][0]
    assert again["init_mtre_mm"] == pytest.approx(row["final_mtre_mm"], abs=1e-3)


def test_train_pose_then_register_from_the_model(synthetic, tmp_path, recon):
    run = tmp_path / "run"
    code, stdout, err = recon(
        "train",
        "pose",
        "--epochs",
        1,
        "--batch-size",
        8,
        "--set",
        "samples_per_epoch=16",
        "--set",
        "val_samples=8",
        "--set",
        "size=32",
        "--set",
        "ct_spacing_mm=8",
        "--out",
        run,
        "--device",
        "cpu",
        "-q",
        "--json",
    )
    assert code == 0, err
    metrics = json.loads(stdout)["metrics"]
    assert metrics["val/rotation_error_deg"] >= 0 and "val/translation_error_mm" in metrics
    checkpoint = run / "checkpoints" / "best.ckpt"
    code, stdout, err = recon(
        "register",
        synthetic,
        "-o",
        tmp_path / "reg",
        "--init",
        "model",
        "--checkpoint",
        checkpoint,
        "--truth",
        synthetic / "truth.json",
        "--heights",
        32,
        "--iterations",
        1,
        "--patience",
        1,
        "--min-similarity",
        0,
        "--mirror-check-below",
        0,
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, err
    row = json.loads(stdout)["results"][0]
    assert row["init_rotation_error_deg"] < 60 and row["init_translation_error_mm"] < 200
    # fine-tuning from it with a network of another shape: one line naming what differs (was a
    # raw `RuntimeError: Error(s) in loading state_dict`, exit 1)
    code, _, err = recon(
        "train", "pose", "--set", f"finetune={checkpoint}", "--set", "size=48",
        "--set", "base_filters=4", "--out", tmp_path / "tuned", "--device", "cpu",
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "weights cannot start this one: base_filters" in err and "size 32 (here 48)" in err
    assert not (tmp_path / "tuned").exists()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 5e-5)])
def test_windowed_similarity_equals_xvr_gmncc(dtype, tolerance):
    """The pooled-statistics gmncc gives xvr's value and gradient on random and flat images."""
    from xvr.register.losses import GradientMultiscaleNormalizedCrossCorrelation2d

    from recon.pipelines.xray.registration import standardise
    from recon.pipelines.xray.similarity import GradientMultiscaleNCC

    generator = torch.Generator().manual_seed(0)
    fixed = torch.rand(3, 1, 40, 56, generator=generator, dtype=dtype)
    moving = 0.5 * fixed + torch.rand(3, 1, 40, 56, generator=generator, dtype=dtype)
    fixed[1, :, :20] = 0.3  # flat windows: variance 0, only eps in the denominator
    moving[1, ..., :28] = 0.7
    fixed, moving = standardise(fixed), standardise(moving)
    reference = GradientMultiscaleNormalizedCrossCorrelation2d().to(dtype)
    scores, gradients = [], []
    for similarity in (lambda m: reference(fixed, m), GradientMultiscaleNCC(fixed)):
        moving_ = moving.clone().requires_grad_()
        score = similarity(moving_)
        score.sum().backward()
        scores.append(score.detach())
        gradients.append(moving_.grad)
    assert scores[0].dtype == scores[1].dtype == dtype
    assert torch.allclose(scores[1], scores[0], rtol=0, atol=tolerance)
    scale = float(gradients[0].abs().max())
    assert torch.allclose(gradients[1], gradients[0], rtol=0, atol=tolerance * scale)
