"""Task `pose`: a patient-specific pose regressor trained on DRRs rendered on the fly.

For one CT (default: the bundled chest CT, downsampled to `ct_spacing_mm`), poses are drawn
uniformly within +-rot_range_deg and +-xyz_range_mm of the nominal pose (the convention of
recon.pipelines.xray.pose); their DRRs (size x size px over field_mm at sdd) are rendered on
the training device after each batch is moved there, then degraded like radiographs (random
gamma, noise) and standardised. The network (models/pose.py) regresses the six normalised
offsets with an MSE loss. Validation draws a fixed seeded set of poses and logs val/loss,
val/rotation_error_deg and val/translation_error_mm (target error at the CT centre).
`recon register --init model --checkpoint best.ckpt` starts from its prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from recon.pipelines.common.engine import TaskSpec, TrainConfig, config_dict, seeded_loader
from recon.pipelines.common.errors import BadInput

TASK_NAME = "pose"


@dataclass
class PoseConfig(TrainConfig):
    volume: str | None = None  # CT path; None = the bundled chest CT
    orientation: str = "AP"
    ct_spacing_mm: float = 4.0  # the CT is downsampled for fast rendering
    size: int = 64  # DRR side, px
    sdd: float = 1020.0  # mm
    field_mm: float = 400.0  # detector side, mm
    nominal_rot_deg: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    nominal_xyz_mm: list = field(default_factory=lambda: [0.0, 850.0, 0.0])
    rot_range_deg: float = 10.0
    xyz_range_mm: float = 20.0
    samples_per_epoch: int = 512
    val_samples: int = 64
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    base_filters: int = 16
    finetune: str | None = None  # a `recon train pose` checkpoint to start from


def check(cfg: PoseConfig) -> None:
    if cfg.volume is not None and not Path(cfg.volume).exists():
        raise BadInput(f"{cfg.volume}: no such CT file or DICOM folder")
    if cfg.size < 16 or cfg.size % 16:
        raise BadInput("setting size must be a multiple of 16, at least 16")
    if cfg.samples_per_epoch < cfg.batch_size or cfg.val_samples < 1:
        raise BadInput("samples_per_epoch must be >= batch_size and val_samples >= 1")
    if cfg.finetune is not None:
        from recon.pipelines.common.engine import load_checkpoint

        load_checkpoint(Path(cfg.finetune), TASK_NAME)


class OffsetSet(torch.utils.data.Dataset):
    """Normalised pose offsets in [-1, 1]^6: random (global RNG, reseeded per epoch by the
    engine) for training, or fixed by (seed, index) for validation."""

    def __init__(self, count: int, seed: int | None = None) -> None:
        self.count, self.seed = count, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed * 7919 + index)
        return 2 * torch.rand(6, generator=generator) - 1


def offsets_to_poses(offsets: torch.Tensor, config: dict) -> torch.Tensor:
    """(B, 6) normalised offsets -> poses (B, 4, 4) around the configured nominal pose."""
    from recon.pipelines.xray.pose import pose_from_euler

    nominal_rot = torch.deg2rad(torch.tensor(config["nominal_rot_deg"], dtype=torch.float32))
    nominal_xyz = torch.tensor(config["nominal_xyz_mm"], dtype=torch.float32)
    rot = nominal_rot.to(offsets) + offsets[:, :3] * math.radians(config["rot_range_deg"])
    xyz = nominal_xyz.to(offsets) + offsets[:, 3:] * config["xyz_range_mm"]
    return pose_from_euler(rot, xyz)


def standardise_batch(image: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per image of a (B, 1, H, W) batch."""
    mean = image.mean(dim=(-2, -1), keepdim=True)
    std = image.std(dim=(-2, -1), keepdim=True)
    return (image - mean) / (std + 1e-6)


def build_model(config: dict):
    from recon.models.pose import PoseRegressor

    return PoseRegressor(base=int(config["base_filters"]))


def _lightning():
    import lightning as L

    from recon.pipelines.common.metrics import rotation_error_deg, translation_error_mm
    from recon.pipelines.xray.drr import Intrinsics, make_renderer
    from recon.pipelines.xray.volume import load_ct

    class PoseData(L.LightningDataModule):
        def __init__(self, cfg: PoseConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.config = config_dict(cfg)
            self.renderer = None

        def setup(self, stage: str | None = None) -> None:
            if self.renderer is None:
                cfg = self.cfg
                subject = load_ct(cfg.volume, None, cfg.orientation, cfg.ct_spacing_mm)
                spacing = cfg.field_mm / cfg.size
                intrinsics = Intrinsics(cfg.sdd, cfg.size, cfg.size, spacing, spacing)
                self.renderer = make_renderer(subject, intrinsics, "trilinear")

        def train_dataloader(self):
            data = OffsetSet(self.cfg.samples_per_epoch)
            return seeded_loader(data, self.cfg.batch_size, self.cfg.seed, True)

        def val_dataloader(self):
            data = OffsetSet(self.cfg.val_samples, seed=self.cfg.seed + 1)
            return seeded_loader(data, self.cfg.batch_size, self.cfg.seed, False)

        @torch.no_grad()
        def on_after_batch_transfer(self, batch, dataloader_idx: int):
            from diffdrr.pose import RigidTransform

            self.renderer = self.renderer.to(batch.device)
            poses = offsets_to_poses(batch, self.config)
            images = self.renderer(RigidTransform(poses), n_points=128)
            if self.trainer is not None and self.trainer.training:
                images = degrade(images)
            return standardise_batch(images), batch

    class PoseModule(L.LightningModule):
        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": TASK_NAME, "config": config})
            self.config = config
            self.model = build_model(config)
            if config.get("finetune"):
                from recon.pipelines.common.engine import load_checkpoint

                _, state = load_checkpoint(Path(config["finetune"]), TASK_NAME)
                self.load_state_dict(state)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.model(image)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.config["lr"])

        def training_step(self, batch, batch_idx):
            images, offsets = batch
            loss = torch.nn.functional.mse_loss(self(images), offsets)
            self.log(
                "train/loss",
                loss,
                on_epoch=True,
                on_step=False,
                prog_bar=True,
                batch_size=len(offsets),
            )
            return loss

        def validation_step(self, batch, batch_idx):
            images, offsets = batch
            predicted = self(images)
            size = len(offsets)
            self.log(
                "val/loss",
                torch.nn.functional.mse_loss(predicted, offsets),
                on_epoch=True,
                batch_size=size,
                prog_bar=True,
            )
            estimate = offsets_to_poses(predicted.float(), self.config).cpu()
            truth = offsets_to_poses(offsets.float(), self.config).cpu()
            self.log(
                "val/rotation_error_deg",
                float(rotation_error_deg(estimate, truth).mean()),
                on_epoch=True,
                batch_size=size,
            )
            self.log(
                "val/translation_error_mm",
                float(translation_error_mm(estimate, truth).mean()),
                on_epoch=True,
                batch_size=size,
            )

    return PoseData, PoseModule


def degrade(images: torch.Tensor) -> torch.Tensor:
    """Radiograph-like variation of DRRs (B, 1, H, W): random gamma on [0, 1] and noise."""
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    scaled = (images - low) / (high - low + 1e-6)
    gamma = 0.7 + 0.6 * torch.rand(len(images), 1, 1, 1, device=images.device)
    scaled = scaled.clamp_min(0) ** gamma
    return scaled + 0.02 * torch.randn_like(scaled)


def build(cfg: PoseConfig):
    data_class, module_class = _lightning()
    return module_class(config_dict(cfg)), data_class(cfg)


TASK = TaskSpec(TASK_NAME, PoseConfig, build, monitor="val/loss", mode="min", check=check)


class PosePredictor:
    """A trained `pose` checkpoint as an initial-pose strategy for `recon register`."""

    def __init__(self, model, config: dict, linearize: str, device: str, border: int) -> None:
        self.model, self.config = model.to(device).eval(), config
        self.linearize, self.device, self.border = linearize, device, border

    @classmethod
    def load(cls, path: Path, linearize: str, device: str, border: int = 0) -> PosePredictor:
        from recon.pipelines.common.engine import load_checkpoint

        config, state = load_checkpoint(Path(path), TASK_NAME)
        model = build_model(config)
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as error:
            raise BadInput(f"{path}: weights do not fit the pose network") from error
        return cls(model, config, linearize, device, border)

    @torch.no_grad()
    def __call__(self, xray) -> torch.Tensor:
        """The predicted pose (1, 4, 4) of an X-ray (recon.pipelines.xray.xray.Xray); the
        whole detector is used, as in training, with `border` px along each edge replaced by the
        median (collimator bands)."""
        from recon.pipelines.xray.registration import resize_image
        from recon.pipelines.xray.xray import preprocess

        image, _ = preprocess(xray, 0, self.linearize)
        if self.border:  # collimator bands: fill with the median, keeping the field of view
            inner = image[..., self.border : -self.border, self.border : -self.border]
            filled = torch.full_like(image, float(inner.median()))
            filled[..., self.border : -self.border, self.border : -self.border] = inner
            image = filled
        size = int(self.config["size"])
        image = standardise_batch(resize_image(image, size, size)).to(self.device)
        offsets = self.model(image).float().cpu()
        return offsets_to_poses(offsets, self.config)
