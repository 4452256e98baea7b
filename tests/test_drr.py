"""pix2pix networks, pair reading, the square-fit rule, image metrics, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.models import pix2pix
from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.io import write_png
from recon.pipelines.xray.pairs import find_pairs, fit_square, read_gray, unfit


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> None:
    """A 16-bit DX DICOM file with the project's DICOM writer."""
    from recon.pipelines.xray.drr import Intrinsics
    from recon.pipelines.xray.xray import write_xray_dicom

    height, width = pixels.shape
    detector = Intrinsics(sdd=1020.0, height=height, width=width, delx=1.0, dely=1.0)
    write_xray_dicom(path, np.asarray(pixels, np.uint16), detector, photometric)


def test_unet_shapes_and_dropout_blocks():
    for size, dropouts in ((32, 0), (64, 1), (128, 2), (256, 3)):
        net = pix2pix.UNetGenerator(1, 1, size, base=4)
        assert net(torch.zeros(1, 1, size, size)).shape == (1, 1, size, size)
        assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == dropouts
    with pytest.raises(ValueError):
        pix2pix.UNetGenerator(size=100)


def test_reference_sizes():
    """The reference unet_256 and 70 x 70 PatchGAN, one channel: 54.4 M and 2.76 M weights."""
    generator = pix2pix.UNetGenerator(1, 1, 256)
    critic = pix2pix.PatchDiscriminator(2)
    assert sum(p.numel() for p in generator.parameters()) == 54_407_809
    assert sum(p.numel() for p in critic.parameters()) == 2_764_609


def test_patchgan_sees_70_by_70():
    """Receptive field of one output logit, measured by its input gradient: 70 x 70 px."""
    critic = pix2pix.init_weights(pix2pix.PatchDiscriminator(2, base=4)).eval()
    pair = torch.randn(1, 2, 128, 128, requires_grad=True)
    logits = critic(pair)
    assert logits.shape == (1, 1, 14, 14)
    logits[0, 0, 7, 7].backward()
    rows, cols = torch.nonzero(pair.grad.abs().sum(dim=(0, 1))).T
    assert int(rows.max() - rows.min() + 1) == 70
    assert int(cols.max() - cols.min() + 1) == 70


def test_the_patch_grid_side_is_the_discriminator_s_own():
    """drr's settings check refuses patch_layers that leave no patch (patch_grid_side < 1);
    training failed there in its first step. The side must be what the network gives."""
    from recon.models.pix2pix_defaults import patch_grid_side

    for size in (32, 64):
        for layers in range(1, 7):
            critic = pix2pix.PatchDiscriminator(2, base=2, layers=layers).train()
            side = patch_grid_side(size, layers)
            if side >= 1:
                assert critic(torch.zeros(2, 2, size, size)).shape[-1] == side, (size, layers)
            else:
                with pytest.raises((RuntimeError, ValueError)):  # no room, or 1 x 1 batch-norm
                    critic(torch.zeros(1, 2, size, size))


def test_lr_constant_then_linear():
    rates = [pix2pix.linear_decay(e, 100, 100) for e in range(200)]
    assert rates[:100] == [1.0] * 100
    assert all(a > b for a, b in zip(rates[99:], rates[100:], strict=False))
    assert rates[-1] < 0.01


def test_read_gray_bit_depths(tmp_path):
    ramp = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    write_png(tmp_path / "a8.png", np.rint(ramp * 255).astype(np.uint8))
    write_png(tmp_path / "a16.png", np.rint(ramp * 65535).astype(np.uint16))
    write_dicom(tmp_path / "a.dcm", np.rint(ramp * 65535).astype(np.uint16))
    write_dicom(tmp_path / "inv.dcm", np.rint((1 - ramp) * 65535), "MONOCHROME1")
    for name, bits, tolerance in (
        ("a8.png", 8, 1 / 255),
        ("a16.png", 16, 1e-4),
        ("a.dcm", 16, 1e-4),
        ("inv.dcm", 16, 1e-4),
    ):
        image, depth = read_gray(tmp_path / name)
        assert image.dtype == np.float32 and image.shape == (48, 64)
        assert depth == bits
        assert np.abs(image - ramp).max() <= tolerance, name


def test_read_gray_follows_what_the_dicom_says(tmp_path):
    """Pairs read DICOM through the one DICOM reader: the Pixel Intensity Relationship Sign (and
    a negative Rescale Slope turning it) decides which values are dense, not MONOCHROME1 alone;
    padding reads 0. Each file stores the ramp another way and must read back as the ramp."""
    import pydicom
    from dicom_files import edit_dicom

    ramp = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    falling = np.rint((1 - ramp) * 65535)
    write_dicom(tmp_path / "raw.dcm", falling)  # detector values: lower = less beam = denser
    edit_dicom(
        tmp_path / "raw.dcm", PixelIntensityRelationship="LIN", PixelIntensityRelationshipSign=1
    )
    write_dicom(tmp_path / "rescaled.dcm", falling)  # turned back by the rescale
    edit_dicom(
        tmp_path / "rescaled.dcm",
        PixelIntensityRelationship="LOG",
        PixelIntensityRelationshipSign=1,
        RescaleSlope=-1,
        RescaleIntercept=65535,
    )
    write_dicom(tmp_path / "mono1_log.dcm", np.rint(ramp * 65535), "MONOCHROME1")
    edit_dicom(
        tmp_path / "mono1_log.dcm",
        PixelIntensityRelationship="LOG",
        PixelIntensityRelationshipSign=-1,
    )  # higher stored = denser, whatever display
    for name in ("raw.dcm", "rescaled.dcm", "mono1_log.dcm"):
        image, _ = read_gray(tmp_path / name)
        assert np.abs(image - ramp).max() <= 1e-4, name
    stored = np.rint(ramp * 65535)
    stored[:8, :8] = 0
    write_dicom(tmp_path / "padded.dcm", stored, "MONOCHROME1")
    padded = pydicom.dcmread(tmp_path / "padded.dcm")
    padded.add_new(0x00280120, "US", 0)  # Pixel Padding Value
    padded.save_as(tmp_path / "padded.dcm")
    image, _ = read_gray(tmp_path / "padded.dcm")
    assert (image[:8, :8] == 0).all()
    assert np.abs(image[8:, 8:] - (1 - ramp[8:, 8:])).max() <= 1e-4


def test_square_fit_round_trip():
    """Pad + resize to 64 px and back: a smooth non-square image returns within 2% MAE."""
    yy, xx = np.mgrid[:90, :150]
    image = (0.5 + 0.4 * np.sin(xx / 15) * np.cos(yy / 11)).astype(np.float32)
    tensor, placement = fit_square(image, 64)
    assert tensor.shape == (1, 64, 64)
    assert (placement.top, placement.left, placement.side) == (30, 0, 150)
    back = unfit(tensor, placement)
    assert back.shape == image.shape
    assert np.abs(back - image).mean() < 0.02


def test_image_metrics_match_definitions():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from recon.pipelines.common.metrics import mae, psnr, ssim

    rng = np.random.default_rng(0)
    a = rng.random((64, 64)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    reference = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert float(ssim(a, b)[0]) == pytest.approx(reference, abs=1e-4)
    assert float(psnr(a, b)[0]) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=1), abs=1e-3
    )
    assert float(mae(a, b)[0]) == pytest.approx(np.abs(a - b).mean(), abs=1e-6)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-5)


def test_ssim_is_the_same_under_mixed_precision():
    """Under autocast (--precision bf16-mixed or 16-mixed) the SSIM's convolutions ran in
    bfloat16: the identity baseline of a drr run read 0.973 instead of 0.905, and val/ssim,
    which picks best.ckpt, moved with it. It is computed in float32 whatever the precision."""
    import torch
    from skimage.metrics import structural_similarity

    from recon.pipelines.common.metrics import ssim

    rng = np.random.default_rng(1)
    a = rng.random((4, 64, 64)).astype(np.float32)
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    reference = [
        structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        for x, y in zip(a, b, strict=True)
    ]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim(torch.from_numpy(a).bfloat16(), torch.from_numpy(b))
    assert mixed.dtype == torch.float32
    assert mixed.numpy() == pytest.approx(reference, abs=5e-3)  # inputs rounded to bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ssim(a, b).numpy() == pytest.approx(reference, abs=1e-4)


def test_find_pairs_errors(tmp_path):
    for sub in ("xray", "drr"):
        (tmp_path / sub).mkdir()
    with pytest.raises(BadInput, match="no picture or DICOM"):
        find_pairs(tmp_path)
    write_png(tmp_path / "xray" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(BadInput, match="unpaired"):
        find_pairs(tmp_path)
    write_dicom(tmp_path / "drr" / "a.dcm", np.zeros((8, 9), np.uint16))
    with pytest.raises(BadInput, match="differs"):
        find_pairs(tmp_path)
    write_dicom(tmp_path / "drr" / "a.dcm", np.zeros((8, 8), np.uint16))
    assert [p.name for p in find_pairs(tmp_path)] == ["a"]
    with pytest.raises(BadInput, match="no such folder"):
        find_pairs(tmp_path / "missing")
    # a second file of one name was dropped without a word: which one pairs is a guess
    write_png(tmp_path / "drr" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(BadInput, match="a.png: has the name of a.dcm"):
        find_pairs(tmp_path)


def test_a_pair_set_of_dicoms_named_without_a_suffix(tmp_path, recon):
    """A scanner's DICOMs named IM0001 or by UID (1.2.840.5), known by their 'DICM' preamble as
    `register` knows them: a pair set of them was "no image named like ... (2 unpaired)" (see
    test_drr_batch for predict drr's folders); a UID lost its last part to the stem."""
    rng = np.random.default_rng(0)
    for sub in ("xray", "drr"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for name in ("IM0001", "1.2.840.5"):
        write_dicom(tmp_path / "set" / "xray" / name, rng.integers(0, 4000, (8, 8)))
        write_png(tmp_path / "set" / "drr" / f"{name}.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "set" / "xray" / "notes").write_text("not an image, not a DICOM")
    pairs = find_pairs(tmp_path / "set")
    assert [p.name for p in pairs] == ["1.2.840.5", "IM0001"]  # the UID whole, not 1.2.840
    code, out, err = recon("augment", tmp_path / "set", "-o", tmp_path / "aug", "--copies", 1,
                           "--json", "-q")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["input_pairs"] == 2
    assert len(find_pairs(tmp_path / "aug")) == 4


def test_train_drr_bad_data_exit_2(tmp_path, recon):
    (tmp_path / "set" / "xray").mkdir(parents=True)
    (tmp_path / "set" / "drr").mkdir()
    write_png(tmp_path / "set" / "xray" / "a.png", np.zeros((8, 8), np.uint8))
    code, _, err = recon("train", "drr", "--data", tmp_path / "set", "-o", tmp_path / "run", "-q")
    assert code == 2 and err.count("\n") == 1 and "unpaired" in err
    assert not (tmp_path / "run").exists()
    code, _, err = recon("train", "drr", "-o", tmp_path / "run2", "-q")
    assert code == 2 and "--data" in err


def test_predict_drr_refuses_foreign_checkpoints(tmp_path, recon):
    image = tmp_path / "x.png"
    write_png(image, np.zeros((16, 16), np.uint8))
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"task": "voxel", "config": {}}}, other)
    code, _, err = recon("predict", "drr", image, "-c", other, "-o", tmp_path / "out")
    assert code == 2 and "not 'drr'" in err and not (tmp_path / "out").exists()
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}}, bare)  # no hyper-parameters: was "a checkpoint of task None"
    code, _, err = recon("predict", "drr", image, "-c", bare, "-o", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1, err
    assert "bare.ckpt: not a recon checkpoint of task 'drr' (it records no task)" in err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    code, _, err = recon("predict", "drr", image, "-c", garbage, "-o", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "out").exists()
    code, _, err = recon(
        "predict", "drr", tmp_path / "missing.png", "-c", other, "-o", tmp_path / "out"
    )
    assert code == 2 and "missing.png" in err


def test_resume_matches_uninterrupted(tmp_path):
    """Stopped after epoch 2 of 3 and resumed from last.ckpt: the same weights, to the bit."""
    import lightning as L

    from recon.pipelines.common.engine import RunOptions, fit
    from recon.pipelines.xray.drr_task import TASK, DrrConfig

    rng = np.random.default_rng(0)
    for sub in ("xray", "drr"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for index in range(8):
        drr = rng.random((32, 32))
        write_png(tmp_path / "set" / "drr" / f"{index}.png", np.rint(drr * 255).astype(np.uint8))
        xray = np.rint((1 - drr) ** 2 * 255).astype(np.uint8)
        write_png(tmp_path / "set" / "xray" / f"{index}.png", xray)

    class StopAfterSecondEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            trainer.should_stop = trainer.current_epoch == 1

    cfg = DrrConfig(data=str(tmp_path / "set"), size=32, base_filters=4, batch_size=2, epochs=3)
    fit(TASK, cfg, RunOptions(out=tmp_path / "full", quiet=True, device="cpu"))
    part = tmp_path / "part"
    fit(
        TASK,
        cfg,
        RunOptions(out=part, quiet=True, device="cpu", extra_callbacks=[StopAfterSecondEpoch()]),
    )
    fit(
        TASK,
        cfg,
        RunOptions(out=part, quiet=True, device="cpu", resume=part / "checkpoints" / "last.ckpt"),
    )
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert full["epoch"] == resumed["epoch"] == 2
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def test_resume_with_more_epochs_follows_the_new_schedule(tmp_path):
    """A finished 2-epoch run resumed to 4 epochs trains each epoch at the rate of a 4-epoch
    schedule (constant half, then linear decay): it trained its first resumed epoch at the
    finished run's last rate, 0."""
    import csv

    from recon.models.pix2pix import linear_decay
    from recon.pipelines.common.engine import RunOptions, fit
    from recon.pipelines.xray.drr_task import TASK, DrrConfig

    rng = np.random.default_rng(0)
    for sub in ("xray", "drr"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for index in range(6):
        drr = np.rint(rng.random((32, 32)) * 255).astype(np.uint8)
        write_png(tmp_path / "set" / "drr" / f"{index}.png", drr)
        write_png(tmp_path / "set" / "xray" / f"{index}.png", 255 - drr)
    run = tmp_path / "run"
    settings = {"data": str(tmp_path / "set"), "size": 32, "base_filters": 4, "batch_size": 2}
    fit(TASK, DrrConfig(**settings, epochs=2), RunOptions(out=run, quiet=True, device="cpu"))
    options = RunOptions(out=run, quiet=True, device="cpu", resume=run / "checkpoints/last.ckpt")
    fit(TASK, DrrConfig(**settings, epochs=4), options)
    with (run / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/lr")]
    rates = {int(r["epoch"]): float(r["train/lr"]) for r in rows}
    lr = DrrConfig().lr
    before = {e: lr * linear_decay(e, 1, 1) for e in (0, 1)}  # the 2-epoch run's own schedule
    after = {e: lr * linear_decay(e, 2, 2) for e in (2, 3)}  # 2/3 and 1/3 of lr, not 0
    assert rates == pytest.approx({**before, **after})
