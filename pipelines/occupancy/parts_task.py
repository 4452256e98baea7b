"""Task `parts`: image of a machine part -> 32^3 occupancy (ResNet50 + 3D transposed convs).

Data: the parts layout (parts.py): every image paired with its STL; split into training and
validation by part (seeded; byte-identical STL files are one part). Input: the image cropped to
a square around the object (found from the border colour), resized to `size`, then three
channels: grey, Canny edges (thresholds canny_low / canny_high) and grey again, each scaled to
[0, 1] and centred by -0.5.
Target: the STL voxelised to a filled grid (recon.pipelines.shapes.voxelize, cached per file under
ROOT/.cache/voxels). Loss: BCE + dice_weight * soft Dice; Adam. Metrics as task `voxel`
(val/iou at 0.5 is the score, val/dice, val/iou_mean_shape baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.settings import TaskSpec, TrainConfig, examples_setting, setting
from recon.pipelines.common.splits import same_content, split_by_group
from recon.pipelines.occupancy.images import auto_bbox, rgb_image, square_crop
from recon.pipelines.occupancy.voxel_task import (
    MEAN_SHAPE,
    OCCUPANCY_EXAMPLES,
    build_occupancy,
    resnet_min_batch,
)

TASK_NAME = "parts"


@dataclass
class PartsConfig(TrainConfig):
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    size: int = setting(128, "input image side, px", 32, 4096)
    resolution: int = setting(32, "output grid side, voxels (a power of two)", 8, 256)
    channels: int = setting(128, "decoder channels at 4^3", 1, 4096)
    canny_low: int = setting(50, "Canny edge low threshold", 0, 2000)
    canny_high: int = setting(150, "Canny edge high threshold", 0, 2000)
    dice_weight: float = setting(1.0, "soft Dice term of the loss, relative to BCE", 0, 1000)
    jitter: float = setting(0.05, "crop jitter in training, fraction of the box side", 0, 0.5)
    method: str = setting(
        "auto", "voxelisation of the STL targets", choices=("auto", "raycast", "winding")
    )
    mean_prior: bool = setting(True, "output bias at the training set's mean shape (logits)")
    pretrained_weights: str = setting("", "a local torchvision ResNet50 state_dict file, or empty")
    examples: int = examples_setting()


def edge_input(
    rgb: np.ndarray, size: int, low: int, high: int, rng=None, jitter: float = 0.0, box=None
):
    """(H, W, 3) uint8 -> (3, size, size) float tensor: grey, Canny edges, grey (see module doc),
    cropped around box (default: auto_bbox's)."""
    import cv2
    import torch

    crop = square_crop(rgb, auto_bbox(rgb) if box is None else box, size, rng, jitter)
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, low, high)
    stack = np.stack([grey, edges, grey]).astype(np.float32) / 255 - 0.5
    return torch.from_numpy(stack)


class PartsDataset:
    """Items (image (3, S, S), grid (R, R, R) float) for (image path, mesh path) samples."""

    def __init__(
        self, samples: list[tuple[Path, Path]], cfg: PartsConfig, grids: dict, jitter: float = 0.0
    ) -> None:
        self.samples, self.cfg, self.grids, self.jitter = samples, cfg, grids, jitter

    def __len__(self) -> int:
        return len(self.samples)

    def sources(self) -> list[str]:
        """Each item's image, in order (see sampling.split_record)."""
        return [str(image) for image, _ in self.samples]

    def target(self, index: int) -> np.ndarray:
        return self.grids[str(self.samples[index][1])]

    def __getitem__(self, index: int):
        import torch

        image, mesh = self.samples[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**31, ()))) if self.jitter else None
        tensor = edge_input(
            rgb_image(image),
            self.cfg.size,
            self.cfg.canny_low,
            self.cfg.canny_high,
            rng,
            self.jitter,
        )
        return tensor, torch.from_numpy(self.target(index).astype(np.float32))


def samples_of(root: Path) -> list[tuple[Path, Path]]:
    """(image, mesh) for every image of every part under root; BadInput for fewer than 2
    parts (checks.too_few_sources)."""
    from recon.pipelines.occupancy.checks import too_few_sources
    from recon.pipelines.occupancy.parts import find_pairs

    pairs = find_pairs(root)
    split = too_few_sources("parts", [pair.mesh for pair in pairs])
    if split is not None:
        raise BadInput(f"{root}: {split} (`recon check-data parts` lists every problem)")
    return [(image, pair.mesh) for pair in pairs for image in pair.images]


def voxel_targets(meshes, resolution: int, method: str, cache: Path) -> dict:
    """{mesh path: (R, R, R) bool} voxelised once per file (cached on disk)."""
    from recon.pipelines.shapes import voxelize_file

    return {str(m): voxelize_file(m, resolution, method, cache) for m in sorted(set(meshes))}


def make_sets(cfg: PartsConfig):
    root = Path(cfg.data)
    samples = samples_of(root)
    grids = voxel_targets(
        [m for _, m in samples], cfg.resolution, cfg.method, root / ".cache" / "voxels"
    )
    part = same_content([mesh for _, mesh in samples])
    train, val = split_by_group(samples, lambda s: part[str(s[1])], cfg.val_fraction, cfg.seed)
    return (PartsDataset(train, cfg, grids, cfg.jitter), PartsDataset(val, cfg, grids, 0.0))


def check_settings(cfg: PartsConfig) -> None:
    """Refuse an unusable setting; reads no files, so --print-config checks this too."""
    res = cfg.resolution
    if res < 8 or res & (res - 1):
        raise BadInput(f"setting resolution must be a power of two >= 8, not {res}")
    if cfg.size < 32:
        raise BadInput("setting size must be >= 32")
    if not 0 < cfg.val_fraction < 1:
        raise BadInput("setting val_fraction must lie between 0 and 1")


def check(cfg: PartsConfig, resume: Path | None = None) -> None:
    """Fail early on an unusable setting or a missing data set."""
    check_settings(cfg)
    if not cfg.data:
        raise BadInput("task parts needs --data ROOT (models/<class>/*.stl + images/)")
    samples_of(Path(cfg.data))
    if cfg.pretrained_weights and not Path(cfg.pretrained_weights).is_file():
        raise BadInput(f"{cfg.pretrained_weights}: no such weights file (pretrained_weights)")


PREDICTION_SETTINGS = ("size", "resolution", "channels", "canny_low", "canny_high")


def build_net(config: dict):
    """The PartsNet a parts config describes."""
    from recon.models.parts_net import PartsNet

    return PartsNet(config["resolution"], config["channels"])


def bce_dice_loss(dice_weight: float):
    """BCE on logits + dice_weight * (1 - soft Dice of the probabilities)."""

    def loss(logits, grids):
        import torch
        import torch.nn.functional as F

        probability = torch.sigmoid(logits).flatten(1)
        target = grids.flatten(1)
        soft = (2 * (probability * target).sum(1) + 1) / (probability.sum(1) + target.sum(1) + 1)
        return F.binary_cross_entropy_with_logits(logits, grids) + dice_weight * (1 - soft.mean())

    return loss


def build(cfg: PartsConfig):
    from recon.pipelines.common.weights import load_pretrained_encoder

    module, data = build_occupancy(
        TASK_NAME, cfg, build_net, bce_dice_loss(cfg.dice_weight), make_sets
    )
    if cfg.pretrained_weights:
        load_pretrained_encoder(module.net.encoder, cfg.pretrained_weights)
    return module, data


def parts_input(path: Path, config: dict, box: list | None = None):
    """(the network input (3, S, S) for one image file, its object box, where that box came
    from): see voxel_input. Training finds each box from the border colour, so prediction does
    too (box is never given)."""
    from recon.pipelines.occupancy.images import object_box

    rgb = rgb_image(path)
    box, source = object_box(rgb)
    low, high = config["canny_low"], config["canny_high"]
    return edge_input(rgb, config["size"], low, high, box=box), box, source


TASK = TaskSpec(
    name=TASK_NAME,
    config=PartsConfig,
    build=build,
    monitor="val/iou",
    mode="max",
    check=check,
    check_settings=check_settings,
    baselines=MEAN_SHAPE,
    examples=OCCUPANCY_EXAMPLES,
    min_batch=resnet_min_batch,
)
