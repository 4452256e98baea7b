"""Task `drr`: pix2pix translation of an X-ray into the DRR it would have been.

Data: a pair set (ROOT/xray/NAME + ROOT/drr/NAME, see recon.pipelines.xray.pairs), split into train
and validation by a seeded shuffle of the source pairs: `recon augment`'s copies NAME_augK stay on
the side of NAME, so validation never sees a pair whose original or copy was trained on. Images
are square-fitted to `size` and scaled to [-1, 1]. Training follows the reference pix2pix
recipe (defaults in models/pix2pix_defaults.py): each batch first updates the PatchGAN on (X-ray,
DRR) as real and (X-ray, G(X-ray)) as fake, loss halved, then the generator on GAN + lambda_l1 *
L1; Adam (lr, beta1) for both; the learning rate is constant for the first `constant_fraction`
of the epochs, then decays linearly to ~0.
Training batches get the reference jitter: resize up by 286/256, random crop back, random flip.

Validation (generator in eval mode) logs val/ssim, val/psnr, val/mae of G(X-ray) against the
DRR on [0, 1] images, and the identity baseline val/ssim_identity = SSIM(X-ray, DRR); each epoch
writes RUN/examples/epoch_NNN.png, rows of input | prediction | target under column labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from recon.models import pix2pix_defaults as recipe
from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.examples import ExampleSpec
from recon.pipelines.common.sampling import loader_epoch, seeded_loader
from recon.pipelines.common.settings import (
    Baseline,
    TaskSpec,
    TrainConfig,
    config_dict,
    examples_setting,
    setting,
)

TASK_NAME = "drr"


@dataclass
class DrrConfig(TrainConfig):
    epochs: int = 200  # reference: 100 constant + 100 decaying
    batch_size: int = recipe.BATCH_SIZE
    lr: float = recipe.LR
    beta1: float = setting(recipe.BETAS[0], "Adam beta1 (both networks)", 0, 1, high_open=True)
    lambda_l1: float = setting(recipe.LAMBDA_L1, "weight of the L1 term in the G loss", 0, 1e4)
    constant_fraction: float = setting(0.5, "share of epochs at full learning rate", 0, 1)
    size: int = setting(256, "training side in pixels, a power of two", 32, 4096)
    base_filters: int = setting(recipe.BASE_FILTERS, "first-layer filters (ngf = ndf)", 1, 1024)
    dropout: float = setting(recipe.DROPOUT, "decoder dropout probability", 0, 1, high_open=True)
    patch_layers: int = setting(3, "PatchGAN layers (3 = 70 x 70 patches)", 1, 8)
    jitter: bool = setting(True, "resize to 286/256, random crop, random flip in training")
    source: str = setting(
        "",
        "regular expression whose first match in a pair's name (less _augK) names its source, "
        "e.g. ^[^_]+ for patA_view0: the pairs of one source (a patient) fall on one side of the "
        "split; empty: each pair and its copies are one source",
    )
    examples: int = examples_setting()


def check_settings(cfg: DrrConfig) -> None:
    """Refuse an unusable setting; reads no files, so --print-config checks this too."""
    try:
        recipe.unet_depth(cfg.size)
    except ValueError as error:
        raise BadInput(f"setting size: {error}") from error
    if recipe.patch_grid_side(cfg.size, cfg.patch_layers) < 1:
        most = max(n for n in range(1, 9) if recipe.patch_grid_side(cfg.size, n) >= 1)
        raise BadInput(
            f"setting patch_layers {cfg.patch_layers}: a {cfg.size} px image leaves the "
            f"discriminator no patch after {cfg.patch_layers} layers; at size {cfg.size} it "
            f"takes at most {most}"
        )
    try:
        re.compile(cfg.source)
    except re.error as error:
        raise BadInput(f"setting source: not a regular expression ({error})") from error
    if not 0 < cfg.val_fraction < 1:
        raise BadInput("setting val_fraction must lie between 0 and 1")


def check(cfg: DrrConfig, resume: Path | None = None) -> None:
    """Fail early on an unusable setting or a missing or malformed pair set."""
    from recon.pipelines.xray.pairs import find_pairs

    check_settings(cfg)
    if not cfg.data:
        raise BadInput("task drr needs --data ROOT (a pair set with xray/ and drr/)")
    pairs = find_pairs(Path(cfg.data))
    if cfg.source:
        unmatched = [p.name for p in pairs if not _matched(p.name, cfg.source)]
        if unmatched:
            raise BadInput(
                f"setting source {cfg.source!r}: matches nothing in {len(unmatched)} of "
                f"{len(pairs)} pair names (e.g. {unmatched[0]}); each of those would be a "
                "source of its own, so one patient's views could fall on both sides of the "
                "split: give a pattern every name matches"
            )
    sources = {source_name(p.name, cfg.source) for p in pairs}
    if len(sources) < 2:
        raise BadInput(
            f"{cfg.data}: need pairs from at least 2 sources (training and validation), found "
            f"{len(sources)} (NAME and its augmented copies NAME_augK are one source"
            f"{'; so are names the setting source matches alike' if cfg.source else ''})"
        )


AUGMENTED_COPY = re.compile(r"(_aug\d+)+$")  # `recon augment` names copy K of NAME NAME_augK


def source_name(name: str, pattern: str = "") -> str:
    """The source a pair was made from: NAME for NAME itself and for NAME_augK; with a pattern
    (the setting source), its first match in NAME (NAME when it does not match)."""
    name = AUGMENTED_COPY.sub("", name)
    found = re.search(pattern, name) if pattern else None
    return found.group(0) if found and found.group(0) else name


def _matched(name: str, pattern: str) -> bool:
    """Whether the pattern finds a non-empty source in the name (less _augK)."""
    found = re.search(pattern, AUGMENTED_COPY.sub("", name))
    return bool(found and found.group(0))


def split_pairs(
    pairs: list, val_fraction: float, seed: int, pattern: str = ""
) -> tuple[list, list]:
    """Split by source pair (source_name), so no validation pair has its original or an
    augmented copy in training: a seeded shuffle of the sorted source names, the first
    round(n * val_fraction) (at least 1, at most n - 1) are validation. Validation holds the
    held-out sources' originals only, each once, as real X-rays come (their augmented copies
    are left out; a source whose original is missing is validated on its copies). Without
    augmented copies every pair is its own source and the split is a shuffle of the pairs."""
    import numpy as np

    sources = sorted({source_name(p.name, pattern) for p in pairs})
    if len(sources) < 2:
        raise BadInput(f"need pairs from at least 2 sources to split, found {len(sources)}")
    order = np.random.default_rng(seed).permutation(len(sources))
    count = min(len(sources) - 1, max(1, round(len(sources) * val_fraction)))
    held_out = {sources[i] for i in order[:count]}
    val = [p for p in pairs if source_name(p.name, pattern) in held_out]
    names = {p.name for p in val}
    original = lambda p: AUGMENTED_COPY.sub("", p.name)  # noqa: E731
    val = [p for p in val if original(p) == p.name or original(p) not in names]
    train = [p for p in pairs if source_name(p.name, pattern) not in held_out]
    return train, val


def _lightning():
    import lightning as L
    import torch
    import torch.nn.functional as F

    from recon.models import pix2pix
    from recon.pipelines.common.metrics import mae, psnr, ssim
    from recon.pipelines.xray.pairs import PairDataset, find_pairs

    class DrrData(L.LightningDataModule):
        def __init__(self, cfg: DrrConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.train_set = self.val_set = None

        def setup(self, stage: str | None = None) -> None:
            if self.train_set is not None:
                return
            pairs = find_pairs(Path(self.cfg.data))
            cfg = self.cfg
            train, val = split_pairs(pairs, cfg.val_fraction, cfg.seed, cfg.source)
            self.train_set = PairDataset(train, self.cfg.size)
            self.val_set = PairDataset(val, self.cfg.size)

        def train_dataloader(self):
            return seeded_loader(
                self.train_set,
                self.cfg.batch_size,
                self.cfg.seed,
                True,
                self.cfg.num_workers,
                loader_epoch(self),
            )

        def val_dataloader(self):
            return seeded_loader(
                self.val_set,
                max(self.cfg.batch_size, 4),
                self.cfg.seed,
                False,
                self.cfg.num_workers,
            )

    class DrrModule(L.LightningModule):
        """Generator + PatchGAN; manual optimisation, D then G on every batch."""

        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": TASK_NAME, "config": config})
            self.cfg = DrrConfig(**config)
            self.automatic_optimization = False
            self.generator = build_generator(config)
            self.discriminator = pix2pix.init_weights(
                pix2pix.PatchDiscriminator(2, self.cfg.base_filters, self.cfg.patch_layers)
            )

        def forward(self, xray: torch.Tensor) -> torch.Tensor:
            return self.generator(xray)

        def configure_optimizers(self):
            betas = (self.cfg.beta1, recipe.BETAS[1])
            opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.cfg.lr, betas=betas)
            opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.lr, betas=betas)
            constant = round(self.cfg.epochs * self.cfg.constant_fraction)
            decay = self.cfg.epochs - constant

            def rule(epoch: int) -> float:
                return pix2pix.linear_decay(epoch, constant, decay)

            schedules = [torch.optim.lr_scheduler.LambdaLR(o, rule) for o in (opt_g, opt_d)]
            return [opt_g, opt_d], schedules

        def _critic(self, xray, image):
            return self.discriminator(torch.cat([xray, image], dim=1))

        def _gan_loss(self, logits, real: bool):
            target = torch.ones_like(logits) if real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)

        def training_step(self, batch, batch_idx):
            xray, drr = batch
            if self.cfg.jitter:
                xray, drr = jitter(xray, drr)
            opt_g, opt_d = self.optimizers()
            fake = self.generator(xray)

            self.toggle_optimizer(opt_d)
            loss_d = 0.5 * (
                self._gan_loss(self._critic(xray, fake.detach()), False)
                + self._gan_loss(self._critic(xray, drr), True)
            )
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
            self.untoggle_optimizer(opt_d)

            self.toggle_optimizer(opt_g)
            loss_gan = self._gan_loss(self._critic(xray, fake), True)
            loss_l1 = F.l1_loss(fake, drr)
            loss_g = loss_gan + self.cfg.lambda_l1 * loss_l1
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()
            self.untoggle_optimizer(opt_g)

            size = xray.shape[0]
            self.log(
                "train/loss",
                loss_g,
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                batch_size=size,
                sync_dist=True,
            )
            self.log_dict(
                {"train/loss_d": loss_d, "train/gan": loss_gan, "train/l1": loss_l1},
                on_step=False,
                on_epoch=True,
                batch_size=size,
                sync_dist=True,
            )

        def on_train_epoch_start(self) -> None:
            # the rate of this epoch on the run's schedule: a resume restores the optimizer's
            # last rate (0 at the end of a finished run) and rebuilds the schedule for the
            # epochs asked for now, so without this it trained an epoch at the old rate
            for schedule in self.lr_schedulers():
                groups = schedule.optimizer.param_groups
                rules = zip(groups, schedule.base_lrs, schedule.lr_lambdas, strict=True)
                for group, base, rule in rules:
                    group["lr"] = base * rule(schedule.last_epoch)
            lr = self.lr_schedulers()[0].optimizer.param_groups[0]["lr"]
            self.log("train/lr", lr, sync_dist=True)  # the same on every process: no warning

        def on_train_epoch_end(self) -> None:
            for schedule in self.lr_schedulers():
                schedule.step()

        def validation_step(self, batch, batch_idx):
            xray, drr = batch
            fake = self.generator(xray)
            pred, target, source = ((t.clamp(-1, 1) + 1) / 2 for t in (fake, drr, xray))
            size = xray.shape[0]
            self.log_dict(
                {
                    "val/ssim": ssim(pred, target).mean(),
                    "val/psnr": psnr(pred, target).mean(),
                    "val/mae": mae(pred, target).mean(),
                    "val/ssim_identity": ssim(source, target).mean(),
                    "val/psnr_identity": psnr(source, target).mean(),
                },
                on_epoch=True,
                batch_size=size,
                prog_bar=False,
                sync_dist=True,
            )

    return DrrData, DrrModule


def jitter(xray, drr):
    """Reference pix2pix jitter on a batch: upscale by 286/256, same random crop, random flip."""
    import torch
    import torch.nn.functional as F

    size = xray.shape[-1]
    big = round(size * 286 / 256)
    both = F.interpolate(
        torch.cat([xray, drr], dim=1), size=(big, big), mode="bilinear", align_corners=False
    )
    top, left = (int(v) for v in torch.randint(0, big - size + 1, (2,)))
    both = both[..., top : top + size, left : left + size]
    if bool(torch.rand(()) < 0.5):
        both = both.flip(-1)
    return both[:, :1], both[:, 1:]


GRID_COLUMNS = ("input", "prediction", "target")


def example_rows(module, batch, count: int) -> list:
    """Example grid rows: X-ray | predicted DRR | true DRR, each (S, S) in [0, 1]."""
    xray, drr = batch[0][:count], batch[1][:count]
    fake = module(xray)
    return [
        [(t[0].clamp(-1, 1) + 1) / 2 for t in triple]
        for triple in zip(xray, fake, drr, strict=True)
    ]


EXAMPLES = ExampleSpec(GRID_COLUMNS, example_rows)


def build_generator(config: dict):
    """The U-Net generator a drr config describes, with the reference initialisation."""
    from recon.models import pix2pix

    cfg = DrrConfig(**config)
    return pix2pix.init_weights(
        pix2pix.UNetGenerator(1, 1, cfg.size, cfg.base_filters, cfg.dropout)
    )


def build(cfg: DrrConfig):
    data_class, module_class = _lightning()
    return module_class(config_dict(cfg)), data_class(cfg)


def load_generator(checkpoint: Path):
    """(generator in eval mode, config dict) from a `recon train drr` checkpoint."""
    from recon.pipelines.common.checkpoints import load_checkpoint, load_weights

    config, state = load_checkpoint(checkpoint, TASK_NAME)
    return load_weights(
        checkpoint, build_generator, config, state, "generator.", "the drr generator"
    ), config


def translate(generator, image, size: int):
    """One float (H, W) X-ray in [0, 1] -> the predicted DRR, float (H, W) in [0, 1]."""
    import torch

    from recon.pipelines.xray.pairs import fit_square, unfit

    tensor, placement = fit_square(image, size)
    device = next(generator.parameters()).device
    with torch.no_grad():
        output = generator(tensor[None].to(device) * 2 - 1)
    return unfit((output.clamp(-1, 1) + 1) / 2, placement).clip(0, 1)


TASK = TaskSpec(
    name=TASK_NAME,
    config=DrrConfig,
    build=build,
    monitor="val/ssim",
    mode="max",
    check=check,
    check_settings=check_settings,
    baselines=(
        Baseline("val/ssim", "val/ssim_identity", "identity (the X-ray itself)"),
        Baseline("val/psnr", "val/psnr_identity", "identity (the X-ray itself)"),
    ),
    examples=EXAMPLES,
    ddp_find_unused=True,  # the generator's and the discriminator's steps
)
