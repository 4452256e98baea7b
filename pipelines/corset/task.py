"""`recon train corset`: torso views + spine embedding -> corset views (pix2pix-style).

One sample is one patient: its 10 torso depth views stacked as channels (8 side, top, bottom)
followed by the 8 prior views (the torso offset by the training pairs' mean offset and trimmed to
their mean band: views.prior_views), the 8 corset side views as targets, and the embed-spine
vector of its X-ray (layout in spine.py). The residual head starts
from the prior views and learns what a brace adds to an offset torso (pads, reliefs, its trim
line). Encoding in recon.pipelines.corset.views. Validation logs val/l1 and
val/silhouette_iou (each patient's over its 8 views, averaged over patients), and the same for
the prior views as the answer (val/l1_prior, val/silhouette_iou_prior): the baseline to beat.
The view side setting is `size` (the old name `image_size` is still read, with a notice).
Training has two stages: the generator alone on L1 + L2 for `generator_epochs`, then the full
GAN (PatchGAN critic, BCE with label smoothing: real targets `real_label`). Adam (beta1 0.5)
with ReduceLROnPlateau on val/l1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.examples import ExampleSpec, crop_together, tile_views
from recon.pipelines.common.sampling import SplitLoaders
from recon.pipelines.common.settings import (
    Baseline,
    TaskSpec,
    TrainConfig,
    config_dict,
    examples_setting,
    setting,
)


@dataclass
class CorsetConfig(TrainConfig):
    epochs: int = 200
    batch_size: int = 45
    lr: float = 2e-4
    size: int = setting(
        256, "view side, px, a multiple of 64 (views of another size are resized)", 64, 4096
    )
    features: int = setting(64, "generator width: features -> 8 x features at the deepest", 1, 1024)
    critic_features: int = setting(64, "PatchGAN critic width", 1, 1024)
    dropout_encoder: float = setting(0.35, "generator encoder dropout", 0, 1, high_open=True)
    dropout_decoder: float = setting(0.6, "generator decoder dropout", 0, 1, high_open=True)
    lambda_l1: float = setting(300.0, "weight of the L1 term", 0, 1e5)
    lambda_l2: float = setting(100.0, "weight of the L2 term", 0, 1e5)
    lambda_gan: float = setting(1.0, "weight of the GAN term (GAN stage)", 0, 1e5)
    real_label: float = setting(
        0.9, "critic target for real pairs (one-sided label smoothing)", 0, 1, low_open=True
    )
    generator_epochs: int = setting(
        50, "stage 1 epochs (generator alone); the GAN stage follows", 0, 100_000
    )
    spine_conditioning: bool = setting(True, "feed the spine embedding to the generator")
    residual_head: bool = setting(
        True, "gated residual on the prior views; false = plain tanh head"
    )
    prior_offset_mm: float = setting(
        0.0, "torso -> corset offset of the prior, mm; 0 = measured from the data", 0, 1000
    )
    prior_trim_bottom: float = setting(
        0.0, "bottom of the prior's band, fraction of the torso height (with the offset)", 0, 1
    )
    prior_trim_top: float = setting(
        0.0, "top of the prior's band, fraction of the torso height (with the offset)", 0, 1
    )
    augment: bool = setting(True, "mirror (with the embedding), intensity scale, shift-crop")
    beta1: float = setting(0.5, "Adam beta1", 0, 1, high_open=True)
    plateau_patience: int = setting(10, "epochs without val/l1 gain before the lr drops", 0, 10_000)
    plateau_factor: float = setting(
        0.5, "lr factor on a plateau", 0, 1, low_open=True, high_open=True
    )
    examples: int = examples_setting()


def load_patients(root: Path, size: int):
    """Names, photos (N, 10, S, S), targets (N, 8, S, S) float32, embeddings (N, E) float32,
    frame scales (N,) (normalised units per mm)."""

    from recon.pipelines.corset.patients import read_dataset
    from recon.pipelines.corset.views import (
        encode_views,
        frame_scale,
        load_corset_views,
        load_photos,
    )

    root = Path(root)
    doc = read_dataset(root)
    names, inputs, targets, embeddings, scales = [], [], [], [], []
    for record in doc["patients"]:
        folder = root / record["name"]
        photos, photos_doc = load_photos(folder / "photos")
        scales.append(frame_scale(photos_doc))
        corset = load_corset_views(folder / "corset_views", photos_doc)
        embedding = spine_embedding(folder / "spine.json")
        names.append(record["name"])
        inputs.append(_resize(encode_views(photos), size))
        targets.append(_resize(encode_views(corset), size))
        embeddings.append(embedding)
    return names, np.stack(inputs), np.stack(targets), np.stack(embeddings), np.asarray(scales)


def spine_embedding(path: Path) -> np.ndarray:
    """The `embedding` of an embed-spine JSON (EMBEDDING_SIZE finite numbers) as float32;
    BadInput naming the file otherwise."""
    from recon.pipelines.common.io import read_json
    from recon.pipelines.corset.spine import EMBEDDING_SIZE

    try:
        doc = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BadInput(f"{path}: not a readable embed-spine JSON ({error})") from error
    values = doc.get("embedding") if isinstance(doc, dict) else None
    try:
        embedding = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        embedding = np.empty(0, np.float32)
    if embedding.shape != (EMBEDDING_SIZE,) or not np.isfinite(embedding).all():
        raise BadInput(
            f"{path}: its embedding is not {EMBEDDING_SIZE} finite numbers (rerun `recon "
            "embed-spine` on the patient's X-ray)"
        )
    return embedding


def with_prior(photos: np.ndarray, scales: np.ndarray, config: dict) -> np.ndarray:
    """Photos (N, 10, S, S) -> network inputs (N, 18, S, S): the photos, then the prior views."""
    from recon.pipelines.corset.views import prior_views

    band = (config["prior_trim_bottom"], config["prior_trim_top"])
    priors = [
        prior_views(x, scale, config["prior_offset_mm"], band)
        for x, scale in zip(photos, scales, strict=True)
    ]
    return np.concatenate([photos, np.stack(priors)], axis=1)


def measured_prior(cfg: CorsetConfig, photos, targets, scales) -> CorsetConfig:
    """cfg with the prior's offset and band measured from the pairs, unless set explicitly."""
    import dataclasses

    from recon.pipelines.corset.views import measure_prior

    if cfg.prior_offset_mm > 0:
        return cfg
    measured = measure_prior(photos, targets, scales)
    bottom, top = measured["trim"]
    return dataclasses.replace(
        cfg,
        prior_offset_mm=round(measured["offset_mm"], 3),
        prior_trim_bottom=round(bottom, 4),
        prior_trim_top=round(top, 4),
    )


def _resize(views: np.ndarray, size: int) -> np.ndarray:
    if views.shape[-1] == size:
        return views
    import torch

    tensor = torch.from_numpy(views)[None]
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="nearest")[0].numpy()


def mirror_sample(x, y, e):
    """Left-right mirror of a patient: side view i <-> (4 - i) mod 8 (photos and priors), every
    image flipped."""
    from recon.pipelines.corset.spine import mirror_embedding

    side = [(4 - i) % 8 for i in range(8)]
    x = np.concatenate([x[side], x[8:10], x[10:][side]])[..., ::-1]
    y = y[side][..., ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y), mirror_embedding(e).astype(np.float32)


class CorsetSamples:
    """Map-style dataset over in-memory patients; augments when `augment` (seeded per epoch)."""

    def __init__(self, inputs, targets, embeddings, augment: bool, names=()) -> None:
        self.inputs, self.targets, self.embeddings = inputs, targets, embeddings
        self.augment = augment
        self.names = [str(name) for name in names]

    def __len__(self) -> int:
        return len(self.inputs)

    def sources(self) -> list[str]:
        """Each item's patient, in order (see sampling.split_record)."""
        return self.names

    def __getitem__(self, index: int):
        import torch

        x, y, e = self.inputs[index], self.targets[index], self.embeddings[index]
        if self.augment:
            rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,))))
            if rng.random() < 0.5:
                x, y, e = mirror_sample(x, y, e)
            scale = rng.uniform(0.97, 1.03)
            x = np.where(x > -1, x * scale, -1.0)
            y = np.where(y > -1, y * scale, -1.0)
            pad = max(1, x.shape[-1] // 32)
            dr, dc = rng.integers(-pad, pad + 1, size=2)
            x, y = _shift(x, dr, dc), _shift(y, dr, dc)
        return (
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)),
            torch.from_numpy(np.asarray(e, dtype=np.float32)),
        )


def _shift(views: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """Translate every view by (dr, dc) pixels, filling with background (-1)."""
    out = np.full_like(views, -1.0)
    h, w = views.shape[-2:]
    src_r, dst_r = slice(max(0, -dr), h - max(0, dr)), slice(max(0, dr), h - max(0, -dr))
    src_c, dst_c = slice(max(0, -dc), w - max(0, dc)), slice(max(0, dc), w - max(0, -dc))
    out[..., dst_r, dst_c] = views[..., src_r, src_c]
    return out


def build_generator(config: dict):
    """The generator a config dict describes (used by training and by predict)."""
    from recon.models.corset_net import CorsetGenerator
    from recon.pipelines.corset.spine import EMBEDDING_SIZE
    from recon.pipelines.corset.views import CORSET_VIEWS, PHOTO_VIEWS

    return CorsetGenerator(
        len(PHOTO_VIEWS) + len(CORSET_VIEWS),
        len(CORSET_VIEWS),
        EMBEDDING_SIZE if config["spine_conditioning"] else 0,
        config["features"],
        config["dropout_encoder"],
        config["dropout_decoder"],
        config.get("residual_head", False),
    )


def load_generator(checkpoint: Path):
    """A trained corset checkpoint -> (generator in eval mode, config dict); BadInput when the
    file is not one (recon.pipelines.common.checkpoints.load_checkpoint) or its weights misfit."""
    from recon.pipelines.common.checkpoints import load_checkpoint, load_weights

    config, state = load_checkpoint(checkpoint, "corset")
    _check_generator_config(checkpoint, config)
    return load_weights(
        checkpoint, build_generator, config, state, "generator.", "the corset generator"
    ), config


GENERATOR_SETTINGS = ("features", "dropout_encoder", "dropout_decoder", "spine_conditioning")


def _check_generator_config(checkpoint: Path, config: dict) -> None:
    """BadInput unless a checkpoint's config holds the generator's settings and a measured prior
    (an offset above 0 mm, a band 0 <= bottom < top <= 1)."""
    import math

    missing = [key for key in GENERATOR_SETTINGS if key not in config]
    if missing:
        raise BadInput(f"{checkpoint}: its config lacks {', '.join(missing)}; train it again")
    try:
        offset, bottom, top = (
            float(config.get(key, 0.0))
            for key in ("prior_offset_mm", "prior_trim_bottom", "prior_trim_top")
        )
    except (TypeError, ValueError):
        offset = bottom = top = math.nan
    if not (math.isfinite(offset) and offset > 0):
        raise BadInput(f"{checkpoint}: no measured prior in this checkpoint; train it again")
    if not 0 <= bottom < top <= 1:
        raise BadInput(
            f"{checkpoint}: its prior band ({bottom:g}, {top:g}) is not 0 <= bottom < top <= 1; "
            "train it again"
        )


def _module_class():
    import lightning as L
    import torch
    import torch.nn.functional as F

    from recon.models.corset_net import PatchCritic
    from recon.pipelines.corset.views import CORSET_VIEWS, PHOTO_VIEWS, silhouette_iou

    class CorsetModule(L.LightningModule):
        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": "corset", "config": config})
            self.config = config
            self.automatic_optimization = False
            self.generator = build_generator(config)
            self.critic = PatchCritic(
                len(PHOTO_VIEWS) + 2 * len(CORSET_VIEWS), config["critic_features"]
            )

        def forward(self, x, e):
            return self.generator(x, e if self.config["spine_conditioning"] else None)

        def training_step(self, batch, batch_idx):
            g_opt, d_opt = self.optimizers()
            x, y, e = batch
            c = self.config
            fake = self(x, e)
            gan = self.current_epoch >= c["generator_epochs"]
            if gan:
                real_logits = self.critic(torch.cat([x, y], 1))
                fake_logits = self.critic(torch.cat([x, fake.detach()], 1))
                d_loss = 0.5 * (
                    F.binary_cross_entropy_with_logits(
                        real_logits, torch.full_like(real_logits, c["real_label"])
                    )
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                )
                d_opt.zero_grad()
                self.manual_backward(d_loss)
                d_opt.step()
                self.log("train/critic", d_loss, on_epoch=True, on_step=False, sync_dist=True)
            l1 = F.l1_loss(fake, y)
            loss = c["lambda_l1"] * l1 + c["lambda_l2"] * F.mse_loss(fake, y)
            if gan:
                logits = self.critic(torch.cat([x, fake], 1))
                loss = loss + c["lambda_gan"] * F.binary_cross_entropy_with_logits(
                    logits, torch.ones_like(logits)
                )
            g_opt.zero_grad()
            self.manual_backward(loss)
            g_opt.step()
            self.log(
                "train/loss", loss, on_epoch=True, on_step=False, prog_bar=True, sync_dist=True
            )
            self.log("train/l1", l1, on_epoch=True, on_step=False, sync_dist=True)

        def validation_step(self, batch, batch_idx):
            x, y, e = batch
            fake = self(x, e)
            prior = x[:, len(PHOTO_VIEWS) :]  # the baseline: the prior views as the answer
            self.log("val/l1", F.l1_loss(fake, y), on_epoch=True, prog_bar=True, sync_dist=True)
            self.log("val/l1_prior", F.l1_loss(prior, y), on_epoch=True, sync_dist=True)
            for name, views in (("silhouette_iou", fake), ("silhouette_iou_prior", prior)):
                self.log(
                    f"val/{name}",
                    silhouette_iou(views, y).mean(),
                    on_epoch=True,
                    sync_dist=True,
                    batch_size=len(x),
                )

        def on_validation_epoch_end(self) -> None:
            if self.trainer.sanity_checking:
                return
            metric = self.trainer.callback_metrics.get("val/l1")
            if metric is not None:
                self.lr_schedulers().step(float(metric))

        def configure_optimizers(self):
            c = self.config
            betas = (c["beta1"], 0.999)
            g_opt = torch.optim.Adam(self.generator.parameters(), lr=c["lr"], betas=betas)
            d_opt = torch.optim.Adam(self.critic.parameters(), lr=c["lr"], betas=betas)
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                g_opt, mode="min", factor=c["plateau_factor"], patience=c["plateau_patience"]
            )
            return [g_opt, d_opt], [plateau]

    return CorsetModule


def _datamodule_class():
    import lightning as L

    class CorsetData(SplitLoaders, L.LightningDataModule):
        def __init__(self, cfg: CorsetConfig, train: CorsetSamples, val: CorsetSamples) -> None:
            super().__init__()
            self.cfg = cfg
            self.train_set, self.val_set = train, val

    return CorsetData


def check_settings(cfg: CorsetConfig) -> None:
    """View size a multiple of 64, prior settings that agree; reads no files, so
    --print-config checks this too."""
    if cfg.size % 64 or cfg.size < 64:
        raise BadInput(f"setting size must be a multiple of 64, not {cfg.size}")
    if cfg.prior_offset_mm > 0 and not 0 <= cfg.prior_trim_bottom < cfg.prior_trim_top <= 1:
        raise BadInput("with prior_offset_mm set, 0 <= prior_trim_bottom < prior_trim_top <= 1")
    if cfg.prior_offset_mm <= 0 and (cfg.prior_trim_bottom or cfg.prior_trim_top):
        raise BadInput(
            "prior_trim_bottom and prior_trim_top are used only with prior_offset_mm; with "
            "prior_offset_mm 0 the offset and the band are measured from the data (set all three)"
        )


def check(cfg: CorsetConfig, resume: Path | None = None) -> None:
    """Early input checks: the settings (check_settings), data set present and readable."""
    from recon.pipelines.corset.patients import read_dataset

    check_settings(cfg)
    if cfg.data is None:
        raise BadInput("train corset needs --data DIR (make one with `recon synth corset`)")
    if len(read_dataset(Path(cfg.data))["patients"]) < 2:
        raise BadInput(f"{cfg.data}: training needs at least 2 patients")


def build(cfg: CorsetConfig):
    """Load the pairs, split them (seeded), measure the prior on the training split."""
    names, photos, y, e, scales = load_patients(Path(cfg.data), cfg.size)
    order = np.random.default_rng(cfg.seed).permutation(len(photos))
    n_val = min(max(int(round(cfg.val_fraction * len(photos))), 1), len(photos) - 1)
    val, train = order[:n_val], order[n_val:]
    cfg = measured_prior(cfg, photos[train], y[train], scales[train])
    x = with_prior(photos, scales, config_dict(cfg))
    data = _datamodule_class()(
        cfg,
        CorsetSamples(x[train], y[train], e[train], cfg.augment, [names[i] for i in train]),
        CorsetSamples(x[val], y[val], e[val], False, [names[i] for i in val]),
    )
    return _module_class()(config_dict(cfg)), data


PRIOR = "prior (offset torso)"


def example_rows(module, batch, count: int) -> list:
    """Example grid rows, each cell the 8 side views as a 2 x 4 mosaic (in [-1, 1] -> [0, 1]):
    the photos' depth views | the prior (the baseline) | the prediction | the target, all of a
    row cut to one box around the body (so the cells stay comparable)."""
    import torch

    from recon.pipelines.corset.views import CORSET_VIEWS, PHOTO_VIEWS

    x, y, e = (part[:count] for part in batch)
    fake = module(x, e)
    side = len(CORSET_VIEWS)
    cells = (x[:, :side], x[:, len(PHOTO_VIEWS) :], fake, y)
    rows = []
    for i in range(len(x)):
        views = crop_together(torch.cat([((v[i] + 1) / 2).clamp(0, 1) for v in cells]))
        rows.append([tile_views(views[k * side : (k + 1) * side]) for k in range(len(cells))])
    return rows


EXAMPLES = ExampleSpec(("photos", "prior", "prediction", "target"), example_rows)

TASK = TaskSpec(
    "corset",
    CorsetConfig,
    build,
    monitor="val/l1",
    mode="min",
    check=check,
    check_settings=check_settings,
    baselines=(
        Baseline("val/l1", "val/l1_prior", PRIOR, "min"),
        Baseline("val/silhouette_iou", "val/silhouette_iou_prior", PRIOR),
    ),
    renamed={"image_size": "size"},
    examples=EXAMPLES,
    ddp_find_unused=True,  # the generator's and the critic's steps
)
