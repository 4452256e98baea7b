"""Task `skull`: one image -> skull and face occupancy grids (SkullNet: ResNet18 + two 3D
transposed-convolution decoders).

Data: pairs ROOT/NAME.png + ROOT/NAME_vox.npz (see data.py); one pair is one subject, and the
split into training and validation is by subject (seeded; byte-identical npz files are one
subject). Input: the image resized to `size` x `size`, ImageNet-normalised. Targets: both
grids at their own side R (4 * 2^k). Loss per head:
BCE on logits + `dice_weight` x soft Dice loss (1 - (2 sum p t + 1) / (sum p + sum t + 1), per
sample); total = skull_weight x skull loss + face_weight x face loss. Adam. With `mean_prior`
the decoders' per-voxel biases start at the logit of the training set's mean shape per head.

Validation logs, per head H in (skull, face): val/H_iou (IoU@0.5), val/H_dice (Dice@0.5), and
val/H_iou_mean_shape, val/H_dice_mean_shape: the same scores of the training set's mean shape
(mean occupancy >= 0.5), the baseline to beat; val/iou = the mean of the two heads' IoU picks
the best checkpoint (val/iou_mean_shape: the same mean for the mean shape). Scores in mm
(surface distances, tissue depths) are in score.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.examples import ExampleSpec, display_image, grid_views
from recon.pipelines.common.sampling import SplitLoaders
from recon.pipelines.common.settings import (
    Baseline,
    TaskSpec,
    TrainConfig,
    config_dict,
    examples_setting,
    setting,
)
from recon.pipelines.common.splits import split_by_group
from recon.pipelines.common.weights import load_pretrained_encoder
from recon.pipelines.skull.data import (
    HEADS,
    common_shape,
    image_files,
    image_tensor,
    list_pairs,
    load_grids,
    orphan_grids,
    read_voxel_mm,
    subject_numbers,
    too_few_subjects,
    unfinished_set,
    voxel_path,
)

TASK_NAME = "skull"


@dataclass
class SkullConfig(TrainConfig):
    epochs: int = 30
    batch_size: int = 8
    lr: float = 5e-4
    size: int = setting(128, "input image side, px", 32, 4096)
    resolution: int = setting(0, "output grid side, voxels; 0 = the data's", 0, 512)
    channels: int = setting(32, "decoder channels at 4^3 (halved at each doubling)", 4, 4096)
    dropout: float = setting(0.1, "encoder-feature dropout probability", 0, 1, high_open=True)
    skull_weight: float = setting(1.0, "loss weight of the skull head", 0, 1000)
    face_weight: float = setting(1.0, "loss weight of the face head", 0, 1000)
    dice_weight: float = setting(1.0, "soft Dice term, relative to BCE, in each head", 0, 1000)
    pretrained_weights: str = setting("", "a local torchvision ResNet18 state_dict file, or empty")
    mean_prior: bool = setting(True, "start each head at the training set's mean shape")
    examples: int = examples_setting()
    voxel_mm: float = setting(
        0.0, "voxel size, mm; from dataset.json when 0 (unknown: scores in voxels)", 0, 1000
    )


# ---------------------------------------------------------------- data


class SkullDataset:
    """Items (image (3, S, S), skull (R, R, R), face (R, R, R)) float tensors, held in memory."""

    def __init__(self, pairs: list, size: int, resolution: int) -> None:
        import torch

        self.pairs = pairs
        self.images = [image_tensor(p.image, size) for p in pairs]
        self.grids = []
        for pair in pairs:
            grids = load_grids(pair.voxels)
            shape = grids["skull"].shape
            if shape != (resolution,) * 3:
                raise BadInput(f"{pair.voxels}: grid {shape}, the set uses {(resolution,) * 3}")
            self.grids.append({h: torch.from_numpy(grids[h]) for h in HEADS})

    def __len__(self) -> int:
        return len(self.pairs)

    def sources(self) -> list[str]:
        """Each item's image, in order (see sampling.split_record)."""
        return [str(pair.image) for pair in self.pairs]

    def target(self, index: int, head: str) -> np.ndarray:
        return self.grids[index][head].numpy()

    def __getitem__(self, index: int):
        grids = self.grids[index]
        return self.images[index], grids["skull"].float(), grids["face"].float()


def mean_shapes(dataset: SkullDataset) -> dict[str, np.ndarray]:
    """Voxel-wise mean occupancy per head over a dataset, {head: (R, R, R) float}."""
    return {
        head: np.mean([dataset.target(i, head) for i in range(len(dataset))], axis=0)
        for head in HEADS
    }


def data_resolution(root: Path) -> int:
    """The grid side of the set: the shape most pairs have (as check-data judges it); BadInput
    naming a pair of another shape, or a grid that is not cubic."""
    pairs = list_pairs(root)
    if not pairs:
        raise BadInput(f"{root}: no image + NAME_vox.npz pairs")
    shapes = {pair.voxels: load_grids(pair.voxels)["skull"].shape for pair in pairs}
    common, count = common_shape(shapes)
    for path, shape in shapes.items():
        if shape != common:
            raise BadInput(
                f"{path}: grid {shape}, where {count} of the set's {len(shapes)} grids are "
                f"{common} (`recon check-data skull` lists every problem)"
            )
    if len(set(common)) != 1:
        raise BadInput(f"{next(iter(shapes))}: grid {common} is not cubic")
    return int(common[0])


def split_subjects(pairs: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split by subject (data.subject_numbers): no subject on both sides, even when
    several images share its grids (NAME.png and NAME.jpg) or its grids are copied under
    another name; with one image per subject and no copies the subjects are drawn as the
    pairs were."""
    subject = subject_numbers(pairs)
    return split_by_group(pairs, lambda pair: subject[str(pair.voxels)], val_fraction, seed)


def make_sets(cfg: SkullConfig) -> tuple[SkullDataset, SkullDataset]:
    train, val = split_subjects(list_pairs(Path(cfg.data)), cfg.val_fraction, cfg.seed)
    return (
        SkullDataset(train, cfg.size, cfg.resolution),
        SkullDataset(val, cfg.size, cfg.resolution),
    )


# ---------------------------------------------------------------- Lightning


def _require_whole_pairs(root: Path) -> None:
    """An image without its NAME_vox.npz, or grids without their image, is one line (check-data's
    missing-voxels and orphan-voxels): training would leave it out without a word."""
    images = image_files(root)
    for image in images:
        if not voxel_path(image).is_file():
            raise BadInput(f"{image}: no {voxel_path(image).name} beside it (missing-voxels)")
    orphans = orphan_grids(root, images)
    if orphans:
        raise BadInput(f"{orphans[0]}: no image NAME.png beside it (orphan-voxels)")


def check_settings(cfg: SkullConfig) -> None:
    """Refuse an unusable setting; reads no files, so --print-config checks this too."""
    if cfg.size < 32 or cfg.channels < 4:
        raise BadInput("setting size must be >= 32 and channels >= 4")
    if min(cfg.skull_weight, cfg.face_weight, cfg.dice_weight) < 0:
        raise BadInput("loss weights must not be negative")
    if cfg.skull_weight == 0 and cfg.face_weight == 0:
        raise BadInput(
            "settings skull_weight and face_weight are both 0: the loss would be 0 and nothing "
            "would train (give one head a positive weight)"
        )
    if not 0 < cfg.val_fraction < 1:
        raise BadInput("setting val_fraction must lie between 0 and 1")


def check(cfg: SkullConfig, resume: Path | None = None) -> None:
    """Fail early on an unusable setting, a missing data set or weights file; resume: the
    checkpoint a resumed run continues (its settings, resolution among them, are fixed)."""
    check_settings(cfg)
    if not cfg.data:
        raise BadInput("task skull needs --data ROOT (image + NAME_vox.npz pairs)")
    root = Path(cfg.data)
    if not root.is_dir():
        raise BadInput(f"{root}: no such data set folder")
    unfinished = unfinished_set(root)
    if unfinished:  # trained on, its scores and meshes would be in voxels, not mm
        raise BadInput(f"{root / 'dataset.json'}: {unfinished}")
    _require_whole_pairs(root)
    split = too_few_subjects(list_pairs(root))
    if split is not None:
        raise BadInput(f"{root}: {split} (`recon check-data skull` lists every problem)")
    read_voxel_mm(root)
    side = data_resolution(root)
    if cfg.resolution and cfg.resolution != side:
        if resume is not None:
            raise BadInput(
                f"{root}: its grids are {side}^3, and {resume} was trained on "
                f"{cfg.resolution}^3 grids: resume with that set (moved is fine), or start a "
                "new run"
            )
        raise BadInput(
            f"setting resolution {cfg.resolution}: the data's grids are {side}^3 (leave it 0 to "
            "use them)"
        )
    resolution = side
    from recon.models.skull_net import decoder_stages  # torch: after the cheap checks

    try:
        decoder_stages(resolution)
    except ValueError as error:
        raise BadInput(f"{root}: {error}") from error
    if cfg.pretrained_weights and not Path(cfg.pretrained_weights).is_file():
        raise BadInput(f"{cfg.pretrained_weights}: no such weights file (pretrained_weights)")


def min_batch(cfg: SkullConfig) -> int:
    """2: SkullNet batch-normalises its 12 moment features over the batch, which one sample
    cannot do."""
    return 2


def build_net(config: dict):
    """The SkullNet a skull config describes."""
    from recon.models.skull_net import SkullNet

    return SkullNet(config["resolution"], config["channels"], config["dropout"])


def soft_dice_loss(logits, target):
    """1 - soft Dice per sample, averaged over the batch (see module doc)."""
    import torch

    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def head_loss(logits, target, dice_weight: float):
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + dice_weight * soft_dice_loss(logits, target)


def module_class():
    import lightning as L
    import torch

    from recon.pipelines.common.metrics import voxel_dice, voxel_iou

    class SkullModule(L.LightningModule):
        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": TASK_NAME, "config": config})
            self.config = config
            self.net = build_net(config)
            self.mean_grids: dict | None = None

        def forward(self, images):
            return self.net(images)

        def configure_optimizers(self):
            return torch.optim.Adam(self.net.parameters(), lr=self.config["lr"])

        def on_fit_start(self) -> None:
            data = getattr(self.trainer, "datamodule", None)
            if data is not None and getattr(data, "mean_grids", None) is not None:
                self.mean_grids = {
                    h: torch.as_tensor(g, dtype=torch.float32) for h, g in data.mean_grids.items()
                }

        def _loss(self, logits, skull, face):
            c = self.config
            return c["skull_weight"] * head_loss(logits[0], skull, c["dice_weight"]) + c[
                "face_weight"
            ] * head_loss(logits[1], face, c["dice_weight"])

        def training_step(self, batch, batch_idx):
            images, skull, face = batch
            loss = self._loss(self.net(images), skull, face)
            self.log("train/loss", loss, on_epoch=True, on_step=False, prog_bar=True,
                     batch_size=images.shape[0])  # fmt: skip
            return loss

        def validation_step(self, batch, batch_idx):
            images, skull, face = batch
            logits = self.net(images)
            values = {"loss": self._loss(logits, skull, face)}
            ious, mean_ious = [], []
            for head, logit, target in zip(HEADS, logits, (skull, face), strict=True):
                probability = torch.sigmoid(logit)
                values[f"{head}_iou"] = voxel_iou(probability, target, 0.5).mean()
                values[f"{head}_dice"] = voxel_dice(probability, target, 0.5).mean()
                ious.append(values[f"{head}_iou"])
                if self.mean_grids is not None:
                    mean = self.mean_grids[head].to(target.device).expand_as(target)
                    values[f"{head}_iou_mean_shape"] = voxel_iou(mean, target, 0.5).mean()
                    values[f"{head}_dice_mean_shape"] = voxel_dice(mean, target, 0.5).mean()
                    mean_ious.append(values[f"{head}_iou_mean_shape"])
            values["iou"] = sum(ious) / len(ious)
            if mean_ious:
                values["iou_mean_shape"] = sum(mean_ious) / len(mean_ious)
            self.log_dict(
                {f"val/{k}": v for k, v in values.items()},
                on_epoch=True,
                batch_size=images.shape[0],
            )

    return SkullModule


def data_class():
    import lightning as L

    class SkullData(SplitLoaders, L.LightningDataModule):
        def __init__(self, cfg: SkullConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.train_set = self.val_set = self.mean_grids = None

        def setup(self, stage: str | None = None) -> None:
            if self.train_set is None:
                self.train_set, self.val_set = make_sets(self.cfg)
                self.mean_grids = mean_shapes(self.train_set)

    return SkullData


def build(cfg: SkullConfig):
    """(module, datamodule); resolution and voxel_mm come from the data when not set."""
    import torch

    root = Path(cfg.data)
    # check() found every grid of the set this side (data_resolution): the first pair tells it
    cfg.resolution = cfg.resolution or int(load_grids(list_pairs(root)[0].voxels)["skull"].shape[0])
    cfg.voxel_mm = cfg.voxel_mm or (read_voxel_mm(root) or 0.0)
    module = module_class()(config_dict(cfg))
    data = data_class()(cfg)
    if cfg.mean_prior:
        data.setup("fit")
        priors = []
        for head in HEADS:
            mean = torch.as_tensor(data.mean_grids[head], dtype=torch.float32).clamp(0.02, 0.98)
            priors.append(torch.log(mean / (1 - mean)))
        module.net.set_output_prior(*priors)
    if cfg.pretrained_weights:
        load_pretrained_encoder(module.net.encoder, cfg.pretrained_weights)
    return module, data


# ---------------------------------------------------------------- prediction


PREDICTION_SETTINGS = ("size", "resolution", "channels", "dropout")  # voxel_mm: 0 when absent


def prediction_config(checkpoint: Path, config: dict) -> dict:
    """A checkpoint's config with the settings prediction uses present and in their ranges
    (SkullConfig's); BadInput naming the checkpoint and the setting otherwise."""
    from recon.pipelines.common.checkpoints import prediction_settings

    config = {**config, "voxel_mm": config.get("voxel_mm") or 0.0}
    names = (*PREDICTION_SETTINGS, "voxel_mm")
    return prediction_settings(checkpoint, config, SkullConfig, names, TASK_NAME)


def load_net(checkpoint: Path):
    """(net in eval mode, config dict) from a `recon train skull` checkpoint; its settings are
    checked (prediction_config)."""
    from recon.pipelines.common.checkpoints import load_checkpoint, load_weights

    config, state = load_checkpoint(checkpoint, TASK_NAME)
    config = prediction_config(checkpoint, config)
    return load_weights(checkpoint, build_net, config, state, "net.", "the skull model"), config


def example_rows(module, batch, count: int) -> list:
    """Example grid rows: the image | per head, the predicted and the true grid's three maximum
    projections (recon.pipelines.common.examples.grid_views)."""
    import torch

    images, skull, face = (part[:count] for part in batch)
    predicted = [torch.sigmoid(logits) for logits in module.net(images)]
    return [
        [display_image(images[i])]
        + [grid_views(g[i]) for pair in zip(predicted, (skull, face), strict=True) for g in pair]
        for i in range(len(images))
    ]


EXAMPLES = ExampleSpec(
    ("radiograph", *(f"{h} {kind}" for h in HEADS for kind in ("prediction", "target"))),
    example_rows,
)

TASK = TaskSpec(
    name=TASK_NAME,
    config=SkullConfig,
    build=build,
    monitor="val/iou",
    mode="max",
    check=check,
    check_settings=check_settings,
    baselines=tuple(
        Baseline(f"val/{name}", f"val/{name}_mean_shape", "mean shape")
        for name in ("iou", *(f"{h}_{m}" for h in HEADS for m in ("iou", "dice")))
    ),
    examples=EXAMPLES,
    min_batch=min_batch,
)
