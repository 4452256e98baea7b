"""CUDA paths: DRRs, registration and mixed-precision training on a GPU, checked against the CPU
and the truth. Skipped where torch sees no GPU; run them with `pytest -m gpu` on a GPU machine."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def _drr(recon, path, device: str) -> tuple[np.ndarray, float]:
    code, out, err = recon(
        "make-drr", "--rot", "0", "0", "0", "--xyz", "0", "850", "0", "--size", "64",
        "--delx", "6.25", "-o", path, "--device", device, "--json",
    )  # fmt: skip
    assert code == 0, err
    from PIL import Image

    scale = float(json.loads(out)["files"][0]["mm_per_count"])
    return np.asarray(Image.open(path), dtype=np.float64) * scale, scale


def test_drr_on_the_gpu_matches_the_cpu(recon, tmp_path):
    cpu, _ = _drr(recon, tmp_path / "cpu.png", "cpu")
    gpu, _ = _drr(recon, tmp_path / "gpu.png", "cuda")
    assert cpu.max() > 0
    assert np.abs(gpu - cpu).max() <= 2e-3 * cpu.max()


def test_registration_on_the_gpu_reaches_sub_millimetre_mtre(recon, tmp_path):
    xrays = tmp_path / "xrays"
    code, _, err = recon(
        "synth", "xray", "-o", xrays, "--count", "1", "--size", "128", "--seed", "2",
        "--device", "cuda", "-q",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = recon(
        "register", xrays, "-o", tmp_path / "reg", "--init", "dicom",
        "--truth", xrays / "truth.json", "--device", "cuda", "--json",
    )  # fmt: skip
    assert code == 0, err
    row = json.loads(out)["results"][0]
    assert row["init_mtre_mm"] > 5.0 and row["final_mtre_mm"] < 1.0, row


def test_bf16_mixed_training_on_the_gpu_learns(recon, tmp_path):
    code, _, err = recon(
        "synth", "pairs", "-o", tmp_path / "pairs", "--count", "16", "--size", "64", "-q",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = recon(
        "train", "drr", "--data", tmp_path / "pairs", "--epochs", "4", "--batch-size", "4",
        "--set", "size=64", "--device", "cuda", "--precision", "bf16-mixed",
        "-o", tmp_path / "run", "-q",
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    l1 = [float(r["train/l1"]) for r in rows if r.get("train/l1")]
    assert len(l1) == 4 and all(math.isfinite(v) for v in l1)
    assert l1[-1] < l1[0]
