"""Task `voxel`: one image -> 32^3 occupancy on the Pix3D layout (ResNet18 + FC decoder).

Data: ROOT/pix3d.json entries (img, category, voxel, bbox); the split into training and
validation is by 3D model (seeded; byte-identical voxel files are one model), so validation
shapes are never seen in training. Input: the image cropped to a square around its bbox
(jittered by up to `jitter` of its size in training), resized to `size` x `size`,
ImageNet-normalised. Target: the voxel grid max-pooled to
`resolution`. Loss: BCE on logits; Adam. With `mean_prior` (default) the decoder's output bias
starts at the logit of the training set's mean shape, so training starts from the baseline.

Validation logs val/iou (IoU@0.5, the score), val/dice, val/mae, val/mse, val/r2 (probability vs
occupancy, see common/metrics.py), a threshold sweep val/iou@t for information only, and
val/iou_mean_shape: IoU@0.5 of the training set's mean shape, the baseline to beat.
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
from recon.pipelines.common.splits import same_content, split_by_group
from recon.pipelines.common.weights import load_pretrained_encoder
from recon.pipelines.occupancy.images import auto_bbox, imagenet_tensor, rgb_image, square_crop

TASK_NAME = "voxel"
CHECK_DATA = "`recon check-data voxel` lists every problem"
SWEEP = (0.3, 0.4, 0.6, 0.7)


@dataclass
class VoxelConfig(TrainConfig):
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    size: int = setting(224, "input image side, px", 32, 4096)
    resolution: int = setting(32, "output grid side, voxels", 4, 256)
    hidden: int = setting(1024, "decoder hidden units", 1, 65_536)
    dropout: float = setting(0.2, "decoder dropout probability", 0, 1, high_open=True)
    jitter: float = setting(0.08, "bbox jitter in training, fraction of the box side", 0, 0.5)
    pretrained_weights: str = setting("", "a local torchvision ResNet18 state_dict file, or empty")
    mean_prior: bool = setting(True, "output bias at the training set's mean shape (logits)")
    examples: int = examples_setting()


# ---------------------------------------------------------------- data


def load_grid(path: Path, resolution: int) -> np.ndarray:
    """A Pix3D voxel .mat as a bool grid max-pooled to resolution; BadInput when unreadable."""
    from recon.pipelines.occupancy.matfiles import MatError, read_voxel_mat
    from recon.pipelines.shapes import max_pool

    try:
        grid = read_voxel_mat(path)
    except MatError as error:
        raise BadInput(f"{path}: {error}") from error
    if grid.shape[0] == resolution:
        return grid != 0
    try:
        return max_pool(grid != 0, resolution)
    except BadInput as error:
        raise BadInput(f"{path}: {error} (setting resolution)") from error


def usable_entries(root: Path) -> list[dict]:
    """pix3d.json entries with img_path and voxel_path resolved inside root (pix3d.entry_path);
    BadInput naming the first entry without a usable img or voxel, or whose bbox check-data
    would flag, or fewer than 2 3D models (checks.too_few_sources)."""
    from recon.pipelines.occupancy.checks import bbox_problem, too_few_sources
    from recon.pipelines.occupancy.pix3d import resolved_entries

    root = Path(root)
    entries = resolved_entries(root)
    split = too_few_sources("voxel", voxel_files(entries))
    if split is not None:
        raise BadInput(f"{root / 'pix3d.json'}: {split} ({CHECK_DATA})")
    for index, entry in enumerate(entries):
        if entry.get("bbox") is not None:
            problem = bbox_problem(entry["img_path"], entry["bbox"])
            if problem is not None:
                raise BadInput(f"{root / 'pix3d.json'} entry {index}: {problem} ({CHECK_DATA})")
    return entries


def voxel_files(entries: list[dict]) -> list[Path]:
    """The voxel files entries name, each once, in entry order."""
    return list(dict.fromkeys(entry["voxel_path"] for entry in entries))


def require_usable_grids(entries: list[dict]) -> None:
    """BadInput naming the first voxel file check-data flags (checks.voxel_problems: missing,
    unreadable, all zero, or unlike the others' shape)."""
    from recon.pipelines.occupancy.checks import voxel_problems

    problems = voxel_problems(voxel_files(entries))
    if problems:
        kind, path, detail = problems[0]
        raise BadInput(f"{path}: {detail} ({kind}; {CHECK_DATA})")


class Pix3dDataset:
    """Items (image (3, S, S) float, grid (R, R, R) float) for entries of usable_entries."""

    def __init__(self, entries: list[dict], size: int, resolution: int, jitter: float = 0.0):
        self.entries, self.size, self.jitter = entries, size, jitter
        self.grids = {}
        for entry in entries:
            key = str(entry["voxel_path"])
            if key not in self.grids:
                self.grids[key] = load_grid(entry["voxel_path"], resolution)

    def __len__(self) -> int:
        return len(self.entries)

    def sources(self) -> list[str]:
        """Each item's image, in order (see sampling.split_record)."""
        return [str(entry["img_path"]) for entry in self.entries]

    def target(self, index: int) -> np.ndarray:
        return self.grids[str(self.entries[index]["voxel_path"])]

    def __getitem__(self, index: int):
        import torch

        entry = self.entries[index]
        rgb = rgb_image(entry["img_path"])
        bbox = entry.get("bbox") or auto_bbox(rgb)
        rng = np.random.default_rng(int(torch.randint(0, 2**31, ()))) if self.jitter else None
        crop = square_crop(rgb, bbox, self.size, rng, self.jitter)
        return imagenet_tensor(crop), torch.from_numpy(self.target(index).astype(np.float32))


def mean_shape(dataset) -> np.ndarray:
    """Voxel-wise mean occupancy of a dataset's targets, (R, R, R) float."""
    return np.mean([dataset.target(i) for i in range(len(dataset))], axis=0)


# ---------------------------------------------------------------- Lightning


def check_settings(cfg: VoxelConfig) -> None:
    """Refuse an unusable setting; reads no files, so --print-config checks this too."""
    if cfg.size < 32 or cfg.resolution < 4:
        raise BadInput("setting size must be >= 32 and resolution >= 4")
    if not 0 < cfg.val_fraction < 1:
        raise BadInput("setting val_fraction must lie between 0 and 1")


def check(cfg: VoxelConfig, resume: Path | None = None) -> None:
    """Fail early on an unusable setting, a missing data set or weights file."""
    check_settings(cfg)
    if not cfg.data:
        raise BadInput("task voxel needs --data ROOT (a Pix3D layout with pix3d.json)")
    require_usable_grids(usable_entries(Path(cfg.data)))
    if cfg.pretrained_weights and not Path(cfg.pretrained_weights).is_file():
        raise BadInput(f"{cfg.pretrained_weights}: no such weights file (pretrained_weights)")


def resnet_min_batch(cfg) -> int:
    """The fewest samples a training batch may hold: 2 when the ResNet trunk's last stage is
    1 x 1 (size <= 32), where its batch normalisation would see one value per channel."""
    return 2 if cfg.size <= 32 else 1


def occupancy_metrics(probability, target, mean_shape_grid=None) -> dict:
    """The validation metrics of both voxel tasks, batch means (see module doc)."""
    from recon.pipelines.common.metrics import voxel_dice, voxel_iou, voxel_regression

    values = {
        "iou": voxel_iou(probability, target, 0.5).mean(),
        "dice": voxel_dice(probability, target, 0.5).mean(),
    }
    values.update({k: v.mean() for k, v in voxel_regression(probability, target).items()})
    for threshold in SWEEP:
        values[f"iou@{threshold}"] = voxel_iou(probability, target, threshold).mean()
    if mean_shape_grid is not None:
        baseline = mean_shape_grid.to(target.device).expand_as(target)
        values["iou_mean_shape"] = voxel_iou(baseline, target, 0.5).mean()
    return values


def occupancy_module_class(task_name: str, build_net, loss_fn):
    """A LightningModule class: net from build_net(config), Adam, logged occupancy metrics."""
    import lightning as L
    import torch

    class OccupancyModule(L.LightningModule):
        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": task_name, "config": config})
            self.net = build_net(config)
            self.lr = config["lr"]
            self.mean_grid = None

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.net(images)

        def configure_optimizers(self):
            return torch.optim.Adam(self.net.parameters(), lr=self.lr)

        def on_fit_start(self) -> None:
            data = getattr(self.trainer, "datamodule", None)
            if data is not None and getattr(data, "mean_grid", None) is not None:
                self.mean_grid = torch.as_tensor(data.mean_grid, dtype=torch.float32)

        def training_step(self, batch, batch_idx):
            images, grids = batch
            loss = loss_fn(self.net(images), grids)
            self.log(
                "train/loss",
                loss,
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                batch_size=images.shape[0],
                sync_dist=True,
            )
            return loss

        def validation_step(self, batch, batch_idx):
            images, grids = batch
            logits = self.net(images)
            values = occupancy_metrics(torch.sigmoid(logits), grids, self.mean_grid)
            values["loss"] = loss_fn(logits, grids)
            self.log_dict(
                {f"val/{k}": v for k, v in values.items()},
                on_epoch=True,
                batch_size=images.shape[0],
                prog_bar=False,
                sync_dist=True,
            )

    return OccupancyModule


def occupancy_data_class(make_sets):
    """A LightningDataModule class whose setup calls make_sets(cfg) -> (train, val)."""
    import lightning as L

    class OccupancyData(SplitLoaders, L.LightningDataModule):
        def __init__(self, cfg) -> None:
            super().__init__()
            self.cfg = cfg
            self.train_set = self.val_set = self.mean_grid = None

        def setup(self, stage: str | None = None) -> None:
            if self.train_set is None:
                self.train_set, self.val_set = make_sets(self.cfg)
                self.mean_grid = mean_shape(self.train_set)

    return OccupancyData


def build_net(config: dict):
    """The VoxelNet a voxel config describes."""
    from recon.models.voxel_net import VoxelNet

    return VoxelNet(config["resolution"], config["hidden"], config["dropout"])


def _bce(logits, grids):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, grids)


def make_sets(cfg: VoxelConfig):
    from recon.pipelines.occupancy.matfiles import read_occupancy

    entries = usable_entries(Path(cfg.data))
    model = same_content([entry["voxel_path"] for entry in entries], read_occupancy)
    train, val = split_by_group(
        entries, lambda e: model[str(e["voxel_path"])], cfg.val_fraction, cfg.seed
    )
    return (
        Pix3dDataset(train, cfg.size, cfg.resolution, cfg.jitter),
        Pix3dDataset(val, cfg.size, cfg.resolution, 0.0),
    )


def build_occupancy(task_name: str, cfg, build_net_fn, loss_fn, make_sets_fn):
    """(module, datamodule); the net's output starts at the training set's mean shape when
    cfg.mean_prior is set (a resumed run then loads its own weights over it). The data is read
    first, so a target that does not fit the settings stops before the net is allocated."""
    import torch

    data = occupancy_data_class(make_sets_fn)(cfg)
    data.setup("fit")
    module = occupancy_module_class(task_name, build_net_fn, loss_fn)(config_dict(cfg))
    if cfg.mean_prior:
        mean = torch.as_tensor(data.mean_grid, dtype=torch.float32).clamp(0.02, 0.98)
        module.net.set_output_prior(torch.log(mean / (1 - mean)))
    return module, data


def build(cfg: VoxelConfig):
    module, data = build_occupancy(TASK_NAME, cfg, build_net, _bce, make_sets)
    if cfg.pretrained_weights:
        load_pretrained_encoder(module.net.encoder, cfg.pretrained_weights)
    return module, data


# ---------------------------------------------------------------- prediction


PREDICTION_SETTINGS = ("size", "resolution", "hidden", "dropout")


def load_net(checkpoint: Path, task_name: str, build_net_fn, schema, names):
    """(net in eval mode, config dict) from a checkpoint of task_name; the settings `names` it
    records are checked against the training config class `schema` (prediction_settings)."""
    from recon.pipelines.common.checkpoints import (
        load_checkpoint,
        load_weights,
        prediction_settings,
    )

    config, state = load_checkpoint(checkpoint, task_name)
    config = prediction_settings(checkpoint, config, schema, names, task_name)
    what = f"the {task_name} model"
    return load_weights(checkpoint, build_net_fn, config, state, "net.", what), config


def voxel_input(path: Path, config: dict, box: list | None = None):
    """(the network input (3, S, S) for one image file, the object box [x0, y0, x1, y1] it was
    cropped to, where that box came from: "given", "border colour", or "whole picture" when
    object_box found no plain background; training crops to pix3d.json's boxes)."""
    from recon.pipelines.occupancy.checks import bbox_problem
    from recon.pipelines.occupancy.images import object_box

    rgb = rgb_image(path)
    if box is not None:
        problem = bbox_problem(path, box)  # the rule training holds pix3d.json's boxes to
        if problem is not None:
            raise BadInput(f"{path}: --boxes: {problem}")
        source = "given"
    else:
        box, source = object_box(rgb)
    return imagenet_tensor(square_crop(rgb, box, config["size"])), box, source


MEAN_SHAPE = (Baseline("val/iou", "val/iou_mean_shape", "mean shape"),)


def occupancy_example_rows(module, batch, count: int) -> list:
    """Example grid rows: the input image | the predicted grid's three maximum projections |
    the true grid's (see recon.pipelines.common.examples.grid_views)."""
    import torch

    images, grids = batch[0][:count], batch[1][:count]
    probability = torch.sigmoid(module(images))
    return [
        [display_image(image), grid_views(p), grid_views(t)]
        for image, p, t in zip(images, probability, grids, strict=True)
    ]


OCCUPANCY_EXAMPLES = ExampleSpec(("input", "prediction", "target"), occupancy_example_rows)

TASK = TaskSpec(
    name=TASK_NAME,
    config=VoxelConfig,
    build=build,
    monitor="val/iou",
    mode="max",
    check=check,
    check_settings=check_settings,
    baselines=MEAN_SHAPE,
    examples=OCCUPANCY_EXAMPLES,
    min_batch=resnet_min_batch,
)
