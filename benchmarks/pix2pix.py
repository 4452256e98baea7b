"""pix2pix (X-ray -> DRR) benchmarks: training speed, and learning within a CPU time budget.

Run: .venv/bin/python benchmarks/pix2pix.py speed        iterations/s of one pix2pix step
     .venv/bin/python benchmarks/pix2pix.py acceptance   synth pairs, train <= 15 min, score

speed: one iteration = G forward, PatchGAN update, G update (GAN + 100 L1), batch 1, reference
networks (U-Net 256, 64 filters) at 256 px; on CUDA also bf16 autocast + channels-last.
acceptance: `recon synth pairs` at 128 px, `recon train drr` under a wall-clock limit, then on
the held-out pairs SSIM / PSNR of the prediction against the DRR, and of the X-ray itself
(identity baseline). Target: SSIM gain >= 0.1 and PSNR up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _args import device, positive_float, positive_int


def pix2pix_step(generator, critic, opt_g, opt_d, xray, drr, autocast):
    import torch
    import torch.nn.functional as F

    def gan(logits, real):
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)

    with autocast():
        fake = generator(xray)
        loss_d = 0.5 * (
            gan(critic(torch.cat([xray, fake.detach()], 1)), False)
            + gan(critic(torch.cat([xray, drr], 1)), True)
        )
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    with autocast():
        loss_g = gan(critic(torch.cat([xray, fake], 1)), True) + 100 * F.l1_loss(fake, drr)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()


def speed(size: int, base: int, batch: int, device: str, steps: int, threads: int) -> None:
    import contextlib

    import torch

    from recon.models import pix2pix
    from recon.models import pix2pix_defaults as recipe

    torch.set_num_threads(threads)
    modes = [("fp32", False)]
    if device.startswith("cuda"):
        modes.append(("bf16 + channels-last", True))
    rates = {}
    for label, fast in modes:
        torch.manual_seed(0)
        generator = pix2pix.init_weights(pix2pix.UNetGenerator(1, 1, size, base)).to(device)
        critic = pix2pix.init_weights(pix2pix.PatchDiscriminator(2, base)).to(device)
        xray = torch.randn(batch, 1, size, size, device=device)
        drr = torch.randn(batch, 1, size, size, device=device)
        if fast:
            generator = generator.to(memory_format=torch.channels_last)
            critic = critic.to(memory_format=torch.channels_last)
            xray = xray.to(memory_format=torch.channels_last)
            drr = drr.to(memory_format=torch.channels_last)

            def autocast():
                return torch.autocast("cuda", dtype=torch.bfloat16)
        else:
            autocast = contextlib.nullcontext
        opt_g = torch.optim.Adam(generator.parameters(), recipe.LR, betas=recipe.BETAS)
        opt_d = torch.optim.Adam(critic.parameters(), recipe.LR, betas=recipe.BETAS)
        for _ in range(2):  # warm-up
            pix2pix_step(generator, critic, opt_g, opt_d, xray, drr, autocast)
        _sync(device)
        clock = time.perf_counter()
        for _ in range(steps):
            pix2pix_step(generator, critic, opt_g, opt_d, xray, drr, autocast)
        _sync(device)
        rates[label] = steps / (time.perf_counter() - clock)
        print(
            f"{device} {label:22s} {size} px, batch {batch}, {base} filters: "
            f"{rates[label]:.3f} it/s ({rates[label] * batch:.3f} images/s, {threads} threads)"
        )
    if len(rates) == 2:
        print(
            f"bf16 + channels-last speed-up: x{rates['bf16 + channels-last'] / rates['fp32']:.2f}"
        )


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def acceptance(args) -> None:
    import numpy as np
    import torch

    from recon.pipelines.common.engine import RunOptions, fit
    from recon.pipelines.common.metrics import psnr, ssim
    from recon.pipelines.xray.drr_task import (
        TASK,
        DrrConfig,
        load_generator,
        split_pairs,
        translate,
    )
    from recon.pipelines.xray.pairs import find_pairs, read_gray
    from recon.pipelines.xray.synth_pairs import synth_pairs

    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pix2pix_bench_"))
    data = work / "pairs"
    clock = time.perf_counter()
    if not data.is_dir():
        synth_pairs(data, args.pairs, args.size, seed=0)
    print(f"synth pairs: {args.pairs} at {args.size} px in {time.perf_counter() - clock:.0f} s")
    cfg = DrrConfig(
        data=str(data),
        size=args.size,
        base_filters=args.base_filters,
        batch_size=args.batch_size,
        lr=args.lr,
        epochs=args.epochs,
        seed=0,
    )
    run = RunOptions(
        out=work / "run", overwrite=True, quiet=True, device=args.device, max_time=str(args.minutes)
    )
    result = fit(TASK, cfg, run)
    print(
        f"training: {result['epochs_run']} epochs in {result['seconds'] / 60:.1f} min "
        f"(limit {args.minutes} min), size {args.size}, {args.base_filters} filters, "
        f"batch {args.batch_size}, lr {args.lr}"
    )
    generator, config = load_generator(work / "run" / "checkpoints" / "last.ckpt")
    _, held_out = split_pairs(find_pairs(data), cfg.val_fraction, cfg.seed, cfg.source)
    scores = {"ssim_pred": [], "ssim_id": [], "psnr_pred": [], "psnr_id": []}
    for pair in held_out:
        xray, _ = read_gray(pair.xray)
        drr, _ = read_gray(pair.drr)
        pred = translate(generator, xray, config["size"])
        scores["ssim_pred"].append(float(ssim(pred, drr)[0]))
        scores["ssim_id"].append(float(ssim(xray, drr)[0]))
        scores["psnr_pred"].append(float(psnr(pred, drr)[0]))
        scores["psnr_id"].append(float(psnr(xray, drr)[0]))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    gain = mean["ssim_pred"] - mean["ssim_id"]
    print(f"held-out pairs: {len(held_out)}")
    print(
        f"SSIM  identity {mean['ssim_id']:.3f}  prediction {mean['ssim_pred']:.3f}  "
        f"gain {gain:+.3f}  (target >= +0.1: {'PASS' if gain >= 0.1 else 'FAIL'})"
    )
    print(
        f"PSNR  identity {mean['psnr_id']:.2f} dB  prediction {mean['psnr_pred']:.2f} dB  "
        f"gain {mean['psnr_pred'] - mean['psnr_id']:+.2f} dB"
    )
    print(f"run folder: {work / 'run'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    fast = sub.add_parser("speed")
    fast.add_argument("--size", type=positive_int, default=256)
    fast.add_argument("--base-filters", type=positive_int, default=64)
    fast.add_argument("--batch-size", type=positive_int, default=1)
    fast.add_argument("--device", type=device, default="cpu")
    fast.add_argument("--steps", type=positive_int, default=5)
    fast.add_argument("--threads", type=positive_int, default=1)
    accept = sub.add_parser("acceptance")
    accept.add_argument("--pairs", type=positive_int, default=160)
    accept.add_argument("--size", type=positive_int, default=128)
    accept.add_argument("--base-filters", type=positive_int, default=16)
    accept.add_argument("--batch-size", type=positive_int, default=4)
    accept.add_argument("--lr", type=positive_float, default=2e-4)
    accept.add_argument("--epochs", type=positive_int, default=40)
    accept.add_argument("--minutes", type=positive_float, default=15.0)
    accept.add_argument("--device", type=device, default="cpu")
    accept.add_argument("--threads", type=positive_int, default=1)
    accept.add_argument("--workdir", default=None, help="Reuse/keep pairs and run here.")
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.size, args.base_filters, args.batch_size, args.device, args.steps, args.threads)
    else:
        acceptance(args)


if __name__ == "__main__":
    main()
