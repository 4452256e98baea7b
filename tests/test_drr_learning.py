"""X-ray -> DRR end to end as a user runs it: synth pairs, train drr, predict drr, scored.

Learning is real when, on held-out pairs, the predicted DRR is closer to the true DRR than the
X-ray itself is: SSIM(prediction, DRR) - SSIM(X-ray, DRR) >= 0.05 and PSNR up by >= 3 dB
(64 px, 16-filter networks, 20 epochs at LR 6e-4 without jitter, on CPU; figures at 128 px are
in benchmarks/pix2pix.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon.pipelines.common.metrics import psnr, ssim
from recon.pipelines.xray.pairs import find_pairs, read_gray


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder, run folder, held-out pairs) after a short CPU training."""
    from recon.cli.app import main
    from recon.pipelines.xray.drr_task import split_pairs

    root = tmp_path_factory.mktemp("drr")
    data, run = root / "pairs", root / "run"

    def recon(*args):
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
            raise SystemExit(0)
        assert exit_.value.code in (0, None)

    recon("synth", "pairs", "-o", data, "-n", "40", "--size", "64", "--device", "cpu", "-q")
    settings = "--set size=64 --set base_filters=16 --set jitter=false --lr 6e-4 --batch-size 4"
    recon(
        "train",
        "drr",
        "--data",
        data,
        *settings.split(),
        "--epochs",
        "20",
        "--device",
        "cpu",
        "-o",
        run,
        "-q",
    )
    _, held_out = split_pairs(find_pairs(data), 0.2, 0)
    return data, run, held_out


def test_prediction_beats_identity(trained, tmp_path, recon):
    _, run, held_out = trained
    xrays = [p.xray for p in held_out]
    code, out, err = recon(
        "predict",
        "drr",
        *xrays,
        "-c",
        run / "checkpoints" / "last.ckpt",
        "-o",
        tmp_path / "pred",
        "--json",
    )
    assert code == 0, err
    assert len(json.loads(out)["outputs"]) == len(held_out) == 8
    gains_ssim, gains_psnr = [], []
    for pair in held_out:
        xray, _ = read_gray(pair.xray)
        drr, _ = read_gray(pair.drr)
        pred, bits = read_gray(tmp_path / "pred" / f"{pair.name}.png")
        assert bits == 16 and pred.shape == drr.shape
        gains_ssim.append(float(ssim(pred, drr)[0] - ssim(xray, drr)[0]))
        gains_psnr.append(float(psnr(pred, drr)[0] - psnr(xray, drr)[0]))
    assert np.mean(gains_ssim) >= 0.05, gains_ssim
    assert np.mean(gains_psnr) >= 3.0, gains_psnr


def test_run_folder(trained):
    _, run, _ = trained
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "examples" / "epoch_019.png").is_file()
    grid, _ = read_gray(run / "examples" / "epoch_019.png")
    factor = grid.shape[1] // (3 * 64)  # columns under 96 px are enlarged so labels fit
    assert factor >= 1 and grid.shape[1] == 3 * 64 * factor
    band = grid.shape[0] - 4 * 64 * factor  # rows of input | prediction | target below it
    assert 10 <= band < 64 and grid[:band].max() > 0.8  # white labels on a black band
    header = (run / "metrics.csv").read_text().splitlines()[0]
    for name in ("val/ssim", "val/psnr", "val/mae", "val/ssim_identity", "train/loss"):
        assert name in header


def test_predict_any_size_and_dicom(trained, tmp_path, recon):
    """Non-square 8-bit PNG and 16-bit DICOM in, outputs of exactly the input sizes."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.xray.drr import Intrinsics
    from recon.pipelines.xray.xray import write_xray_dicom

    data, run, held_out = trained
    xray, _ = read_gray(held_out[0].xray)
    write_png(tmp_path / "wide.png", np.rint(xray[8:40] * 255).astype(np.uint8))
    tall = np.rint(np.repeat(xray, 2, axis=0) * 65535).astype(np.uint16)
    write_xray_dicom(tmp_path / "tall.dcm", tall, Intrinsics(1020.0, 128, 64, 1.0, 1.0))
    code, _, err = recon(
        "predict",
        "drr",
        tmp_path / "wide.png",
        tmp_path / "tall.dcm",
        "-c",
        run / "checkpoints" / "best.ckpt",
        "-o",
        tmp_path / "out",
        "--bits",
        "8",
        "-q",
    )
    assert code == 0, err
    wide, bits = read_gray(tmp_path / "out" / "wide.png")
    tall, _ = read_gray(tmp_path / "out" / "tall.png")
    assert bits == 8 and wide.shape == (32, 64) and tall.shape == (128, 64)
    code, _, err = recon(
        "predict",
        "drr",
        tmp_path / "wide.png",
        "-c",
        run / "checkpoints" / "best.ckpt",
        "-o",
        tmp_path / "out",
    )
    assert code == 2 and "already exists" in err


def _pairs_named(names):
    from pathlib import Path

    from recon.pipelines.xray.pairs import Pair

    return [Pair(n, Path(f"xray/{n}.png"), Path(f"drr/{n}.png")) for n in sorted(names)]


def test_split_keeps_augmented_copies_with_their_source():
    """`recon augment pairs -o pairs_aug` then `train drr`: no validation pair may have its
    original or an _augK copy in training (the old split by file name leaked 6 of 6)."""
    from recon.pipelines.xray.drr_task import source_name, split_pairs

    sources = [f"case{i:03d}" for i in range(30)]
    names = sources + [f"{s}_aug{k}" for s in sources for k in range(1, 5)]
    for seed in range(5):
        train, val = split_pairs(_pairs_named(names), 0.2, seed)
        assert len(train) == 24 * 5
        train_sources = {source_name(p.name) for p in train}
        val_sources = {source_name(p.name) for p in val}
        assert val_sources and not train_sources & val_sources
        # validation: the held-out originals, once each (their copies were 80% of it)
        assert len(val_sources) == 6 and sorted(p.name for p in val) == sorted(val_sources)
    # a held-out source without its original (augment --no-originals) keeps its copies
    train, val = split_pairs(_pairs_named([n for n in names if "_aug" in n]), 0.2, 0)
    assert len(val) == 6 * 4 and len(train) == 24 * 4


def test_split_without_copies_is_a_shuffle_of_the_pairs():
    """Without augmented copies every pair is its own source: the held-out pairs are the ones a
    seeded permutation of the sorted names puts first (the figures in the README stand)."""
    from recon.pipelines.xray.drr_task import split_pairs

    pairs = _pairs_named([f"p{i:03d}" for i in range(40)])
    train, val = split_pairs(pairs, 0.2, 0)
    order = np.random.default_rng(0).permutation(40)
    assert [p.name for p in val] == [pairs[i].name for i in sorted(order[:8])]
    assert len(train) == 32


def test_split_by_a_source_pattern_keeps_each_patient_on_one_side():
    """Pairs named patA_view0 ... patE_view3 with --set source='^[^_]+': no patient in both
    splits (by name alone patA, patB and patE fell on both sides); a bad pattern is one line."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.drr_task import DrrConfig, check, source_name, split_pairs

    names = [f"pat{p}_view{v}" for p in "ABCDEFGHIJ" for v in range(4)]
    names += [f"{n}_aug1" for n in names]
    for seed in range(5):
        train, val = split_pairs(_pairs_named(names), 0.2, seed, "^[^_]+")
        patients = [{source_name(p.name, "^[^_]+") for p in side} for side in (train, val)]
        assert not patients[0] & patients[1] and len(patients[1]) == 2
        assert sorted(p.name for p in val) == sorted(
            f"{q}_view{v}" for q in patients[1] for v in range(4)
        )
    plain = split_pairs(_pairs_named(names), 0.2, 0)
    assert {source_name(p.name, "^[^_]+") for p in plain[0]} & {
        source_name(p.name, "^[^_]+") for p in plain[1]
    }
    with pytest.raises(BadInput, match="setting source: not a regular expression"):
        check(DrrConfig(data=".", source="pat(["))


@pytest.mark.parametrize("pattern", ["Q+", "^pat[A-C]", "x*"])
def test_a_source_pattern_that_misses_a_name_is_refused(tmp_path, pattern):
    """A typo in --set source used to be silent: every name it did not match became a source
    of its own, so one patient's views fell on both sides of the split (the leak the setting
    prevents). A pattern that finds nothing (or only an empty match) in some name is one line."""
    from PIL import Image

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.drr_task import DrrConfig, check

    for folder in ("xray", "drr"):
        (tmp_path / folder).mkdir()
        for patient in "ABCDE":
            for view in range(2):
                Image.new("L", (8, 8)).save(tmp_path / folder / f"pat{patient}_view{view}.png")
    check(DrrConfig(data=str(tmp_path), source="^[^_]+"))
    missed = {"Q+": 10, "^pat[A-C]": 4, "x*": 10}[pattern]
    with pytest.raises(BadInput, match=rf"matches nothing in {missed} of 10 pair names"):
        check(DrrConfig(data=str(tmp_path), source=pattern))
